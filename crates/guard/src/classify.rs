//! Which requests check a secret (a password, a 2FA code, the master
//! password, an API key) and which reach Odoo's database service, decided
//! from the request as Odoo will read it (see ODOO-FACTS.md, "Login" and
//! "How Odoo reads the bytes"). How each check ended is read from Odoo's
//! answer in `outcome`.
//!
//! Attackers use the RPC endpoints as much as the form: XML-RPC
//! `common.authenticate` skips Odoo's own cooldown and logs "from n/a", and
//! `object.execute_kw` checks the password on every call and logs nothing;
//! only the front, which sees request and response, can count them. RPC
//! bodies are read by [`crate::rpc`], the one reader; a body it cannot read
//! with certainty fails closed (counted as a check, refused as a db call).

use crate::rpc::{self, Credential, Endpoint, Reading};

/// A kind of secret check, by how Odoo answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoginRoute {
    /// `POST /web/login`, the HTML form.
    WebLogin,
    /// `POST /web/login/totp`, the 2FA code after a right password
    /// (auth_totp: 303 on success, 200 with the form again when wrong).
    WebLoginTotp,
    /// `POST /web/session/authenticate`, JSON-RPC from the web client.
    SessionAuthenticate,
    /// XML-RPC `common.login` / `common.authenticate`.
    XmlRpcCommon,
    /// JSON-RPC (`/jsonrpc`) `common.login` / `common.authenticate`.
    JsonRpc,
    /// XML-RPC `object.*` (db, uid, password first) or a `db` method that
    /// takes the master password: a fault "Access Denied" when wrong.
    XmlRpcCall,
    /// The same over `/jsonrpc`: an `odoo.exceptions.AccessDenied` error.
    JsonRpcCall,
    /// An XML-RPC body the reader could not be sure of, on a service that
    /// checks secrets: counted, and only a refusal is believed.
    XmlRpcUncertain,
    /// The same for `/jsonrpc`.
    JsonRpcUncertain,
    /// A `/web/database/*` form that takes `master_pwd` (allow-listed
    /// clients only reach it): 303 when right, the manager page with
    /// "Access Denied" when wrong.
    DatabaseForm,
    /// An `auth='bearer'` route with an `Authorization` header: Odoo 18's
    /// `/json/1/...`, Odoo 19's `/json/2/...`. 401 when the API key is wrong.
    Json2,
    /// `POST /base_import_module/login_upload` (a login and password in a
    /// form, `session.authenticate`): 200 only when right and an
    /// administrator; Odoo answers 500 with the error text otherwise.
    LoginUpload,
    /// The mail plugin's `auth='outlook'` routes (`/mail_plugin/*`,
    /// `/mail_client_extension/*`, `type='json'`) with an `Authorization`
    /// API key: Odoo's JSON-RPC error when wrong, a result when right.
    MailPlugin,
}

impl LoginRoute {
    /// A login proper: held to `login_rate`, and its success forgets the
    /// client's failures. Other checks (an integration's `execute_kw`, an
    /// API key) only release their slot on success.
    pub fn is_login(self) -> bool {
        matches!(
            self,
            LoginRoute::WebLogin
                | LoginRoute::WebLoginTotp
                | LoginRoute::SessionAuthenticate
                | LoginRoute::XmlRpcCommon
                | LoginRoute::JsonRpc
                | LoginRoute::LoginUpload
        )
    }
}

impl LoginRoute {
    /// An RPC call checking (db, uid, password) or the master password.
    pub fn is_object_call(self) -> bool {
        matches!(self, LoginRoute::XmlRpcCall | LoginRoute::JsonRpcCall)
    }
}

/// How Odoo's answer to a check is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerRead {
    /// The status (and Location) is the verdict.
    Status,
    /// The (small) body, read whole before it is passed on.
    Body,
    /// The first few KiB of a body that may be large, as it streams past.
    Prefix,
}

/// What the edge must do with a request before forwarding it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// It reaches Odoo's database service (or may: an unreadable `/jsonrpc`
    /// body): refused outside `database_manager.allow`.
    pub db_service: bool,
    /// A secret check: take a slot with [`crate::Guard::begin_check`].
    pub check: Option<LoginRoute>,
    /// The credentials an `object` call or an API call carries, to skip
    /// the slot when they were proven right recently.
    pub proof: Option<Credential>,
    /// Refused before Odoo sees it (400), and why: a JSON-RPC `id` that
    /// would push Odoo's verdict out of sight.
    pub refuse: Option<&'static str>,
    /// The login name of a login call read from its body (JSON-RPC and
    /// XML-RPC logins, /web/session/authenticate), for `login_rate`; the
    /// form's is read by [`crate::form_login`] (it needs the query). For
    /// an `object` call, whose password it checks ([`rpc::uid_name`]), for
    /// the per-login budget.
    pub login: Option<String>,
}

