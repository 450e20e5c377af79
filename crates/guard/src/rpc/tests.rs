//! The spellings that bypassed the substring reader against real Odoo 18
//! (issue 9), each read as Python reads it. The differential test
//! (`tests/rpc_differential.rs`) checks thousands more against python3.

use super::*;

mod xml;

fn common() -> Endpoint {
    Endpoint::XmlRpc {
        service: "common".into(),
    }
}

fn xml_method(body: &[u8]) -> Option<String> {
    match read(&common(), body) {
        Reading::Call(c) => c.method,
        other => panic!("{other:?} for {}", String::from_utf8_lossy(body)),
    }
}

fn auth_call(method_element: &str) -> String {
    format!(
        "<?xml version='1.0'?>\n<methodCall>\n{method_element}\n<params>\n<param><value><string>demo1</string></value></param>\n<param><value><string>admin</string></value></param>\n<param><value><string>wrong</string></value></param>\n<param><value><struct></struct></value></param>\n</params>\n</methodCall>\n"
    )
}

/// The authenticate call with `password` in place of the wrong one.
fn with_password(password: &str) -> String {
    auth_call("<methodName>authenticate</methodName>").replace(">wrong<", &format!(">{password}<"))
}

/// The authenticate call whose methodName element carries `attrs`.
fn method_with(attrs: &str) -> String {
    auth_call(&format!("<methodName{attrs}>authenticate</methodName>"))
}

fn assert_authenticate(body: &str) {
    assert_eq!(xml_method(body.as_bytes()).as_deref(), Some("authenticate"));
}

fn assert_uncertain(body: &str, what: &str) {
    assert_eq!(
        read(&common(), body.as_bytes()),
        Reading::Uncertain,
        "{what}"
    );
}

fn json(body: &str) -> Reading {
    read(&Endpoint::JsonRpc, body.as_bytes())
}

fn json_call(body: &str) -> Call {
    match json(body) {
        Reading::Call(c) => c,
        other => panic!("{other:?} for {body}"),
    }
}

