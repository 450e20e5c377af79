//! Rampart's own answers: short, clear pages that say what happened and
//! what to do, without internal addresses or versions.

use http::{HeaderValue, Response, StatusCode, header};

use crate::body::{self, Body};

/// An HTML error page with `message`, never cached.
pub fn error(status: StatusCode, message: &str) -> Response<Body> {
    let title = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{title}</title><style>body{{font-family:system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em;color:#333}}\
         h1{{font-size:1.4em}}</style></head><body><h1>{title}</h1><p>{}</p><hr><small>rampart</small></body></html>\n",
        escape(message)
    );
    let mut r = Response::new(body::full(html));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The answer to `OPTIONS *`, a ping of the server (RFC 9110 §9.3.7):
/// answered like a web server does (200 with the methods Odoo takes) and
/// never sent to Odoo. Any other method with `*` is refused
/// (`Refusal::Asterisk`).
pub fn options_asterisk() -> Response<Body> {
    let mut r = Response::new(body::empty());
    r.headers_mut().insert(
        header::ALLOW,
        HeaderValue::from_static("GET, HEAD, POST, OPTIONS"),
    );
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    r
}

/// A redirect to `location`, with an empty body.
pub fn redirect(status: StatusCode, location: &str) -> Response<Body> {
    let mut r = Response::new(body::empty());
    *r.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    r
}

/// A plain answer of `content_type`, never cached.
pub fn text(
    status: StatusCode,
    content_type: &'static str,
    text: impl Into<bytes::Bytes>,
) -> Response<Body> {
    let mut r = Response::new(body::full(text));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
