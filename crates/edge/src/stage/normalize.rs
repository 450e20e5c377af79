//! Stage 1: one canonical path for every decision, and framing checks.
//!
//! Attackers reach the database manager through whatever spelling the
//! proxy and Odoo disagree on: `/web/%64atabase`, `/web//database`,
//! `/web/static/../database`, `/web/database/..%2f..%2fweb/login`. The rule
//! here is that what is judged is what is forwarded: the request-target goes
//! to Odoo byte for byte as it came, and the path every decision below uses
//! is exactly what werkzeug's WSGI server makes of those bytes (one
//! percent-decoding, UTF-8), with empty segments collapsed (werkzeug's
//! `merge_slashes` redirects `//` to `/`) and the trailing slash dropped
//! (Odoo's map has `strict_slashes=False`).
//!
//! Spellings that werkzeug and Rampart (or another hop, or Odoo on
//! Windows) could read differently are refused with 400 rather than
//! rewritten: forwarding a rewritten path would change legitimate URLs
//! (`%2F` or `;` inside a file name), while no browser ever sends these:
//! - dot segments, also encoded (`%2e%2e`) or with `;params` (`..;`): a
//!   browser resolves them before sending, werkzeug does not resolve them at
//!   all, so `/web/database/..%2f..%2fweb/login` is werkzeug's
//!   `/web/database/<path>` but "/web/login" to anything that resolves;
//! - a percent sign that still encodes something after one decoding
//!   (`%252e`): one more decoding anywhere turns it into a separator or dot;
//! - backslashes (a separator for Windows and for WHATWG URL parsers);
//! - NUL and control characters, and bytes that are not UTF-8 after
//!   decoding (werkzeug would substitute U+FFFD);
//! - anything but origin-form (`*` and absolute-form are turned into
//!   origin-form or answered by stage 1 itself, see `pipeline`).
//!
//! `path` is werkzeug's reading, case and all (static files are served by
//! it). `lower`, which every prefix decision uses, is broader: case folded
//! and `;params` dropped from each segment, so `/WEB/DATABASE` and
//! `/web;x/database` are judged the database manager too. werkzeug's map is
//! case-sensitive and keeps `;` in names, so this only makes Rampart
//! stricter, also in front of a hop that strips matrix parameters.
//! The differential test `tests/paths_werkzeug.rs` runs these rules
//! against the real werkzeug.

use http::{HeaderMap, Method, header};

/// Why a request is refused before anything else looks at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reject {
    /// A malformed or ambiguous path: bad percent-encoding, NUL, dot
    /// segments, double encoding, not origin-form.
    BadPath(&'static str),
    /// Content-Length and Transfer-Encoding together, or other framing
    /// that two parsers could read differently (request smuggling).
    AmbiguousFraming(&'static str),
}

impl Reject {
    /// The short reason, for the access log.
    pub fn reason(&self) -> &'static str {
        match self {
            Reject::BadPath(r) | Reject::AmbiguousFraming(r) => r,
        }
    }
}

/// The canonical path used by every routing decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalPath {
    /// Decoded once, as werkzeug decodes it; `//` collapsed, no trailing
    /// slash; keeps its case (static file names are case-sensitive on disk).
    pub path: String,
    /// The same, lower-cased and without `;params`: for prefix decisions
    /// (`/web/database`), which must not be dodged by case or parameters.
    pub lower: String,
}

/// The path of an origin-form request-target (`Uri::path`), judged as
/// werkzeug reads it, or refused when it is ambiguous (module doc).
pub fn canonical_path(raw: &str) -> Result<CanonicalPath, Reject> {
    if raw == "*" {
        return Err(Reject::BadPath("asterisk-form request target"));
    }
    if !raw.starts_with('/') {
        return Err(Reject::BadPath("request path must start with /"));
    }
    if raw.contains('\\') {
        return Err(Reject::BadPath("backslash in path"));
    }
    let bytes = percent_decode(raw.as_bytes())?;
    if bytes.contains(&0) {
        return Err(Reject::BadPath("NUL byte in path"));
    }
    if bytes.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(Reject::BadPath("control character in path"));
    }
    if bytes.contains(&b'\\') {
        return Err(Reject::BadPath("backslash in path"));
    }
    if still_encoded(&bytes) {
        return Err(Reject::BadPath("percent-encoding inside percent-encoding"));
    }
    let Ok(text) = String::from_utf8(bytes) else {
        return Err(Reject::BadPath("path is not UTF-8 after decoding"));
    };
    let mut path = String::with_capacity(text.len());
    let mut lower = String::with_capacity(text.len());
    for seg in text.split('/') {
        // `..;x` is `..` to servers that strip matrix parameters.
        let name = seg.split(';').next().unwrap_or("");
        if name == "." || name == ".." {
            return Err(Reject::BadPath("dot segment in path"));
        }
        if !seg.is_empty() {
            path.push('/');
            path.push_str(seg);
        }
        if !name.is_empty() {
            lower.push('/');
            lower.push_str(&name.to_ascii_lowercase());
        }
    }
    for p in [&mut path, &mut lower] {
        if p.is_empty() {
            p.push('/');
        }
    }
    Ok(CanonicalPath { path, lower })
}

