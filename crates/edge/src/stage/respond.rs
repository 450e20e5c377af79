//! Stage 7: shaping every response before it leaves, whoever made it
//! (Odoo, a file, Rampart's own pages).

use http::{HeaderMap, HeaderName, HeaderValue, Response, Version, header};

use crate::body::Body;
use crate::headers::{cookies, hop, security::HeaderSet};

/// Odoo's response headers that must not reach the client.
pub fn strip_upstream(headers: &mut HeaderMap) {
    hop::strip(headers, false);
    headers.remove(HeaderName::from_static("x-accel-redirect"));
    headers.remove(HeaderName::from_static("x-accel-buffering"));
    headers.remove(HeaderName::from_static("x-sendfile"));
    // One Date (RFC 9110 §6.6.1): werkzeug writes its own besides any the
    // application set.
    if headers.get_all(header::DATE).iter().nth(1).is_some()
        && let Some(first) = headers.get(header::DATE).cloned()
    {
        headers.insert(header::DATE, first);
    }
}

/// Session cookies, security headers, Server.
pub fn shape(
    res: &mut Response<Body>,
    headers: &HeaderSet,
    session_cookies: &[String],
    https: bool,
) {
    // Odoo's workers answer HTTP/1.0; passed on, that version tells the
    // client the connection is not persistent and it closes after every
    // response. The client is talking to Rampart, which keeps it open.
    if res.version() < Version::HTTP_11 {
        *res.version_mut() = Version::HTTP_11;
    }
    if https {
        cookies::harden(res.headers_mut(), session_cookies);
    }
    headers.apply(res.headers_mut(), https);
    // Images from disk or the filestore could be SVG with script: never
    // let them run anything.
    let is_image = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.trim_start().to_ascii_lowercase().starts_with("image/"));
    if is_image {
        res.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; sandbox"),
        );
    }
}
