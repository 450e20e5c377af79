//! Differential test: Rampart's RPC reader against the real python3
//! (`oracle_rpc.py`: `xmlrpc.client.loads`, `json.loads` + `dict()`, as Odoo
//! 18 calls them) on a corpus of hand-written spellings and seeded
//! mutations of them.
//!
//! Agreement: where Python dispatches a call, Rampart must name the same
//! service, method and login, or say Uncertain (which fails closed). Where
//! Python dispatches nothing, any answer is harmless. Rampart's NoCall
//! where Python dispatches is the worst disagreement: a call waved through.
//!
//! `RAMPART_DIFF_CASES` (default 3000) sets the number of mutations,
//! `RAMPART_DIFF_SEED` the seed. python3 missing is a failure, not a skip.

use rampart_guard::rpc::{self, Endpoint, Reading};
use rampart_testkit::oracle::{self, Rng, env_number, hex};

#[derive(Clone)]
struct Case {
    kind: &'static str,
    service: String,
    body: Vec<u8>,
}

const XML_METHODS: &[&str] = &[
    "authenticate",
    "login",
    "version",
    "execute_kw",
    "execute",
    "list",
    "drop",
    "dump",
    "about",
];
const LOGINS: &[&str] = &["admin", "demo", "a&b", "adm\u{e9}n", "<x>", " admin ", ""];

fn xml_value(rng: &mut Rng, text: &str) -> String {
    let esc = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    match rng.below(4) {
        0 => format!("<value>{esc}</value>"),
        1 => format!("<value><int>{}</int></value>", rng.below(9)),
        _ => format!("<value><string>{esc}</string></value>"),
    }
}

fn xml_seed(rng: &mut Rng) -> String {
    let method = *rng.pick(XML_METHODS);
    let login = *rng.pick(LOGINS);
    let mut params = String::new();
    for (i, v) in ["demo1", login, "secret", "res.partner"].iter().enumerate() {
        let v = if i == 1 && rng.chance(5) {
            format!("<value><int>{}</int></value>", rng.below(3))
        } else if i == 1 {
            let esc = v
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;");
            if rng.chance(2) {
                format!("<value><string>{esc}</string></value>")
            } else {
                format!("<value>{esc}</value>")
            }
        } else {
            xml_value(rng, v)
        };
        params.push_str(&format!("<param>\n{v}\n</param>\n"));
    }
    let decl = *rng.pick(&[
        "<?xml version='1.0'?>\n",
        "<?xml version=\"1.0\"?>\n",
        "",
        "<?xml version='1.0' encoding='UTF-8'?>\n",
    ]);
    format!(
        "{decl}<methodCall>\n<methodName>{method}</methodName>\n<params>\n{params}</params>\n</methodCall>\n"
    )
}

/// Positions just after a `>` (between markup), to insert markup.
fn gaps(s: &str) -> Vec<usize> {
    s.match_indices('>').map(|(i, _)| i + 1).collect()
}

fn insert_at_gap(rng: &mut Rng, s: &mut String, what: &str) {
    let g = gaps(s);
    if g.is_empty() {
        return;
    }
    // Skip the declaration's gap: nothing may precede it.
    let at = g[rng.below(g.len())];
    s.insert_str(at, what);
}

/// Rewrites one character of the method name (or the login) as a
/// character reference, CDATA, comment-split or entity.
fn mutate_text(rng: &mut Rng, s: &mut String) {
    let target = if rng.chance(2) {
        "<methodName>"
    } else {
        "<string>"
    };
    let Some(start) = s.find(target).map(|i| i + target.len()) else {
        return;
    };
    let Some(len) = s[start..].find('<') else {
        return;
    };
    if len == 0 {
        return;
    }
    let text: Vec<char> = s[start..start + len].chars().collect();
    let i = rng.below(text.len());
    let c = text[i];
    let (before, after): (String, String) =
        (text[..i].iter().collect(), text[i + 1..].iter().collect());
    let piece = match rng.below(7) {
        0 => format!("&#{};", c as u32),
        1 => format!("&#x{:x};", c as u32),
        2 => format!("&#X{:X};", c as u32),
        3 => format!("<![CDATA[{c}]]>"),
        4 => format!("<!--x-->{c}"),
        5 => format!("{c}<?pi?>"),
        _ => format!("&#{:08};", c as u32),
    };
    let piece = if c == '&' && !piece.starts_with("&#") {
        c.to_string()
    } else {
        piece
    };
    s.replace_range(start..start + len, &format!("{before}{piece}{after}"));
}

