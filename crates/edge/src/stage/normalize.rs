//! Stage 1: one canonical path for every decision, and framing checks.
//!
//! Attackers reach the database manager through whatever spelling the
//! proxy and Odoo disagree on: `/web/%64atabase`, `/web//database`,
//! `/web/static/../database`, `/WEB/DATABASE`, `/web/database;x/manager`,
//! `\web\database`. Every routing decision below uses the path this stage
//! returns, which is at least as broad as any reading Odoo could make:
//! percent-decoded (repeatedly, so double encoding cannot hide a segment),
//! backslashes as slashes, `;params` dropped from each segment, repeated
//! slashes collapsed and dot segments resolved. The request itself is
//! forwarded unchanged.

use http::{HeaderMap, Method, header};

/// Why a request is refused before anything else looks at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reject {
    /// A malformed path: bad percent-encoding, NUL, not origin-form.
    BadPath(&'static str),
    /// Content-Length and Transfer-Encoding together, or other framing
    /// that two parsers could read differently (request smuggling).
    AmbiguousFraming(&'static str),
}

impl Reject {
    pub fn reason(&self) -> &'static str {
        match self {
            Reject::BadPath(r) | Reject::AmbiguousFraming(r) => r,
        }
    }
}

/// The canonical path used by every routing decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalPath {
    /// Decoded and resolved; keeps its case (static file names are
    /// case-sensitive on disk).
    pub path: String,
    /// The same, lower-cased: for prefix decisions (`/web/database`),
    /// which must not be dodged by case.
    pub lower: String,
}

/// Percent-decoding rounds: `%2564` → `%64` → `d`. Three rounds cover any
/// encoding a single upstream decode could still turn into a separator.
const DECODE_ROUNDS: usize = 3;

pub fn canonical_path(raw: &str) -> Result<CanonicalPath, Reject> {
    if raw == "*" {
        return Ok(CanonicalPath {
            path: "/".into(),
            lower: "/".into(),
        });
    }
    if !raw.starts_with('/') && !raw.starts_with('\\') {
        return Err(Reject::BadPath("request path must start with /"));
    }
    let mut bytes = raw.as_bytes().to_vec();
    for _ in 0..DECODE_ROUNDS {
        let decoded = percent_decode(&bytes)?;
        if decoded == bytes {
            break;
        }
        bytes = decoded;
    }
    if bytes.contains(&0) {
        return Err(Reject::BadPath("NUL byte in path"));
    }
    let text = String::from_utf8_lossy(&bytes).replace('\\', "/");
    let mut out: Vec<&str> = Vec::new();
    for seg in text.split('/') {
        // Matrix parameters (`;jsessionid=..`) are not part of the name.
        let seg = seg.split(';').next().unwrap_or("");
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut path = String::with_capacity(text.len() + 1);
    for seg in &out {
        path.push('/');
        path.push_str(seg);
    }
    if path.is_empty() {
        path.push('/');
    }
    let lower = path.to_ascii_lowercase();
    Ok(CanonicalPath { path, lower })
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(p: &str) -> String {
        canonical_path(p).unwrap().lower
    }

    #[test]
    fn database_manager_spellings_all_canonicalise() {
        for p in [
            "/web/database/manager",
            "/web//database/manager",
            "//web/database/manager",
            "/web/./database/manager",
            "/web/static/../database/manager",
            "/web/%64atabase/manager",
            "/web/%2564atabase/manager",
            "/web%2fdatabase/manager",
            "/web%252fdatabase/manager",
            "/WEB/DATABASE/MANAGER",
            "/Web/DataBase/manager",
            "/web/database;x=1/manager",
            "/web;/database/manager;",
            "\\web\\database\\manager",
            "/web%5cdatabase/manager",
            "/x/../web/database/manager",
            "/../../web/database/manager",
            "/web/database/manager/",
            "/web/database/%2e%2e/database/manager",
        ] {
            assert_eq!(canon(p), "/web/database/manager", "{p}");
        }
    }

    #[test]
    fn keeps_case_in_path() {
        assert_eq!(
            canonical_path("/web/static/img/Logo.PNG").unwrap().path,
            "/web/static/img/Logo.PNG"
        );
    }

    #[test]
    fn rejects_bad_encoding_and_nul() {
        assert!(canonical_path("/web/%zz").is_err());
        assert!(canonical_path("/web/%2").is_err());
        assert!(canonical_path("/web/%00x").is_err());
        assert!(canonical_path("web/login").is_err());
    }

    #[test]
    fn root_and_star() {
        assert_eq!(canon("/"), "/");
        assert_eq!(canon("*"), "/");
        assert_eq!(canon("/.."), "/");
    }

    #[test]
    fn framing() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, "5".parse().unwrap());
        assert!(check_framing(&Method::POST, http::Version::HTTP_11, &h).is_ok());
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
}
