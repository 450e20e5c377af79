//! Stage 1, below hyper: request framing that hyper resolves silently.
//!
//! A request with both Content-Length and Transfer-Encoding is the classic
//! smuggling shape. hyper follows RFC 9112 §6.1 — Transfer-Encoding wins,
//! Content-Length is dropped from the headers, the connection closes after
//! — so nothing can be smuggled, but the pipeline can no longer see that the
//! request was ambiguous and would pass it on. This reader watches the
//! decrypted HTTP/1 byte stream, follows each request's framing exactly as
//! hyper 1.x does (httparse for heads with hyper's header limit, hyper's
//! Content-Length and Transfer-Encoding rules in header order, hyper's
//! chunked grammar byte for byte) and records the number of the first
//! request whose head carries both; the pipeline answers it 400 before Odoo
//! sees it.
//!
//! No library exposes hyper's framing decisions for a request, and a
//! follower that is more lenient or stricter than hyper desynchronises:
//! it would count a body as a head, or miss one. So every step that hyper
//! would accept but this follower cannot follow marks the connection
//! *lost*: every later request on it is refused (fail closed). Where hyper
//! itself refuses, it closes the connection, so being lost costs nothing.
//! A request with `Upgrade` is followed like any other: hyper goes on
//! reading requests after it unless the answer is 101, and after a 101
//! nothing is parsed as HTTP any more.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Longer heads are refused by hyper (431: `max_header_size` is 64 KiB).
const MAX_HEAD: usize = 128 * 1024;
/// hyper's default header count limit; more is its 431.
const MAX_HEADERS: usize = 100;

/// What the follower found, for the pipeline: request numbers are
/// 1-based, 0 means none.
#[derive(Debug, Default)]
pub struct Marks {
    /// The first request whose head had Content-Length and
    /// Transfer-Encoding (hyper closes the connection after it).
    conflict: AtomicU64,
    /// From this request on the stream could not be followed.
    lost_from: AtomicU64,
}

impl Marks {
    /// Whether request number `n` on this connection must be refused.
    pub fn refuses(&self, n: u64) -> bool {
        let conflict = self.conflict.load(Ordering::Relaxed);
        let lost = self.lost_from.load(Ordering::Relaxed);
        (conflict != 0 && n == conflict) || (lost != 0 && n >= lost)
    }
}

/// hyper's chunked decoder states (proto/h1/decode.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Start,
    Size,
    SizeLws,
    Extension,
    SizeLf,
    Body(u64),
    BodyCr,
    BodyLf,
    Trailer,
    TrailerLf,
    EndCr,
    EndLf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Fixed(u64),
    Chunked(Chunk),
    Lost,
}

/// Follows request framing and records into [`Marks`].
#[derive(Debug)]
pub struct FramingWatch {
    state: State,
    head: Vec<u8>,
    size: u64,
    heads: u64,
    marks: Arc<Marks>,
}

impl FramingWatch {
    /// A watch recording into `marks`.
    pub fn new(marks: Arc<Marks>) -> Self {
        FramingWatch {
            state: State::Head,
            head: Vec::new(),
            size: 0,
            heads: 0,
            marks,
        }
    }

    /// The number of request heads seen so far.
    pub fn heads(&self) -> u64 {
        self.heads
    }

    /// Whether the stream could not be followed.
    pub fn is_lost(&self) -> bool {
        self.state == State::Lost
    }

    fn lose(&mut self) {
        self.state = State::Lost;
        self.head = Vec::new();
        let _ = self.marks.lost_from.compare_exchange(
            0,
            self.heads + 1,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// Follows the next bytes the client sent.
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match self.state {
                State::Lost => return,
                State::Head => {
                    let (used, eol) = take_until(&mut self.head, data, b'\n');
                    data = &data[used..];
                    if self.head.len() > MAX_HEAD {
                        self.lose();
                    } else if !eol {
                    } else if self.head == b"\r\n" || self.head == b"\n" {
                        // Empty lines before a request line are skipped.
                        self.head.clear();
                    } else {
                        self.parse_head();
                    }
                }
                State::Fixed(n) => {
                    let k = (data.len() as u64).min(n);
                    data = &data[k as usize..];
                    self.state = if n == k {
                        State::Head
                    } else {
                        State::Fixed(n - k)
                    };
                }
                State::Chunked(Chunk::Body(n)) => {
                    let k = (data.len() as u64).min(n);
                    data = &data[k as usize..];
                    self.state = State::Chunked(if n == k {
                        Chunk::BodyCr
                    } else {
                        Chunk::Body(n - k)
                    });
                }
                State::Chunked(c) => {
                    let b = data[0];
                    data = &data[1..];
                    match self.chunk_step(c, b) {
                        Some(next) => self.state = next,
                        None => self.lose(),
                    }
                }
            }
        }
    }

