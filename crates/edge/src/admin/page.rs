//! The status page and its token form: plain HTML with inline CSS and
//! inline SVG charts, no script and no external asset, refreshed by
//! `<meta http-equiv="refresh">` (so it works with JavaScript off and
//! under a strict CSP). Every value that could come from a client or a
//! config (addresses, ban reasons, host names) is escaped.

use std::fmt::Write;

use http::{HeaderValue, Response, StatusCode, header};

use super::access::{self, AdminToken, Via};
use super::history::Point;
use super::status::Status;
use crate::body::{self, Body};

const CSS: &str = "body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:70em;padding:0 1em;color:#222}\
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;margin:.4em 0}td,th{padding:.2em .7em;text-align:left;border-bottom:1px solid #eee}\
.ok{color:#11772d}.bad{color:#b00020;font-weight:bold}.warn{color:#a15c00}.muted{color:#777}\
svg{background:#f6f6f6;vertical-align:middle}figure{display:inline-block;margin:.3em 1.5em .3em 0}\
figcaption{font-size:.85em;color:#555}";

fn html_response(
    status: StatusCode,
    title: &str,
    body_html: &str,
    refresh: bool,
) -> Response<Body> {
    let meta = if refresh {
        "<meta http-equiv=\"refresh\" content=\"10\">"
    } else {
        ""
    };
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">{meta}\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{}</title>\
         <style>{CSS}</style></head><body>{body_html}</body></html>\n",
        esc(title)
    );
    let mut r = Response::new(body::full(html));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Asks for the admin token once; the answer sets the page's cookie.
pub fn login_form(error: Option<&str>) -> Response<Body> {
    let err = error
        .map(|e| format!("<p class=\"bad\">{}</p>", esc(e)))
        .unwrap_or_default();
    let body = format!(
        "<h1>Rampart status</h1>{err}<p>This admin listener needs the token from <code>admin_token_file</code>.</p>\
         <form method=\"post\" action=\"/login\"><label>Token <input type=\"password\" name=\"token\" \
         autocomplete=\"current-password\" required autofocus></label> <button>Open</button></form>"
    );
    html_response(
        StatusCode::UNAUTHORIZED,
        "Rampart status: token",
        &body,
        false,
    )
}

/// `POST /login` (form field `token`) and `POST /logout`. The cookie holds
/// a value derived from the token, never the token, and grants reads only.
pub fn login(
    method: &str,
    path: &str,
    body: &[u8],
    token: Option<&AdminToken>,
    via: Via,
) -> Response<Body> {
    let Some(token) = token else {
        return see_other(None);
    };
    let name = access::cookie_name(via);
    match (method, path) {
        ("GET", "/login") => login_form(None),
        ("POST", "/logout") => see_other(Some(format!(
            "{name}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
        ))),
        ("POST", "/login") => {
            let given = form_field(body, "token").unwrap_or_default();
            if token.matches(given.trim()) {
                see_other(Some(format!(
                    "{name}={}; Path=/; HttpOnly; SameSite=Strict",
                    token.cookie_value()
                )))
            } else {
                login_form(Some("That is not the admin token."))
            }
        }
        _ => super::refuse(StatusCode::METHOD_NOT_ALLOWED, "use POST"),
    }
}

fn see_other(cookie: Option<String>) -> Response<Body> {
    let mut r = Response::new(body::empty());
    *r.status_mut() = StatusCode::SEE_OTHER;
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("/"));
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// One field of an `application/x-www-form-urlencoded` body.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| url_decode(v))
    })
}

fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (
            b[i],
            b.get(i + 1).and_then(|&c| hex(c)),
            b.get(i + 2).and_then(|&c| hex(c)),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push(hi << 4 | lo);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A small line chart of `values` (oldest first), scaled to `max`.
fn chart(values: &[f64], max: f64, label: &str, color: &str) -> String {
    const W: f64 = 270.0;
    const H: f64 = 48.0;
    let max = if max > 0.0 { max } else { 1.0 };
    let n = super::history::POINTS as f64;
    let start = n - values.len() as f64;
    let mut pts = String::new();
    for (i, v) in values.iter().enumerate() {
        let x = (start + i as f64) / (n - 1.0) * W;
        let y = H - (v / max).clamp(0.0, 1.0) * (H - 2.0) - 1.0;
        let _ = write!(pts, "{x:.1},{y:.1} ");
    }
    format!(
        "<svg width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{l}\">\
         <title>{l}</title><polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"{}\"/></svg>",
        pts.trim_end(),
        l = esc(label)
    )
}

fn duration(secs: u64) -> String {
    let (d, h, m) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60);
    match (d, h) {
        (0, 0) => format!("{m} min"),
        (0, _) => format!("{h} h {m} min"),
        _ => format!("{d} d {h} h"),
    }
}

