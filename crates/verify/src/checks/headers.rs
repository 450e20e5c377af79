//! Security headers, the Server header and the session cookie.
//!
//! Headers are checked on /web/login (an Odoo page: Odoo sets some of them
//! itself) and on /web/health (Odoo sets none), so a front that only
//! passes Odoo's own headers through is caught.

use super::Site;
use crate::http1::{Request, Response, truncate};
use crate::report::{Check, Status};

const ONE_YEAR: u64 = 31_536_000;

const FIX_HSTS: &str = "Strict-Transport-Security with max-age >= 31536000 makes browsers refuse plain HTTP for a year, closing the first-request downgrade; add it on every HTTPS response (rampart: [site.headers] strict_transport_security)";
const FIX_NOSNIFF: &str = "X-Content-Type-Options: nosniff stops browsers from running an uploaded attachment as script; add it on every response";
const FIX_FRAME: &str = "X-Frame-Options: SAMEORIGIN (or CSP frame-ancestors 'self') stops other sites from framing Odoo for clickjacking; add it on every response";
const FIX_REFERRER: &str = "Referrer-Policy (e.g. strict-origin-when-cross-origin) keeps record URLs and tokens out of other sites' logs; add it on every response";
const FIX_CSP: &str = "a Content-Security-Policy limits what injected markup can load or run; add one on every response (rampart's default suits Odoo's web client)";
const FIX_SERVER: &str = "Server: Werkzeug/… Python/… or X-Powered-By tells attackers which exploits to try and that Odoo is exposed unproxied; the front should replace Server and drop X-Powered-By";
const FIX_COOKIE: &str = "session_id is the login: it needs Secure (never sent over plain HTTP), HttpOnly (unreadable by injected script) and SameSite=Lax or Strict (not sent on cross-site posts: CSRF); Odoo sets only HttpOnly, so the front must add the rest (rampart does for session_id)";

const PAGES: [&str; 2] = ["/web/login", "/web/health"];

pub(super) async fn checks(site: &Site) -> Vec<Check> {
    let mut out = Vec::new();
    let mut answers: Vec<(&str, Response)> = Vec::new();
    for path in PAGES {
        match site.request(&Request::get(path)).await {
            Ok(r) => {
                out.extend(security_headers(path, &r));
                answers.push((path, r));
            }
            Err(e) => {
                for name in ["hsts", "nosniff", "frame-options", "referrer-policy", "csp"] {
                    out.push(Check::new(
                        format!("{name} {path}"),
                        Status::Fail,
                        format!("GET {path}: {e}"),
                        fix_for(name),
                    ));
                }
            }
        }
    }
    out.push(server_header(&answers));
    out.push(match answers.iter().find(|(p, _)| *p == "/web/login") {
        Some((_, r)) => session_cookie(r),
        None => Check::new(
            "session-cookie",
            Status::Fail,
            "GET /web/login failed",
            FIX_COOKIE,
        ),
    });
    out
}

fn fix_for(name: &str) -> &'static str {
    match name {
        "hsts" => FIX_HSTS,
        "nosniff" => FIX_NOSNIFF,
        "frame-options" => FIX_FRAME,
        "referrer-policy" => FIX_REFERRER,
        _ => FIX_CSP,
    }
}

fn shown(v: &str) -> String {
    truncate(v, 80)
}

