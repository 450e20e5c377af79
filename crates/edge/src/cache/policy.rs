//! What may be kept, and under which key: the request side (which
//! requests may be answered from the cache, which may fill it) and the
//! response side (which of Odoo's answers may be kept).
//!
//! Both sides fail closed: a spelling, header or directive this module
//! does not read with certainty makes the request or answer uncacheable,
//! and it then simply goes to Odoo as before.

use std::time::Duration;

use http::{HeaderMap, Method, StatusCode, header};

/// What one stored answer is the answer to: the site, the `Host` Odoo
/// is sent (its dbfilter may pick a database by it) and the
/// request-target Odoo is sent, byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// The site's name.
    pub site: String,
    /// The `Host` sent to Odoo.
    pub host: String,
    /// The request-target sent to Odoo.
    pub target: String,
}

/// A request the cache may answer; `fill` when Odoo's answer to it may
/// also be kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// What the answer is kept under.
    pub key: Key,
    /// Whether Odoo's answer may be kept.
    pub fill: bool,
}

/// Whether this request may be answered from the cache. `raw_path` and
/// `query` are what Odoo is sent; `canonical` is werkzeug's reading of
/// the path (stage 1); `host` the `Host` Odoo is sent.
pub fn candidate(
    site: &str,
    host: &str,
    method: &Method,
    raw_path: &str,
    query: Option<&str>,
    canonical: &str,
    headers: &HeaderMap,
) -> Option<Candidate> {
    let head = match *method {
        Method::GET => false,
        Method::HEAD => true,
        _ => return None,
    };
    // Credentials other than Odoo's session cookie: never shared.
    if headers.contains_key(header::AUTHORIZATION) {
        return None;
    }
    // A body: werkzeug parses a form body on any method and Odoo's
    // `request.params` lets it override the query (`width`, `mimetype`,
    // `download`...), so the answer is not the URL's (red team 4 F1).
    if has_body(headers) {
        return None;
    }
    // The one spelling only: what werkzeug routes on is what was sent,
    // with nothing decoded, merged or dropped on the way.
    if raw_path != canonical || !raw_path.bytes().all(plain_path_byte) {
        return None;
    }
    if let Some(q) = query
        && !q.bytes().all(plain_query_byte)
    {
        return None;
    }
    if !immutable_route(raw_path, query) {
        return None;
    }
    // A partial or conditional answer is not the whole representation, and
    // HEAD has no body: these may be answered from an entry, never fill one.
    let conditional = [
        header::RANGE,
        header::IF_RANGE,
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
        header::IF_MATCH,
        header::IF_UNMODIFIED_SINCE,
    ]
    .iter()
    .any(|h| headers.contains_key(h));
    let target = match query {
        Some(q) => format!("{raw_path}?{q}"),
        None => raw_path.to_string(),
    };
    Some(Candidate {
        key: Key {
            site: site.to_string(),
            host: host.to_ascii_lowercase(),
            target,
        },
        fill: !head && !conditional,
    })
}

/// Whether the head announces a body: `Transfer-Encoding`, or a
/// `Content-Length` other than 0 (stage 1 refused malformed ones).
pub fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get_all(header::CONTENT_LENGTH)
            .iter()
            .any(|v| v.as_bytes().iter().any(|&b| b != b'0'))
}

fn plain_path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-' | b'~' | b',')
}

/// No percent-encoding, `+` or `;` in the query: the parameters this
/// module looks for (`unique`, `access_token`, `nocache`) read the same
/// for werkzeug and for the checks below.
fn plain_query_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'=' | b'&' | b'.' | b'_' | b'-' | b'~' | b',' | b':')
}

/// The routes whose answers Odoo names by content: asset bundles by their
/// hash in the path; images and attachments when a `unique` token is in
/// the URL (Odoo then answers with a one-year max-age). An `access_token`
/// makes Odoo answer `public` for a private record: never kept, so
/// revoking the token keeps working.
fn immutable_route(path: &str, query: Option<&str>) -> bool {
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    match segments.as_slice() {
        ["web", "assets", unique, file] => !unique.is_empty() && !file.is_empty(),
        ["web", "image" | "content", rest @ ..] => {
            let params: Vec<(&str, &str)> = query
                .unwrap_or("")
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| p.split_once('=').unwrap_or((p, "")))
                .collect();
            if params
                .iter()
                .any(|(k, _)| matches!(*k, "access_token" | "nocache"))
            {
                return false;
            }
            let in_query = params.iter().any(|(k, v)| *k == "unique" && !v.is_empty());
            // `/web/image/<id>-<unique>/...`
            let in_path = segments[1] == "image"
                && rest.first().is_some_and(|s| {
                    s.split_once('-').is_some_and(|(id, u)| {
                        !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) && !u.is_empty()
                    })
                });
            in_query || in_path
        }
        _ => false,
    }
}

