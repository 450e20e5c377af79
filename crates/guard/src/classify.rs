//! Which requests are login attempts, and how each one ended, read from the
//! request and the proxied response (see ODOO-FACTS.md, "Login").
//!
//! Attackers use the RPC endpoints as much as the form: XML-RPC
//! `common.authenticate` skips Odoo's own cooldown and logs "from n/a", so
//! only the front, which sees request and response, can count it.

use serde_json::Value;

/// A route where Odoo checks a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoginRoute {
    /// `POST /web/login`, the HTML form.
    WebLogin,
    /// `POST /web/session/authenticate`, JSON-RPC from the web client.
    SessionAuthenticate,
    /// `POST /xmlrpc/2/common` or `/xmlrpc/common`.
    XmlRpcCommon,
    /// `POST /jsonrpc`.
    JsonRpc,
}

/// How a login attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginOutcome {
    Success,
    Failure,
    /// Not a password verdict (an error page, an unreadable body): neither
    /// counts against the client nor clears its failures.
    Unknown,
}

/// The login route for a normalised path and method, or None.
pub fn login_route(method: &http::Method, path: &str) -> Option<LoginRoute> {
    if method != http::Method::POST {
        return None;
    }
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let path = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    match path {
        "/web/login" => Some(LoginRoute::WebLogin),
        "/web/session/authenticate" => Some(LoginRoute::SessionAuthenticate),
        "/xmlrpc/2/common" | "/xmlrpc/common" => Some(LoginRoute::XmlRpcCommon),
        "/jsonrpc" => Some(LoginRoute::JsonRpc),
        _ => None,
    }
}

/// Whether this request on `route` checks a password. The form and
/// /web/session/authenticate always do; on the RPC endpoints only
/// `common.login` / `common.authenticate` do (`version`, `execute_kw` with an
/// already-known uid, … do not). The edge buffers the (small) request body of
/// RPC routes to ask this.
pub fn is_login_call(route: LoginRoute, request_body: &[u8]) -> bool {
    match route {
        LoginRoute::WebLogin | LoginRoute::SessionAuthenticate => true,
        LoginRoute::XmlRpcCommon => matches!(
            xml_element_text(request_body, "methodName")
                .as_deref()
                .map(str::trim),
            Some("authenticate" | "login")
        ),
        LoginRoute::JsonRpc => {
            let Ok(v) = serde_json::from_slice::<Value>(request_body) else {
                return false;
            };
            let params = &v["params"];
            params["service"].as_str() == Some("common")
                && matches!(params["method"].as_str(), Some("login" | "authenticate"))
        }
    }
}

/// Whether a redirect goes to /web/database/* (absolute or relative Location).
fn to_database_pages(headers: &http::HeaderMap) -> bool {
    let Some(location) = headers
        .get(http::header::LOCATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let path = match location.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => location,
    };
    path.to_ascii_lowercase().starts_with("/web/database/")
}

/// Whether the start of an RPC answer is Odoo refusing the password:
/// XML-RPC fault code 3 ("Access Denied"), or a JSON-RPC error naming
/// `odoo.exceptions.AccessDenied`. The fault comes first in the body, so
/// the first few KiB of an answer are enough.
pub fn rpc_access_denied(prefix: &[u8]) -> bool {
    let text = String::from_utf8_lossy(prefix);
    if text.contains("<fault>") {
        return text.contains("Access Denied") || text.contains("AccessDenied");
    }
    text.contains("odoo.exceptions.AccessDenied")
}