fn mutate_xml(rng: &mut Rng, seed: &str) -> Vec<u8> {
    let mut s = seed.to_string();
    for _ in 0..1 + rng.below(4) {
        match rng.below(16) {
            0 => insert_at_gap(rng, &mut s, "<!-- <methodName>version</methodName> -->"),
            1 => s = s.replacen("<methodName>", "<methodName >", 1),
            2 => s = s.replacen("</methodName>", "</methodName\n>", 1),
            3 | 4 => mutate_text(rng, &mut s),
            5 => {
                s = s
                    .replacen("<methodName>", "<methodName><![CDATA[", 1)
                    .replacen("</methodName>", "]]></methodName>", 1)
            }
            6 => {
                let m = *rng.pick(XML_METHODS);
                let extra = format!("<methodName>{m}</methodName>");
                insert_at_gap(rng, &mut s, &extra)
            }
            7 => insert_at_gap(rng, &mut s, "<?pi data?>"),
            8 => s = s.replace('\n', "\r\n"),
            9 => {
                s = s
                    .replacen("<methodName>", "<x:methodName xmlns:x='urn:x'>", 1)
                    .replacen("</methodName>", "</x:methodName>", 1)
            }
            10 => insert_at_gap(rng, &mut s, "<b/>"),
            11 => s = s.replacen("<methodName>", "<methodName>\t", 1),
            12 => s = s.replacen("<params>", "<params/><params>", 1),
            13 => {
                s = s
                    .replace("<string>", "<value>")
                    .replace("</string>", "</value>")
            }
            14 => insert_at_gap(rng, &mut s, "  \n"),
            _ => {
                let cut = rng.below(s.len() + 1);
                if s.is_char_boundary(cut) {
                    s.truncate(cut)
                }
            }
        }
    }
    encode_xml(rng, &s)
}

fn encode_xml(rng: &mut Rng, s: &str) -> Vec<u8> {
    let strip_decl = |s: &str| -> String {
        match s.find("?>") {
            Some(i) if s.starts_with("<?xml") => s[i + 2..].trim_start().to_string(),
            _ => s.to_string(),
        }
    };
    match rng.below(12) {
        0 | 1 => {
            let le = rng.chance(2);
            let bom = rng.chance(2);
            let text = if rng.chance(2) {
                format!("<?xml version='1.0' encoding='UTF-16'?>{}", strip_decl(s))
            } else {
                strip_decl(s)
            };
            let mut out = Vec::new();
            if bom {
                out.extend_from_slice(if le { b"\xFF\xFE" } else { b"\xFE\xFF" });
            }
            for u in text.encode_utf16() {
                out.extend_from_slice(&if le { u.to_le_bytes() } else { u.to_be_bytes() });
            }
            out
        }
        2 => {
            let mut out = b"\xEF\xBB\xBF".to_vec();
            out.extend_from_slice(s.as_bytes());
            out
        }
        3 => {
            let enc = *rng.pick(&[
                "ISO-8859-1",
                "iso-8859-1",
                "US-ASCII",
                "latin-1",
                "cp1252",
                "utf-8",
                "UTF8",
            ]);
            let text = format!("<?xml version='1.0' encoding='{enc}'?>{}", strip_decl(s));
            if enc.eq_ignore_ascii_case("utf-8") || enc == "UTF8" {
                text.into_bytes()
            } else {
                text.chars()
                    .map(|c| {
                        if (c as u32) < 256 {
                            c as u32 as u8
                        } else {
                            b'?'
                        }
                    })
                    .collect()
            }
        }
        4 => {
            let body = strip_decl(s).replacen("<methodName>", "<methodName>&m;", 1);
            format!("<?xml version='1.0'?><!DOCTYPE methodCall [<!ENTITY m \"auth\">]>{body}")
                .into_bytes()
        }
        5 => {
            let mut b = s.as_bytes().to_vec();
            if !b.is_empty() {
                let i = rng.below(b.len());
                b[i] = (rng.next_u64() & 0xFF) as u8;
            }
            b
        }
        _ => s.as_bytes().to_vec(),
    }
}