    /// One byte of hyper's chunked grammar; `None` where hyper errors.
    fn chunk_step(&mut self, c: Chunk, b: u8) -> Option<State> {
        let hex = |b: u8| (b as char).to_digit(16).map(u64::from);
        let next = match (c, b) {
            (Chunk::Start, b) => {
                self.size = hex(b)?;
                Chunk::Size
            }
            (Chunk::Size, b) if hex(b).is_some() => {
                self.size = self.size.checked_mul(16)?.checked_add(hex(b)?)?;
                Chunk::Size
            }
            (Chunk::Size | Chunk::SizeLws, b'\t' | b' ') => Chunk::SizeLws,
            (Chunk::Size | Chunk::SizeLws, b';') => Chunk::Extension,
            (Chunk::Size | Chunk::SizeLws | Chunk::Extension, b'\r') => Chunk::SizeLf,
            (Chunk::Extension, b'\n') => return None,
            (Chunk::Extension, _) => Chunk::Extension,
            (Chunk::SizeLf, b'\n') if self.size == 0 => Chunk::EndCr,
            (Chunk::SizeLf, b'\n') => Chunk::Body(self.size),
            (Chunk::BodyCr, b'\r') => Chunk::BodyLf,
            (Chunk::BodyLf, b'\n') => Chunk::Start,
            (Chunk::Trailer, b'\r') => Chunk::TrailerLf,
            (Chunk::Trailer, _) => Chunk::Trailer,
            (Chunk::TrailerLf, b'\n') => Chunk::EndCr,
            (Chunk::EndCr, b'\r') => Chunk::EndLf,
            (Chunk::EndCr, _) => Chunk::Trailer,
            (Chunk::EndLf, b'\n') => {
                self.size = 0;
                return Some(State::Head);
            }
            _ => return None,
        };
        Some(State::Chunked(next))
    }

    /// Parses the head in `self.head` (which ends a line) as hyper does:
    /// when complete, sets the body state and starts a new head.
    fn parse_head(&mut self) {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&self.head) {
            // A head ends at a line end, and the buffer ends at the first one.
            Ok(httparse::Status::Complete(n)) if n == self.head.len() => {}
            Ok(httparse::Status::Partial) => return,
            _ => return self.lose(),
        }
        self.heads += 1;
        let http11 = req.version == Some(1);
        let (mut is_te, mut chunked, mut is_cl, mut length) = (false, false, false, None);
        let mut malformed = false;
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("transfer-encoding") {
                if !http11 {
                    malformed = true;
                    break;
                }
                is_te = true;
                if is_cl {
                    length = None;
                }
                chunked = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.rsplit(',').next())
                    .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
            } else if h.name.eq_ignore_ascii_case("content-length") {
                is_cl = true;
                if is_te {
                    continue;
                }
                match (digits(h.value), length) {
                    (None, _) => {
                        malformed = true;
                        break;
                    }
                    (Some(n), Some(prev)) if n != prev => {
                        malformed = true;
                        break;
                    }
                    (Some(n), _) => length = Some(n),
                }
            }
        }
        if malformed || (is_te && !chunked) {
            return self.lose();
        }
        if is_te && is_cl {
            let _ = self.marks.conflict.compare_exchange(
                0,
                self.heads,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
        self.state = match (is_te, length) {
            (true, _) => State::Chunked(Chunk::Start),
            (false, Some(n)) if n > 0 => State::Fixed(n),
            _ => State::Head,
        };
        self.head.clear();
    }
}

/// Appends `data` to `buf` up to and including the first `end`; returns
/// how many bytes were used and whether `end` was reached.
fn take_until(buf: &mut Vec<u8>, data: &[u8], end: u8) -> (usize, bool) {
    match data.iter().position(|&b| b == end) {
        Some(i) => {
            buf.extend_from_slice(&data[..=i]);
            (i + 1, true)
        }
        None => {
            buf.extend_from_slice(data);
            (data.len(), false)
        }
    }
}