/// Why an answer is not kept (for the debug log and tests).
pub type NotKept = &'static str;

/// Whether Odoo's answer may be kept, and for how long: 200, no
/// `Set-Cookie`, not encoded or partial, `Vary` at most Accept-Encoding
/// (the entry is the identity body; variants are made here), and
/// `Cache-Control` with `public` and a max-age (s-maxage first) of at
/// least `min_age`, without `private`, `no-store` or `no-cache`.
pub fn storable(status: StatusCode, h: &HeaderMap, min_age: Duration) -> Result<Duration, NotKept> {
    if status != StatusCode::OK {
        return Err("not a 200");
    }
    if h.contains_key(header::SET_COOKIE) {
        return Err("sets a cookie");
    }
    if h.contains_key(header::CONTENT_RANGE) {
        return Err("partial");
    }
    for v in h.get_all(header::CONTENT_ENCODING) {
        if !v.as_bytes().eq_ignore_ascii_case(b"identity") {
            return Err("encoded");
        }
    }
    for v in h.get_all(header::VARY) {
        let Ok(v) = v.to_str() else {
            return Err("unreadable Vary");
        };
        for f in v.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            if !f.eq_ignore_ascii_case("accept-encoding") {
                return Err("varies on more than Accept-Encoding");
            }
        }
    }
    let mut public = false;
    let mut max_age = None;
    let mut s_maxage = None;
    for v in h.get_all(header::CACHE_CONTROL) {
        let Ok(v) = v.to_str() else {
            return Err("unreadable Cache-Control");
        };
        for d in v.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            let (name, value) = match d.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
                None => (d, None),
            };
            let name = name.to_ascii_lowercase();
            match name.as_str() {
                "public" => public = true,
                "private" | "no-store" | "no-cache" => return Err("private, no-store or no-cache"),
                "max-age" | "s-maxage" => {
                    let secs = value
                        .and_then(|v| v.parse::<u64>().ok())
                        .ok_or("unreadable max-age")?;
                    let slot = if name == "max-age" {
                        &mut max_age
                    } else {
                        &mut s_maxage
                    };
                    if slot.replace(secs).is_some() {
                        return Err("max-age given twice");
                    }
                }
                _ => {}
            }
        }
    }
    if !public {
        return Err("not public");
    }
    let age = Duration::from_secs(s_maxage.or(max_age).ok_or("no max-age")?);
    if age < min_age {
        return Err("max-age too short");
    }
    Ok(age)
}

