//! Stage 7c: compression by Accept-Encoding, for answers made per request
//! (Odoo's, Rampart's own pages; the cache and static files keep variants
//! made once).
//!
//! Levels are chosen for a proxy's CPU budget, not for the last percent:
//! gzip 1 (nginx's default), brotli 4, zstd 3 — each within a few percent
//! of its best ratio on Odoo's HTML/JS, at a fraction of the CPU. This is
//! why the encoders are used directly rather than through a layer with
//! one level for all encodings.
//!
//! What each answer costs decides the encoding, not only the client's
//! preference:
//! - An answer of known length up to `ONE_SHOT_MAX` is gzipped in one go
//!   whenever the client takes gzip (every browser does), though it may
//!   prefer br or zstd: a streaming encoder's setup is most of the cost
//!   of a page. Measured on the 12.5 KB login page (one core, this
//!   crate's encoders): brotli 4 about 330 µs, zstd 3 and zlib-rs about
//!   45-50 µs, the one-pass gzip about 12 µs; under HTTP/2 load a
//!   Firefox-like `gzip, deflate, br` got 334 requests per CPU-second
//!   where `gzip` got 6,625.
//! - A longer or unsized answer is streamed through an encoder whose state
//!   is held until the client has taken the answer (`state`, measured;
//!   brotli's and zstd's windows capped). That state is charged to the
//!   client address's memory share (`buffer_memory_per_client`, with
//!   buffered bodies): an address opening HTTP/2 streams it never reads
//!   held about 200 KB of zlib state per stream, counted nowhere (6,400
//!   streams from one address: 1.35 GB).
//!   Past the share, the next acceptable encoding that fits is used, and
//!   past that the answer goes uncompressed.

use std::net::IpAddr;
use std::sync::Arc;

use async_compression::Level;
use async_compression::tokio::bufread::{BrotliEncoder, GzipEncoder, ZstdEncoder};
use bytes::Bytes;
use futures_util::TryStreamExt;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body::Body as _;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio_util::io::{ReaderStream, StreamReader};

use crate::body::{Body, BoxError};
use crate::body_memory::{BodyMemory, Charge};
pub use crate::encoding::{Accepted, Encoding, negotiate};
use crate::encoding::{MIN_SIZE, compressible};
use crate::response_buffer::PIECE_MAX;

/// What a streaming encoder holds until its answer is sent, rounded up.
/// Measured (RSS of 10 encoders alive, each having made 1 MiB of output
/// from 8 MiB of Odoo-like text, so every window is full): zlib 1 300 KB;
/// brotli 4 2.4 MB with `BROTLI_WINDOW_LOG` (41 MB with its default
/// window); zstd 3 1.7 MB with `ZSTD_WINDOW_LOG` (3.2 MB by default).
fn state(enc: Encoding) -> usize {
    match enc {
        Encoding::Gzip => 320 * 1024,
        Encoding::Brotli => 2560 * 1024,
        Encoding::Zstd => 1792 * 1024,
    }
}

/// Whether this response should be compressed at all.
fn eligible(status: StatusCode, headers: &HeaderMap, len: Option<u64>) -> bool {
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
    if let Some(len) = len
        && len < MIN_SIZE
    {
        return false;
    }
    compressible(headers.get(header::CONTENT_TYPE))
}

/// How an answer is compressed, with what it holds charged.
enum Plan {
    /// Gzipped in one pass: `len` is the page's length.
    OneShot { len: usize, charge: Charge },
    /// Streamed through an encoder.
    Streamed(Encoding, Charge),
}

/// Whose memory share a streaming encoder's state is charged to.
pub struct Owner<'a> {
    /// The shares (the spool's, with buffered bodies).
    pub memory: &'a Arc<BodyMemory>,
    /// The client address.
    pub client: IpAddr,
}

