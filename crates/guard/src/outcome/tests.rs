#[test]
fn rpc_access_denied_reads_odoo_refusals_only() {
    let xml_denied = b"<?xml version='1.0'?>\n<methodResponse>\n<fault>\n<value><struct>\n<member>\n<name>faultCode</name>\n<value><int>3</int></value>\n</member>\n<member>\n<name>faultString</name>\n<value><string>Access Denied</string></value>\n</member>\n</struct></value>\n</fault>\n</methodResponse>\n";
    assert!(super::rpc_access_denied(xml_denied));
    let xml_other = b"<methodResponse><fault><value><struct><member><name>faultString</name><value><string>ValueError: bad domain</string></value></member></struct></value></fault></methodResponse>";
    assert!(!super::rpc_access_denied(xml_other));
    assert!(!super::rpc_access_denied(b"<methodResponse><params><param><value><array><data/></array></value></param></params></methodResponse>"));
    let json_denied = br#"{"jsonrpc": "2.0", "id": 1, "error": {"code": 200, "message": "Odoo Server Error", "data": {"name": "odoo.exceptions.AccessDenied", "message": "Access Denied"}}}"#;
    assert!(super::rpc_access_denied(json_denied));
    assert!(!super::rpc_access_denied(
        br#"{"jsonrpc": "2.0", "id": 1, "result": []}"#
    ));
}

use super::*;
use crate::classify::{is_login_call, login_route};
use http::{HeaderMap, Method};

// Bodies as Odoo 17/18 send them (Python xmlrpc.client and Odoo's JSON-RPC dispatcher).
const XML_AUTH_CALL: &str = "<?xml version='1.0'?>\n<methodCall>\n<methodName>authenticate</methodName>\n<params>\n<param>\n<value><string>demo1</string></value>\n</param>\n<param>\n<value><string>admin</string></value>\n</param>\n<param>\n<value><string>wrong</string></value>\n</param>\n<param>\n<value><struct>\n</struct></value>\n</param>\n</params>\n</methodCall>\n";
const XML_VERSION_CALL: &str = "<?xml version='1.0'?>\n<methodCall>\n<methodName>version</methodName>\n<params>\n</params>\n</methodCall>\n";
const XML_FALSE: &str = "<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n<value><boolean>0</boolean></value>\n</param>\n</params>\n</methodResponse>\n";
const XML_UID: &str = "<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n<value><int>2</int></value>\n</param>\n</params>\n</methodResponse>\n";
const XML_FAULT: &str = "<?xml version='1.0'?>\n<methodResponse>\n<fault>\n<value><struct>\n<member>\n<name>faultCode</name>\n<value><int>1</int></value>\n</member>\n<member>\n<name>faultString</name>\n<value><string>Traceback (most recent call last):\n  ... psycopg2.OperationalError: connection to server failed: FATAL:  database \"nope\" does not exist\n</string></value>\n</member>\n</struct></value>\n</fault>\n</methodResponse>\n";
const JSON_LOGIN_CALL: &str = r#"{"jsonrpc":"2.0","method":"call","params":{"service":"common","method":"login","args":["demo1","admin","wrong"]},"id":1}"#;
const JSON_EXECUTE_CALL: &str = r#"{"jsonrpc":"2.0","method":"call","params":{"service":"object","method":"execute_kw","args":["demo1",2,"pw","res.partner","search",[[]]]},"id":2}"#;
const JSON_FALSE: &str = r#"{"jsonrpc": "2.0", "id": 1, "result": false}"#;
const JSON_UID: &str = r#"{"jsonrpc": "2.0", "id": 1, "result": 2}"#;
const SESSION_DENIED: &str = r#"{"jsonrpc": "2.0", "id": null, "error": {"code": 200, "message": "Odoo Server Error", "data": {"name": "odoo.exceptions.AccessDenied", "debug": "Traceback ...", "message": "Access Denied", "arguments": ["Access Denied"], "context": {}}}}"#;
const SESSION_OK: &str = r#"{"jsonrpc": "2.0", "id": null, "result": {"uid": 2, "is_system": true, "is_admin": true, "user_context": {"lang": "en_US", "tz": "Europe/Brussels", "uid": 2}, "db": "demo1", "username": "admin", "partner_id": 3}}"#;

fn none() -> HeaderMap {
    HeaderMap::new()
}