/// The login route for a normalised path and method, known without the
/// body (the form, the 2FA form, /web/session/authenticate), or None.
/// `/web/session/authenticate` is a `type='json'` route: Odoo 18 runs it
/// whatever the method. The forms check a password on POST only (the
/// method as werkzeug upper-cases it; stage 1 refuses other spellings).
pub fn login_route(method: &http::Method, path: &str) -> Option<LoginRoute> {
    let p = trimmed(path);
    if p == "/web/session/authenticate" {
        return Some(LoginRoute::SessionAuthenticate);
    }
    if method != http::Method::POST {
        return None;
    }
    match p {
        "/web/login" => Some(LoginRoute::WebLogin),
        "/web/login/totp" => Some(LoginRoute::WebLoginTotp),
        "/base_import_module/login_upload" => Some(LoginRoute::LoginUpload),
        _ => None,
    }
}

/// Whether the edge must read the body to decide ([`classify`]): the RPC
/// endpoints, where the body names the service and method,
/// /web/session/authenticate, whose JSON-RPC `id` is checked, and the login
/// form, whose login name picks its `login_rate` bucket.
pub fn reads_body(method: &http::Method, path: &str) -> bool {
    rpc::endpoint(method, path).is_some()
        || login_route(method, path) == Some(LoginRoute::WebLogin)
        || trimmed(path) == "/web/session/authenticate"
        || mail_plugin(trimmed(path))
        || dataset_call(trimmed(path))
}

/// The web client's model calls (`type='json'`, any method): a logged-in
/// user (a portal signup is enough) could call `res.users.authenticate`
/// through them, a password check Odoo does not rate-limit when the
/// caller's own logins keep succeeding.
fn dataset_call(path: &str) -> bool {
    ["/web/dataset/call_kw", "/web/dataset/call_button"]
        .iter()
        .any(|p| path == *p || path.strip_prefix(p).is_some_and(|r| r.starts_with('/')))
}

/// Model methods that check a password when called: the web client never
/// calls them, so they are refused rather than counted.
fn password_method(model: Option<&str>, method: Option<&str>) -> bool {
    let method = method.map(|m| m.trim().to_ascii_lowercase());
    let model = model.map(|m| m.trim().to_ascii_lowercase());
    match method.as_deref() {
        Some("authenticate") => true,
        Some("check" | "login" | "check_credentials") => {
            model.as_deref().is_none_or(|m| m.starts_with("res.users"))
        }
        _ => false,
    }
}

const PASSWORD_CALL: &str =
    "password checks through the web client's model calls are not accepted (log in at /web/login)";
const UNREADABLE_CALL: &str = "a model call whose body cannot be read as plain JSON";

/// The mail plugin's routes, whose `auth='outlook'` checks an API key.
fn mail_plugin(path: &str) -> bool {
    path.starts_with("/mail_plugin/") || path.starts_with("/mail_client_extension/")
}

const BAD_ID: &str = "the JSON-RPC id must be null, a number or a string of at most 128 bytes";