/// A `%` followed by two hex digits: what a second decoding would change.
fn still_encoded(b: &[u8]) -> bool {
    b.windows(3)
        .any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit())
}

fn percent_decode(input: &[u8]) -> Result<Vec<u8>, Reject> {
    if !input.contains(&b'%') {
        return Ok(input.to_vec());
    }
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' {
            let hex = |b: u8| (b as char).to_digit(16);
            match (
                input.get(i + 1).copied().and_then(hex),
                input.get(i + 2).copied().and_then(hex),
            ) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => return Err(Reject::BadPath("invalid percent-encoding in path")),
            }
        }
        out.push(input[i]);
        i += 1;
    }
    Ok(out)
}

/// Framing that hyper accepts but an upstream might read differently.
/// hyper already refuses two different Content-Lengths and a
/// Transfer-Encoding that does not end in `chunked`.
pub fn check_framing(
    method: &Method,
    version: http::Version,
    headers: &HeaderMap,
) -> Result<(), Reject> {
    let te = headers.get_all(header::TRANSFER_ENCODING).iter().count();
    let cl: Vec<_> = headers.get_all(header::CONTENT_LENGTH).iter().collect();
    if te > 0 && !cl.is_empty() {
        return Err(Reject::AmbiguousFraming(
            "Content-Length together with Transfer-Encoding",
        ));
    }
    if te > 0 && version == http::Version::HTTP_10 {
        return Err(Reject::AmbiguousFraming(
            "Transfer-Encoding in an HTTP/1.0 request",
        ));
    }
    if cl.len() > 1 && cl.windows(2).any(|w| w[0] != w[1]) {
        return Err(Reject::AmbiguousFraming(
            "conflicting Content-Length headers",
        ));
    }
    for v in cl {
        let ok = v.to_str().map(|s| {
            s.split(',').all(|p| {
                let p = p.trim();
                !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())
            })
        });
        if !matches!(ok, Ok(true)) {
            return Err(Reject::AmbiguousFraming("malformed Content-Length"));
        }
    }
    if method == Method::CONNECT {
        return Err(Reject::BadPath("CONNECT is not proxied"));
    }
    // werkzeug upper-cases the method, so `post` is a POST to Odoo: a
    // method judged as written must be the one Odoo acts on (nginx
    // refuses these too).
    if method.as_str().bytes().any(|b| b.is_ascii_lowercase()) {
        return Err(Reject::BadPath(
            "the method must be written in capital letters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(p: &str) -> String {
        canonical_path(p).unwrap().lower
    }

    #[test]
    fn database_manager_spellings_canonicalise_or_are_refused() {
        for p in [
            "/web/database/manager",
            "/web//database/manager",
            "//web/database/manager",
            "/web/%64atabase/manager",
            "/web%2fdatabase/manager",
            "/WEB/DATABASE/MANAGER",
            "/Web/DataBase/manager",
            "/web/database/manager/",
            "/web/database;x=1/manager",
            "/web;/database/manager;",
        ] {
            assert_eq!(canon(p), "/web/database/manager", "{p}");
        }
        for p in [
            "/web/./database/manager",
            "/web/static/../database/manager",
            "/web/%2564atabase/manager",
            "/web%252fdatabase/manager",
            "\\web\\database\\manager",
            "/web%5cdatabase/manager",
            "/x/../web/database/manager",
            "/../../web/database/manager",
            "/web/database/%2e%2e/database/manager",
        ] {
            assert!(canonical_path(p).is_err(), "{p} must be refused");
        }
    }

    #[test]
    fn dot_segments_werkzeug_would_not_resolve_are_refused() {
        for p in [
            "/web/database/..%2f..%2fweb/login",
            "/web/database/manager/..%2f..%2fmanager",
            "/web/database/%2e%2e/%2e%2e/web/login",
            "/web/database/..;/..;/web/login",
            "/web/database/.;x/manager",
            "/a/.",
            "/a/..",
            "/web/database/%252e%252e/%252e%252e/web/login",
        ] {
            assert!(canonical_path(p).is_err(), "{p} must be refused");
        }
        // Dots that are not whole segments are names.
        assert_eq!(
            canon("/web/static/lib/a..b/x.js"),
            "/web/static/lib/a..b/x.js"
        );
        assert_eq!(canon("/.well-known/x"), "/.well-known/x");
    }

    #[test]
    fn matrix_parameters_are_names_to_werkzeug_and_dropped_for_decisions() {
        let c = canonical_path("/web;a/database;x=1/Manager;").unwrap();
        assert_eq!(c.path, "/web;a/database;x=1/Manager;");
        assert_eq!(c.lower, "/web/database/manager");
        assert_eq!(canon("/xmlrpc/2/db;x"), "/xmlrpc/2/db");
        assert_eq!(canon("/;x/jsonrpc"), "/jsonrpc");
    }

    #[test]
    fn keeps_case_in_path() {
        assert_eq!(
            canonical_path("/web/static/img/Logo.PNG").unwrap().path,
            "/web/static/img/Logo.PNG"
        );
        assert_eq!(
            canonical_path("/a/%C3%A9t%C3%A9").unwrap().path,
            "/a/\u{e9}t\u{e9}"
        );
    }

    #[test]
    fn rejects_bad_encoding_nul_controls_and_non_utf8() {
        for p in [
            "/web/%zz",
            "/web/%2",
            "/web/%00x",
            "/web/%0ax",
            "/web/%ff",
            "web/login",
        ] {
            assert!(canonical_path(p).is_err(), "{p} must be refused");
        }
    }

    #[test]
    fn root_and_star() {
        assert_eq!(canon("/"), "/");
        assert_eq!(canon("//"), "/");
        assert!(canonical_path("*").is_err());
        assert!(canonical_path("/..").is_err());
    }

    #[test]
    fn framing() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, "5".parse().unwrap());
        assert!(check_framing(&Method::POST, http::Version::HTTP_11, &h).is_ok());
        for m in ["post", "Post", "get", "pOST", "foo"] {
            let m = Method::from_bytes(m.as_bytes()).unwrap();
            assert!(
                check_framing(&m, http::Version::HTTP_11, &h).is_err(),
                "{m}"
            );
        }
        let foo = Method::from_bytes(b"FOO").unwrap();
        assert!(check_framing(&foo, http::Version::HTTP_11, &h).is_ok());
        h.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        assert!(check_framing(&Method::POST, http::Version::HTTP_11, &h).is_err());
        let mut h = HeaderMap::new();
        h.append(header::CONTENT_LENGTH, "5".parse().unwrap());
        h.append(header::CONTENT_LENGTH, "6".parse().unwrap());
        assert!(check_framing(&Method::POST, http::Version::HTTP_11, &h).is_err());
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, "+5".parse().unwrap());
        assert!(check_framing(&Method::POST, http::Version::HTTP_11, &h).is_err());
    }

    #[test]
    fn transfer_encoding_only_on_http11_and_equal_lengths_pass() {
        use http::Version;
        let post = |v: Version, h: &HeaderMap| check_framing(&Method::POST, v, h);
        let mut te = HeaderMap::new();
        te.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        // A chunked upload is ordinary HTTP/1.1 ...
        assert_eq!(post(Version::HTTP_11, &te), Ok(()));
        // ... but HTTP/1.0 has no chunked coding: a 1.0 hop would read the
        // body as ending at the close.
        assert_eq!(
            post(Version::HTTP_10, &te),
            Err(Reject::AmbiguousFraming(
                "Transfer-Encoding in an HTTP/1.0 request"
            ))
        );
        let mut cl = HeaderMap::new();
        cl.insert(header::CONTENT_LENGTH, "5".parse().unwrap());
        assert_eq!(post(Version::HTTP_10, &cl), Ok(()));
        // Equal repeats are one length (headers::request then keeps one).
        cl.append(header::CONTENT_LENGTH, "5".parse().unwrap());
        assert_eq!(post(Version::HTTP_11, &cl), Ok(()));
        assert_eq!(post(Version::HTTP_10, &HeaderMap::new()), Ok(()));
        assert_eq!(
            check_framing(&Method::CONNECT, Version::HTTP_11, &HeaderMap::new()),
            Err(Reject::BadPath("CONNECT is not proxied"))
        );
    }

    #[test]
    fn the_refusal_names_what_is_wrong() {
        // The 400 page says why (pipeline): each reason is its own.
        let why = |p: &str| canonical_path(p).unwrap_err().reason();
        assert_eq!(why("/a/.."), "dot segment in path");
        assert_eq!(why("/a/%2"), "invalid percent-encoding in path");
        assert_eq!(why("/a/%7f"), "control character in path");
        assert_eq!(
            why("/a/%20%2541"),
            "percent-encoding inside percent-encoding"
        );
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, "5".parse().unwrap());
        h.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        let r = check_framing(&Method::POST, http::Version::HTTP_11, &h).unwrap_err();
        assert_eq!(r.reason(), "Content-Length together with Transfer-Encoding");
    }

    #[test]
    fn a_percent_sign_that_encodes_nothing_is_a_name() {
        // `%25` is a literal `%`; followed by anything but two hex digits a
        // second decoding leaves it alone, so the name is kept.
        for (raw, path) in [
            ("/web/static/100%25.png", "/web/static/100%.png"),
            ("/a/%252g", "/a/%2g"),
            ("/a/%25g2", "/a/%g2"),
            ("/a/%25", "/a/%"),
            ("/a/b%20c", "/a/b c"),
        ] {
            assert_eq!(canonical_path(raw).unwrap().path, path, "{raw}");
        }
        // One byte more or less than a full escape is still refused.
        assert!(canonical_path("/a/%4").is_err());
        assert!(canonical_path("/a/%%41").is_err());
    }
}