/// The outcome of a login attempt from the proxied response.
///
/// - `/web/login`: 303 (redirect into the app) = success; 200 (the form again,
///   "Wrong login/password" or Odoo's own cooldown message) = failure. Odoo's
///   `ensure_db` also redirects before any password is checked: 302 to the
///   same URL (a `?db=` on a new session, or a switch of database) and 303
///   to /web/database/selector (no database found). Those are Unknown: as
///   successes they would clear the failures, and an attacker could send one
///   between guesses to never reach `max`.
/// - `/web/session/authenticate`: 200 with `"error"` = failure, `"result"` = success.
/// - XML-RPC: `<boolean>0</boolean>` or a `<fault>` = failure, an int uid = success.
/// - JSON-RPC: `"result": false` or `"error"` = failure, an int uid = success.
///
/// Anything else (5xx, a compressed body the edge did not decode) is Unknown.
pub fn login_outcome(
    route: LoginRoute,
    status: u16,
    headers: &http::HeaderMap,
    body: &[u8],
) -> LoginOutcome {
    if route == LoginRoute::WebLogin {
        return match status {
            303 if !to_database_pages(headers) => LoginOutcome::Success,
            200 => LoginOutcome::Failure,
            _ => LoginOutcome::Unknown,
        };
    }
    if status != 200 || !identity_encoded(headers) {
        return LoginOutcome::Unknown;
    }
    match route {
        LoginRoute::WebLogin => unreachable!("handled above"),
        LoginRoute::SessionAuthenticate | LoginRoute::JsonRpc => {
            let Ok(v) = serde_json::from_slice::<Value>(body) else {
                return LoginOutcome::Unknown;
            };
            if v.get("error").is_some_and(|e| !e.is_null()) {
                return LoginOutcome::Failure;
            }
            match v.get("result") {
                None => LoginOutcome::Unknown,
                Some(Value::Bool(false)) | Some(Value::Null) => LoginOutcome::Failure,
                Some(Value::Number(_)) => LoginOutcome::Success,
                // /web/session/authenticate returns the session info object.
                Some(Value::Object(_)) if route == LoginRoute::SessionAuthenticate => {
                    LoginOutcome::Success
                }
                Some(_) => LoginOutcome::Unknown,
            }
        }
        LoginRoute::XmlRpcCommon => {
            let text = String::from_utf8_lossy(body);
            if text.contains("<fault>") {
                return LoginOutcome::Failure;
            }
            let Some(value) = xml_element_text(body, "value") else {
                return LoginOutcome::Unknown;
            };
            if let Some(b) = xml_element_text(value.as_bytes(), "boolean") {
                return match b.trim() {
                    "0" => LoginOutcome::Failure,
                    _ => LoginOutcome::Unknown,
                };
            }
            for tag in ["int", "i4", "i8"] {
                if let Some(n) = xml_element_text(value.as_bytes(), tag) {
                    return match n.trim().parse::<i64>() {
                        Ok(uid) if uid > 0 => LoginOutcome::Success,
                        _ => LoginOutcome::Unknown,
                    };
                }
            }
            LoginOutcome::Unknown
        }
    }
}

fn identity_encoded(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(http::header::CONTENT_ENCODING)
        .iter()
        .all(|v| {
            v.to_str()
                .map(|s| s.trim().eq_ignore_ascii_case("identity"))
                .unwrap_or(false)
        })
}

/// Text between the first `<tag>` and its `</tag>`: enough for the fixed
/// shapes of XML-RPC messages without an XML parser.
fn xml_element_text(body: &[u8], tag: &str) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = text.find(&open)? + open.len();
    let end = text[start..].find(&close)? + start;
    Some(text[start..end].to_string())
}

#[cfg(test)]
mod tests {
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
            login_route(&Method::POST, "/xmlrpc/2/common"),
            Some(LoginRoute::XmlRpcCommon)
        );
        assert_eq!(
            login_route(&Method::POST, "/xmlrpc/common"),
            Some(LoginRoute::XmlRpcCommon)
        );
        assert_eq!(login_route(&Method::POST, "/xmlrpc/2/object"), None);
        assert_eq!(
            login_route(&Method::POST, "/jsonrpc"),
            Some(LoginRoute::JsonRpc)
        );
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
        assert!(!is_login_call(LoginRoute::JsonRpc, b"{not json"));
    }

    #[test]
    fn web_login_form_outcomes() {
        let page = b"<html>... <p class=\"alert alert-danger\" role=\"alert\">Wrong login/password</p> ...";
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
        assert_eq!(
            login_outcome(r, 200, &none(), b"<html>proxy error</html>"),
            LoginOutcome::Unknown
        );
        let mut gz = HeaderMap::new();
        gz.insert(http::header::CONTENT_ENCODING, "gzip".parse().unwrap());
        assert_eq!(
            login_outcome(r, 200, &gz, XML_FALSE.as_bytes()),
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
            LoginOutcome::Unknown
        );
    }
}