/// Everything the guard needs to know about a request before it is
/// forwarded. `path` is the canonical lower-cased path; `body` is the
/// whole body when [`reads_body`] said so (None when it was too large to
/// read whole: an RPC body is then uncertain).
pub fn classify(
    method: &http::Method,
    path: &str,
    headers: &http::HeaderMap,
    body: Option<&[u8]>,
) -> Decision {
    let mut d = Decision::default();
    if let Some(route) = login_route(method, path) {
        d.check = Some(route);
        if route == LoginRoute::SessionAuthenticate {
            // The web client sends plain JSON with a small id; anything
            // else could make Odoo's answer unreadable.
            if body.and_then(rpc::json_id_acceptable) != Some(true) {
                d.refuse = Some(BAD_ID);
            }
            d.login = body.and_then(rpc::authenticate_login);
        }
        return d;
    }
    let p = trimmed(path);
    if method == http::Method::POST && master_password_form(p) {
        d.db_service = true;
        d.check = Some(LoginRoute::DatabaseForm);
        return d;
    }
    if mail_plugin(p)
        && let Some(auth) = headers.get(http::header::AUTHORIZATION)
    {
        d.check = Some(LoginRoute::MailPlugin);
        d.proof = Some(Credential::bearer(auth.as_bytes()));
        if body.and_then(rpc::json_id_acceptable) == Some(false) {
            d.refuse = Some(BAD_ID);
        }
        return d;
    }
    if (p.starts_with("/json/2/") || p.starts_with("/json/1/"))
        && let Some(auth) = headers.get(http::header::AUTHORIZATION)
    {
        d.check = Some(LoginRoute::Json2);
        d.proof = Some(Credential::bearer(auth.as_bytes()));
        return d;
    }
    if dataset_call(p) {
        match body {
            // Too large to read here: counted like an unreadable RPC call.
            None => d.check = Some(LoginRoute::JsonRpcUncertain),
            Some(b) => match rpc::model_call(b) {
                Err(()) => d.refuse = Some(UNREADABLE_CALL),
                Ok(Some((model, m))) if password_method(model.as_deref(), m.as_deref()) => {
                    d.refuse = Some(PASSWORD_CALL)
                }
                Ok(_) if rpc::json_id_acceptable(b) == Some(false) => d.refuse = Some(BAD_ID),
                Ok(_) => {}
            },
        }
        return d;
    }
    let Some(endpoint) = rpc::endpoint(method, path) else {
        return d;
    };
    let xml = matches!(endpoint, Endpoint::XmlRpc { .. });
    let checks_secrets = match &endpoint {
        Endpoint::XmlRpc { service } => {
            d.db_service = service == "db";
            matches!(service.as_str(), "common" | "object" | "db")
        }
        Endpoint::JsonRpc => true,
    };
    // No body in hand on an RPC endpoint (too large to read whole):
    // unreadable, so it fails closed like any uncertain body.
    if !xml && body.and_then(rpc::json_id_acceptable) == Some(false) {
        d.refuse = Some(BAD_ID);
        return d;
    }
    let reading = match body {
        Some(b) => rpc::read(&endpoint, b),
        None => Reading::Uncertain,
    };
    match reading {
        Reading::NoCall => {}
        Reading::Uncertain => {
            if !xml {
                d.db_service = true;
            }
            if checks_secrets {
                d.check = Some(if xml {
                    LoginRoute::XmlRpcUncertain
                } else {
                    LoginRoute::JsonRpcUncertain
                });
            }
        }
        Reading::Call(call) => {
            d.db_service |= call.is_db();
            let (login, other) = if xml {
                (LoginRoute::XmlRpcCommon, LoginRoute::XmlRpcCall)
            } else {
                (LoginRoute::JsonRpc, LoginRoute::JsonRpcCall)
            };
            if call.is_login() {
                d.check = Some(login);
                d.login = call.login;
            } else if call.checks_master_password() {
                d.check = Some(other);
            } else if call.is_object() {
                d.check = Some(other);
                d.proof = call.credential;
                // Whose password it checks: held to the per-login budget
                // like a login by name (red team 4 F2).
                d.login = call.uid;
            }
        }
    }
    d
}

/// Whether a body posted to a login-capable RPC route is a login call.
/// Kept for callers that only ask that; uncertain bodies count as logins.
pub fn is_login_call(route: LoginRoute, request_body: &[u8]) -> bool {
    let endpoint = match route {
        LoginRoute::XmlRpcCommon => Endpoint::XmlRpc {
            service: "common".into(),
        },
        LoginRoute::JsonRpc => Endpoint::JsonRpc,
        other => return other.is_login(),
    };
    match rpc::read(&endpoint, request_body) {
        Reading::Call(c) => c.is_login(),
        Reading::NoCall => false,
        Reading::Uncertain => true,
    }
}

/// How the edge reads the verdict of a check of this kind.
pub fn answer_read(route: LoginRoute) -> AnswerRead {
    match route {
        LoginRoute::WebLogin
        | LoginRoute::WebLoginTotp
        | LoginRoute::Json2
        | LoginRoute::LoginUpload => AnswerRead::Status,
        LoginRoute::SessionAuthenticate | LoginRoute::XmlRpcCommon | LoginRoute::JsonRpc => {
            AnswerRead::Body
        }
        // The manager page names the error in its first 2 KiB; a backup
        // that succeeds is a large download.
        LoginRoute::DatabaseForm
        | LoginRoute::XmlRpcCall
        | LoginRoute::JsonRpcCall
        | LoginRoute::XmlRpcUncertain
        | LoginRoute::JsonRpcUncertain
        | LoginRoute::MailPlugin => AnswerRead::Prefix,
    }
}

