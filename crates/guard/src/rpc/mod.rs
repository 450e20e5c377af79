//! The one reader of RPC request bodies: which service and method a body
//! calls, as Odoo will read it (see ODOO-FACTS.md, "How Odoo reads the bytes").
//!
//! Every decision taken from an RPC body (is it a login, does it reach the
//! `db` service, which credentials does an `object` call carry) comes from
//! here. A shortcut of our own (a substring search, `params["service"]` on a
//! JSON object only) reads different things than Odoo from the same bytes,
//! and every difference is a bypass; so each reader follows Python's
//! semantics, and where it cannot be sure it says [`Reading::Uncertain`] and
//! the caller fails closed. `tests/rpc_differential.rs` checks agreement with
//! the real `xmlrpc.client.loads` / `json.loads` + `dict()`.

mod json;
mod xml;

use std::fmt;

/// Where an RPC body was posted: XML-RPC names the service in the path
/// (`/xmlrpc/2/<service>`), JSON-RPC (`/jsonrpc`) in the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `/xmlrpc/2/<service>`.
    XmlRpc {
        /// The path's last segment.
        service: String,
    },
    /// `/jsonrpc`: the service is named in the body.
    JsonRpc,
}

/// What Odoo will do with a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reading {
    /// Odoo dispatches this call (or fails inside the service, past the
    /// point where the service and method are chosen).
    Call(Call),
    /// Odoo certainly dispatches nothing (its parser or `dict()` raises
    /// before any service is chosen).
    NoCall,
    /// Cannot be read with certainty (an encoding, a DOCTYPE, a number or
    /// a string serde_json refuses but Python takes...): fail closed.
    Uncertain,
}

/// A call as Odoo dispatches it. Values that are not strings in Python
/// (a number as the service) are None: Odoo dispatches no service for them.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Call {
    /// The service called (`common`, `object`, `db`...), when a string.
    pub service: Option<String>,
    /// The method called, when a string.
    pub method: Option<String>,
    /// The second argument when it is a string: the login of
    /// `common.login` / `common.authenticate`.
    pub login: Option<String>,
    /// `object` calls: the first three arguments (database, uid, password)
    /// in one canonical byte string, for [`crate::Guard::proven`]. Never logged.
    pub credential: Option<Credential>,
    /// `object` calls: whose password is checked, as the per-login budget
    /// names it ([`uid_name`]).
    pub uid: Option<String>,
}

/// The per-login budget's name for the user an `object` call's uid picks:
/// `\0uid <n>` for any spelling Python or PostgreSQL reads as the integer
/// n (`2`, ` +02 `, `2.0`, the string "2"), one shared `\0uid ?` otherwise
/// (a spelling not read here with certainty shares one budget: stricter).
/// The NUL keeps it apart from every login name.
pub fn uid_name(text: &str) -> String {
    let t = text.trim();
    let n = t.parse::<i64>().ok().or_else(|| {
        t.parse::<f64>()
            .ok()
            .filter(|f| f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15)
            .map(|f| f as i64)
    });
    match n {
        Some(n) => format!("\0uid {n}"),
        None => "\0uid ?".to_string(),
    }
}

/// What Python's `int()` makes of a float spelled `text`: truncated
/// toward zero (`int(2.9)` is 2); `?` where it raises (inf, nan) or the
/// spelling is not read here. Past i64 all share the largest (no such
/// user exists; one budget is stricter).
pub(crate) fn int_of_float(text: &str) -> String {
    match text.trim().parse::<f64>() {
        Ok(f) if f.is_finite() => format!("{}", f.trunc() as i64),
        _ => "?".to_string(),
    }
}

impl fmt::Debug for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Call")
            .field("service", &self.service)
            .field("method", &self.method)
            .field("login", &self.login)
            .field("credential", &self.credential.as_ref().map(|_| "…"))
            .field("uid", &self.uid)
            .finish()
    }
}

/// The secret part of a call, only ever hashed (never logged or compared raw).
#[derive(Clone, PartialEq, Eq)]
pub struct Credential(pub(crate) Vec<u8>);

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credential(…)")
    }
}

impl Credential {
    /// A bearer token (Odoo 19's `/json/2` API keys): the Authorization value.
    pub fn bearer(value: &[u8]) -> Credential {
        let mut v = b"bearer\0".to_vec();
        v.extend_from_slice(value);
        Credential(v)
    }
}

/// Service and method names are compared as Odoo would not: ignoring
/// case and surrounding spaces. Odoo dispatches only the exact names, so
/// the others are failed calls; treating them as the real thing costs
/// nobody anything and leaves no near-miss spelling to argue about.
fn names(v: &Option<String>, name: &str) -> bool {
    v.as_deref()
        .is_some_and(|s| s.trim().eq_ignore_ascii_case(name))
}

impl Call {
    /// `common.login` / `common.authenticate`: a password check.
    pub fn is_login(&self) -> bool {
        names(&self.service, "common")
            && (names(&self.method, "login") || names(&self.method, "authenticate"))
    }

    /// A call on the `db` service (any method).
    pub fn is_db(&self) -> bool {
        names(&self.service, "db")
    }

    /// A `db` call that checks the master password: every method but the
    /// four Odoo's `db.dispatch` lets through without one.
    pub fn checks_master_password(&self) -> bool {
        self.is_db()
            && !matches!(
                self.method.as_deref(),
                Some("db_exist" | "list" | "list_lang" | "server_version")
            )
    }

    /// An `object` call: Odoo checks (db, uid, password) before the method.
    pub fn is_object(&self) -> bool {
        names(&self.service, "object")
    }
}

/// Reads a request body posted to `endpoint`.
pub fn read(endpoint: &Endpoint, body: &[u8]) -> Reading {
    match endpoint {
        Endpoint::XmlRpc { service } => xml::read(service, body),
        Endpoint::JsonRpc => json::read(body),
    }
}

pub use json::{MAX_ID_LEN, authenticate_login, model_call};

/// Whether a JSON-RPC body's `id` is one Odoo's answer can carry without
/// hiding its verdict ([`MAX_ID_LEN`]); None when the body is not strict JSON.
pub fn json_id_acceptable(body: &[u8]) -> Option<bool> {
    json::id_acceptable(body)
}

/// The RPC endpoint a request to `path` (canonical, lower-cased) reaches:
/// `/jsonrpc` whatever the method (a `type='json'` route in Odoo 18 takes
/// any), `/xmlrpc/<service>` and `/xmlrpc/2/<service>` on POST only
/// (`methods=["POST"]`; werkzeug's default converter: one segment).
pub fn endpoint(method: &http::Method, path: &str) -> Option<Endpoint> {
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let path = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    if path == "/jsonrpc" {
        return Some(Endpoint::JsonRpc);
    }
    if method != http::Method::POST {
        return None;
    }
    let service = path
        .strip_prefix("/xmlrpc/2/")
        .or_else(|| path.strip_prefix("/xmlrpc/"))?;
    if service.is_empty() || service.contains('/') {
        return None;
    }
    Some(Endpoint::XmlRpc {
        service: service.to_string(),
    })
}

#[cfg(test)]
mod tests;
