//! Files from disk: Odoo's static assets (from addons_path) and
//! X-Accel-Redirect filestore downloads. Conditional requests (ETag,
//! Last-Modified → 304), single byte ranges (206), streamed in chunks.
//!
//! Every path is resolved with the symlinks followed and must stay inside
//! its root, so neither `..` nor a symlink can reach outside.

use std::io;
use std::path::{Component, Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::TryStreamExt;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use crate::body::{self, Body, BoxError};

/// Resolves `rel` (slash-separated, already canonical) under `root`.
/// `None` when it does not exist, is not a regular file, or escapes.
pub async fn resolve_under(root: &Path, rel: &str) -> Option<(PathBuf, std::fs::Metadata)> {
    let rel_path = Path::new(rel);
    if rel_path
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return None;
    }
    let root = tokio::fs::canonicalize(root).await.ok()?;
    let full = tokio::fs::canonicalize(root.join(rel_path)).await.ok()?;
    if !full.starts_with(&root) {
        return None;
    }
    let meta = tokio::fs::metadata(&full).await.ok()?;
    meta.is_file().then_some((full, meta))
}

/// A content type from the extension: the types Odoo's static folders
/// and attachments actually hold.
pub fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "js" | "mjs" => "application/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "scss" | "less" | "txt" | "md" => "text/plain; charset=utf-8",
        "html" | "htm" => "text/html; charset=utf-8",
        "xml" => "application/xml; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        "bmp" => "image/bmp",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "eot" => "application/vnd.ms-fontobject",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "wasm" => "application/wasm",
        "csv" => "text/csv; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Serves `path`. `headers` are the response headers to start from
/// (Odoo's, for X-Accel-Redirect; Content-Type and Cache-Control for
/// static files); validators and length are set here.
pub async fn serve(
    path: &Path,
    meta: &std::fs::Metadata,
    method: &Method,
    req: &HeaderMap,
    mut headers: HeaderMap,
) -> Response<Body> {
    let len = meta.len();
    let (etag, secs) = validators(meta);
    headers.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).expect("hex is a valid header"),
    );
    let last_modified = httpdate::fmt_http_date(UNIX_EPOCH + std::time::Duration::from_secs(secs));
    headers.insert(
        header::LAST_MODIFIED,
        HeaderValue::from_str(&last_modified).expect("http date is a valid header"),
    );
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::TRANSFER_ENCODING);

    if not_modified(req, &etag, secs) {
        headers.remove(header::CONTENT_TYPE);
        return response(StatusCode::NOT_MODIFIED, headers, body::empty());
    }

    let range = requested_range(req, &etag, secs, len);
    let (status, start, count) = match range {
        RangeAnswer::Full => (StatusCode::OK, 0, len),
        RangeAnswer::Partial(start, end) => {
            let cr = format!("bytes {start}-{end}/{len}");
            headers.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&cr).expect("valid"),
            );
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        RangeAnswer::Unsatisfiable => {
            let cr = format!("bytes */{len}");
            headers.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&cr).expect("valid"),
            );
            headers.remove(header::CONTENT_TYPE);
            return response(StatusCode::RANGE_NOT_SATISFIABLE, headers, body::empty());
        }
    };
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    if method == Method::HEAD {
        return response(status, headers, body::empty());
    }
    match open_range(path, start, count).await {
        Ok(b) => response(status, headers, b),
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "cannot read file");
            crate::pages::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The file could not be read.",
            )
        }
    }
}

/// The strong ETag (size and mtime) and the mtime in seconds of a file.
pub(crate) fn validators(meta: &std::fs::Metadata) -> (String, u64) {
    let secs = meta
        .modified()
        .unwrap_or(UNIX_EPOCH)
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    (format!("\"{:x}-{secs:x}\"", meta.len()), secs)
}

fn response(status: StatusCode, headers: HeaderMap, body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}

async fn open_range(path: &Path, start: u64, count: u64) -> io::Result<Body> {
    let mut f = tokio::fs::File::open(path).await?;
    if start > 0 {
        f.seek(io::SeekFrom::Start(start)).await?;
    }
    let stream = ReaderStream::with_capacity(f.take(count), 64 * 1024)
        .map_ok(|b: Bytes| Frame::data(b))
        .map_err(|e| Box::new(e) as BoxError);
    Ok(StreamBody::new(stream).boxed_unsync())
}

pub(crate) fn not_modified(req: &HeaderMap, etag: &str, mtime_secs: u64) -> bool {
    if let Some(inm) = req.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        // Weak comparison: a compressed copy carries W/"...".
        return inm
            .split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == "*" || t == etag);
    }
    if let Some(ims) = req
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
    {
        let ims = ims
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        return mtime_secs <= ims;
    }
    false
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RangeAnswer {
    Full,
    Partial(u64, u64),
    Unsatisfiable,
}