pub fn status(s: &Status, logout: bool) -> Response<Body> {
    let mut b = String::new();
    let _ = write!(
        b,
        "<h1>Rampart status</h1><p class=\"muted\">{} · up {} (since {}) · refreshes every 10 s</p>",
        esc(&s.version),
        duration(s.uptime_secs),
        esc(&s.started)
    );
    for site in &s.sites {
        let _ = write!(
            b,
            "<h2>Site {}</h2><p class=\"muted\">{}</p>",
            esc(&site.name),
            esc(&site.hosts.join(", "))
        );
        b.push_str(
            "<table><tr><th>Upstream</th><th>Role</th><th>Health</th><th>In flight</th></tr>",
        );
        for u in &site.upstreams {
            let (class, word) = if u.healthy {
                ("ok", "healthy")
            } else {
                ("bad", "DOWN")
            };
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td class=\"{class}\">{word}</td><td>{}</td></tr>",
                esc(&u.addr),
                u.role,
                u.in_flight
            );
        }
        b.push_str("</table>");
        let rps: Vec<f64> = site.history.iter().map(|p: &Point| p.rps).collect();
        let err: Vec<f64> = site.history.iter().map(|p| p.error_rate * 100.0).collect();
        let max_rps = rps.iter().cloned().fold(0.0, f64::max);
        let _ = write!(
            b,
            "<figure>{}<figcaption>requests/s, last 15 min (now {:.1}, peak {:.1})</figcaption></figure>\
             <figure>{}<figcaption>errors (5xx), last 15 min: {:.1} %</figcaption></figure>",
            chart(&rps, max_rps, "requests per second", "#1f5fbf"),
            site.rps,
            max_rps,
            chart(&err, 100.0, "5xx error rate in percent", "#b00020"),
            site.error_rate_15m * 100.0
        );
    }
    b.push_str("<h2>Certificates</h2><table><tr><th>Hosts</th><th>Source</th><th>Issuer</th><th>Days left</th></tr>");
    for c in &s.certificates {
        let class = match c.days_left {
            d if d < 7 => "bad",
            d if d < 21 => "warn",
            _ => "ok",
        };
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}{}</td><td>{}</td><td class=\"{class}\">{}</td></tr>",
            esc(&c.hosts.join(", ")),
            c.source,
            if c.temporary { " (temporary)" } else { "" },
            esc(&c.issuer),
            c.days_left
        );
    }
    b.push_str("</table>");
    let g = &s.guard;
    let _ = write!(
        b,
        "<h2>Guard</h2><h3>Active bans: {}</h3>",
        g.active_bans.len()
    );
    if !g.active_bans.is_empty() {
        b.push_str(
            "<table><tr><th>Address</th><th>Until (UTC)</th><th>Count</th><th>Reason</th></tr>",
        );
        for ban in &g.active_bans {
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&ban.addr),
                esc(&ban.until),
                ban.count,
                esc(&ban.reason)
            );
        }
        b.push_str("</table>");
    }
    b.push_str("<h3>Most refused addresses</h3>");
    if g.top_refused.is_empty() {
        b.push_str("<p class=\"muted\">none since start</p>");
    } else {
        b.push_str("<table><tr><th>Address</th><th>Refusals</th></tr>");
        for t in &g.top_refused {
            let _ = write!(b, "<tr><td>{}</td><td>{}</td></tr>", esc(&t.addr), t.count);
        }
        b.push_str("</table>");
    }
    b.push_str("<h3>Recent refusals</h3>");
    if g.recent_refusals.is_empty() {
        b.push_str("<p class=\"muted\">none since start</p>");
    } else {
        b.push_str("<table><tr><th>Time (UTC)</th><th>Address</th><th>Why</th></tr>");
        for r in g.recent_refusals.iter().take(15) {
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&r.at),
                esc(&r.addr),
                r.reason
            );
        }
        b.push_str("</table>");
    }
    b.push_str("<h2>Backups</h2>");
    backups(&mut b, &s.backups);
    if logout {
        b.push_str(
            "<form method=\"post\" action=\"/logout\"><button>Forget the token</button></form>",
        );
    }
    b.push_str(
        "<p class=\"muted\">The same data as JSON: <a href=\"/v1/status\">/v1/status</a></p>",
    );
    html_response(StatusCode::OK, "Rampart status", &b, true)
}