/// hyper's Content-Length value: ASCII digits only, no sign, no overflow.
fn digits(v: &[u8]) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    v.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

pin_project! {
    /// An HTTP/1 connection's reader with a `FramingWatch` on it.
    pub struct Watched<T> {
        #[pin]
        inner: T,
        watch: FramingWatch,
    }
}

impl<T> Watched<T> {
    /// Wraps `inner`, watching into `marks`.
    pub fn new(inner: T, marks: Arc<Marks>) -> Self {
        Watched {
            inner,
            watch: FramingWatch::new(marks),
        }
    }
}

impl<T: AsyncRead> AsyncRead for Watched<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let r = this.inner.poll_read(cx, buf);
        if buf.filled().len() > before {
            this.watch.feed(&buf.filled()[before..]);
        }
        r
    }
}

impl<T: AsyncWrite> AsyncWrite for Watched<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, data)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (heads seen, first conflict, lost from)
    fn run(chunks: &[&[u8]]) -> (u64, u64, u64) {
        let m = Arc::new(Marks::default());
        let mut w = FramingWatch::new(m.clone());
        for ch in chunks {
            w.feed(ch);
        }
        let lost = m.lost_from.load(Ordering::Relaxed);
        assert_eq!(w.is_lost(), lost != 0, "is_lost agrees with the marks");
        (w.heads(), m.conflict.load(Ordering::Relaxed), lost)
    }

    fn bytewise(all: &[u8]) -> (u64, u64, u64) {
        let bytes: Vec<&[u8]> = all.chunks(1).collect();
        run(&bytes)
    }

    const A: &[u8] = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
    const B: &[u8] =
        b"POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    const C: &[u8] = b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n";
    const D: &[u8] = b"POST /d HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";

    #[test]
    fn follows_keep_alive_requests_and_flags_the_ambiguous_one() {
        let all = [A, B, C, D].concat();
        assert_eq!(run(&[&all]), (4, 4, 0));
        assert_eq!(bytewise(&all), (4, 4, 0));
        assert_eq!(run(&[A, B, C]), (3, 0, 0));
        // Chunk extensions, whitespace after the size and trailers.
        let e = b"POST /e HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3 ;a=b\r\nabc\r\n0\r\nX-T: 1\r\n\r\n";
        let all = [&e[..], D].concat();
        assert_eq!(run(&[&all]), (2, 2, 0));
        assert_eq!(bytewise(&all), (2, 2, 0));
    }

    #[test]
    fn body_text_that_looks_like_headers_is_not_a_head() {
        let body = b"Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let head = format!(
            "POST /u HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        assert_eq!(run(&[head.as_bytes(), body]), (1, 0, 0));
    }

    #[test]
    fn upgrade_does_not_stop_the_watching() {
        // hyper serves the next request when the upgrade is not accepted.
        let up = b"GET /websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n";
        let all = [&up[..], C, D].concat();
        assert_eq!(run(&[&all]), (3, 3, 0));
        assert_eq!(bytewise(&all), (3, 3, 0));
    }

    #[test]
    fn bare_lf_heads_are_heads() {
        // httparse (so hyper) ends a head at "\n\n" too.
        let lf = b"POST /lf HTTP/1.1\nHost: x\nContent-Length: 2\n\nok";
        let all = [&lf[..], D].concat();
        assert_eq!(run(&[&all]), (2, 2, 0));
        assert_eq!(bytewise(&all), (2, 2, 0));
    }

    #[test]
    fn content_length_as_hyper_reads_it() {
        // TE before CL: CL is not even parsed.
        let te_first =
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: x\r\n\r\n0\r\n\r\n";
        assert_eq!(run(&[te_first]), (1, 1, 0));
        // hyper refuses these (and closes): every later request is refused.
        for bad in [
            &b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\nhello"[..],
            b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello",
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
        ] {
            let (_, _, lost) = run(&[bad, C]);
            assert_eq!(lost, 2, "{}", String::from_utf8_lossy(bad));
        }
        // A head httparse refuses is not counted: lost from that request.
        assert_eq!(run(&[b"GET / HTTP/1.1\r\nHost x\r\n\r\n", C]), (0, 0, 1));
        let same = b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(run(&[same, C, D]), (3, 3, 0));
    }

    #[test]
    fn multi_digit_chunk_sizes_are_followed() {
        // 0x1a = 26 bytes, then 0x10 = 16: a follower that read one hex
        // digit would take body bytes for the next head.
        let body26 = "x".repeat(26);
        let body16 = "y".repeat(16);
        let big = format!(
            "POST /big HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1a\r\n{body26}\r\n10\r\n{body16}\r\n0\r\n\r\n"
        );
        let all = [big.as_bytes(), D].concat();
        assert_eq!(run(&[&all]), (2, 2, 0));
        assert_eq!(bytewise(&all), (2, 2, 0));
    }

    #[test]
    fn chunk_data_that_looks_like_a_request_is_not_a_head() {
        // Only the 0-size chunk ends the body: a blank line and a request
        // inside chunk data are data (the smuggling shape a follower that
        // ended the body early would count as a second request).
        let inner =
            "\r\n\r\nPOST /s HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let req = format!(
            "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{inner}\r\n0\r\n\r\n",
            inner.len()
        );
        let all = [req.as_bytes(), C].concat();
        assert_eq!(run(&[&all]), (2, 0, 0));
        assert_eq!(bytewise(&all), (2, 0, 0));
    }

    #[test]
    fn a_bare_lf_in_a_chunk_extension_is_lost_as_hyper_errors() {
        // Read past the LF, "a\nxyz" would be one extension and the body
        // would end cleanly: hyper refuses, so the stream is lost.
        let bad =
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;a\nxyz\r\nabc\r\n0\r\n\r\n";
        assert_eq!(run(&[bad, C]), (1, 0, 2));
    }

    #[test]
    fn browser_sized_heads_are_followed() {
        // A long Cookie header (16 KiB) is well under hyper's limit: the
        // request and the next one are followed, not refused.
        let head = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nCookie: a={}\r\n\r\n",
            "c".repeat(16 * 1024)
        );
        let all = [head.as_bytes(), D].concat();
        assert_eq!(run(&[&all]), (2, 2, 0));
    }

    #[test]
    fn leading_empty_lines_and_huge_heads() {
        let all = [&b"\r\n\r\n\n"[..], C, D].concat();
        assert_eq!(run(&[&all]), (2, 2, 0));
        let huge = vec![b'a'; MAX_HEAD + 10];
        assert_eq!(run(&[C, &huge]), (1, 0, 2));
    }

    /// hyper talks to the connection only through `Watched`: every byte,
    /// flush and shutdown must pass as if it were not there, and what is
    /// read must reach the follower. A buffered inner stream (as TLS is)
    /// shows a flush or shutdown that is dropped.
    #[tokio::test]
    async fn watched_is_transparent_and_follows_what_it_reads() {
        use std::time::Duration;
        use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter, duplex};
        let within = Duration::from_secs(5);
        let (ours, mut peer) = duplex(1 << 16);
        let m = Arc::new(Marks::default());
        let mut w = Watched::new(BufWriter::new(ours), m.clone());
        assert!(w.is_write_vectored(), "BufWriter's own answer");

        peer.write_all(&[A, D].concat()).await.unwrap();
        let mut got = vec![0; A.len() + D.len()];
        w.read_exact(&mut got).await.unwrap();
        assert_eq!(got, [A, D].concat());
        assert_eq!(w.watch.heads(), 2);
        assert!(!m.refuses(1) && m.refuses(2), "the follower saw D");

        w.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
        let n = w
            .write_vectored(&[io::IoSlice::new(b"ab"), io::IoSlice::new(b"cd")])
            .await
            .unwrap();
        assert!(n > 0, "a vectored write takes bytes");
        w.flush().await.unwrap();
        let want = [&b"HTTP/1.1 200 OK\r\n"[..], &b"abcd"[..n]].concat();
        let mut got = vec![0; want.len()];
        tokio::time::timeout(within, peer.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, want);
        w.write_all(b"bye").await.unwrap();
        w.shutdown().await.unwrap();
        let mut rest = Vec::new();
        tokio::time::timeout(within, peer.read_to_end(&mut rest))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rest, b"bye", "shutdown flushes, then the peer sees the end");
    }

    #[test]
    fn marks_refuse_the_conflict_and_everything_after_a_loss() {
        let m = Marks::default();
        assert!(!m.refuses(1));
        m.conflict.store(2, Ordering::Relaxed);
        m.lost_from.store(4, Ordering::Relaxed);
        assert_eq!(
            (1..=5).map(|n| m.refuses(n)).collect::<Vec<_>>(),
            [false, true, false, true, true]
        );
    }
}