#[test]
fn routes() {
    assert_eq!(
        login_route(&Method::POST, "/web/login"),
        Some(LoginRoute::WebLogin)
    );
    assert_eq!(
        login_route(&Method::POST, "/web/login/"),
        Some(LoginRoute::WebLogin)
    );
    assert_eq!(
        login_route(&Method::POST, "/web/login?redirect=%2Fodoo"),
        Some(LoginRoute::WebLogin)
    );
    assert_eq!(
        login_route(&Method::GET, "/web/login"),
        None,
        "showing the form is not an attempt"
    );
    assert_eq!(
        login_route(&Method::POST, "/web/session/authenticate"),
        Some(LoginRoute::SessionAuthenticate)
    );
    assert_eq!(
        login_route(&Method::POST, "/web/login/totp"),
        Some(LoginRoute::WebLoginTotp)
    );
    // The RPC endpoints are logins only for some bodies (classify).
    assert_eq!(login_route(&Method::POST, "/xmlrpc/2/common"), None);
    assert_eq!(login_route(&Method::POST, "/jsonrpc"), None);
    assert_eq!(login_route(&Method::POST, "/web/login_extra"), None);
}

#[test]
fn only_authentication_calls_are_logins() {
    assert!(is_login_call(LoginRoute::WebLogin, b"login=a&password=b"));
    assert!(is_login_call(
        LoginRoute::XmlRpcCommon,
        XML_AUTH_CALL.as_bytes()
    ));
    let login = XML_AUTH_CALL.replace(">authenticate<", ">login<");
    assert!(is_login_call(LoginRoute::XmlRpcCommon, login.as_bytes()));
    assert!(!is_login_call(
        LoginRoute::XmlRpcCommon,
        XML_VERSION_CALL.as_bytes()
    ));
    assert!(is_login_call(
        LoginRoute::JsonRpc,
        JSON_LOGIN_CALL.as_bytes()
    ));
    let auth = JSON_LOGIN_CALL.replace("\"login\"", "\"authenticate\"");
    assert!(is_login_call(LoginRoute::JsonRpc, auth.as_bytes()));
    assert!(!is_login_call(
        LoginRoute::JsonRpc,
        JSON_EXECUTE_CALL.as_bytes()
    ));
    // Unreadable: counted (fails closed).
    assert!(is_login_call(LoginRoute::JsonRpc, b"{not json"));
}

#[test]
fn web_login_form_outcomes() {
    let page =
        b"<html>... <p class=\"alert alert-danger\" role=\"alert\">Wrong login/password</p> ...";
    assert_eq!(
        login_outcome(LoginRoute::WebLogin, 200, &none(), page),
        LoginOutcome::Failure
    );
    assert_eq!(
        login_outcome(LoginRoute::WebLogin, 303, &none(), b""),
        LoginOutcome::Success
    );
    assert_eq!(
        login_outcome(LoginRoute::WebLogin, 400, &none(), b"Session expired"),
        LoginOutcome::Unknown
    );
    // ensure_db's redirects come before any password check.
    let location = |l: &str| {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::LOCATION, l.parse().unwrap());
        h
    };
    assert_eq!(
        login_outcome(
            LoginRoute::WebLogin,
            302,
            &location("/web/login?db=demo1"),
            b""
        ),
        LoginOutcome::Unknown
    );
    for selector in [
        "/web/database/selector",
        "https://erp.example.com/web/database/selector",
    ] {
        assert_eq!(
            login_outcome(LoginRoute::WebLogin, 303, &location(selector), b""),
            LoginOutcome::Unknown,
            "{selector}"
        );
    }
    assert_eq!(
        login_outcome(LoginRoute::WebLogin, 303, &location("/odoo"), b""),
        LoginOutcome::Success
    );
    assert_eq!(
        login_outcome(LoginRoute::WebLogin, 502, &none(), b""),
        LoginOutcome::Unknown
    );
}

#[test]
fn session_authenticate_outcomes() {
    let r = LoginRoute::SessionAuthenticate;
    assert_eq!(
        login_outcome(r, 200, &none(), SESSION_DENIED.as_bytes()),
        LoginOutcome::Failure
    );
    assert_eq!(
        login_outcome(r, 200, &none(), SESSION_OK.as_bytes()),
        LoginOutcome::Success
    );
    assert_eq!(
        login_outcome(r, 500, &none(), SESSION_DENIED.as_bytes()),
        LoginOutcome::Unknown
    );
}