const JSON_SERVICES: &[&str] = &["db", "common", "object", "DB", " db", "d\u{0}b", "obj"];
const JSON_METHODS: &[&str] = &[
    "list",
    "login",
    "authenticate",
    "execute_kw",
    "drop",
    "version",
    "Login",
];

fn json_string(rng: &mut Rng, s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if rng.chance(6) => {
                let mut buf = [0u16; 2];
                for u in c.encode_utf16(&mut buf) {
                    if rng.chance(2) {
                        out.push_str(&format!("\\u{:04x}", u));
                    } else {
                        out.push_str(&format!("\\u{:04X}", u));
                    }
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_seed(rng: &mut Rng) -> String {
    let service = *rng.pick(JSON_SERVICES);
    let method = *rng.pick(JSON_METHODS);
    let login = *rng.pick(LOGINS);
    let args = match rng.below(6) {
        0 => json_string(rng, "ab"),
        1 => format!(
            "{{{}:1,{}:2}}",
            json_string(rng, "demo1"),
            json_string(rng, login)
        ),
        2 => "5".to_string(),
        _ => format!(
            "[\"demo1\",{},\"pw\",\"res.partner\"]",
            json_string(rng, login)
        ),
    };
    let mut entries: Vec<(String, String)> = vec![
        ("service".into(), json_string(rng, service)),
        ("method".into(), json_string(rng, method)),
        ("args".into(), args),
    ];
    // call_kw's and /web/session/authenticate's own names, and values
    // the guard skips (kwargs, context) shaped as clients send them.
    if rng.chance(2) {
        let model = *rng.pick(&["res.partner", "res.users", "ir.attachment"]);
        let at = rng.below(entries.len() + 1);
        entries.insert(at, ("model".into(), json_string(rng, model)));
    }
    if rng.chance(3) {
        let at = rng.below(entries.len() + 1);
        entries.insert(at, ("login".into(), json_string(rng, login)));
    }
    if rng.chance(3) {
        let kwargs = rng
            .pick(&[
                r#"{"context":{"lang":"en_US","tz":"UTC"},"fields":["name"]}"#,
                r#"[[1,2],[3,[4,{"a":null}]],true,false,1.5,-2]"#,
                r#"{"model":"x","service":"db","args":["d","admin","x"]}"#,
            ])
            .to_string();
        let at = rng.below(entries.len() + 1);
        entries.insert(at, ("kwargs".into(), kwargs));
    }
    if rng.chance(3) {
        let dup = rng.below(entries.len());
        let other = *rng.pick(JSON_SERVICES);
        let v = json_string(rng, other);
        let k = entries[dup].0.clone();
        let at = rng.below(entries.len() + 1);
        entries.insert(at, (k, v));
    }
    let params = match rng.below(7) {
        0..=2 => {
            let inner: Vec<String> = entries
                .iter()
                .map(|(k, v)| format!("{}:{v}", json_string(rng, k)))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        3 | 4 => {
            let inner: Vec<String> = entries
                .iter()
                .map(|(k, v)| format!("[{},{v}]", json_string(rng, k)))
                .collect();
            format!("[{}]", inner.join(", "))
        }
        5 => {
            // Pairs spelled as 2-key objects and 2-character strings.
            let mut inner: Vec<String> = entries
                .iter()
                .map(|(k, v)| {
                    if v.starts_with('"') && !v.contains('\\') {
                        format!("{{{}:0,{v}:1}}", json_string(rng, k))
                    } else {
                        format!("[{},{v}]", json_string(rng, k))
                    }
                })
                .collect();
            if rng.chance(2) {
                inner.push("\"xy\"".into());
            }
            format!("[{}]", inner.join(","))
        }
        _ => rng
            .pick(&[
                "\"\"",
                "null",
                "[]",
                "{}",
                "\"ab\"",
                "[[1,2]]",
                "[[[1],2]]",
                "5",
            ])
            .to_string(),
    };
    let mut top = vec![
        "\"jsonrpc\":\"2.0\"".to_string(),
        "\"method\":\"call\"".to_string(),
        format!("\"params\":{params}"),
        format!("\"id\":{}", rng.below(100)),
    ];
    if rng.chance(5) {
        top.insert(0, "\"params\":{\"service\":\"object\"}".into());
    }
    format!("{{{}}}", top.join(","))
}

fn mutate_json(rng: &mut Rng, seed: &str) -> Vec<u8> {
    let mut s = seed.to_string();
    for _ in 0..rng.below(3) {
        match rng.below(9) {
            0 => s = s.replace(',', " ,\n\t"),
            1 => s = s.replacen("\"id\":", "\"x\":NaN,\"id\":", 1),
            2 => s = s.replacen("\"id\":", "\"x\":1e400,\"id\":", 1),
            3 => s = s.replacen("\"id\":", "\"x\":\"\\ud800\",\"id\":", 1),
            4 => s = s.replacen("\"id\":", "\"x\":-Infinity,\"id\":", 1),
            5 => {
                let cut = rng.below(s.len() + 1);
                if s.is_char_boundary(cut) {
                    s.truncate(cut)
                }
            }
            6 => s = format!("[{s}]"),
            7 => {
                s = s.replacen(
                    "\"id\":",
                    "\"x\":[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]],\"id\":",
                    1,
                )
            }
            _ => s = format!(" {s}\n"),
        }
    }
    match rng.below(14) {
        0 => {
            let mut b = b"\xEF\xBB\xBF".to_vec();
            b.extend_from_slice(s.as_bytes());
            b
        }
        1 => s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect(),
        2 => {
            let mut b = s.into_bytes();
            if !b.is_empty() {
                let i = rng.below(b.len());
                b[i] = (rng.next_u64() & 0xFF) as u8;
            }
            b
        }
        _ => s.into_bytes(),
    }
}

/// The spellings found against real Odoo 18 (issue 9), verbatim.
fn hand_written() -> Vec<Case> {
    let xml = |body: &str| Case {
        kind: "xml",
        service: "common".into(),
        body: body.as_bytes().to_vec(),
    };
    let json = |body: &str| Case {
        kind: "json",
        service: "-".into(),
        body: body.as_bytes().to_vec(),
    };
    let auth = |m: &str| {
        format!(
            "<?xml version='1.0'?>\n<methodCall>\n{m}\n<params>\n<param><value><string>demo1</string></value></param>\n<param><value><string>admin</string></value></param>\n<param><value><string>x</string></value></param>\n<param><value><struct></struct></value></param>\n</params>\n</methodCall>\n"
        )
    };
    let mut cases = vec![
        xml(&auth("<methodName>authenticate</methodName>")),
        xml(&auth(
            "<!-- <methodName>version</methodName> --><methodName>authenticate</methodName>",
        )),
        xml(&auth("<methodName>&#97;uthenticate</methodName>")),
        xml(&auth("<methodName><![CDATA[authenticate]]></methodName>")),
        xml(&auth("<methodName >authenticate</methodName\n>")),
        xml(&auth("<methodName>login</methodName>")),
        json(
            r#"{"jsonrpc":"2.0","method":"call","params":[["service","db"],["method","list"],["args",[]]],"id":1}"#,
        ),
        json(
            r#"{"jsonrpc":"2.0","method":"call","params":[["service","common"],["method","login"],["args",["demo1","admin","x"]]],"id":1}"#,
        ),
        json(r#"{"params":[{"service":1,"db":2},{"method":1,"list":2}]}"#),
        json(r#"{"params":{"service":"common","service":"db","method":"list","args":[]}}"#),
        // The red team's shapes (main after issue 9): args as a string,
        // ids that Odoo echoes before its verdict, methods in attributes.
        json(r#"{"params":{"service":"common","method":"login","args":"dax"}}"#),
        json(r#"{"params":{"service":"common","method":"login","args":"da"}}"#),
        json(r#"{"params":{"service":"object","method":"execute_kw","args":{"d":1,"u":2,"p":3}}}"#),
        json(r#"{"params":["sx","my"]}"#),
        json(r#"{"params":["sxy"]}"#),
        json(
            r#"{"id":NaN,"params":{"service":"common","method":"login","args":["d","admin","x"]}}"#,
        ),
        xml(&auth("<methodName a='1' b=\"2\">authenticate</methodName>")),
    ];
    let long_id = format!(
        r#"{{"id":"{}","params":{{"service":"object","method":"execute_kw","args":["d",2,"x"]}}}}"#,
        "i".repeat(5000)
    );
    cases.push(json(&long_id));
    let long_args = format!(
        r#"{{"params":{{"service":"common","method":"authenticate","args":"{}"}}}}"#,
        "a".repeat(200_000)
    );
    cases.push(json(&long_args));
    let many: String = (0..300).map(|i| format!(" a{i}=\"x\"")).collect();
    cases.push(xml(&auth(&format!(
        "<methodName{many}>authenticate</methodName>"
    ))));
    let utf16: Vec<u8> = auth("<methodName>authenticate</methodName>")
        .replace(
            "<?xml version='1.0'?>",
            "<?xml version='1.0' encoding='UTF-16'?>",
        )
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    let mut bom = b"\xFF\xFE".to_vec();
    bom.extend_from_slice(&utf16);
    cases.push(Case {
        kind: "xml",
        service: "common".into(),
        body: bom,
    });
    // A UTF-8 BOM and an ISO-8859-1 declaration: expat goes by the
    // declaration ("admÃ©n"), so reading it as UTF-8 names another login.
    let mut bom_latin1 = b"\xEF\xBB\xBF".to_vec();
    bom_latin1.extend_from_slice(
        auth("<methodName>authenticate</methodName>")
            .replace(
                "<?xml version='1.0'?>",
                "<?xml version='1.0' encoding='iso-8859-1'?>",
            )
            .replace(">admin<", ">adm\u{e9}n<")
            .as_bytes(),
    );
    cases.push(Case {
        kind: "xml",
        service: "common".into(),
        body: bom_latin1,
    });
    cases
}

fn corpus(n: usize, seed: u64) -> Vec<Case> {
    let mut rng = Rng::new(seed | 1);
    let mut cases = hand_written();
    for i in 0..n {
        if i % 2 == 0 {
            let s = xml_seed(&mut rng);
            let service = rng.pick(&["common", "object", "db"]).to_string();
            let body = if rng.chance(8) {
                s.into_bytes()
            } else {
                mutate_xml(&mut rng, &s)
            };
            cases.push(Case {
                kind: "xml",
                service,
                body,
            });
        } else {
            let s = json_seed(&mut rng);
            let body = if rng.chance(8) {
                s.into_bytes()
            } else {
                mutate_json(&mut rng, &s)
            };
            cases.push(Case {
                kind: "json",
                service: "-".into(),
                body,
            });
        }
    }
    cases
}

#[derive(Debug, PartialEq)]
struct Oracle {
    call: bool,
    service: Option<String>,
    method: Option<String>,
    login: Option<String>,
    /// JSON only: params' own "model" and "login".
    model: Option<String>,
    plogin: Option<String>,
}

fn oracle(cases: &[Case]) -> Vec<Oracle> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oracle_rpc.py");
    let lines = cases
        .iter()
        .map(|c| format!("{} {} {}", c.kind, c.service, hex(&c.body)))
        .collect();
    oracle::run(
        "python3",
        script,
        "python3: the oracle is Python's own parsers",
        lines,
    )
    .iter()
    .map(|v| {
        let s = |k: &str| v[k].as_str().map(str::to_string);
        Oracle {
            call: v["call"].as_bool().expect("call"),
            service: s("service"),
            method: s("method"),
            login: s("login"),
            model: s("model"),
            plogin: s("plogin"),
        }
    })
    .collect()
}

#[test]
fn rampart_reads_rpc_bodies_as_python_does() {
    let n = env_number("RAMPART_DIFF_CASES", 3000) as usize;
    let seed = env_number("RAMPART_DIFF_SEED", 0x5eed_0009);
    let mut total = (0usize, 0usize, 0usize, 0usize); // cases, uncertain, extra, python calls
    let mut uncertain_but_read = 0usize;
    let mut samples = Vec::new();
    let mut bad = Vec::new();
    let mut disagreements = 0usize;
    // Batches keep memory flat for long runs.
    let batch = 20_000;
    let cases = corpus(n, seed);
    for chunk in cases.chunks(batch) {
        let answers = oracle(chunk);
        for (case, py) in chunk.iter().zip(answers) {
            total.0 += 1;
            total.3 += py.call as usize;
            let endpoint = if case.kind == "xml" {
                Endpoint::XmlRpc {
                    service: case.service.clone(),
                }
            } else {
                Endpoint::JsonRpc
            };
            let ours = rpc::read(&endpoint, &case.body);
            let agree = match (&ours, py.call) {
                (Reading::Uncertain, call) => {
                    total.1 += 1;
                    if call {
                        uncertain_but_read += 1;
                        if samples.len() < 12 && std::env::var_os("RAMPART_DIFF_SHOW").is_some() {
                            samples.push(format!("{:?}", String::from_utf8_lossy(&case.body)));
                        }
                    }
                    true
                }
                (Reading::NoCall, call) => !call,
                (Reading::Call(_), false) => {
                    total.2 += 1;
                    true
                }
                (Reading::Call(c), true) => {
                    c.service == py.service && c.method == py.method && c.login == py.login
                }
            };
            // call_kw's model and method, /web/session/authenticate's
            // login: the same where Python dispatches (or uncertain; no
            // login name is always safe: the address's budget).
            let agree = agree
                && (case.kind != "json"
                    || !py.call
                    || (match rpc::model_call(&case.body) {
                        Err(()) => true,
                        Ok(None) => false,
                        Ok(Some((model, method))) => model == py.model && method == py.method,
                    } && rpc::authenticate_login(&case.body)
                        .is_none_or(|l| Some(l) == py.plogin)));
            disagreements += usize::from(!agree);
            if !agree && bad.len() < 20 {
                bad.push(format!(
                    "{} {:?}\n  rampart {ours:?}\n  python  {py:?}",
                    case.kind,
                    String::from_utf8_lossy(&case.body)
                ));
            }
        }
    }
    eprintln!(
        "rpc differential: {} cases ({} dispatched by Python), {} uncertain (fail closed; {} of them dispatched by Python), {} read as calls Python refuses, {} disagreements",
        total.0, total.3, total.1, uncertain_but_read, total.2, disagreements
    );
    for s in &samples {
        eprintln!("uncertain, Python reads it: {s}");
    }
    assert!(
        bad.is_empty(),
        "Rampart and Python disagree:\n{}",
        bad.join("\n")
    );
    assert!(
        total.3 > total.0 / 5,
        "the corpus exercises dispatched calls"
    );
}
