//! How a secret check ended, read from Odoo's answer (see ODOO-FACTS.md,
//! "Login"). The answers are Odoo's own, in fixed shapes; where a client's
//! text could appear in them (the JSON-RPC `id` comes first), they are
//! parsed, not searched, before a success is believed: a success marks the
//! credentials as proven and lets later calls skip the slot.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

use crate::classify::LoginRoute;

/// How a login attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginOutcome {
    /// Odoo accepted the credentials.
    Success,
    /// Odoo refused the credentials.
    Failure,
    /// Not a password verdict (an error page, an unreadable body): neither
    /// counts against the client nor clears its failures.
    Unknown,
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

/// Whether a redirect goes back to the login form (the 2FA form without a
/// pending password step).
fn to_login_form(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(|l| match l.split_once("://") {
            Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
            None => l,
        })
        .is_some_and(|p| {
            let p = p.split(['?', '#']).next().unwrap_or(p);
            p.eq_ignore_ascii_case("/web/login")
        })
}

fn is_html(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.trim_start().to_ascii_lowercase().starts_with("text/html"))
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

/// The outcome of a secret check from the proxied response (for
/// [`crate::AnswerRead::Prefix`] kinds, `body` is the first few KiB).
///
/// - `/web/login`: 303 (redirect into the app) = success; 200 (the form again,
///   "Wrong login/password" or Odoo's own cooldown message) = failure. Odoo's
///   `ensure_db` also redirects before any password is checked: 302 to the
///   same URL (a `?db=` on a new session, or a switch of database) and 303
///   to /web/database/selector (no database found). Those are Unknown: as
///   successes they would clear the failures, and an attacker could send one
///   between guesses to never reach `max`.
/// - `/web/login/totp`: the same, and 303 back to /web/login (no password
///   step pending) is Unknown.
/// - `/web/session/authenticate`: 200 with `"error"` = failure, `"result"` = success.
/// - XML-RPC login: `<boolean>0</boolean>` or a `<fault>` = failure, an int uid = success.
/// - JSON-RPC login: `"result": false` or `"error"` = failure, an int uid = success.
/// - Other RPC checks: Odoo's AccessDenied = failure, a result = success.
/// - Uncertain RPC bodies: only a refusal is believed.
/// - Database forms: 303 = success, the page again saying "Access Denied" = failure.
/// - `/json/2`: 401 = failure, 2xx = success.
///
/// Anything else (5xx, a compressed body the edge did not decode) is Unknown.
pub fn login_outcome(
    route: LoginRoute,
    status: u16,
    headers: &http::HeaderMap,
    body: &[u8],
) -> LoginOutcome {
    match route {
        LoginRoute::WebLogin => {
            return match status {
                303 if !to_database_pages(headers) => LoginOutcome::Success,
                200 => LoginOutcome::Failure,
                _ => LoginOutcome::Unknown,
            };
        }
        LoginRoute::WebLoginTotp => {
            return match status {
                303 if !to_database_pages(headers) && !to_login_form(headers) => {
                    LoginOutcome::Success
                }
                200 => LoginOutcome::Failure,
                _ => LoginOutcome::Unknown,
            };
        }
        LoginRoute::LoginUpload => {
            // 200 is the import's result; every error is a 500.
            return match status {
                200 => LoginOutcome::Success,
                500 => LoginOutcome::Failure,
                _ => LoginOutcome::Unknown,
            };
        }
        LoginRoute::Json2 => {
            return match status {
                401 => LoginOutcome::Failure,
                200..=299 => LoginOutcome::Success,
                _ => LoginOutcome::Unknown,
            };
        }
        LoginRoute::DatabaseForm => {
            return match status {
                303 => LoginOutcome::Success,
                200 if is_html(headers) => {
                    // The manager page again: whatever it says (a client's
                    // text may push "Access Denied" out of the prefix), the
                    // master password was not proven right.
                    LoginOutcome::Failure
                }
                // A backup's download.
                200 => LoginOutcome::Success,
                _ => LoginOutcome::Unknown,
            };
        }
        _ => {}
    }
    if status != 200 {
        return LoginOutcome::Unknown;
    }
    // A 200 answer to a secret check is a verdict: only a success read as
    // one is believed, an answer that cannot be read is a failure (else a
    // client that makes it unreadable guesses uncounted).
    if !identity_encoded(headers) {
        return LoginOutcome::Failure;
    }
    match route {
        LoginRoute::SessionAuthenticate | LoginRoute::JsonRpc => {
            let Ok(v) = serde_json::from_slice::<Value>(body) else {
                return LoginOutcome::Failure;
            };
            if v.get("error").is_some_and(|e| !e.is_null()) {
                return LoginOutcome::Failure;
            }
            match v.get("result") {
                Some(Value::Number(_)) => LoginOutcome::Success,
                // /web/session/authenticate returns the session info object.
                Some(Value::Object(_)) if route == LoginRoute::SessionAuthenticate => {
                    LoginOutcome::Success
                }
                _ => LoginOutcome::Failure,
            }
        }
        // Any error (a wrong key is a BadRequest inside the JSON-RPC
        // error) or an unreadable answer is a failure.
        LoginRoute::MailPlugin => match json_answer(body) {
            Some(JsonAnswer::Result { .. }) => LoginOutcome::Success,
            _ => LoginOutcome::Failure,
        },
        LoginRoute::XmlRpcCommon => match xml_login_outcome(body) {
            LoginOutcome::Success => LoginOutcome::Success,
            _ => LoginOutcome::Failure,
        },
        LoginRoute::XmlRpcCall | LoginRoute::XmlRpcUncertain => match xml_answer(body) {
            Some(XmlAnswer::Params) if route == LoginRoute::XmlRpcCall => LoginOutcome::Success,
            Some(XmlAnswer::Params) => match xml_login_outcome(body) {
                LoginOutcome::Failure => LoginOutcome::Failure,
                _ => LoginOutcome::Unknown,
            },
            Some(XmlAnswer::Fault) if rpc_access_denied(body) => LoginOutcome::Failure,
            // Another fault, read whole from Odoo's fixed shape: the
            // password passed, the method failed.
            Some(XmlAnswer::Fault) => LoginOutcome::Unknown,
            None => LoginOutcome::Failure,
        },
        LoginRoute::JsonRpcCall | LoginRoute::JsonRpcUncertain => match json_answer(body) {
            Some(JsonAnswer::Result { falsy }) => match route {
                LoginRoute::JsonRpcCall => LoginOutcome::Success,
                _ if falsy => LoginOutcome::Failure,
                _ => LoginOutcome::Unknown,
            },
            // The error's name read by the parser: only another exception
            // than AccessDenied is a password that passed.
            Some(JsonAnswer::Error { name: Some(n) }) if !n.contains("AccessDenied") => {
                LoginOutcome::Unknown
            }
            _ => LoginOutcome::Failure,
        },
        LoginRoute::WebLogin
        | LoginRoute::WebLoginTotp
        | LoginRoute::Json2
        | LoginRoute::LoginUpload
        | LoginRoute::DatabaseForm => unreachable!("handled above"),
    }
}