/// One `bytes=` range; several ranges are answered with the whole file
/// (allowed, and multipart answers are a known source of bugs).
pub(crate) fn requested_range(
    req: &HeaderMap,
    etag: &str,
    mtime_secs: u64,
    len: u64,
) -> RangeAnswer {
    let Some(spec) = req.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return RangeAnswer::Full;
    };
    if let Some(if_range) = req.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) {
        let still_valid = if if_range.starts_with('"') {
            if_range == etag
        } else {
            httpdate::parse_http_date(if_range)
                .ok()
                .and_then(|t: SystemTime| t.duration_since(UNIX_EPOCH).ok())
                .is_some_and(|d| d.as_secs() == mtime_secs)
        };
        if !still_valid {
            return RangeAnswer::Full;
        }
    }
    let Some(spec) = spec.trim().strip_prefix("bytes=") else {
        return RangeAnswer::Full;
    };
    if spec.contains(',') {
        return RangeAnswer::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeAnswer::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = if a.is_empty() {
        // Suffix: the last N bytes.
        let Ok(n) = b.parse::<u64>() else {
            return RangeAnswer::Full;
        };
        if n == 0 {
            return RangeAnswer::Unsatisfiable;
        }
        (len.saturating_sub(n), len.saturating_sub(1))
    } else {
        let Ok(start) = a.parse::<u64>() else {
            return RangeAnswer::Full;
        };
        let end = if b.is_empty() {
            len.saturating_sub(1)
        } else {
            match b.parse::<u64>() {
                Ok(e) => e.min(len.saturating_sub(1)),
                Err(_) => return RangeAnswer::Full,
            }
        };
        (start, end)
    };
    if len == 0 || start >= len || start > end {
        return RangeAnswer::Unsatisfiable;
    }
    RangeAnswer::Partial(start, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ETAG: &str = "\"abc\"";
    /// 2001-09-09T01:46:40Z, `Sun, 09 Sep 2001 01:46:40 GMT`.
    const MTIME: u64 = 1_000_000_000;

    fn range(headers: &[(&str, &str)], len: u64) -> RangeAnswer {
        let mut h = HeaderMap::new();
        for (n, v) in headers {
            h.append(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        requested_range(&h, ETAG, MTIME, len)
    }

    #[test]
    fn no_range_is_the_whole_file() {
        assert_eq!(range(&[], 100), RangeAnswer::Full);
    }

    #[test]
    fn one_range_with_both_ends_clamped_to_the_file() {
        assert_eq!(
            range(&[("range", "bytes=0-9")], 100),
            RangeAnswer::Partial(0, 9)
        );
        assert_eq!(
            range(&[("range", "bytes=90-200")], 100),
            RangeAnswer::Partial(90, 99)
        );
        assert_eq!(
            range(&[("range", "bytes=10-")], 100),
            RangeAnswer::Partial(10, 99)
        );
        assert_eq!(
            range(&[("range", " bytes= 5 - 6 ")], 100),
            RangeAnswer::Partial(5, 6)
        );
    }

    #[test]
    fn suffix_ranges_are_the_last_bytes() {
        assert_eq!(
            range(&[("range", "bytes=-10")], 100),
            RangeAnswer::Partial(90, 99)
        );
        assert_eq!(
            range(&[("range", "bytes=-500")], 100),
            RangeAnswer::Partial(0, 99)
        );
        assert_eq!(
            range(&[("range", "bytes=-0")], 100),
            RangeAnswer::Unsatisfiable
        );
    }

    #[test]
    fn ranges_outside_the_file_are_unsatisfiable() {
        assert_eq!(
            range(&[("range", "bytes=100-")], 100),
            RangeAnswer::Unsatisfiable
        );
        assert_eq!(
            range(&[("range", "bytes=5-2")], 100),
            RangeAnswer::Unsatisfiable
        );
        assert_eq!(
            range(&[("range", "bytes=0-")], 0),
            RangeAnswer::Unsatisfiable
        );
        assert_eq!(
            range(&[("range", "bytes=-5")], 0),
            RangeAnswer::Unsatisfiable
        );
    }

    #[test]
    fn what_is_not_one_byte_range_gets_the_whole_file() {
        for spec in [
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=a-b",
            "bytes=1-x",
            "bytes=-x",
            "bytes=5",
            "bytes=-1-2",
        ] {
            assert_eq!(range(&[("range", spec)], 100), RangeAnswer::Full, "{spec}");
        }
    }

    #[test]
    fn if_range_keeps_the_range_only_for_the_same_file() {
        let r = "bytes=0-0";
        assert_eq!(
            range(&[("range", r), ("if-range", ETAG)], 10),
            RangeAnswer::Partial(0, 0)
        );
        assert_eq!(
            range(&[("range", r), ("if-range", "\"other\"")], 10),
            RangeAnswer::Full
        );
        assert_eq!(
            range(
                &[("range", r), ("if-range", "Sun, 09 Sep 2001 01:46:40 GMT")],
                10
            ),
            RangeAnswer::Partial(0, 0)
        );
        assert_eq!(
            range(
                &[("range", r), ("if-range", "Sun, 09 Sep 2001 01:46:41 GMT")],
                10
            ),
            RangeAnswer::Full
        );
        assert_eq!(
            range(&[("range", r), ("if-range", "yesterday")], 10),
            RangeAnswer::Full
        );
    }
}
