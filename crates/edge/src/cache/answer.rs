//! Answers made from an entry: 304 for a matching If-None-Match (or
//! If-Modified-Since when Odoo sent Last-Modified), 206/416 for one byte
//! range (the rules of `files`, shared), else 200 with the identity body
//! or the compressed variant the client accepts.

use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};

use super::Entry;
use crate::body::{self, Body};
use crate::encoding::{self as compress, Encoding};
use crate::files::{self, RangeAnswer};

/// The encoding to answer in, when the answer is a whole 200 body of a
/// compressible type and the client accepts one.
pub fn variant_wanted(e: &Entry, req: &HeaderMap, accepted: Option<Encoding>) -> Option<Encoding> {
    let enc = accepted?;
    if not_modified(e, req) || req.contains_key(header::RANGE) {
        return None;
    }
    (compressible(e) && e.body.len() as u64 >= compress::MIN_SIZE).then_some(enc)
}

fn compressible(e: &Entry) -> bool {
    compress::compressible(e.headers.get(header::CONTENT_TYPE))
}

fn not_modified(e: &Entry, req: &HeaderMap) -> bool {
    files::not_modified(req, &e.etag, e.last_modified.unwrap_or(u64::MAX))
}

/// The answer to `method` with `req`'s conditional and range headers;
/// `variant` is the compressed body when `variant_wanted` asked for one.
pub fn respond(
    e: &Entry,
    method: &Method,
    req: &HeaderMap,
    variant: Option<(Encoding, Bytes)>,
) -> Response<Body> {
    let mut h = e.headers.clone();
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&e.etag).expect("checked when stored"),
    );
    if let Some(secs) = e.last_modified {
        let date = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs));
        h.insert(
            header::LAST_MODIFIED,
            HeaderValue::from_str(&date).expect("an HTTP date"),
        );
    }
    let head = method == Method::HEAD;
    if not_modified(e, req) {
        h.remove(header::CONTENT_TYPE);
        h.remove(header::CONTENT_DISPOSITION);
        return answer(StatusCode::NOT_MODIFIED, h, body::empty());
    }
    if let Some((enc, bytes)) = variant {
        h.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(enc.token()),
        );
        // (Identity answers get Vary from stage 7's compressor.)
        h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        // The strong validator names the identity bytes.
        let weak = format!("W/{}", e.etag);
        h.insert(header::ETAG, HeaderValue::from_str(&weak).expect("valid"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        return answer(
            StatusCode::OK,
            h,
            if head {
                body::empty()
            } else {
                body::full(bytes)
            },
        );
    }
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let len = e.body.len() as u64;
    let lm = e.last_modified.unwrap_or(u64::MAX);
    let (status, slice) = match files::requested_range(req, &e.etag, lm, len) {
        RangeAnswer::Full => (StatusCode::OK, e.body.clone()),
        RangeAnswer::Partial(start, end) => {
            let cr = format!("bytes {start}-{end}/{len}");
            h.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&cr).expect("valid"),
            );
            (
                StatusCode::PARTIAL_CONTENT,
                e.body.slice(start as usize..=end as usize),
            )
        }
        RangeAnswer::Unsatisfiable => {
            let cr = format!("bytes */{len}");
            h.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&cr).expect("valid"),
            );
            h.remove(header::CONTENT_TYPE);
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
            return answer(StatusCode::RANGE_NOT_SATISFIABLE, h, body::empty());
        }
    };
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(slice.len()));
    answer(
        status,
        h,
        if head {
            body::empty()
        } else {
            body::full(slice)
        },
    )
}

fn answer(status: StatusCode, headers: HeaderMap, b: Body) -> Response<Body> {
    let mut r = Response::new(b);
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}

/// A strong ETag for a body Odoo gave none (or only a weak one) for.
pub fn etag_of(odoo: Option<&HeaderValue>, body: &[u8]) -> String {
    if let Some(v) = odoo.and_then(|v| v.to_str().ok())
        && v.len() >= 2
        && v.starts_with('"')
        && v.ends_with('"')
        && !v[1..v.len() - 1].contains('"')
    {
        return v.to_string();
    }
    let d = ring::digest::digest(&ring::digest::SHA256, body);
    let hex: String = d.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("\"rc-{hex}\"")
}