/// `{"schedule", "targets": [{"target", "db", "last", "age_secs", "stale",
/// "error"}]}` (rampart_backup::status), or `{"note"}`.
fn backups(b: &mut String, v: &serde_json::Value) {
    let Some(list) = v.get("targets").and_then(|t| t.as_array()) else {
        let note = v
            .get("note")
            .and_then(|n| n.as_str())
            .unwrap_or("no backup information");
        let _ = write!(b, "<p class=\"muted\">{}</p>", esc(note));
        return;
    };
    let schedule = v.get("schedule").and_then(|x| x.as_str());
    let _ = write!(
        b,
        "<p class=\"muted\">schedule: {}</p>",
        esc(schedule.unwrap_or("none in rampart.toml (a timer or cron runs it): ages not judged"))
    );
    b.push_str(
        "<table><tr><th>Target</th><th>Database</th><th>Last snapshot</th><th>Age</th></tr>",
    );
    for t in list {
        let s = |k: &str| t.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
        let age = t.get("age_secs").and_then(|x| x.as_u64());
        let stale = t.get("stale").and_then(|x| x.as_bool()).unwrap_or(false);
        let class = if stale { "bad" } else { "ok" };
        let mut shown = age.map(duration).unwrap_or_else(|| "never".into());
        if stale {
            shown.push_str(" — OVERDUE");
        }
        let last = match t.get("error").and_then(|e| e.as_str()) {
            Some(e) => format!("cannot list: {e}"),
            None => s("last"),
        };
        let _ = write!(
            b,
            "<tr class=\"backup {}\"><td>{}</td><td>{}</td><td>{}</td><td class=\"{class}\">{}</td></tr>",
            if stale { "stale" } else { "fresh" },
            esc(&s("target")),
            esc(&s("db")),
            esc(&last),
            esc(&shown)
        );
    }
    b.push_str("</table>");
    drill(b, v.get("drill"));
}

/// `{"schedule", "last": {"last", "ok", "age_secs", "target", "summary"}}`.
fn drill(b: &mut String, d: Option<&serde_json::Value>) {
    let Some(d) = d else { return };
    let schedule = d
        .get("schedule")
        .and_then(|x| x.as_str())
        .unwrap_or("none (run `rampart backup drill`)");
    let last = d.get("last").filter(|l| !l.is_null());
    let Some(l) = last else {
        let _ = write!(
            b,
            "<p class=\"drill never bad\">Restore drill: never run (schedule: {})</p>",
            esc(schedule)
        );
        return;
    };
    let ok = l.get("ok").and_then(|x| x.as_bool()).unwrap_or(false);
    let age = l
        .get("age_secs")
        .and_then(|x| x.as_u64())
        .map(duration)
        .unwrap_or_else(|| "?".into());
    let summary = l.get("summary").and_then(|x| x.as_str()).unwrap_or("");
    let _ = write!(
        b,
        "<p class=\"drill {}\">Restore drill: <span class=\"{}\">{}</span>, {} ago (schedule: {}): {}</p>",
        if ok { "passed" } else { "failed" },
        if ok { "ok" } else { "bad" },
        if ok { "passed" } else { "FAILED" },
        esc(&age),
        esc(schedule),
        esc(summary)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_and_escape() {
        assert_eq!(
            form_field(b"a=1&token=ab%2Bc+d", "token").as_deref(),
            Some("ab+c d")
        );
        assert_eq!(form_field(b"a=1", "token"), None);
        assert_eq!(
            esc("<a href='x'>&\""),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;"
        );
        let c = chart(&[1.0, 2.0], 2.0, "x<", "#000");
        assert!(c.contains("points=\"") && c.contains("x&lt;"));
    }
}