/// Compresses `res` for what the client accepts when it is eligible and
/// affordable (see the module doc); adds `Vary`.
pub fn apply(
    res: Response<Body>,
    accepted: &Accepted,
    head_request: bool,
    owner: Owner<'_>,
) -> Response<Body> {
    let (mut parts, body) = res.into_parts();
    // Odoo's Content-Length, else what the body itself knows (Rampart's
    // own pages carry no header until hyper writes one).
    let len = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .or_else(|| body.size_hint().exact());
    if !eligible(parts.status, &parts.headers, len) {
        return Response::from_parts(parts, body);
    }
    // The representation depends on Accept-Encoding even when this client
    // gets it uncompressed: caches must know.
    parts
        .headers
        .append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    // A HEAD answer holds nothing: it says what a GET would get with room
    // in its share.
    let afford = |n: usize| {
        let mut charge = Charge::new(owner.memory.clone(), owner.client);
        (head_request || charge.try_add(n)).then_some(charge)
    };
    // The one-pass gzip holds the page, then its gzip, until sent.
    let one_shot = len
        .filter(|len| *len <= ONE_SHOT_MAX && accepted.allows(Encoding::Gzip))
        .and_then(|len| Some((len as usize, afford(len as usize)?)));
    let plan = match one_shot {
        Some((len, charge)) => Plan::OneShot { len, charge },
        None => {
            let streamed = |enc: Encoding| Some(Plan::Streamed(enc, afford(state(enc))?));
            match accepted.ranked().find_map(streamed) {
                Some(plan) => plan,
                None => return Response::from_parts(parts, body),
            }
        }
    };
    let enc = match &plan {
        Plan::OneShot { .. } => Encoding::Gzip,
        Plan::Streamed(enc, _) => *enc,
    };
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
    let charge = match plan {
        Plan::Streamed(_, charge) => charge,
        Plan::OneShot { len, charge } => {
            let one_shot = OneShotGzip {
                inner: body,
                body: Collected::None,
                len,
                out: None,
                charge,
            };
            return Response::from_parts(parts, one_shot.boxed_unsync());
        }
    };
    let reader = StreamReader::new(
        body.into_data_stream()
            .map_err(|e: BoxError| std::io::Error::other(e)),
    );
    let out: Body = match enc {
        Encoding::Gzip => encoded(GzipEncoder::with_quality(reader, Level::Precise(1)), charge),
        Encoding::Brotli => encoded(brotli(reader), charge),
        Encoding::Zstd => encoded(zstd(reader), charge),
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
        // The gzip, once made: what is left of it to hand to hyper.
        out: Option<Bytes>,
        // What it holds, charged to the client: the page's length until
        // the gzip is made, then what is left of the gzip.
        charge: Charge,
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
        loop {
            if let Some(out) = this.out.as_mut() {
                if out.is_empty() {
                    return std::task::Poll::Ready(None);
                }
                // At most a piece to hyper, which counts nothing it holds
                // (`response_buffer::PIECE_MAX`); the rest stays charged.
                let piece = out.split_to(out.len().min(PIECE_MAX));
                this.charge.release(piece.len());
                return std::task::Poll::Ready(Some(Ok(Frame::data(piece))));
            }
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
                    let gz = crate::deflate_fixed::gzip(this.body.bytes());
                    // The page is let go; the gzip is what stays.
                    *this.body = Collected::None;
                    match gz.len().checked_sub(*this.len) {
                        Some(more) => this.charge.force_add(more),
                        None => this.charge.release(*this.len - gz.len()),
                    }
                    *this.out = Some(gz);
                }
            }
        }
    }

    /// With its last piece: so HTTP/2 ends the stream on that DATA frame
    /// and HTTP/1.1 writes the last chunk with the chunk before it, rather
    /// than asking again for an empty end.
    fn is_end_stream(&self) -> bool {
        self.out.as_ref().is_some_and(Bytes::is_empty)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match &self.out {
            Some(out) => http_body::SizeHint::with_exact(out.len() as u64),
            None => http_body::SizeHint::default(),
        }
    }
}

/// log2 of the streaming encoders' windows: brotli 128 KiB, zstd 512 KiB.
/// Their defaults (4 and 2 MiB) made each encoder hold 41 and 3.2 MB once
/// an answer was longer (`state`); the ratio lost on Odoo's JSON and HTML
/// is a few percent (its repeats are near each other).
const BROTLI_WINDOW_LOG: i32 = 17;
const ZSTD_WINDOW_LOG: u32 = 19;

fn brotli<R: tokio::io::AsyncBufRead>(r: R) -> BrotliEncoder<R> {
    let params = async_compression::brotli::EncoderParams::default()
        .quality(Level::Precise(4))
        .window_size(BROTLI_WINDOW_LOG);
    BrotliEncoder::with_params(r, params)
}

fn zstd<R: tokio::io::AsyncBufRead>(r: R) -> ZstdEncoder<R> {
    let window = async_compression::zstd::CParameter::window_log(ZSTD_WINDOW_LOG);
    ZstdEncoder::with_quality_and_params(r, Level::Precise(3), &[window])
}

