//! How a secret check ended, read from Odoo's answer (see ODOO-FACTS.md,
//! "Login"). The answers are Odoo's own, in fixed shapes; where a client's
//! text could appear in them (the JSON-RPC `id` comes first), they are
//! parsed, not searched, before a success is believed: a success marks the
//! credentials as proven and lets later calls skip the slot.
//!
//! This file reads the answer by route; `rpc` reads the fixed shapes of
//! Odoo's XML-RPC and JSON-RPC answers (apart because those are parsers,
//! with their own care about what a client could have written first).

use serde_json::Value;

use crate::classify::LoginRoute;
use rpc::{JsonAnswer, XmlAnswer, json_answer, xml_answer, xml_login_outcome};

mod rpc;
#[cfg(test)]
mod tests;

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
