//! The admin API the edge mounts on its admin listener:
//! `GET /v1/bans`, `POST /v1/bans {"addr", "for", "reason"}`, `DELETE /v1/bans/<addr>`.

use rampart_config::Duration;
use serde::Deserialize;
use serde_json::json;

use crate::addr::parse_ban_target;
use crate::{BanInfo, Guard};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BanRequest {
    addr: String,
    #[serde(rename = "for")]
    for_: Duration,
    #[serde(default)]
    reason: Option<String>,
}

pub fn handle(guard: &Guard, method: &str, path: &str, body: &[u8]) -> Option<(u16, String)> {
    let path = path.split('?').next().unwrap_or(path);
    if path == "/v1/bans" || path == "/v1/bans/" {
        return Some(match method {
            "GET" => (
                200,
                serde_json::to_string(&guard.bans()).expect("bans serialise"),
            ),
            "POST" => post(guard, body),
            _ => error(405, "use GET or POST on /v1/bans"),
        });
    }
    let target = path.strip_prefix("/v1/bans/")?;
    Some(match method {
        "DELETE" => delete(guard, &percent_decode(target)),
        _ => error(405, "use DELETE on /v1/bans/<addr>"),
    })
}

fn post(guard: &Guard, body: &[u8]) -> (u16, String) {
    let req: BanRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                400,
                &format!(
                    "bad request body: {e} (expected {{\"addr\": \"203.0.113.7\", \"for\": \"1h\", \"reason\": \"...\"}})"
                ),
            );
        }
    };
    let net = match parse_ban_target(&req.addr) {
        Ok(n) => n,
        Err(e) => return error(400, &e),
    };
    if req.for_.get().is_zero() {
        return error(400, "\"for\" must be longer than zero");
    }
    let reason = req
        .reason
        .unwrap_or_else(|| "banned by an administrator".into());
    match guard.ban_net(net, req.for_.get(), &reason) {
        Ok(info) => (200, serde_json::to_string(&info).expect("ban serialises")),
        Err(crate::GuardError::Allowed(a)) => {
            error(409, &format!("{a} is in [guard].allow and is never banned"))
        }
        Err(e) => error(500, &e.to_string()),
    }
}

fn delete(guard: &Guard, target: &str) -> (u16, String) {
    let net = match parse_ban_target(target) {
        Ok(n) => n,
        Err(e) => return error(400, &e),
    };
    match guard.unban_net(net) {
        Ok(true) => (
            200,
            json!({"unbanned": crate::addr::display_net(&net)}).to_string(),
        ),
        Ok(false) => error(
            404,
            &format!("{} is not banned", crate::addr::display_net(&net)),
        ),
        Err(e) => error(500, &e.to_string()),
    }
}

fn error(status: u16, message: &str) -> (u16, String) {
    (status, json!({ "error": message }).to_string())
}

/// `%2F` in `2001:db8::%2F64` and `%3A` from clients that escape colons.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if let (b'%', Some(hi), Some(lo)) = (
            b[i],
            b.get(i + 1).and_then(|&c| hex(c)),
            b.get(i + 2).and_then(|&c| hex(c)),
        ) {
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses the JSON of `GET /v1/bans` (for `rampart bans list`).
pub fn parse_bans_json(json: &str) -> Result<Vec<BanInfo>, String> {
    serde_json::from_str(json).map_err(|e| format!("unexpected answer from the server: {e}"))
}

/// The body of `POST /v1/bans` (for `rampart bans ban`).
pub fn admin_ban_body(addr: &str, for_: rampart_config::Duration, reason: Option<&str>) -> String {
    let mut body = serde_json::json!({ "addr": addr, "for": for_.to_string() });
    if let Some(r) = reason {
        body["reason"] = r.into();
    }
    body.to_string()
}

/// The message of the guard admin API's error answers (`{"error": "..."}`);
/// None when the body is something else (another program, an older server).
pub fn admin_error(body: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
}