pub(super) fn security_headers(path: &str, r: &Response) -> Vec<Check> {
    let at = |name: &str| format!("{name} {path}");
    let mut out = Vec::new();

    out.push(match r.header("strict-transport-security") {
        None => Check::new(
            at("hsts"),
            Status::Fail,
            "no Strict-Transport-Security",
            FIX_HSTS,
        ),
        Some(v) => match hsts_max_age(v) {
            Some(age) if age >= ONE_YEAR => Check::new(at("hsts"), Status::Pass, v, FIX_HSTS),
            Some(age) => Check::new(
                at("hsts"),
                Status::Fail,
                format!("{v} (max-age {age} is under one year)"),
                FIX_HSTS,
            ),
            None => Check::new(
                at("hsts"),
                Status::Fail,
                format!("{v} (no max-age)"),
                FIX_HSTS,
            ),
        },
    });

    out.push(match r.header("x-content-type-options") {
        Some(v) if v.trim().eq_ignore_ascii_case("nosniff") => Check::new(
            at("nosniff"),
            Status::Pass,
            "X-Content-Type-Options: nosniff",
            FIX_NOSNIFF,
        ),
        Some(v) => Check::new(
            at("nosniff"),
            Status::Fail,
            format!("X-Content-Type-Options: {v}"),
            FIX_NOSNIFF,
        ),
        None => Check::new(
            at("nosniff"),
            Status::Fail,
            "no X-Content-Type-Options",
            FIX_NOSNIFF,
        ),
    });

    let csp = r.header("content-security-policy");
    let frame_ancestors = csp.and_then(|c| {
        c.split(';')
            .map(str::trim)
            .find(|d| d.to_ascii_lowercase().starts_with("frame-ancestors"))
    });
    let xfo = r.header("x-frame-options").filter(|v| {
        matches!(
            v.trim().to_ascii_uppercase().as_str(),
            "DENY" | "SAMEORIGIN"
        )
    });
    out.push(match (xfo, frame_ancestors) {
        (Some(x), _) => Check::new(
            at("frame-options"),
            Status::Pass,
            format!("X-Frame-Options: {x}"),
            FIX_FRAME,
        ),
        (None, Some(fa)) => Check::new(
            at("frame-options"),
            Status::Pass,
            format!("CSP {fa}"),
            FIX_FRAME,
        ),
        (None, None) => Check::new(
            at("frame-options"),
            Status::Fail,
            match r.header("x-frame-options") {
                Some(v) => {
                    format!("X-Frame-Options: {v} (not DENY/SAMEORIGIN) and no CSP frame-ancestors")
                }
                None => "no X-Frame-Options and no CSP frame-ancestors".to_string(),
            },
            FIX_FRAME,
        ),
    });

    out.push(match r.header("referrer-policy") {
        Some(v) if v.to_ascii_lowercase().contains("unsafe-url") => Check::new(
            at("referrer-policy"),
            Status::Fail,
            format!("Referrer-Policy: {v} (sends full URLs everywhere)"),
            FIX_REFERRER,
        ),
        Some(v) => Check::new(
            at("referrer-policy"),
            Status::Pass,
            format!("Referrer-Policy: {v}"),
            FIX_REFERRER,
        ),
        None => Check::new(
            at("referrer-policy"),
            Status::Fail,
            "no Referrer-Policy",
            FIX_REFERRER,
        ),
    });

    out.push(match csp {
        Some(v) if !v.trim().is_empty() => Check::new(at("csp"), Status::Pass, shown(v), FIX_CSP),
        _ if r.header("content-security-policy-report-only").is_some() => Check::new(
            at("csp"),
            Status::Fail,
            "only Content-Security-Policy-Report-Only (enforces nothing)",
            FIX_CSP,
        ),
        _ => Check::new(
            at("csp"),
            Status::Fail,
            "no Content-Security-Policy",
            FIX_CSP,
        ),
    });
    out
}

fn hsts_max_age(v: &str) -> Option<u64> {
    v.split(';').find_map(|d| {
        let (k, val) = d.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("max-age")
            .then(|| val.trim().trim_matches('"').parse().ok())?
    })
}

fn server_header(answers: &[(&str, Response)]) -> Check {
    let mut problems = Vec::new();
    let mut seen = Vec::new();
    for (path, r) in answers {
        let server = r.header("server");
        seen.push(format!("{path}: Server: {}", server.unwrap_or("(none)")));
        if let Some(s) = server {
            let l = s.to_ascii_lowercase();
            if l.contains("werkzeug") || l.contains("python") {
                problems.push(format!("{path}: Server: {s}"));
            }
        }
        if let Some(p) = r.header("x-powered-by") {
            problems.push(format!("{path}: X-Powered-By: {p}"));
        }
    }
    if answers.is_empty() {
        Check::new(
            "server-header",
            Status::Fail,
            "no page answered",
            FIX_SERVER,
        )
    } else if problems.is_empty() {
        Check::new("server-header", Status::Pass, seen.join("; "), FIX_SERVER)
    } else {
        Check::new(
            "server-header",
            Status::Fail,
            problems.join("; "),
            FIX_SERVER,
        )
    }
}