/// The answer headers an entry keeps; the rest (Date, Expires, lengths,
/// anything hop-by-hop or per-request) is made fresh for each answer.
pub const KEPT_HEADERS: [header::HeaderName; 8] = [
    header::CONTENT_TYPE,
    header::CONTENT_DISPOSITION,
    header::CONTENT_LANGUAGE,
    header::CACHE_CONTROL,
    header::X_CONTENT_TYPE_OPTIONS,
    header::CONTENT_SECURITY_POLICY,
    header::ACCESS_CONTROL_ALLOW_ORIGIN,
    header::LAST_MODIFIED,
];

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(method: Method, pq: &str, canonical: &str, h: &[(&str, &str)]) -> Option<Candidate> {
        let (path, query) = match pq.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (pq, None),
        };
        let mut headers = HeaderMap::new();
        for (k, v) in h {
            headers.append(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        candidate(
            "s",
            "Erp.Example.com",
            &method,
            path,
            query,
            canonical,
            &headers,
        )
    }

    fn get(pq: &str) -> Option<Candidate> {
        let path = pq.split('?').next().unwrap();
        cand(Method::GET, pq, path, &[])
    }

    #[test]
    fn immutable_routes_only() {
        assert!(
            get("/web/assets/e58959e/web.assets_frontend.min.css")
                .unwrap()
                .fill
        );
        assert!(get("/web/image/res.partner/3/avatar_128?unique=1764547642000").is_some());
        assert!(get("/web/image?model=res.users&id=2&field=avatar_128&unique=abc").is_some());
        assert!(get("/web/content/42?unique=abc").is_some());
        assert!(get("/web/image/42-ab12cd/128x128").is_some());
        for no in [
            "/web/image/res.partner/3/avatar_128",
            "/web/image/res.partner/3/avatar_128?unique=",
            "/web/content/42?unique=1&access_token=x",
            "/web/content/42?unique=1&nocache=1",
            "/web/assets/e58959e",
            "/web/assets/x/y/z",
            "/web/login",
            "/odoo",
            "/web/session/get_session_info",
            "/web/imagex?unique=1",
        ] {
            assert!(get(no).is_none(), "{no}");
        }
    }

    #[test]
    fn key_is_site_host_and_target() {
        let c = get("/web/image?unique=1&id=2").unwrap();
        assert_eq!(
            c.key,
            Key {
                site: "s".into(),
                host: "erp.example.com".into(),
                target: "/web/image?unique=1&id=2".into()
            }
        );
    }

    #[test]
    fn odd_spellings_are_not_cached() {
        // Encoded, merged or dotted paths: what is keyed might not be what
        // werkzeug routes on.
        assert!(
            cand(
                Method::GET,
                "/web/assets//a/b.js",
                "/web/assets/a/b.js",
                &[]
            )
            .is_none()
        );
        assert!(
            cand(
                Method::GET,
                "/web/assets/a/b%2ejs",
                "/web/assets/a/b.js",
                &[]
            )
            .is_none()
        );
        assert!(
            cand(
                Method::GET,
                "/web/assets/a/b.js/",
                "/web/assets/a/b.js",
                &[]
            )
            .is_none()
        );
        assert!(get("/web/content/42?unique=1&access%5Ftoken=x").is_none());
        assert!(get("/web/content/42?unique=1;access_token=x").is_none());
        assert!(get("/web/content/42?unique=1+2").is_none());
    }

    #[test]
    fn who_may_fill() {
        let a = "/web/assets/a/b.js";
        assert!(cand(Method::POST, a, a, &[]).is_none());
        assert!(cand(Method::GET, a, a, &[("authorization", "Basic x")]).is_none());
        assert!(!cand(Method::HEAD, a, a, &[]).unwrap().fill);
        assert!(
            !cand(Method::GET, a, a, &[("range", "bytes=0-1")])
                .unwrap()
                .fill
        );
        assert!(
            !cand(Method::GET, a, a, &[("if-none-match", "\"x\"")])
                .unwrap()
                .fill
        );
        assert!(
            cand(Method::GET, a, a, &[("cookie", "session_id=x")])
                .unwrap()
                .fill
        );
        // A body may change Odoo's answer: neither fills nor reads.
        assert!(cand(Method::GET, a, a, &[("content-length", "16")]).is_none());
        assert!(cand(Method::GET, a, a, &[("transfer-encoding", "chunked")]).is_none());
        assert!(cand(Method::GET, a, a, &[("content-length", "0")]).is_some());
    }

    fn answer(status: u16, h: &[(&str, &str)]) -> Result<Duration, NotKept> {
        let mut headers = HeaderMap::new();
        for (k, v) in h {
            headers.append(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        storable(
            StatusCode::from_u16(status).unwrap(),
            &headers,
            Duration::from_secs(86_400),
        )
    }

    #[test]
    fn only_public_long_lived_answers() {
        let odoo = ("cache-control", "public, max-age=31536000, immutable");
        assert_eq!(answer(200, &[odoo]), Ok(Duration::from_secs(31_536_000)));
        assert!(answer(200, &[odoo, ("vary", "Accept-Encoding")]).is_ok());
        assert!(
            answer(
                200,
                &[("cache-control", "max-age=31536000, private, immutable")]
            )
            .is_err()
        );
        assert!(
            answer(
                200,
                &[
                    ("cache-control", "public, max-age=31536000"),
                    ("cache-control", "no-store")
                ]
            )
            .is_err()
        );
        assert!(
            answer(
                200,
                &[("cache-control", "public, no-cache, max-age=31536000")]
            )
            .is_err()
        );
        assert!(answer(200, &[("cache-control", "public, max-age=604")]).is_err());
        assert!(
            answer(
                200,
                &[("cache-control", "public, max-age=31536000, s-maxage=0")]
            )
            .is_err()
        );
        assert!(
            answer(
                200,
                &[("cache-control", "public, max-age=1, max-age=31536000")]
            )
            .is_err()
        );
        assert!(answer(200, &[("cache-control", "public")]).is_err());
        assert!(answer(200, &[("cache-control", "max-age=31536000")]).is_err());
        assert!(answer(200, &[odoo, ("set-cookie", "session_id=x; Path=/")]).is_err());
        assert!(answer(200, &[odoo, ("vary", "Cookie")]).is_err());
        assert!(answer(200, &[odoo, ("vary", "*")]).is_err());
        assert!(answer(200, &[odoo, ("content-encoding", "gzip")]).is_err());
        assert!(answer(200, &[odoo, ("content-range", "bytes 0-1/2")]).is_err());
        for s in [206, 304, 404, 500, 503] {
            assert!(answer(s, &[odoo]).is_err(), "{s}");
        }
    }
}