/// The stream of `r`'s bytes; `charge` is given back when it is dropped,
/// with the encoder.
fn encoded<R: tokio::io::AsyncRead + Send + 'static>(r: R, charge: Charge) -> Body {
    let stream = ReaderStream::with_capacity(r, 16 * 1024)
        .map_ok(move |b: Bytes| {
            let _held_until_dropped = &charge;
            Frame::data(b)
        })
        .map_err(|e| Box::new(e) as BoxError);
    StreamBody::new(stream).boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));

    /// `apply` for client A with Accept-Encoding `accept`, charged to `memory`.
    fn apply_for(
        res: Response<Body>,
        accept: &str,
        memory: &Arc<BodyMemory>,
        client: IpAddr,
    ) -> Response<Body> {
        let accepted = Accepted::parse(Some(&HeaderValue::from_str(accept).unwrap()));
        apply(res, &accepted, false, Owner { memory, client })
    }

    /// A gzip-only client with a share that has room.
    fn apply_gzip(res: Response<Body>) -> Response<Body> {
        apply_for(res, "gzip", &Arc::new(BodyMemory::new(1 << 30, 1 << 30)), A)
    }

    /// An HTML answer of unknown length (Odoo's streamed answers).
    fn unsized_html(text: &str) -> Response<Body> {
        let stream = futures_util::stream::iter([Ok::<_, BoxError>(Frame::data(Bytes::from(
            text.to_string(),
        )))]);
        let mut res = Response::new(StreamBody::new(stream).boxed_unsync());
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
        res
    }

    fn encoding_of(res: &Response<Body>) -> Option<&str> {
        res.headers()
            .get(header::CONTENT_ENCODING)
            .map(|v| v.to_str().unwrap())
    }

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
        let mut body = apply_gzip(res).into_body();
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
        apply_gzip(res).into_body()
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
        assert!(eligible(StatusCode::OK, &h, None));
        assert!(eligible(StatusCode::OK, &h, Some(MIN_SIZE)));
        assert!(!eligible(StatusCode::OK, &h, Some(MIN_SIZE - 1)), "tiny");
        assert!(!eligible(StatusCode::PARTIAL_CONTENT, &h, None));
        assert!(!eligible(StatusCode::SWITCHING_PROTOCOLS, &h, None));
        h.insert(header::CONTENT_ENCODING, "gzip".parse().unwrap());
        assert!(!eligible(StatusCode::OK, &h, None), "already encoded");
        let mut img = HeaderMap::new();
        img.insert(header::CONTENT_TYPE, "image/png".parse().unwrap());
        assert!(!eligible(StatusCode::OK, &img, None));
    }

    /// Every browser takes gzip; Chrome prefers zstd, Firefox and Safari
    /// br. A page of known length is gzipped in one go for all of them: a
    /// streaming encoder's setup costs more than the page (module doc).
    #[tokio::test]
    async fn a_page_of_known_length_is_gzipped_in_one_go_whatever_the_browser_prefers() {
        let page = "<p>Odoo login page</p>\n".repeat(600);
        let memory = Arc::new(BodyMemory::new(1 << 30, 1 << 30));
        for accept in [
            "gzip, deflate, br, zstd",
            "gzip, deflate, br",
            "zstd, gzip;q=0.1",
        ] {
            let mut res = Response::new(crate::body::full(page.clone()));
            res.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
            let res = apply_for(res, accept, &memory, A);
            assert_eq!(encoding_of(&res), Some("gzip"), "{accept}");
            assert_eq!(memory.used(), page.len(), "{accept}: the page is charged");
            let gz = res.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(memory.used(), 0, "{accept}: given back once sent");
            let mut back = String::new();
            std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut back)
                .unwrap();
            assert_eq!(back, page, "{accept}");
        }
        // A client that does not take gzip gets what it takes, streamed.
        let mut res = Response::new(crate::body::full(page.clone()));
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
        let res = apply_for(res, "br", &memory, A);
        assert_eq!(encoding_of(&res), Some("br"));
        assert_eq!(memory.used(), state(Encoding::Brotli));
        drop(res);
        assert_eq!(memory.used(), 0);
    }

    /// The one-pass gzip hands hyper at most `PIECE_MAX` at a time (HTTP/2
    /// keeps a piece whole until the client's window lets it go, counted
    /// nowhere); what it still holds stays charged, and the last piece says
    /// the stream ends. With no room for the page in the client's share it
    /// is not compressed.
    #[tokio::test]
    async fn a_one_shot_gzip_is_handed_over_in_pieces_and_charged_until_sent() {
        // Text that does not compress well: its gzip is several pieces.
        let mut rng = rampart_testkit::oracle::Rng::new(7);
        let page: String = (0..200_000)
            .map(|_| char::from(b'a' + (rng.next_u64() % 26) as u8))
            .collect();
        let html = |page: &str| {
            let mut res = Response::new(crate::body::full(page.to_string()));
            res.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
            res
        };
        let memory = Arc::new(BodyMemory::new(page.len(), 1 << 30));
        let mut body = apply_for(html(&page), "gzip", &memory, A).into_body();
        assert_eq!(memory.used(), page.len());
        let mut gz = Vec::new();
        let mut pieces = 0;
        while let Some(frame) = body.frame().await {
            let piece = frame.unwrap().into_data().unwrap();
            assert!(piece.len() <= PIECE_MAX, "a piece of {}", piece.len());
            gz.extend_from_slice(&piece);
            pieces += 1;
            let left = body.size_hint().exact().expect("the rest is known") as usize;
            assert_eq!(memory.used(), left, "what is left of the gzip is charged");
            assert_eq!(body.is_end_stream(), left == 0);
            if left == 0 {
                break;
            }
        }
        assert!(pieces > 3, "{pieces} pieces");
        assert_eq!(memory.used(), 0);
        let mut back = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut back)
            .unwrap();
        assert_eq!(back, page);
        // A page's worth is held by the client already: uncompressed.
        let _held = apply_for(html(&page), "gzip", &memory, A);
        let second = apply_for(html(&page), "gzip", &memory, A);
        assert_eq!(encoding_of(&second), None);
        assert_eq!(memory.used(), page.len());
    }

    /// Rampart's own pages (refusals, errors) carry no Content-Length until
    /// hyper writes one: their body's size decides. Each used to get a
    /// streaming gzip encoder (~200 KB held until the client read it).
    #[test]
    fn rampart_s_own_short_pages_are_not_compressed() {
        let page = crate::pages::error(StatusCode::SERVICE_UNAVAILABLE, "Odoo is busy.");
        assert!(page.headers().get(header::CONTENT_LENGTH).is_none());
        let memory = Arc::new(BodyMemory::new(1 << 30, 1 << 30));
        let res = apply_for(page, "gzip, deflate, br, zstd", &memory, A);
        assert_eq!(encoding_of(&res), None);
        assert_eq!(memory.used(), 0);
    }

    /// A streamed answer's encoder is charged to its client while it lives:
    /// past the share the next acceptable encoding that fits is used, then
    /// none; another client keeps its own share; all is given back.
    #[tokio::test]
    async fn a_streaming_encoder_is_charged_to_its_client_and_falls_back_past_the_share() {
        let (zstd, gzip) = (state(Encoding::Zstd), state(Encoding::Gzip));
        // Room for one zstd and two gzip encoders.
        let memory = Arc::new(BodyMemory::new(zstd + 2 * gzip, 1 << 30));
        let accept = "zstd, br, gzip";
        let text = "<p>an answer Odoo streams</p>\n".repeat(100);
        let first = apply_for(unsized_html(&text), accept, &memory, A);
        assert_eq!(encoding_of(&first), Some("zstd"));
        let second = apply_for(unsized_html(&text), accept, &memory, A);
        assert_eq!(
            encoding_of(&second),
            Some("gzip"),
            "zstd and br no longer fit"
        );
        let third = apply_for(unsized_html(&text), accept, &memory, A);
        assert_eq!(encoding_of(&third), Some("gzip"));
        assert_eq!(memory.used(), zstd + 2 * gzip);
        let fourth = apply_for(unsized_html(&text), accept, &memory, A);
        assert_eq!(
            encoding_of(&fourth),
            None,
            "the share is spent: uncompressed"
        );
        assert!(
            fourth.headers()[header::VARY]
                .to_str()
                .unwrap()
                .contains("Accept-Encoding")
        );
        let plain = fourth.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(plain, text.as_bytes());
        let other = apply_for(unsized_html(&text), accept, &memory, B);
        assert_eq!(encoding_of(&other), Some("zstd"), "B has its own share");
        // Sent to the end, an encoder is given back with its body.
        let gz = second.into_body().collect().await.unwrap().to_bytes();
        let mut back = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut back)
            .unwrap();
        assert_eq!(back, text);
        assert_eq!(memory.used(), 2 * zstd + gzip);
        drop((first, third, other));
        assert_eq!(memory.used(), 0);
    }

    #[test]
    fn ranked_by_q_then_zstd_br_gzip() {
        let ranked = |s: &str| {
            Accepted::parse(Some(&HeaderValue::from_str(s).unwrap()))
                .ranked()
                .collect::<Vec<_>>()
        };
        use Encoding::*;
        assert_eq!(ranked("gzip, deflate, br, zstd"), [Zstd, Brotli, Gzip]);
        assert_eq!(ranked("gzip, br;q=0.5"), [Gzip, Brotli]);
        assert_eq!(ranked("br;q=0.2, *;q=0.5"), [Zstd, Gzip, Brotli]);
        assert_eq!(ranked("identity"), []);
        assert!(Accepted::parse(None).ranked().next().is_none());
        let a = Accepted::parse(Some(&HeaderValue::from_static("br, gzip;q=0")));
        assert!(a.allows(Brotli) && !a.allows(Gzip) && !a.allows(Zstd));
    }
}
