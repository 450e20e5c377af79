//! What reading an RPC body costs in memory, measured as the rise of the
//! peak RSS of a process of its own: the inspect budget charges a body's
//! bytes, so reading it must not cost many times them (a tree of 8 MB of
//! `[1,1,...]` took 281 MB; a tree of 8 MB of XML `<a/>`, 250 MB). Each
//! attack shape is about 4 MB of small tokens where the guard skips them
//! or reads only the first three values.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use rampart_guard::rpc::{self, Endpoint};

/// A /proc/self/status figure, in bytes.
fn status_bytes(field: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"));
    let kb: usize = line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .expect("a number of kB");
    kb * 1024
}

/// In the child: the body from stdin into one buffer of its size, the
/// peak RSS reset, then `what` read; prints how far RSS rose above what
/// it was with the body in memory.
fn child(what: &str) {
    let len: usize = std::env::var("RPC_MEMORY_LEN").unwrap().parse().unwrap();
    let mut body = Vec::with_capacity(len + 64);
    std::io::stdin().read_to_end(&mut body).unwrap();
    // The body's pages touched, then the peak counted from here.
    let before = status_bytes("VmRSS:");
    std::fs::write("/proc/self/clear_refs", "5").expect("reset the peak RSS");
    let object = Endpoint::XmlRpc {
        service: "object".into(),
    };
    let answer = match what {
        "read" => format!("{:?}", rpc::read(&Endpoint::JsonRpc, &body)),
        "xml" => format!("{:?}", rpc::read(&object, &body)),
        "xml-common" => format!(
            "{:?}",
            rpc::read(
                &Endpoint::XmlRpc {
                    service: "common".into()
                },
                &body
            )
        ),
        "model_call" => format!("{:?}", rpc::model_call(&body)),
        _ => format!("{:?}", rpc::json_id_acceptable(&body)),
    };
    let rise = status_bytes("VmHWM:").saturating_sub(before);
    println!("rpc-memory-rise {rise} {answer}");
}

/// How far reading `body` with `what` raised peak RSS, and what it read,
/// in a process of its own (so no other test's memory is counted).
fn rise_of(what: &str, body: &[u8]) -> (usize, String) {
    let test = if what.starts_with("xml") {
        "reading_an_xml_rpc_body_costs_at_most_twice_its_own_bytes"
    } else {
        "reading_a_json_rpc_body_costs_at_most_its_own_bytes"
    };
    let mut c = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture"])
        .env("RPC_MEMORY_CHILD", what)
        .env("RPC_MEMORY_LEN", body.len().to_string())
        // A fixed threshold: a large block is always mapped afresh (and
        // counted), never carved from memory an earlier free left behind.
        .env("MALLOC_MMAP_THRESHOLD_", "131072")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(body).unwrap();
    let out = c.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("rpc-memory-rise "))
        .unwrap_or_else(|| panic!("the child's answer: {text}"));
    let (n, answer) = line.split_once(' ').unwrap();
    (n.parse().unwrap(), answer.to_string())
}

/// Reads `body` with `what` in a child process: the reading must start
/// with `expect`, and peak RSS must rise by at most `limit` bytes.
fn assert_reading_rises_at_most(what: &str, reader: &str, body: &[u8], expect: &str, limit: usize) {
    let (rise, reading) = rise_of(reader, body);
    eprintln!(
        "{what}: {} bytes, RSS rose {rise} reading it: {reading}",
        body.len()
    );
    assert!(reading.starts_with(expect), "{what}: {reading}");
    assert!(
        rise <= limit,
        "{what}: RSS rose {rise} for a body of {}",
        body.len()
    );
}

const SIZE: usize = 4 << 20;

/// `item` repeated, comma-separated, to about [`SIZE`] bytes.
fn many(item: &str) -> String {
    let n = SIZE / (item.len() + 1);
    let mut s = String::with_capacity(SIZE + 16);
    s.push('[');
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        s.push_str(item);
    }
    s.push(']');
    s
}