fn xml_login_outcome(body: &[u8]) -> LoginOutcome {
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

#[derive(Debug, PartialEq)]
enum XmlAnswer {
    Params,
    Fault,
}

/// Odoo's XML-RPC answer starts `<?xml version="1.0"?>`, `<methodResponse>`,
/// then `<params>` or `<fault>`: nothing a client wrote comes before.
fn xml_answer(body: &[u8]) -> Option<XmlAnswer> {
    let text = std::str::from_utf8(&body[..body.len().min(256)])
        .or_else(|e| std::str::from_utf8(&body[..e.valid_up_to()]))
        .ok()?;
    let mut rest = text.trim_start();
    if let Some(r) = rest.strip_prefix("<?xml") {
        rest = &r[r.find("?>")? + 2..];
    }
    let rest = rest
        .trim_start()
        .strip_prefix("<methodResponse>")?
        .trim_start();
    if rest.starts_with("<params>") {
        Some(XmlAnswer::Params)
    } else if rest.starts_with("<fault>") {
        Some(XmlAnswer::Fault)
    } else {
        None
    }
}

#[derive(Debug, PartialEq)]
enum JsonAnswer {
    /// `"result"`; `falsy` when it is false or null (a refused login).
    Result { falsy: bool },
    /// `"error"`, with `data.name` (the exception) when the prefix holds it.
    Error { name: Option<String> },
}

/// The first of `"result"` / `"error"` among the top-level keys of a
/// JSON-RPC answer, read by a parser (the `id` before them is the
/// client's). A prefix cut inside a value after that key is fine.
fn json_answer(prefix: &[u8]) -> Option<JsonAnswer> {
    let found = Cell::new(None);
    let mut de = serde_json::Deserializer::from_slice(prefix);
    let _ignored_error_after_the_key = (&mut de).deserialize_map(FirstKey(&found));
    found.into_inner()
}

struct FirstKey<'a>(&'a Cell<Option<JsonAnswer>>);

impl<'de> Visitor<'de> for FirstKey<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON-RPC answer")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "result" => {
                    let falsy = match map.next_value::<Value>() {
                        Ok(Value::Bool(false)) | Ok(Value::Null) => true,
                        Ok(_) => false,
                        // Cut by the prefix: a large result, not false.
                        Err(_) => false,
                    };
                    self.0.set(Some(JsonAnswer::Result { falsy }));
                    return Err(de::Error::custom("found"));
                }
                "error" => {
                    let name = Cell::new(None);
                    let _cut_or_read = map.next_value_seed(ErrorName(&name, 0));
                    self.0.set(Some(JsonAnswer::Error {
                        name: name.into_inner(),
                    }));
                    return Err(de::Error::custom("found"));
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// Reads `data.name` of a JSON-RPC error (depth 0: the error, 1: its data).
struct ErrorName<'a>(&'a Cell<Option<String>>, u8);

impl<'de> de::DeserializeSeed<'de> for ErrorName<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ErrorName<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON-RPC error")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            match (self.1, key.as_str()) {
                (0, "data") => map.next_value_seed(ErrorName(self.0, 1))?,
                (1, "name") => {
                    if let Value::String(n) = map.next_value::<Value>()? {
                        self.0.set(Some(n));
                    }
                    return Err(de::Error::custom("found"));
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
    crate::accept_any_other_value!();
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
        let d =
            crate::classify::classify(&Method::POST, "/mail_plugin/partner/get", &h, Some(b"{}"));
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
        let auth = |id: &str| {
            format!(r#"{{"id":{id},"params":{{"db":"d","login":"admin","password":"x"}}}}"#)
        };
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
}