fn session_cookie(r: &Response) -> Check {
    let Some(cookie) = r
        .header_all("set-cookie")
        .into_iter()
        .find(|c| c.trim_start().starts_with("session_id="))
    else {
        return Check::new(
            "session-cookie",
            Status::Warn,
            format!(
                "GET /web/login ({}) set no session_id cookie; nothing to judge",
                r.status
            ),
            FIX_COOKIE,
        );
    };
    let attrs: Vec<String> = cookie
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .collect();
    let has = |name: &str| attrs.iter().any(|a| a == name);
    let same_site = attrs
        .iter()
        .find_map(|a| a.strip_prefix("samesite="))
        .map(str::trim);
    let mut missing = Vec::new();
    if !has("secure") {
        missing.push("Secure".to_string());
    }
    if !has("httponly") {
        missing.push("HttpOnly".to_string());
    }
    match same_site {
        Some("lax" | "strict") => {}
        Some(other) => missing.push(format!("SameSite=Lax or Strict (has SameSite={other})")),
        None => missing.push("SameSite=Lax or Strict".to_string()),
    }
    // The value is a live session id: show only the attributes.
    let shown = format!(
        "session_id=…; {}",
        cookie
            .split(';')
            .skip(1)
            .map(str::trim)
            .collect::<Vec<_>>()
            .join("; ")
    );
    if missing.is_empty() {
        Check::new("session-cookie", Status::Pass, shown, FIX_COOKIE)
    } else {
        Check::new(
            "session-cookie",
            Status::Fail,
            format!("{shown} (missing {})", missing.join(", ")),
            FIX_COOKIE,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(headers: &[(&str, &str)]) -> Response {
        Response {
            status: 200,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: Vec::new(),
        }
    }

    fn status_of(checks: &[Check], prefix: &str) -> Status {
        checks
            .iter()
            .find(|c| c.check.starts_with(prefix))
            .unwrap()
            .status
    }

    #[test]
    fn odoo_page_headers_alone_fail_hsts_and_referrer() {
        // What Odoo 18 puts on its HTML pages itself.
        let r = resp(&[
            ("X-Frame-Options", "SAMEORIGIN"),
            ("Content-Security-Policy", "frame-ancestors 'self'"),
            ("X-Content-Type-Options", "nosniff"),
        ]);
        let c = security_headers("/web/login", &r);
        assert_eq!(status_of(&c, "hsts"), Status::Fail);
        assert_eq!(status_of(&c, "referrer-policy"), Status::Fail);
        assert_eq!(status_of(&c, "nosniff"), Status::Pass);
        assert_eq!(status_of(&c, "frame-options"), Status::Pass);
        assert_eq!(status_of(&c, "csp"), Status::Pass);
    }

    #[test]
    fn hsts_needs_a_year_and_frame_ancestors_counts() {
        let short = resp(&[(
            "Strict-Transport-Security",
            "max-age=86400; includeSubDomains",
        )]);
        assert_eq!(
            status_of(&security_headers("/", &short), "hsts"),
            Status::Fail
        );
        let year = resp(&[
            (
                "Strict-Transport-Security",
                "includeSubDomains; max-age=31536000",
            ),
            (
                "Content-Security-Policy",
                "default-src 'self'; frame-ancestors 'none'",
            ),
        ]);
        let c = security_headers("/", &year);
        assert_eq!(status_of(&c, "hsts"), Status::Pass);
        assert_eq!(status_of(&c, "frame-options"), Status::Pass);
        let allow_from = resp(&[("X-Frame-Options", "ALLOW-FROM https://x")]);
        assert_eq!(
            status_of(&security_headers("/", &allow_from), "frame-options"),
            Status::Fail
        );
    }

    #[test]
    fn session_cookie_attributes() {
        let odoo = resp(&[(
            "Set-Cookie",
            "session_id=abc; Expires=x; Max-Age=604800; HttpOnly; Path=/",
        )]);
        let c = session_cookie(&odoo);
        assert_eq!(c.status, Status::Fail);
        assert!(
            c.detail.contains("missing Secure, SameSite"),
            "{}",
            c.detail
        );
        assert!(
            !c.detail.contains("abc"),
            "the session id must not be shown: {}",
            c.detail
        );
        let good = resp(&[
            ("Set-Cookie", "other=1"),
            (
                "Set-Cookie",
                "session_id=abc; HttpOnly; Path=/; Secure; SameSite=Strict",
            ),
        ]);
        assert_eq!(session_cookie(&good).status, Status::Pass);
        let none = resp(&[(
            "Set-Cookie",
            "session_id=abc; HttpOnly; Secure; SameSite=None",
        )]);
        assert_eq!(session_cookie(&none).status, Status::Fail);
    }

    #[test]
    fn server_header_reveals() {
        let werkzeug = resp(&[("Server", "Werkzeug/2.2.2 Python/3.11.2")]);
        assert_eq!(
            server_header(&[("/web/login", werkzeug)]).status,
            Status::Fail
        );
        let powered = resp(&[("Server", "rampart"), ("X-Powered-By", "PHP")]);
        assert_eq!(server_header(&[("/", powered)]).status, Status::Fail);
        let fine = resp(&[("Server", "rampart")]);
        assert_eq!(server_header(&[("/", fine)]).status, Status::Pass);
    }
}