#[test]
fn reading_a_json_rpc_body_costs_at_most_its_own_bytes() {
    if let Ok(what) = std::env::var("RPC_MEMORY_CHILD") {
        return child(&what);
    }
    let object = |args: &str, rest: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","method":"call","params":{{"service":"object","method":"execute_kw","args":{args}{rest}}},"id":1}}"#
        )
    };
    let deep = format!("{}{}", "[".repeat(SIZE / 2), "]".repeat(SIZE / 2));
    let keys = many(r#""k":1"#).replace('[', "{").replace(']', "}");
    let is_object = r#"Call(Call { service: Some("object")"#;
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "kwargs of small ints",
            object(
                r#"["d",2,"pw","res.partner","read"]"#,
                &format!(r#","kwargs":{}"#, many("1")),
            ),
            is_object,
        ),
        (
            "a fourth arg of empty lists",
            object(&many("[]").replacen('[', r#"["d",2,"pw","#, 1), ""),
            is_object,
        ),
        (
            "a first arg of small objects",
            object(&format!("[{}]", many(r#"{"a":1}"#)), ""),
            "Uncertain",
        ),
        (
            "a nest in kwargs",
            object(r#"["d",2,"pw"]"#, &format!(r#","kwargs":{deep}"#)),
            is_object,
        ),
        (
            "params as pairs",
            format!(
                r#"{{"params":{}}}"#,
                many(r#"["a",1]"#).replacen('[', r#"[["service","db"],"#, 1)
            ),
            r#"Call(Call { service: Some("db")"#,
        ),
        (
            "params as 3-key objects",
            format!(r#"{{"params":{}}}"#, many(r#"{"a":1,"b":2,"c":3}"#)),
            "NoCall",
        ),
        (
            "args as an object of many keys",
            object(&keys, ""),
            is_object,
        ),
        (
            "a third arg of floats that Display spells long",
            object(
                &format!(r#"["d",2,[{}]]"#, vec!["1e308"; 1020].join(",")),
                "",
            ),
            is_object,
        ),
        (
            "an id of small ints",
            format!(r#"{{"id":{},"params":{{}}}}"#, many("1")),
            "Call(",
        ),
    ];
    // A value skipped costs nothing but serde_json's one byte per level of
    // a nest it skips (half the body at most): never more than the body,
    // and the 1,024 values of the first three args at most (small floats
    // spelled long by Display took 1 MB from a 6 KB body).
    let limit = |body: &str| body.len().max(512 * 1024);
    for (what, body, expect) in &cases {
        assert_reading_rises_at_most(what, "read", body.as_bytes(), expect, limit(body));
        let (rise, _) = rise_of("model_call", body.as_bytes());
        assert!(rise <= limit(body), "{what}: model_call rose {rise}");
        let (rise, id) = rise_of("id", body.as_bytes());
        assert!(rise <= limit(body), "{what}: the id check rose {rise}");
        assert_eq!(
            id,
            if *what == "an id of small ints" {
                "Some(false)"
            } else {
                "Some(true)"
            },
            "{what}"
        );
    }
}

/// `item` repeated to about [`SIZE`] bytes.
fn filler(item: &str) -> String {
    item.repeat(SIZE / item.len())
}

#[test]
fn reading_an_xml_rpc_body_costs_at_most_twice_its_own_bytes() {
    if let Ok(what) = std::env::var("RPC_MEMORY_CHILD") {
        return child(&what);
    }
    // An execute_kw with `inside` in its methodCall and `fourth` as its
    // fourth param.
    let call = |inside: &str, password: &str, fourth: &str| {
        format!(
            "<?xml version='1.0'?><methodCall>{inside}<methodName>execute_kw</methodName><params>\
             <param><value><string>d</string></value></param>\
             <param><value><int>2</int></value></param>\
             <param><value><string>{password}</string></value></param>\
             <param><value>{fourth}</value></param></params></methodCall>"
        )
    };
    let array = |items: &str| format!("<array><data>{items}</data></array>");
    let is_object = r#"Call(Call { service: Some("object")"#;
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "empty elements",
            call(&filler("<a/>"), "pw", "x"),
            is_object,
        ),
        (
            "an array of nils",
            call("", "pw", &array(&filler("<value><nil/></value>"))),
            is_object,
        ),
        (
            "a struct of many members",
            call(
                "",
                "pw",
                &format!(
                    "<struct>{}</struct>",
                    filler("<member><name>k</name><value><i4>1</i4></value></member>")
                ),
            ),
            is_object,
        ),
        (
            "nested arrays, 60 deep, again and again",
            call(
                "",
                "pw",
                &filler(&format!(
                    "{}{}",
                    "<array><data><value>".repeat(60),
                    "</value></data></array>".repeat(60)
                )),
            ),
            is_object,
        ),
        (
            "params of small ints",
            call("", "pw", "x").replace(
                "</params>",
                &format!(
                    "{}</params>",
                    filler("<param><value><i4>1</i4></value></param>")
                ),
            ),
            is_object,
        ),
        (
            "a password of references",
            call("", &filler("&#97;"), "x"),
            is_object,
        ),
        (
            "a password of text and CDATA",
            call("", &filler("x<![CDATA[y]]>"), "x"),
            is_object,
        ),
        ("comments", call(&filler("<!---->"), "pw", "x"), is_object),
    ];
    let mut cases: Vec<(String, Vec<u8>, &str)> = cases
        .into_iter()
        .map(|(w, b, e)| (w.to_string(), b.into_bytes(), e))
        .collect();
    // The same filler in ISO-8859-1 and UTF-16 (decoded into a copy).
    let latin = call(&filler("<a/>"), "p\u{e9}", "x");
    cases.push((
        "ISO-8859-1".into(),
        latin
            .replace(
                "<?xml version='1.0'?>",
                "<?xml version='1.0' encoding='ISO-8859-1'?>",
            )
            .chars()
            .map(|c| c as u32 as u8)
            .collect(),
        is_object,
    ));
    let mut utf16 = b"\xFF\xFE".to_vec();
    utf16.extend(latin.encode_utf16().flat_map(u16::to_le_bytes));
    cases.push(("UTF-16".into(), utf16, is_object));
    // Texts past 64 KiB are hashed as they come, never copied (a 4 MB
    // password three times over, escaped for the credential, took 34
    // times a Latin-1 body): what remains is the body decoded into UTF-8
    // when it is not UTF-8 (twice a Latin-1 body at most).
    let big = "\u{80}".repeat(SIZE / 2);
    let nested3 = |text: &str| format!("<string><string><string>{text}</string></string></string>");
    for (what, password, login) in [
        ("a 4 MB password", big.clone(), "admin".to_string()),
        (
            "a 4 MB password three times over",
            nested3(&big),
            "admin".to_string(),
        ),
        (
            "a 4 MB login three times over",
            "pw".to_string(),
            nested3(&big),
        ),
    ] {
        let object = call("", &password, "x").replace("<int>2</int>", &login);
        cases.push((
            format!("{what}, object"),
            object.clone().into_bytes(),
            is_object,
        ));
        let common = object.replace("execute_kw", "login");
        cases.push((
            format!("{what}, common"),
            common.clone().into_bytes(),
            "Call(",
        ));
        let latin = common
            .replace(
                "<?xml version='1.0'?>",
                "<?xml version='1.0' encoding='ISO-8859-1'?>",
            )
            .chars()
            .map(|c| c as u32 as u8)
            .collect();
        cases.push((format!("{what}, common, ISO-8859-1"), latin, "Call("));
    }
    let limit = |body: &[u8]| match std::str::from_utf8(body) {
        Ok(_) => 1 << 20,
        Err(_) => 2 * body.len() + 512 * 1024,
    };
    for (what, body, expect) in &cases {
        let service = if what.contains("common") {
            "xml-common"
        } else {
            "xml"
        };
        assert_reading_rises_at_most(what, service, body, expect, limit(body));
    }
}
