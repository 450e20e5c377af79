//! Who may use the admin listener, decided before any handler runs.
//!
//! A web page open in the administrator's browser can send requests to
//! 127.0.0.1 too; three rules keep it out:
//! - `Host` must name the listener (its IP literal and port, or
//!   `localhost`): a page on a name that a DNS rebinding points at
//!   127.0.0.1 sends its own name and is refused, so it cannot read.
//! - Anything but GET/HEAD needs `Content-Type: application/json`, which a
//!   cross-origin page can only send after a CORS preflight that this
//!   listener never grants; and a browser's `Origin`/`Sec-Fetch-Site`,
//!   when present, must say same-origin.
//! - With `admin_token_file`, every request needs the token as
//!   `Authorization: Bearer`. The status page may instead carry a cookie
//!   derived from it (HttpOnly, SameSite=Strict); that cookie allows reads
//!   only, because cookies are not scoped by port and another local
//!   service could see it. `/healthz` answers without a token, but only
//!   `{"status":"ok"}`.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;

pub use crate::admin_token::AdminToken;

/// How the request arrived.
#[derive(Debug, Clone, Copy)]
pub enum Via {
    /// TCP, with the listener's bound address.
    Tcp(SocketAddr),
    /// The Unix socket: no browser reaches it; its mode is its guard.
    Unix,
}

/// The cookie's name; the port keeps two listeners on one host apart.
pub fn cookie_name(via: Via) -> String {
    match via {
        Via::Tcp(a) => format!("rampart_admin_{}", a.port()),
        Via::Unix => "rampart_admin".into(),
    }
}

/// Whether `Host` names this listener. Unix sockets take any Host.
pub fn host_ok(headers: &HeaderMap, via: Via) -> bool {
    let Via::Tcp(local) = via else { return true };
    let mut hosts = headers.get_all(http::header::HOST).iter();
    let (Some(h), None) = (hosts.next(), hosts.next()) else {
        return false;
    };
    let Ok(h) = h.to_str() else { return false };
    let (name, port) = match split_host_port(h) {
        Some(x) => x,
        None => return false,
    };
    if port.unwrap_or(80) != local.port() {
        return false;
    }
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let Ok(ip) = name.parse::<IpAddr>() else {
        return false;
    };
    let ip = rampart_config::canonical_ip(ip);
    let mine = rampart_config::canonical_ip(local.ip());
    ip == mine || (mine.is_unspecified() && (ip.is_ipv4() == local.is_ipv4() || local.is_ipv6()))
}

/// `name[:port]` or `[v6][:port]`; None when malformed.
fn split_host_port(h: &str) -> Option<(&str, Option<u16>)> {
    let (name, rest) = if let Some(r) = h.strip_prefix('[') {
        let (inside, after) = r.split_once(']')?;
        (inside, after)
    } else {
        match h.split_once(':') {
            Some((n, _)) => (n, &h[n.len()..]),
            None => (h, ""),
        }
    };
    let port = match rest {
        "" => None,
        r => Some(r.strip_prefix(':')?.parse::<u16>().ok()?),
    };
    if name.is_empty() {
        return None;
    }
    Some((name, port))
}

/// A browser's own word on where a request came from: refused when it says
/// another origin. Absent headers (curl, Prometheus, the CLI) are fine;
/// those clients are not acting for a web page.
pub fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site")
        && !matches!(site.as_bytes(), b"same-origin" | b"none")
    {
        return false;
    }
    match headers.get(http::header::ORIGIN) {
        None => true,
        Some(o) => {
            let host = headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            o.to_str().ok().is_some_and(|o| {
                o.strip_prefix("http://")
                    .is_some_and(|rest| rest.eq_ignore_ascii_case(host))
            })
        }
    }
}

/// `Content-Type: application/json` (parameters allowed).
pub fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// What a request proves about the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// No token configured, or a valid bearer token: everything.
    Full,
    /// The status page's cookie: reads only.
    ReadOnly,
    /// Neither: only what needs no token.
    None,
}

