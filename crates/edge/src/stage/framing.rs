//! Stage 1, below hyper: request framing that hyper resolves silently.
//!
//! A request with both Content-Length and Transfer-Encoding is the classic
//! smuggling shape. hyper follows RFC 9112 §6.1 — Transfer-Encoding wins,
//! Content-Length is dropped from the headers, the connection closes after
//! — so nothing can be smuggled, but the pipeline can no longer see that the
//! request was ambiguous and would pass it on. This reader watches the
//! decrypted HTTP/1 byte stream, follows each request's framing (heads,
//! fixed bodies, chunks) and records the number of any request whose head
//! carries both; the pipeline answers that request 400 before Odoo sees it.
//!
//! Anything it cannot follow (a malformed head, an upgrade) stops the
//! watching: hyper rejects what is malformed, and its RFC behaviour remains.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Longer heads are refused by hyper (431) anyway.
const MAX_HEAD: usize = 128 * 1024;

#[derive(Debug)]
enum State {
    Head,
    Fixed(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkEnd(u8),
    Trailers,
    Off,
}

/// Follows request framing; `conflicts` gets the 1-based number of the
/// last request whose head had both Content-Length and Transfer-Encoding.
#[derive(Debug)]
pub struct FramingWatch {
    state: State,
    line: Vec<u8>,
    heads: u64,
    conflicts: Arc<AtomicU64>,
}

impl FramingWatch {
    pub fn new(conflicts: Arc<AtomicU64>) -> Self {
        FramingWatch {
            state: State::Head,
            line: Vec::new(),
            heads: 0,
            conflicts,
        }
    }

    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match self.state {
                State::Off => return,
                State::Head => {
                    let (used, done) = take_until(&mut self.line, data, b"\r\n\r\n");
                    data = &data[used..];
                    // Empty lines before a request line are allowed.
                    if self.line == b"\r\n" {
                        self.line.clear();
                        continue;
                    }
                    if self.line.len() > MAX_HEAD {
                        self.state = State::Off;
                    } else if done {
                        self.heads += 1;
                        self.state = self.after_head();
                        self.line.clear();
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
                State::ChunkSize => {
                    let (used, done) = take_until(&mut self.line, data, b"\n");
                    data = &data[used..];
                    if self.line.len() > 4096 {
                        self.state = State::Off;
                    } else if done {
                        let text = String::from_utf8_lossy(&self.line);
                        let hex = text.split(';').next().unwrap_or("").trim();
                        self.state = match u64::from_str_radix(hex, 16) {
                            Ok(0) => State::Trailers,
                            Ok(n) => State::ChunkData(n),
                            Err(_) => State::Off,
                        };
                        self.line.clear();
                    }
                }
                State::ChunkData(n) => {
                    let k = (data.len() as u64).min(n);
                    data = &data[k as usize..];
                    self.state = if n == k {
                        State::ChunkEnd(2)
                    } else {
                        State::ChunkData(n - k)
                    };
                }
                State::ChunkEnd(k) => {
                    let skip = data.len().min(k as usize);
                    data = &data[skip..];
                    let left = k - skip as u8;
                    self.state = if left == 0 {
                        State::ChunkSize
                    } else {
                        State::ChunkEnd(left)
                    };
                }
                State::Trailers => {
                    let (used, done) = take_until(&mut self.line, data, b"\n");
                    data = &data[used..];
                    if self.line.len() > MAX_HEAD {
                        self.state = State::Off;
                    } else if done {
                        let empty = self.line == b"\r\n" || self.line == b"\n";
                        self.line.clear();
                        if empty {
                            self.state = State::Head;
                        }
                    }
                }
            }
        }
    }

    /// Reads the head in `line`: records a conflict, picks the body framing.
    fn after_head(&self) -> State {
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut req = httparse::Request::new(&mut headers);
        if !matches!(req.parse(&self.line), Ok(httparse::Status::Complete(_))) {
            return State::Off;
        }
        let (mut length, mut te, mut chunked, mut upgrade) = (None, false, false, false);
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                length = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok());
                if length.is_none() {
                    return State::Off;
                }
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                te = true;
                chunked = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.rsplit(',').next())
                    .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
            } else if h.name.eq_ignore_ascii_case("upgrade") {
                upgrade = true;
            }
        }
        if te && length.is_some() {
            self.conflicts.store(self.heads, Ordering::Relaxed);
        }
        match (upgrade, te, chunked, length) {
            (true, ..) => State::Off,
            (_, true, true, _) => State::ChunkSize,
            (_, true, false, _) => State::Off,
            (_, false, _, Some(n)) if n > 0 => State::Fixed(n),
            _ => State::Head,
        }
    }
}

/// Appends `data` to `buf` up to and including the end of `pat`; returns
/// how many bytes were used and whether `pat` was reached.
fn take_until(buf: &mut Vec<u8>, data: &[u8], pat: &[u8]) -> (usize, bool) {
    for (i, &b) in data.iter().enumerate() {
        buf.push(b);
        if buf.ends_with(pat) {
            return (i + 1, true);
        }
    }
    (data.len(), false)
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
    pub fn new(inner: T, conflicts: Arc<AtomicU64>) -> Self {
        Watched {
            inner,
            watch: FramingWatch::new(conflicts),
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

    fn run(chunks: &[&[u8]]) -> (u64, u64) {
        let c = Arc::new(AtomicU64::new(0));
        let mut w = FramingWatch::new(c.clone());
        for ch in chunks {
            w.feed(ch);
        }
        (w.heads, c.load(Ordering::Relaxed))
    }

    #[test]
    fn follows_keep_alive_requests_and_flags_the_ambiguous_one() {
        let a = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
        let b = b"POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        let c = b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n";
        let d = b"POST /d HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        let all = [&a[..], b, c, d].concat();
        assert_eq!(run(&[&all]), (4, 4));
        // Byte by byte: the same.
        let bytes: Vec<&[u8]> = all.chunks(1).collect();
        assert_eq!(run(&bytes), (4, 4));
        assert_eq!(run(&[a, b, c]), (3, 0));
    }

    #[test]
    fn body_text_that_looks_like_headers_is_not_a_head() {
        let body = b"Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let head = format!(
            "POST /u HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        assert_eq!(run(&[head.as_bytes(), body]), (1, 0));
    }

    #[test]
    fn upgrade_and_garbage_stop_watching() {
        let up = b"GET /websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(run(&[up]), (1, 0));
    }
}