/// The `/web/database/*` forms whose handler checks `master_pwd`.
fn master_password_form(path: &str) -> bool {
    matches!(
        path,
        "/web/database/create"
            | "/web/database/duplicate"
            | "/web/database/drop"
            | "/web/database/backup"
            | "/web/database/restore"
            | "/web/database/change_password"
    )
}

fn trimmed(path: &str) -> &str {
    let path = path.split(['?', '#']).next().unwrap_or(path);
    if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    }
}

#[cfg(test)]
mod dataset_tests {
    use super::*;

    fn judge(path: &str, body: &[u8]) -> Decision {
        classify(
            &http::Method::POST,
            path,
            &http::HeaderMap::new(),
            Some(body),
        )
    }

    #[test]
    fn password_checks_through_call_kw_are_refused() {
        let auth = br#"{"jsonrpc":"2.0","method":"call","id":1,"params":{"model":"res.users","method":"authenticate","args":[[],"demo1",{"type":"password","login":"demo","password":"x"},{}],"kwargs":{}}}"#;
        for path in [
            "/web/dataset/call_kw",
            "/web/dataset/call_kw/res.users/authenticate",
            "/web/dataset/call_button",
        ] {
            assert!(reads_body(&http::Method::GET, path), "{path}");
            assert_eq!(judge(path, auth).refuse, Some(PASSWORD_CALL), "{path}");
        }
        // Python's dict() spellings of the same params.
        let pairs =
            br#"{"params":[["model","res.users"],["method","check"],["args",["demo1",2,"x"]]]}"#;
        assert_eq!(
            judge("/web/dataset/call_kw", pairs).refuse,
            Some(PASSWORD_CALL)
        );
        let escaped = br#"{"params":{"model":"res.users","method":"\u0061uthenticate"}}"#;
        assert_eq!(
            judge("/web/dataset/call_kw", escaped).refuse,
            Some(PASSWORD_CALL)
        );
        // What Python reads but serde_json does not: refused, never waved through.
        let nan = br#"{"params":{"model":"res.users","method":"authenticate","x":NaN}}"#;
        assert_eq!(
            judge("/web/dataset/call_kw", nan).refuse,
            Some(UNREADABLE_CALL)
        );
    }

    #[test]
    fn ordinary_model_calls_pass_and_large_ones_are_counted() {
        let search = br#"{"jsonrpc":"2.0","method":"call","id":7,"params":{"model":"res.partner","method":"web_search_read","args":[],"kwargs":{}}}"#;
        let d = judge("/web/dataset/call_kw/res.partner/web_search_read", search);
        assert_eq!(d, Decision::default());
        // `check` on another model is not res.users' password check.
        let other = br#"{"params":{"model":"account.move","method":"check"}}"#;
        assert_eq!(judge("/web/dataset/call_kw", other).refuse, None);
        let too_large = classify(
            &http::Method::POST,
            "/web/dataset/call_kw",
            &http::HeaderMap::new(),
            None,
        );
        assert_eq!(too_large.check, Some(LoginRoute::JsonRpcUncertain));
        assert!(!reads_body(&http::Method::POST, "/web/dataset/call_kwx"));
    }

    #[test]
    fn the_edge_reads_the_body_of_every_route_judged_by_it() {
        // Without the body the guard would see no RPC call, no login
        // name and no JSON-RPC id: each of these must be read.
        for path in [
            "/xmlrpc/2/common",
            "/xmlrpc/2/object",
            "/xmlrpc/common",
            "/jsonrpc",
            "/web/login",
            "/web/session/authenticate",
            "/web/dataset/call_kw",
        ] {
            assert!(reads_body(&http::Method::POST, path), "{path}");
        }
        // Pages and assets are not held back to be read.
        for path in ["/web", "/odoo/action-1", "/web/webclient/version_info"] {
            assert!(!reads_body(&http::Method::POST, path), "{path}");
        }
    }
}

#[cfg(test)]
mod route_tests {
    use super::*;

    fn post(path: &str, body: &[u8]) -> Decision {
        classify(
            &http::Method::POST,
            path,
            &http::HeaderMap::new(),
            Some(body),
        )
    }

    fn xml_call(method: &str, params: &[&str]) -> Vec<u8> {
        let params: String = params
            .iter()
            .map(|p| format!("<param><value>{p}</value></param>"))
            .collect();
        format!("<?xml version='1.0'?><methodCall><methodName>{method}</methodName><params>{params}</params></methodCall>").into_bytes()
    }