#[test]
fn xmlrpc_outcomes() {
    let r = LoginRoute::XmlRpcCommon;
    assert_eq!(
        login_outcome(r, 200, &none(), XML_FALSE.as_bytes()),
        LoginOutcome::Failure
    );
    assert_eq!(
        login_outcome(r, 200, &none(), XML_FAULT.as_bytes()),
        LoginOutcome::Failure
    );
    assert_eq!(
        login_outcome(r, 200, &none(), XML_UID.as_bytes()),
        LoginOutcome::Success
    );
    // A 200 whose verdict cannot be read is a failure: only a success
    // read as one is believed (red team 2, 3).
    assert_eq!(
        login_outcome(r, 200, &none(), b"<html>proxy error</html>"),
        LoginOutcome::Failure
    );
    let mut gz = HeaderMap::new();
    gz.insert(http::header::CONTENT_ENCODING, "gzip".parse().unwrap());
    assert_eq!(
        login_outcome(r, 200, &gz, XML_UID.as_bytes()),
        LoginOutcome::Failure
    );
    assert_eq!(
        login_outcome(r, 502, &none(), b"<html>proxy error</html>"),
        LoginOutcome::Unknown
    );
}

#[test]
fn jsonrpc_outcomes() {
    let r = LoginRoute::JsonRpc;
    assert_eq!(
        login_outcome(r, 200, &none(), JSON_FALSE.as_bytes()),
        LoginOutcome::Failure
    );
    assert_eq!(
        login_outcome(r, 200, &none(), SESSION_DENIED.as_bytes()),
        LoginOutcome::Failure
    );
    assert_eq!(
        login_outcome(r, 200, &none(), JSON_UID.as_bytes()),
        LoginOutcome::Success
    );
    assert_eq!(
        login_outcome(r, 200, &none(), b"garbage"),
        LoginOutcome::Failure
    );
    // Odoo echoes `"id": NaN`: not JSON to us, so a failure.
    let nan = br#"{"jsonrpc": "2.0", "id": NaN, "result": 2}"#;
    assert_eq!(login_outcome(r, 200, &none(), nan), LoginOutcome::Failure);
    assert_eq!(
        login_outcome(LoginRoute::SessionAuthenticate, 200, &none(), nan),
        LoginOutcome::Failure
    );
}

#[test]
fn object_call_verdicts_past_the_prefix_are_failures() {
    let prefix = |s: String| s.as_bytes()[..4096.min(s.len())].to_vec();
    let denied = |id: &str| {
        format!(
            r#"{{"jsonrpc": "2.0", "id": "{id}", "error": {{"code": 200, "message": "Odoo Server Error", "data": {{"name": "odoo.exceptions.AccessDenied", "debug": "Traceback", "message": "Access Denied"}}}}}}"#
        )
    };
    for r in [LoginRoute::JsonRpcCall, LoginRoute::JsonRpcUncertain] {
        // A 5000-byte id pushes the error out of the 4 KiB read.
        let long = prefix(denied(&"x".repeat(5000)));
        assert_eq!(login_outcome(r, 200, &none(), &long), LoginOutcome::Failure);
        // The error key seen, its name cut off: still a failure.
        let cut = prefix(denied(&"x".repeat(4000)));
        assert_eq!(login_outcome(r, 200, &none(), &cut), LoginOutcome::Failure);
        assert_eq!(
            login_outcome(r, 200, &none(), denied("1").as_bytes()),
            LoginOutcome::Failure
        );
        // Another exception, read: the password passed.
        let other = denied("1").replace("odoo.exceptions.AccessDenied", "builtins.ValueError");
        assert_eq!(
            login_outcome(r, 200, &none(), other.as_bytes()),
            LoginOutcome::Unknown
        );
    }
    assert_eq!(
        login_outcome(LoginRoute::XmlRpcCall, 200, &none(), b"<html>?</html>"),
        LoginOutcome::Failure
    );
    assert_eq!(
        login_outcome(LoginRoute::XmlRpcCall, 200, &none(), XML_FAULT.as_bytes()),
        LoginOutcome::Unknown
    );
}

