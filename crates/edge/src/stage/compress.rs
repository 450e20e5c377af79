//! Stage 7c: compression by Accept-Encoding, streamed.
//!
//! Levels are chosen for a proxy's CPU budget, not for the last percent:
//! gzip 1 (nginx's default), brotli 4, zstd 3 — each within a few percent
//! of its best ratio on Odoo's HTML/JS, at a fraction of the CPU. This is
//! why the encoders are used directly rather than through a layer with
//! one level for all encodings.

use async_compression::Level;
use async_compression::tokio::bufread::{BrotliEncoder, GzipEncoder, ZstdEncoder};
use bytes::Bytes;
use futures_util::TryStreamExt;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio_util::io::{ReaderStream, StreamReader};

use crate::body::{Body, BoxError};
pub use crate::encoding::{Encoding, negotiate};
use crate::encoding::{MIN_SIZE, compressible};

/// Whether this response should be compressed at all.
fn eligible(status: StatusCode, headers: &HeaderMap) -> bool {
    if status == StatusCode::SWITCHING_PROTOCOLS
        || status == StatusCode::PARTIAL_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || status == StatusCode::NO_CONTENT
        || status.is_informational()
    {
        return false;
    }
    if headers.contains_key(header::CONTENT_ENCODING) || headers.contains_key(header::CONTENT_RANGE)
    {
        return false;
    }
    if let Some(cc) = headers
        .get(header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        && cc.to_ascii_lowercase().contains("no-transform")
    {
        return false;
    }
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len < MIN_SIZE
    {
        return false;
    }
    compressible(headers.get(header::CONTENT_TYPE))
}

/// Compresses `res` for `encoding` when it is eligible; adds `Vary`.
pub fn apply(
    res: Response<Body>,
    encoding: Option<Encoding>,
    head_request: bool,
) -> Response<Body> {
    let (mut parts, body) = res.into_parts();
    if !eligible(parts.status, &parts.headers) {
        return Response::from_parts(parts, body);
    }
    // The representation depends on Accept-Encoding even when this client
    // gets it uncompressed: caches must know.
    parts
        .headers
        .append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    let Some(enc) = encoding else {
        return Response::from_parts(parts, body);
    };
    let small = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|len| *len <= ONE_SHOT_MAX);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::ACCEPT_RANGES);
    parts.headers.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static(enc.token()),
    );
    // A strong ETag names the uncompressed bytes; the compressed ones differ.
    if let Some(etag) = parts
        .headers
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        && !etag.starts_with("W/")
        && let Ok(weak) = HeaderValue::from_str(&format!("W/{etag}"))
    {
        parts.headers.insert(header::ETAG, weak);
    }
    if head_request {
        return Response::from_parts(parts, crate::body::empty());
    }
    if enc == Encoding::Gzip
        && let Some(len) = small
    {
        let one_shot = OneShotGzip {
            inner: body,
            body: Collected::None,
            len: len as usize,
            done: false,
        };
        return Response::from_parts(parts, one_shot.boxed_unsync());
    }
    let reader = StreamReader::new(
        body.into_data_stream()
            .map_err(|e: BoxError| std::io::Error::other(e)),
    );
    let out: Body = match enc {
        Encoding::Gzip => encoded(GzipEncoder::with_quality(reader, Level::Precise(1))),
        Encoding::Brotli => encoded(BrotliEncoder::with_quality(reader, Level::Precise(4))),
        Encoding::Zstd => encoded(ZstdEncoder::with_quality(reader, Level::Precise(3))),
    };
    Response::from_parts(parts, out)
}

/// Bodies of known small length (Odoo's pages, JSON answers) are gzipped
/// in one go by `deflate_fixed` (why not zlib-rs: see there).
/// libdeflate (whole-buffer, level 1) was measured against zlib-rs on the
/// bench's 12.5 KB login page: 40-52 µs of CPU per page against zlib-rs's
/// 33-45 µs, for a 22% smaller output (3,076 vs 3,961 bytes). Not worth a
/// C dependency for more CPU per request.
const ONE_SHOT_MAX: u64 = 256 * 1024;

pin_project_lite::pin_project! {
    struct OneShotGzip {
        #[pin]
        inner: Body,
        body: Collected,
        // The Content-Length: the joined buffer's size, made once.
        len: usize,
        done: bool,
    }
}