    #[test]
    fn only_logins_are_held_to_the_login_rate() {
        use LoginRoute::*;
        for r in [
            WebLogin,
            WebLoginTotp,
            SessionAuthenticate,
            XmlRpcCommon,
            JsonRpc,
            LoginUpload,
        ] {
            assert!(r.is_login(), "{r:?}");
        }
        // An integration's execute_kw burst or an API key is told to retry
        // (429), not refused as a login (403).
        for r in [
            XmlRpcCall,
            JsonRpcCall,
            XmlRpcUncertain,
            JsonRpcUncertain,
            DatabaseForm,
            Json2,
            MailPlugin,
        ] {
            assert!(!r.is_login(), "{r:?}");
        }
    }

    #[test]
    fn the_database_manager_forms_are_master_password_checks_on_post() {
        for path in ["/web/database/drop", "/web/database/backup/"] {
            let d = post(path, b"master_pwd=x&name=prod");
            assert!(
                d.db_service,
                "{path}: refused outside database_manager.allow"
            );
            assert_eq!(d.check, Some(LoginRoute::DatabaseForm), "{path}");
        }
        let page = classify(
            &http::Method::GET,
            "/web/database/drop",
            &http::HeaderMap::new(),
            None,
        );
        assert_eq!(page.check, None, "a GET checks no password");
    }

    #[test]
    fn the_db_service_is_decided_by_the_xmlrpc_path_whatever_the_body() {
        // Unreadable bodies (a DOCTYPE) on /xmlrpc/2/db still reach the db
        // service; on common and object they do not.
        let unreadable = b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'list'>]><methodCall><methodName>&a;</methodName></methodCall>";
        let d = post("/xmlrpc/2/db", unreadable);
        assert!(d.db_service);
        assert_eq!(d.check, Some(LoginRoute::XmlRpcUncertain));
        for service in ["common", "object"] {
            let d = post(&format!("/xmlrpc/2/{service}"), unreadable);
            assert!(!d.db_service, "{service}");
            assert_eq!(d.check, Some(LoginRoute::XmlRpcUncertain), "{service}");
        }
        // An integration's execute_kw: a password check, not the db service.
        let call = xml_call(
            "execute_kw",
            &[
                "<string>prod</string>",
                "<int>2</int>",
                "<string>pw</string>",
                "<string>res.partner</string>",
                "<string>search</string>",
                "<array><data></data></array>",
            ],
        );
        let d = post("/xmlrpc/2/object", &call);
        assert!(!d.db_service);
        assert_eq!(d.check, Some(LoginRoute::XmlRpcCall));
        assert!(d.proof.is_some());
    }

    #[test]
    fn an_ordinary_jsonrpc_login_is_counted_not_refused() {
        let login = br#"{"jsonrpc":"2.0","method":"call","id":1,"params":{"service":"common","method":"login","args":["prod","admin","x"]}}"#;
        let d = post("/jsonrpc", login);
        assert_eq!(d.refuse, None);
        assert_eq!(d.check, Some(LoginRoute::JsonRpc));
        assert!(!d.db_service);
    }

    #[test]
    fn jsonrpc_calls_on_the_db_service_are_refused_outside_the_allow_list() {
        let drop = br#"{"params":{"service":"db","method":"drop","args":["master","prod"]}}"#;
        let d = post("/jsonrpc", drop);
        assert!(d.db_service);
        assert_eq!(d.check, Some(LoginRoute::JsonRpcCall), "master password");
        let list = br#"{"params":{"service":"db","method":"list","args":[]}}"#;
        assert!(post("/jsonrpc", list).db_service);
        // A body serde_json cannot read (Python can: NaN) may name any
        // service, the db one included.
        let nan = br#"{"params":{"service":"db","method":"drop","args":[NaN]}}"#;
        let d = post("/jsonrpc", nan);
        assert!(d.db_service);
        assert_eq!(d.check, Some(LoginRoute::JsonRpcUncertain));
    }

    #[test]
    fn a_model_call_with_an_id_that_hides_the_verdict_is_refused() {
        let body = format!(
            r#"{{"jsonrpc":"2.0","method":"call","id":"{}","params":{{"model":"res.partner","method":"read","args":[[1]],"kwargs":{{}}}}}}"#,
            "x".repeat(200)
        );
        assert_eq!(
            post("/web/dataset/call_kw", body.as_bytes()).refuse,
            Some(BAD_ID)
        );
    }
}
