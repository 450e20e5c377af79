//! The database manager (create, drop, backup, restore with the master
//! password) and Odoo's `db` RPC service must not be reachable from the
//! Internet. Each spelling below is one a proxy and Odoo can disagree on:
//! a front that blocks `/web/database` but forwards `/web/%64atabase`
//! unchanged lets werkzeug decode it into the manager.

use super::Site;
use crate::http1::{Request, Response};
use crate::report::{Check, Status};

const FIX: &str = "the database manager and the db RPC service let anyone who guesses the master password drop, copy or download every database; block /web/database/*, /xmlrpc/db, /xmlrpc/2/db and db calls on /jsonrpc at the front for every spelling, and set list_db = False in odoo.conf (rampart blocks them unless [site.database_manager] allow lists the client)";

const PAGES: [&str; 6] = [
    "/web/database/manager",
    "/web/database/selector",
    "/web/%64atabase/manager",
    "/web//database/manager",
    "/WEB/DATABASE/MANAGER",
    "/web/database/manager;x",
];

const XMLRPC_LIST: &str = "<?xml version='1.0'?>\n<methodCall>\n<methodName>list</methodName>\n<params>\n</params>\n</methodCall>\n";
const JSONRPC_LIST: &str = r#"{"jsonrpc": "2.0", "method": "call", "params": {"service": "db", "method": "list", "args": []}, "id": 1}"#;

pub(super) async fn checks(site: &Site) -> Vec<Check> {
    let mut out = Vec::new();
    for path in PAGES {
        let name = format!("db-manager GET {path}");
        out.push(match site.request(&Request::get(path)).await {
            Ok(r) => judge(name, &r),
            Err(e) => unanswered(name, &e),
        });
    }
    for (name, req) in [
        (
            "db-manager POST /xmlrpc/2/db list",
            Request::post("/xmlrpc/2/db", "text/xml", XMLRPC_LIST),
        ),
        (
            "db-manager POST /jsonrpc db.list",
            Request::post("/jsonrpc", "application/json", JSONRPC_LIST),
        ),
    ] {
        out.push(match site.request(&req).await {
            Ok(r) => judge(name.to_string(), &r),
            Err(e) => unanswered(name.to_string(), &e),
        });
    }
    out
}

/// A dropped connection did not reach Odoo's manager either, but say so.
fn unanswered(name: String, e: &str) -> Check {
    Check::new(name, Status::Warn, format!("no answer: {e}"), FIX)
}

/// What in the answer shows the manager or the db service answered.
fn reached_odoo(r: &Response) -> Option<String> {
    let body = r.text();
    if body.contains("master_pwd") {
        return Some("the body has the master-password form (master_pwd)".into());
    }
    if body.contains("action=\"/web/database/") || body.contains("action='/web/database/") {
        return Some("the body has a /web/database/ form".into());
    }
    if body.contains("<methodResponse") {
        return Some(if body.contains("<fault>") {
            "the XML-RPC db service answered (a fault, but reachable)".into()
        } else {
            format!(
                "the XML-RPC db service answered: {}",
                crate::http1::truncate(body.trim(), 80)
            )
        });
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&r.body)
        && v.get("jsonrpc").is_some()
    {
        return Some(match v.get("result") {
            Some(list) => format!("the JSON-RPC db service answered with a database list: {list}"),
            None => "the JSON-RPC db service answered (an error, but reachable)".into(),
        });
    }
    let location = r.header("location").unwrap_or("");
    if (300..400).contains(&r.status) && location.to_ascii_lowercase().contains("/web/database") {
        return Some(format!("it redirects within the manager, to {location}"));
    }
    None
}

fn judge(name: String, r: &Response) -> Check {
    let seen = match r.header("location") {
        Some(l) if (300..400).contains(&r.status) => format!("{} → {l}", r.status),
        _ => r.status.to_string(),
    };
    if let Some(why) = reached_odoo(r) {
        return Check::new(name, Status::Fail, format!("{seen}: {why}"), FIX);
    }
    match r.status {
        300..=399 | 400 | 403 | 404 | 405 => {
            Check::new(name, Status::Pass, format!("{seen}, no manager form"), FIX)
        }
        other => Check::new(
            name,
            Status::Warn,
            format!("{other} without a manager form: cannot tell whether it reached Odoo"),
            FIX,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, headers: &[(&str, &str)], body: &str) -> Response {
        Response {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn verdicts() {
        let form = "<form action=\"/web/database/drop\"><input name=\"master_pwd\"/></form>";
        assert_eq!(
            judge("x".into(), &resp(200, &[], form)).status,
            Status::Fail
        );
        // A 404 page that still carries the form is a FAIL, not a PASS.
        assert_eq!(
            judge("x".into(), &resp(404, &[], form)).status,
            Status::Fail
        );
        assert_eq!(
            judge("x".into(), &resp(303, &[("Location", "/web/login")], "")).status,
            Status::Pass
        );
        assert_eq!(
            judge(
                "x".into(),
                &resp(303, &[("Location", "/web/database/selector")], "")
            )
            .status,
            Status::Fail
        );
        assert_eq!(
            judge("x".into(), &resp(403, &[], "Forbidden")).status,
            Status::Pass
        );
        assert_eq!(
            judge("x".into(), &resp(200, &[], "<html>login</html>")).status,
            Status::Warn
        );
        let list = r#"{"jsonrpc": "2.0", "id": 1, "result": ["prod"]}"#;
        let c = judge("x".into(), &resp(200, &[], list));
        assert_eq!(c.status, Status::Fail);
        assert!(c.detail.contains("[\"prod\"]"), "{}", c.detail);
        let fault = "<?xml version='1.0'?><methodResponse><fault><value>AccessDenied</value></fault></methodResponse>";
        assert_eq!(
            judge("x".into(), &resp(200, &[], fault)).status,
            Status::Fail
        );
    }
}