#[test]
fn json_params_as_python_dict_reads_them() {
    let db = |b: &str| json_call(b).service.as_deref() == Some("db");
    assert!(db(
        r#"{"params":{"service":"db","method":"list","args":[]}}"#
    ));
    assert!(db(
        r#"{"params":[["service","db"],["method","list"],["args",[]]]}"#
    ));
    assert!(db(r#"{"params":[["service","common"],["service","db"]]}"#));
    assert!(db(r#"{"params":{"service":"common","service":"db"}}"#));
    assert!(db(r#"{"params":[{"service":1,"db":2}]}"#));
    assert!(db(r#"{"params":[["service","\u0064b"]]}"#));
    assert!(!db(r#"{"params":{"service":"db","service":"common"}}"#));
    // A 2-character string is a pair of its characters.
    let c = json_call(r#"{"params":[["service","db"],"ab"]}"#);
    assert!(c.is_db());
    assert_eq!(
        json(r#"{"params":[["service","db"],"abc"]}"#),
        Reading::NoCall
    );
    assert_eq!(json(r#"{"params":[[["x"],"db"]]}"#), Reading::NoCall);
    assert_eq!(json(r#"{"params":"x"}"#), Reading::NoCall);
    assert_eq!(json(r#"{"params":null}"#), Reading::NoCall);
    assert_eq!(json(r#"[1]"#), Reading::NoCall);
    assert_eq!(json_call(r#"{"params":""}"#).service, None);
    let login = json_call(
        r#"{"params":[["service","common"],["method","login"],["args",["demo1","admin","x"]]]}"#,
    );
    assert!(login.is_login());
    assert_eq!(login.login.as_deref(), Some("admin"));
    // A list or an object where a name is read: not a string, still a
    // call (read past, not uncertain); one as a pair's key: unhashable.
    for b in [
        r#"{"params":{"service":"db","method":{"a":[1,{"b":2}]}}}"#,
        r#"{"params":{"service":"db","method":[1,{"b":2}]}}"#,
        r#"{"params":{"method":{"a":1},"service":"db","model":[{}]}}"#,
    ] {
        let c = json_call(b);
        assert!(c.is_db() && c.method.is_none(), "{b}");
    }
    assert_eq!(json(r#"{"params":[[{"a":1},"db"]]}"#), Reading::NoCall);
    assert_eq!(json(r#"{"params":[[[1,{"a":1}],"db"]]}"#), Reading::NoCall);
    // An object of more than two keys is no pair, read to its end.
    assert_eq!(
        json(r#"{"params":[{"a":1,"b":{"x":[]},"c":3,"d":{}}]}"#),
        Reading::NoCall
    );
    // args from a 2-key object is its second key, a string: list("dax")[1].
    let login =
        json_call(r#"{"params":[["service","common"],["method","login"],{"args":0,"dax":1}]}"#);
    assert_eq!(login.login.as_deref(), Some("a"));
}

#[test]
fn a_json_object_calls_credential_is_its_first_three_args() {
    let cred = |args: &str| {
        json_call(&format!(
            r#"{{"params":{{"service":"object","method":"execute_kw","args":{args}}}}}"#
        ))
        .credential
        .expect("an object call's credential")
    };
    let base = cred(r#"["db",2,"pw","res.partner","read"]"#);
    // A dict keeps a repeated key's last value.
    assert_eq!(
        cred(r#"["db",2,{"p":1,"p":"pw","q":0}]"#),
        cred(r#"["db",2,{"p":"pw","q":0}]"#)
    );
    // The same three, whatever follows or however spelled in JSON.
    assert_eq!(base, cred(r#"["db",2,"pw","res.users","write",[1]]"#));
    assert_eq!(base, cred(r#"["\u0064b", 2, "p\u0077"]"#));
    for other in [
        r#"["db",2,"pw2"]"#,
        r#"["db",3,"pw"]"#,
        r#"["db2",2,"pw"]"#,
        r#"["db","2","pw"]"#,
        r#"["db",2,["pw"]]"#,
        r#"["db",2,{"pw":1}]"#,
        r#"["d","b2","pw"]"#,
    ] {
        assert_ne!(base, cred(other), "{other}");
    }
}

#[test]
fn json_python_extensions_are_uncertain() {
    for b in [
        r#"{"params":{"service":"db","x":NaN}}"#,
        r#"{"params":{"service":"db","x":Infinity}}"#,
        r#"{"params":{"service":"db","args":[1e400]}}"#,
        r#"{"params":{"service":"db","method":"\ud800"}}"#,
        r#"{"params":{"service":"db","\ud800":1}}"#,
        "\u{feff}{\"params\":{\"service\":\"db\"}}",
        r#"{"params":{"service":"db""#,
    ] {
        assert_eq!(json(b), Reading::Uncertain, "{b}");
    }
    assert_eq!(
        read(&Endpoint::JsonRpc, b"{\"params\":\"\xff\"}"),
        Reading::Uncertain
    );
    // In a value the guard skips, what Python takes and serde_json cannot
    // build is read past as Python does: the call is the db service's.
    for b in [
        r#"{"params":{"service":"db","x":1e400}}"#,
        r#"{"params":{"service":"db","x":"\ud800"}}"#,
        r#"{"params":{"service":"db","x":{"\ud800":1e999}}}"#,
    ] {
        assert!(json_call(b).is_db(), "{b}");
    }
}

#[test]
fn endpoints() {
    let post = http::Method::POST;
    assert_eq!(endpoint(&post, "/jsonrpc"), Some(Endpoint::JsonRpc));
    assert_eq!(endpoint(&post, "/jsonrpc/"), Some(Endpoint::JsonRpc));
    assert_eq!(endpoint(&post, "/xmlrpc/2/common"), Some(common()));
    assert_eq!(endpoint(&post, "/xmlrpc/common"), Some(common()));
    assert_eq!(
        endpoint(&post, "/xmlrpc/2"),
        Some(Endpoint::XmlRpc {
            service: "2".into()
        })
    );
    assert_eq!(endpoint(&post, "/xmlrpc/2/common/x"), None);
    // /jsonrpc is type='json': Odoo 18 runs it whatever the method (red
    // team 1); the XML-RPC routes are methods=["POST"].
    for m in ["GET", "PUT", "PATCH", "DELETE", "OPTIONS", "FOO"] {
        let m = http::Method::from_bytes(m.as_bytes()).unwrap();
        assert_eq!(endpoint(&m, "/jsonrpc"), Some(Endpoint::JsonRpc), "{m}");
        assert_eq!(endpoint(&m, "/xmlrpc/2/common"), None, "{m}");
    }
}

#[test]
fn json_ids_that_would_hide_the_verdict_are_flagged() {
    let with_id = |id: &str| format!(r#"{{"id":{id},"params":{{"service":"common"}}}}"#);
    for ok in [
        "null",
        "1",
        "-7",
        "-3.5e2",
        "\"abc\"",
        &format!("\"{}\"", "a".repeat(128)),
    ] {
        assert_eq!(
            json_id_acceptable(with_id(ok).as_bytes()),
            Some(true),
            "{ok}"
        );
    }
    assert_eq!(json_id_acceptable(br#"{"params":{}}"#), Some(true));
    for bad in [
        format!("\"{}\"", "a".repeat(129)),
        format!("\"{}\"", "a".repeat(5000)),
        "[1]".into(),
        "{}".into(),
        r#"{"a":[1,{}]}"#.into(),
        "true".into(),
    ] {
        assert_eq!(
            json_id_acceptable(with_id(&bad).as_bytes()),
            Some(false),
            "{bad}"
        );
    }
    // The last id is the one Python keeps.
    let twice = format!(r#"{{"id":1,"id":"{}"}}"#, "x".repeat(200));
    assert_eq!(json_id_acceptable(twice.as_bytes()), Some(false));
    let escaped = format!(r#"{{"\u0069d":"{}"}}"#, "x".repeat(200));
    assert_eq!(json_id_acceptable(escaped.as_bytes()), Some(false));
    // Not strict JSON: unknown (NaN is echoed by Odoo, unreadable here).
    assert_eq!(json_id_acceptable(br#"{"id":NaN}"#), None);
    assert_eq!(json_id_acceptable(br#"{"id":1} x"#), None);
}

#[test]
fn a_long_string_as_args_costs_no_more_than_its_bytes() {
    let body = format!(
        r#"{{"params":{{"service":"object","method":"execute_kw","args":"{}"}}}}"#,
        "x".repeat(1 << 20)
    );
    match read(&Endpoint::JsonRpc, body.as_bytes()) {
        Reading::Call(c) => assert!(c.credential.is_some()),
        other => panic!("{other:?}"),
    }
    // dict() of a list of long strings: not pairs.
    let body = format!(r#"{{"params":["{}"]}}"#, "x".repeat(1 << 20));
    assert_eq!(read(&Endpoint::JsonRpc, body.as_bytes()), Reading::NoCall);
}

#[test]
fn an_object_calls_uid_names_one_budget_whatever_its_spelling() {
    for s in ["2", " +02 ", "2.0", "02"] {
        assert_eq!(super::uid_name(s), "\0uid 2", "{s:?}");
    }
    for s in ["2.5", "x", "", "2_0", "inf"] {
        assert_eq!(super::uid_name(s), "\0uid ?", "{s:?}");
    }
    let xml = |uid: &str| {
        format!(
            "<?xml version='1.0'?><methodCall><methodName>execute_kw</methodName><params>\
             <param><value><string>db</string></value></param>\
             <param><value>{uid}</value></param>\
             <param><value><string>pw</string></value></param>\
             </params></methodCall>"
        )
    };
    for uid in [
        "<int>2</int>",
        "<i4> 2 </i4>",
        "<double>2.0</double>",
        "<string>2</string>",
        "2",
    ] {
        let d = crate::classify(
            &http::Method::POST,
            "/xmlrpc/2/object",
            &http::HeaderMap::new(),
            Some(xml(uid).as_bytes()),
        );
        assert_eq!(d.login.as_deref(), Some("\0uid 2"), "{uid}");
    }
    // Odoo's int(): a float is truncated, a bool is 0 or 1, and the
    // float is the one Python reads from its spelling.
    for (text, int) in [
        ("2.9", "2"),
        ("-2.9", "-2"),
        (" 7.0 ", "7"),
        ("1e300", "9223372036854775807"),
        ("inf", "?"),
        ("nan", "?"),
        ("x", "?"),
    ] {
        assert_eq!(super::int_of_float(text), int, "{text}");
    }
    for (uid, name) in [
        ("2", "\0uid 2"),
        ("\"2\"", "\0uid 2"),
        ("[2]", "\0uid ?"),
        ("2.0", "\0uid 2"),
        ("2.9", "\0uid 2"),
        ("-2.9", "\0uid -2"),
        ("true", "\0uid 1"),
        ("11.99999999999999911", "\0uid 11"),
        ("8.00000000000000078", "\0uid 8"),
    ] {
        let json = format!(
            r#"{{"jsonrpc":"2.0","method":"call","id":1,"params":{{"service":"object","method":"execute_kw","args":["db",{uid},"pw","res.partner","search",[[]]]}}}}"#
        );
        let d = crate::classify(
            &http::Method::POST,
            "/jsonrpc",
            &http::HeaderMap::new(),
            Some(json.as_bytes()),
        );
        assert_eq!(d.login.as_deref(), Some(name), "{uid}");
    }
    for (uid, name) in [
        ("<double>2.9</double>", "\0uid 2"),
        ("<boolean>1</boolean>", "\0uid 1"),
        // int(Decimal(...)) truncates the exact decimal (an f64 rounds
        // this one up to 3; red team of a1c0b17).
        ("<bigdecimal>2.99999999999999999999</bigdecimal>", "\0uid 2"),
        ("<bigdecimal> -0.999 </bigdecimal>", "\0uid 0"),
        ("<bigdecimal>+7.</bigdecimal>", "\0uid 7"),
        ("<bigdecimal>.5</bigdecimal>", "\0uid 0"),
        ("<bigdecimal>2e0</bigdecimal>", "\0uid ?"),
        ("<bigdecimal>.</bigdecimal>", "\0uid ?"),
        ("<bigdecimal>2.x</bigdecimal>", "\0uid ?"),
        ("<base64>Mg==</base64>", "\0uid ?"),
        ("<nil/>", "\0uid ?"),
    ] {
        let d = crate::classify(
            &http::Method::POST,
            "/xmlrpc/2/object",
            &http::HeaderMap::new(),
            Some(xml(uid).as_bytes()),
        );
        assert_eq!(d.login.as_deref(), Some(name), "{uid}");
    }
}

#[test]
fn json_params_items_of_other_than_two_raise_as_dict_does() {
    // `dict()` takes items of exactly two (a list, a string, or an object's
    // keys); Odoo raises and dispatches nothing, so no login is counted.
    for body in [
        r#"{"params":[["service","common","x"],["method","login"],["args",["d","admin","pw"]]]}"#,
        r#"{"params":[{"service":1,"common":2,"x":3},["method","login"],["args",["d","admin","pw"]]]}"#,
        r#"{"params":[["service"],["method","login"]]}"#,
    ] {
        assert_eq!(json(body), Reading::NoCall, "{body}");
    }
    // Exactly two of each: the login Python reads.
    let c = json_call(
        r#"{"params":[["service","common"],{"method":1,"login":2},["args",["d","admin","pw"]]]}"#,
    );
    assert!(c.is_login(), "{c:?}");
    assert_eq!(c.login.as_deref(), Some("admin"));
}

#[test]
fn only_object_calls_carry_a_credential() {
    // A login's or a db call's arguments are not a proof for `object` calls.
    for body in [
        r#"{"params":{"service":"common","method":"login","args":["d","admin","pw"]}}"#,
        r#"{"params":{"service":"db","method":"drop","args":["master","d","x"]}}"#,
        r#"{"params":{"service":"common","method":"version","args":["d",2,"pw"]}}"#,
    ] {
        let c = json_call(body);
        assert!(!c.is_object(), "{body}");
        assert_eq!(c.credential, None, "{body}");
    }
    let c = json_call(
        r#"{"params":{"service":"object","method":"execute_kw","args":["d",2,"pw","res.partner"]}}"#,
    );
    assert!(c.is_object());
    assert!(c.credential.is_some());
    let xml_login = read(
        &common(),
        auth_call("<methodName>login</methodName>").as_bytes(),
    );
    let Reading::Call(c) = xml_login else {
        panic!("{xml_login:?}")
    };
    assert!(c.is_login() && !c.is_object());
    assert_eq!(c.credential, None);
}

#[test]
fn debug_output_names_the_call_but_never_the_secret() {
    // What a log line or a panic message shows of a call: its service,
    // method and login, never the password or API key.
    let c = json_call(
        r#"{"params":{"service":"object","method":"execute_kw","args":["d",2,"hunter2-secret","res.partner"]}}"#,
    );
    let shown = format!("{c:?}");
    assert!(
        shown.contains("Call") && shown.contains("\"object\"") && shown.contains("\"execute_kw\""),
        "{shown}"
    );
    assert!(shown.contains("credential: Some"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
    let login = json_call(
        r#"{"params":{"service":"common","method":"login","args":["d","admin","hunter2-secret"]}}"#,
    );
    let shown = format!("{login:?}");
    assert!(
        shown.contains("\"admin\"") && !shown.contains("hunter2"),
        "{shown}"
    );
    let key = Credential::bearer(b"Bearer hunter2-api-key");
    assert_eq!(format!("{key:?}"), "Credential(…)");
    assert_eq!(
        format!("{:?}", c.credential.as_ref().unwrap()),
        "Credential(…)"
    );
}

#[test]
fn a_session_authenticate_names_its_login_as_python_reads_it() {
    // The per-login budget's key for /web/session/authenticate.
    let login = |b: &str| authenticate_login(b.as_bytes());
    assert_eq!(
        login(r#"{"params":{"db":"d","login":"admin","password":"x"}}"#).as_deref(),
        Some("admin")
    );
    // json.loads: an escape is the same name, the last of a repeated key wins.
    assert_eq!(
        login(r#"{"params":{"login":"nobody","login":"\u0061dmin"}}"#).as_deref(),
        Some("admin")
    );
    // Not a string: no name to count under.
    assert_eq!(login(r#"{"params":{"login":7}}"#), None);
    assert_eq!(login(r#"{"params":{}}"#), None);
}

#[test]
fn a_deep_json_nest_is_uncertain_not_a_crash() {
    // serde_json stops at 128 levels; Python's json.loads goes on (to
    // its recursion limit). Either way no stack is spent per level here.
    for open in ["[", "{\"params\":", "{\"params\":{\"args\":"] {
        let body = format!("{{\"params\":{}", open.repeat(1_000_000));
        assert_eq!(json(&body), Reading::Uncertain, "{open}");
    }
}