/// The body so far: a body that comes in one piece is compressed from
/// that piece, not from a copy of it; pieces are joined into one buffer of
/// the announced length (one copy, never regrown).
enum Collected {
    None,
    One(Bytes),
    Joined(Vec<u8>),
}

impl Collected {
    fn add(&mut self, data: Bytes, len: usize) -> usize {
        match self {
            Collected::None => *self = Collected::One(data),
            Collected::One(first) => {
                let mut joined = Vec::with_capacity(len.max(first.len() + data.len()));
                joined.extend_from_slice(first);
                joined.extend_from_slice(&data);
                *self = Collected::Joined(joined);
            }
            Collected::Joined(joined) => joined.extend_from_slice(&data),
        }
        self.bytes().len()
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Collected::None => &[],
            Collected::One(b) => b,
            Collected::Joined(v) => v,
        }
    }
}

impl http_body::Body for OneShotGzip {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        if *this.done {
            return std::task::Poll::Ready(None);
        }
        loop {
            match std::task::ready!(this.inner.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data()
                        && !data.is_empty()
                    {
                        // Content-Length said small; a body that lies is cut.
                        if this.body.add(data, *this.len) as u64 > ONE_SHOT_MAX {
                            return std::task::Poll::Ready(Some(Err(
                                "body longer than its Content-Length".into(),
                            )));
                        }
                    }
                }
                Some(Err(e)) => return std::task::Poll::Ready(Some(Err(e))),
                None => {
                    *this.done = true;
                    return std::task::Poll::Ready(Some(Ok(Frame::data(
                        crate::deflate_fixed::gzip(this.body.bytes()),
                    ))));
                }
            }
        }
    }

    /// After its one frame: so HTTP/2 ends the stream on that DATA frame
    /// and HTTP/1.1 writes the last chunk with the chunk before it, rather
    /// than asking again for an empty end.
    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> http_body::SizeHint {
        if self.done {
            http_body::SizeHint::with_exact(0)
        } else {
            http_body::SizeHint::default()
        }
    }
}