#[test]
fn mail_plugin_keys_are_checks() {
    let mut h = HeaderMap::new();
    h.insert(http::header::AUTHORIZATION, "Bearer k".parse().unwrap());
    let d = crate::classify::classify(&Method::POST, "/mail_plugin/partner/get", &h, Some(b"{}"));
    assert_eq!(d.check, Some(LoginRoute::MailPlugin));
    assert!(d.proof.is_some());
    let long = format!(r#"{{"id":"{}"}}"#, "x".repeat(200));
    let d = crate::classify::classify(
        &Method::POST,
        "/mail_client_extension/modules/get",
        &h,
        Some(long.as_bytes()),
    );
    assert!(d.refuse.is_some());
    let bare = crate::classify::classify(
        &Method::POST,
        "/mail_plugin/partner/get",
        &none(),
        Some(b"{}"),
    );
    assert_eq!(bare.check, None, "no key, no key check");
    let r = LoginRoute::MailPlugin;
    let bad = br#"{"jsonrpc": "2.0", "id": null, "error": {"code": 200, "message": "Odoo Server Error", "data": {"name": "werkzeug.exceptions.BadRequest", "message": "400 Bad Request: Access token invalid"}}}"#;
    assert_eq!(login_outcome(r, 200, &none(), bad), LoginOutcome::Failure);
    let ok = br#"{"jsonrpc": "2.0", "id": null, "result": {"partner": {}}}"#;
    assert_eq!(login_outcome(r, 200, &none(), ok), LoginOutcome::Success);
    assert_eq!(
        login_outcome(r, 200, &none(), b"<html>"),
        LoginOutcome::Failure
    );
}

#[test]
fn login_upload_and_bearer_routes() {
    let r = LoginRoute::LoginUpload;
    assert_eq!(
        login_outcome(r, 500, &none(), b"Access Denied"),
        LoginOutcome::Failure
    );
    assert_eq!(login_outcome(r, 200, &none(), b""), LoginOutcome::Success);
    assert_eq!(
        login_route(&Method::POST, "/base_import_module/login_upload"),
        Some(r)
    );
    assert_eq!(
        login_route(&Method::GET, "/base_import_module/login_upload"),
        None
    );
    // /web/session/authenticate is type='json': any method.
    for m in ["GET", "PUT", "DELETE", "OPTIONS", "FOO"] {
        let m = Method::from_bytes(m.as_bytes()).unwrap();
        assert_eq!(
            login_route(&m, "/web/session/authenticate"),
            Some(LoginRoute::SessionAuthenticate)
        );
    }
    let mut h = HeaderMap::new();
    h.insert(http::header::AUTHORIZATION, "bearer k".parse().unwrap());
    for p in ["/json/1/action-1", "/json/2/res.partner/search"] {
        let d = crate::classify::classify(&Method::GET, p, &h, None);
        assert_eq!(d.check, Some(LoginRoute::Json2), "{p}");
    }
}

#[test]
fn bad_json_ids_are_refused_on_rpc_and_session_routes() {
    use crate::classify::classify;
    let long = format!(
        r#"{{"id":"{}","params":{{"service":"object","method":"execute_kw","args":["d",2,"pw"]}}}}"#,
        "x".repeat(5000)
    );
    let h = none();
    assert!(
        classify(&Method::POST, "/jsonrpc", &h, Some(long.as_bytes()))
            .refuse
            .is_some()
    );
    let auth =
        |id: &str| format!(r#"{{"id":{id},"params":{{"db":"d","login":"admin","password":"x"}}}}"#);
    let p = "/web/session/authenticate";
    assert!(
        classify(&Method::POST, p, &h, Some(auth("NaN").as_bytes()))
            .refuse
            .is_some()
    );
    assert!(classify(&Method::POST, p, &h, None).refuse.is_some());
    let ok = classify(&Method::POST, p, &h, Some(auth("7").as_bytes()));
    assert_eq!(ok.refuse, None);
    assert_eq!(ok.check, Some(LoginRoute::SessionAuthenticate));
    assert!(reads_body_for(p));
}

fn reads_body_for(p: &str) -> bool {
    crate::classify::reads_body(&Method::GET, p)
}

fn with(name: http::header::HeaderName, values: &[&str]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for v in values {
        h.append(name.clone(), v.parse().unwrap());
    }
    h
}

#[test]
fn totp_outcomes_and_redirects_that_check_no_code() {
    let r = LoginRoute::WebLoginTotp;
    let to = |l: &str| with(http::header::LOCATION, &[l]);
    assert_eq!(
        login_outcome(r, 200, &none(), b"<html>"),
        LoginOutcome::Failure
    );
    assert_eq!(login_outcome(r, 303, &none(), b""), LoginOutcome::Success);
    assert_eq!(login_outcome(r, 502, &none(), b""), LoginOutcome::Unknown);
    for into_app in [
        "/odoo",
        "https://erp.example.com",
        "/web/login/totp",
        "/web/loginx",
    ] {
        assert_eq!(
            login_outcome(r, 303, &to(into_app), b""),
            LoginOutcome::Success,
            "{into_app}"
        );
    }
    // Back to the login form (no password step pending) or to the
    // database pages: no code was checked.
    for back in [
        "/web/login",
        "/WEB/Login?redirect=%2Fodoo",
        "https://erp.example.com/web/login#x",
        "/Web/Database/selector",
    ] {
        assert_eq!(
            login_outcome(r, 303, &to(back), b""),
            LoginOutcome::Unknown,
            "{back}"
        );
    }
    assert_eq!(
        login_outcome(LoginRoute::WebLogin, 303, &to("/web/database/"), b""),
        LoginOutcome::Unknown
    );
    assert_eq!(
        login_outcome(LoginRoute::WebLogin, 303, &to("/web/databases"), b""),
        LoginOutcome::Success
    );
}

#[test]
fn upload_bearer_and_database_form_statuses() {
    let r = LoginRoute::LoginUpload;
    assert_eq!(login_outcome(r, 404, &none(), b""), LoginOutcome::Unknown);
    let r = LoginRoute::Json2;
    assert_eq!(login_outcome(r, 401, &none(), b""), LoginOutcome::Failure);
    for ok in [200, 204, 299] {
        assert_eq!(
            login_outcome(r, ok, &none(), b""),
            LoginOutcome::Success,
            "{ok}"
        );
    }
    for other in [199, 300, 403, 500] {
        assert_eq!(
            login_outcome(r, other, &none(), b""),
            LoginOutcome::Unknown,
            "{other}"
        );
    }
    let r = LoginRoute::DatabaseForm;
    assert_eq!(login_outcome(r, 303, &none(), b""), LoginOutcome::Success);
    for html in ["text/html", " Text/HTML; charset=utf-8"] {
        let h = with(http::header::CONTENT_TYPE, &[html]);
        assert_eq!(
            login_outcome(r, 200, &h, b"<html>"),
            LoginOutcome::Failure,
            "{html}"
        );
    }
    // A backup's download, with or without a type.
    let zip = with(http::header::CONTENT_TYPE, &["application/octet-stream"]);
    assert_eq!(login_outcome(r, 200, &zip, b"PK"), LoginOutcome::Success);
    assert_eq!(login_outcome(r, 200, &none(), b"PK"), LoginOutcome::Success);
    assert_eq!(login_outcome(r, 500, &none(), b""), LoginOutcome::Unknown);
}

#[test]
fn an_answer_is_read_only_without_a_content_encoding() {
    let r = LoginRoute::XmlRpcCommon;
    for plain in [&["identity"][..], &[" Identity "]] {
        let h = with(http::header::CONTENT_ENCODING, plain);
        assert_eq!(
            login_outcome(r, 200, &h, XML_UID.as_bytes()),
            LoginOutcome::Success
        );
    }
    for coded in [&["gzip"][..], &["identity", "br"], &["br", "identity"]] {
        let h = with(http::header::CONTENT_ENCODING, coded);
        assert_eq!(
            login_outcome(r, 200, &h, XML_UID.as_bytes()),
            LoginOutcome::Failure,
            "{coded:?}"
        );
    }
}

fn xml_answer_of(value: &str) -> String {
    format!(
        "<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n<value>{value}</value>\n</param>\n</params>\n</methodResponse>\n"
    )
}

#[test]
fn an_xmlrpc_login_succeeds_only_with_a_positive_uid() {
    let r = LoginRoute::XmlRpcCommon;
    for uid in ["<int>2</int>", "<i4> 7 </i4>", "<i8>9</i8>", "<int>1</int>"] {
        let b = xml_answer_of(uid);
        assert_eq!(
            login_outcome(r, 200, &none(), b.as_bytes()),
            LoginOutcome::Success,
            "{uid}"
        );
    }
    for not in [
        "<int>0</int>",
        "<int>-2</int>",
        "<int>x</int>",
        "<boolean>1</boolean>",
        "<string>2</string>",
    ] {
        let b = xml_answer_of(not);
        assert_eq!(
            login_outcome(r, 200, &none(), b.as_bytes()),
            LoginOutcome::Failure,
            "{not}"
        );
    }
}

#[test]
fn uncertain_calls_believe_only_a_refusal() {
    let x = LoginRoute::XmlRpcUncertain;
    let denied = XML_FAULT
        .replace("<int>1</int>", "<int>3</int>")
        .replace("Traceback", "Access Denied");
    assert_eq!(
        login_outcome(x, 200, &none(), XML_FALSE.as_bytes()),
        LoginOutcome::Failure
    );
    assert_eq!(
        login_outcome(x, 200, &none(), denied.as_bytes()),
        LoginOutcome::Failure
    );
    assert_eq!(
        login_outcome(x, 200, &none(), b"<html>"),
        LoginOutcome::Failure
    );
    for passed in [
        XML_UID,
        XML_FAULT,
        xml_answer_of("<boolean>1</boolean>").as_str(),
    ] {
        assert_eq!(
            login_outcome(x, 200, &none(), passed.as_bytes()),
            LoginOutcome::Unknown
        );
    }
    assert_eq!(
        login_outcome(LoginRoute::XmlRpcCall, 200, &none(), XML_FALSE.as_bytes()),
        LoginOutcome::Success
    );
    assert_eq!(
        login_outcome(LoginRoute::XmlRpcCall, 200, &none(), denied.as_bytes()),
        LoginOutcome::Failure
    );
    let j = LoginRoute::JsonRpcUncertain;
    let null = r#"{"jsonrpc": "2.0", "id": 1, "result": null}"#;
    for refused in [JSON_FALSE, null] {
        assert_eq!(
            login_outcome(j, 200, &none(), refused.as_bytes()),
            LoginOutcome::Failure
        );
        assert_eq!(
            login_outcome(LoginRoute::JsonRpcCall, 200, &none(), refused.as_bytes()),
            LoginOutcome::Success
        );
    }
    assert_eq!(
        login_outcome(j, 200, &none(), JSON_UID.as_bytes()),
        LoginOutcome::Unknown
    );
    // An error without a readable exception name is a refusal.
    for nameless in [
        r#"{"id": 1, "error": {"code": 200, "data": {"message": "x"}}}"#,
        r#"{"id": 1, "error": {"code": 200, "data": {"name": 3}}}"#,
        r#"{"id": 1, "error": {"name": "builtins.ValueError", "data": {}}}"#,
    ] {
        assert_eq!(
            login_outcome(j, 200, &none(), nameless.as_bytes()),
            LoginOutcome::Failure,
            "{nameless}"
        );
    }
    // The first of result/error counts, whatever precedes it.
    let first = r#"{"id": [1, {"result": 1}], "error": {"data": {"name": "odoo.exceptions.AccessDenied"}}, "result": 2}"#;
    assert_eq!(
        login_outcome(LoginRoute::JsonRpcCall, 200, &none(), first.as_bytes()),
        LoginOutcome::Failure
    );
}

#[test]
fn an_xml_answer_cut_inside_a_character_is_still_read() {
    // The first 256 bytes end inside a two-byte character.
    let head = "<?xml version='1.0'?>\n<methodResponse>\n<params>";
    let body = format!("{head}{}", "é".repeat(200));
    assert!(body.len() > 256);
    assert!(!body.is_char_boundary(256));
    assert_eq!(
        login_outcome(LoginRoute::XmlRpcCall, 200, &none(), body.as_bytes()),
        LoginOutcome::Success
    );
    // Whitespace and no declaration, as any XML-RPC server may send.
    let bare = "\n <methodResponse> <fault>";
    assert_eq!(
        login_outcome(LoginRoute::XmlRpcCall, 200, &none(), bare.as_bytes()),
        LoginOutcome::Unknown
    );
}

#[test]
fn a_jsonrpc_login_is_a_uid_and_a_null_error_is_no_error() {
    let r = LoginRoute::JsonRpc;
    let object = br#"{"jsonrpc": "2.0", "id": 1, "result": {"uid": 2}}"#;
    assert_eq!(
        login_outcome(r, 200, &none(), object),
        LoginOutcome::Failure
    );
    let null_error = br#"{"jsonrpc": "2.0", "id": 1, "error": null, "result": 2}"#;
    assert_eq!(
        login_outcome(r, 200, &none(), null_error),
        LoginOutcome::Success
    );
}