/// What `headers` prove: a bearer token, the status page's cookie, or nothing.
pub fn auth(headers: &HeaderMap, token: Option<&AdminToken>, via: Via) -> Auth {
    let Some(token) = token else {
        return Auth::Full;
    };
    if let Some(v) = headers.get(http::header::AUTHORIZATION)
        && let Ok(v) = v.to_str()
        && let Some((scheme, cred)) = v.split_once(' ')
        && scheme.eq_ignore_ascii_case("bearer")
        && token.matches(cred.trim())
    {
        return Auth::Full;
    }
    let name = cookie_name(via);
    for v in headers.get_all(http::header::COOKIE) {
        let Ok(v) = v.to_str() else { continue };
        for pair in v.split(';') {
            if let Some((k, val)) = pair.trim().split_once('=')
                && k == name
                && token.cookie_matches(val)
            {
                return Auth::ReadOnly;
            }
        }
    }
    Auth::None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        m
    }

    #[test]
    fn host_must_name_the_listener() {
        let via = Via::Tcp("127.0.0.1:9180".parse().unwrap());
        for ok in ["127.0.0.1:9180", "localhost:9180", "LOCALHOST:9180"] {
            assert!(host_ok(&h(&[("host", ok)]), via), "{ok}");
        }
        for bad in [
            "evil.example:9180",
            "127.0.0.1",
            "127.0.0.1:80",
            "127.0.0.2:9180",
            "localhost.:9180",
            "127.0.0.1:9180:1",
            "[::1]:9180",
            "",
            ":9180",
        ] {
            assert!(!host_ok(&h(&[("host", bad)]), via), "{bad}");
        }
        assert!(!host_ok(&h(&[]), via), "no Host");
        assert!(
            !host_ok(
                &h(&[("host", "127.0.0.1:9180"), ("host", "evil.example:9180")]),
                via
            ),
            "two Hosts"
        );
        let v6 = Via::Tcp("[::1]:9180".parse().unwrap());
        assert!(host_ok(&h(&[("host", "[::1]:9180")]), v6));
        assert!(!host_ok(&h(&[("host", "[::2]:9180")]), v6));
        let any = Via::Tcp("0.0.0.0:80".parse().unwrap());
        assert!(host_ok(&h(&[("host", "192.0.2.7")]), any));
        assert!(!host_ok(&h(&[("host", "rebind.example")]), any));
        assert!(host_ok(&h(&[("host", "whatever")]), Via::Unix));
    }

    #[test]
    fn origin_and_content_type() {
        assert!(same_origin(&h(&[("host", "127.0.0.1:9180")])));
        assert!(same_origin(&h(&[
            ("host", "127.0.0.1:9180"),
            ("origin", "http://127.0.0.1:9180"),
            ("sec-fetch-site", "same-origin"),
        ])));
        assert!(!same_origin(&h(&[
            ("host", "127.0.0.1:9180"),
            ("origin", "https://evil.example"),
        ])));
        assert!(!same_origin(&h(&[
            ("host", "127.0.0.1:9180"),
            ("origin", "null"),
        ])));
        assert!(!same_origin(&h(&[
            ("host", "127.0.0.1:9180"),
            ("sec-fetch-site", "same-site"),
        ])));
        assert!(is_json(&h(&[(
            "content-type",
            "application/json; charset=utf-8"
        )])));
        assert!(!is_json(&h(&[("content-type", "text/plain")])));
        assert!(!is_json(&h(&[("content-type", "application/jsonx")])));
        assert!(!is_json(&h(&[])));
    }

    #[test]
    fn token_bearer_and_cookie() {
        let t = AdminToken::new("0123456789abcdef0123");
        let via = Via::Tcp("127.0.0.1:9180".parse().unwrap());
        assert_eq!(auth(&h(&[]), Some(&t), via), Auth::None);
        assert_eq!(auth(&h(&[]), None, via), Auth::Full);
        assert_eq!(
            auth(
                &h(&[("authorization", "Bearer 0123456789abcdef0123")]),
                Some(&t),
                via
            ),
            Auth::Full
        );
        assert_eq!(
            auth(
                &h(&[("authorization", "Bearer 0123456789abcdef012")]),
                Some(&t),
                via
            ),
            Auth::None
        );
        let c = format!("a=b; rampart_admin_9180={}", t.cookie_value());
        assert_eq!(auth(&h(&[("cookie", &c)]), Some(&t), via), Auth::ReadOnly);
        let raw = "rampart_admin_9180=0123456789abcdef0123";
        assert_eq!(auth(&h(&[("cookie", raw)]), Some(&t), via), Auth::None);
        let empty = "rampart_admin_9180=";
        assert_eq!(auth(&h(&[("cookie", empty)]), Some(&t), via), Auth::None);
        // Another listener's cookie (another port) proves nothing here.
        let other = format!("rampart_admin_9181={}", t.cookie_value());
        assert_eq!(auth(&h(&[("cookie", &other)]), Some(&t), via), Auth::None);
    }
}