fn encoded<R: tokio::io::AsyncRead + Send + 'static>(r: R) -> Body {
    let stream = ReaderStream::with_capacity(r, 16 * 1024)
        .map_ok(|b: Bytes| Frame::data(b))
        .map_err(|e| Box::new(e) as BoxError);
    StreamBody::new(stream).boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn neg(s: &str) -> Option<Encoding> {
        negotiate(Some(&HeaderValue::from_str(s).unwrap()))
    }

    #[test]
    fn negotiation() {
        assert_eq!(neg("gzip"), Some(Encoding::Gzip));
        assert_eq!(neg("gzip, deflate, br, zstd"), Some(Encoding::Zstd));
        assert_eq!(neg("gzip, deflate, br"), Some(Encoding::Brotli));
        assert_eq!(neg("br;q=0.5, gzip"), Some(Encoding::Gzip));
        assert_eq!(neg("identity"), None);
        assert_eq!(neg("*;q=0"), None);
        assert_eq!(neg("*"), Some(Encoding::Zstd));
        assert_eq!(neg("gzip;q=0, br;q=0"), None);
        assert_eq!(negotiate(None), None);
        // Names are case-insensitive; the first q given for a name counts.
        assert_eq!(neg("GZIP, BR;q=0.1"), Some(Encoding::Gzip));
        assert_eq!(neg("br;q=0, br, gzip;q=0.5"), Some(Encoding::Gzip));
        assert_eq!(neg("x-gzip;q=0.3, *;q=0.2"), Some(Encoding::Gzip));
    }

    #[test]
    fn one_shot_gzip_is_standard_gzip() {
        use std::io::Read;
        let page =
            "<html><body>".to_string() + &"<p>Odoo login page</p>\n".repeat(500) + "</body></html>";
        for _ in 0..3 {
            // The same thread's encoder, its table as the call before left it.
            let gz = crate::deflate_fixed::gzip(page.as_bytes());
            assert!(gz.len() < page.len() / 4);
            let mut back = String::new();
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_string(&mut back)
                .unwrap();
            assert_eq!(back, page);
        }
        let mut empty = Vec::new();
        flate2::read::GzDecoder::new(&crate::deflate_fixed::gzip(b"")[..])
            .read_to_end(&mut empty)
            .unwrap();
        assert!(empty.is_empty());
    }

    #[tokio::test]
    async fn a_one_shot_answer_says_it_ended_with_its_one_frame() {
        use http_body::Body as _;
        let page = "<p>Odoo login page</p>\n".repeat(200);
        let mut res = Response::new(crate::body::full(page.clone()));
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
        res.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(page.len()));
        let mut body = apply(res, Some(Encoding::Gzip), false).into_body();
        assert!(!body.is_end_stream(), "nothing sent yet");
        let gz = body.frame().await.unwrap().unwrap().into_data().unwrap();
        // HTTP/2 puts END_STREAM on this DATA frame; no empty frame follows.
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
        let mut back = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut back)
            .unwrap();
        assert_eq!(back, page);
        assert!(body.frame().await.is_none());
    }

    /// The body `apply` makes for a gzip client of an HTML answer that
    /// arrives in `pieces` under a Content-Length of `announced`.
    fn gzipped(pieces: Vec<Bytes>, announced: usize) -> Body {
        use http_body_util::{BodyExt as _, StreamBody};
        let stream = futures_util::stream::iter(
            pieces
                .into_iter()
                .map(|b| Ok::<_, BoxError>(http_body::Frame::data(b))),
        );
        let mut res = Response::new(StreamBody::new(stream).boxed_unsync());
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
        res.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(announced));
        apply(res, Some(Encoding::Gzip), false).into_body()
    }

    /// A page that comes in pieces (as Odoo's does, read by read), with an
    /// empty piece among them, or a Content-Length below or above the
    /// truth: the client gets the page, or an error when it outgrew the
    /// one-shot limit; never a page cut short or padded.
    #[tokio::test]
    async fn a_one_shot_answer_in_pieces_is_the_whole_page() {
        use http_body_util::BodyExt as _;
        let page = "<p>Odoo login page</p>\n".repeat(600);
        let bytes = page.as_bytes();
        let cases: [(&[usize], usize); 5] = [
            (&[bytes.len()], bytes.len()),
            (&[7_800, 0, 3_000], bytes.len()),
            (&[1, 1, 5_000], bytes.len()),
            (&[4_000], 2_000),
            (&[4_000], ONE_SHOT_MAX as usize),
        ];
        for (cuts, announced) in cases {
            let mut pieces = Vec::new();
            let mut at = 0;
            for &n in cuts {
                pieces.push(Bytes::copy_from_slice(&bytes[at..at + n]));
                at += n;
            }
            pieces.push(Bytes::copy_from_slice(&bytes[at..]));
            let gz = gzipped(pieces, announced)
                .collect()
                .await
                .unwrap()
                .to_bytes();
            let mut back = String::new();
            std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut back)
                .unwrap();
            assert_eq!(back, page, "pieces {cuts:?}, Content-Length {announced}");
        }
        // More than the one-shot limit under a small Content-Length: cut.
        let big = Bytes::from(vec![b'a'; ONE_SHOT_MAX as usize + 1]);
        let body = gzipped(vec![big.slice(..10), big.slice(10..)], 2000);
        assert!(body.collect().await.is_err());
    }

    #[test]
    fn eligibility() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            "text/html; charset=utf-8".parse().unwrap(),
        );
        assert!(eligible(StatusCode::OK, &h));
        h.insert(header::CONTENT_LENGTH, "100".parse().unwrap());
        assert!(!eligible(StatusCode::OK, &h), "tiny");
        h.remove(header::CONTENT_LENGTH);
        assert!(!eligible(StatusCode::PARTIAL_CONTENT, &h));
        assert!(!eligible(StatusCode::SWITCHING_PROTOCOLS, &h));
        h.insert(header::CONTENT_ENCODING, "gzip".parse().unwrap());
        assert!(!eligible(StatusCode::OK, &h), "already encoded");
        let mut img = HeaderMap::new();
        img.insert(header::CONTENT_TYPE, "image/png".parse().unwrap());
        assert!(!eligible(StatusCode::OK, &img));
    }
}
