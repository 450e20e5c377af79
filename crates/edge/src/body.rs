//! Body types and adapters. Every adapter here works frame by frame;
//! bodies are never held whole in memory (`response_buffer` and
//! `request_body` spool what does not fit).

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::{BodyExt, Empty, Full, combinators::UnsyncBoxBody};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

/// Any error a body may end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type every stage passes on, requests and answers alike.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A body of these bytes.
pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A body with no bytes.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// Any body of `Bytes`, as a [`Body`].
pub fn boxed<B>(b: B) -> Body
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    b.map_err(Into::into).boxed_unsync()
}

/// `res` with its body's first frame already in hand, so that hyper finds
/// it ready when it writes the head: head and bytes leave in one write
/// (one TLS record, one syscall; one flush for an HTTP/2 stream's HEADERS
/// and DATA) instead of the head alone while the answer's task is still
/// moving Odoo's bytes. The wait is the body's own: an answer from Odoo
/// ends with an error when Odoo is silent for the site's timeout.
pub async fn primed(res: http::Response<Body>) -> http::Response<Body> {
    if res.body().is_end_stream() {
        return res;
    }
    let (parts, mut body) = res.into_parts();
    let first = body.frame().await;
    let ended = first.is_none();
    let primed = Primed {
        first,
        ended,
        rest: body,
    };
    http::Response::from_parts(parts, primed.boxed_unsync())
}

/// A body whose first frame was taken early ([`primed`]).
struct Primed {
    first: Option<Result<Frame<Bytes>, BoxError>>,
    /// The body ended before any frame.
    ended: bool,
    rest: Body,
}

impl HttpBody for Primed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(first));
        }
        if self.ended {
            return Poll::Ready(None);
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && (self.ended || self.rest.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        if self.ended && self.first.is_none() {
            return SizeHint::with_exact(0);
        }
        let rest = self.rest.size_hint();
        let held = match &self.first {
            Some(Ok(f)) => f.data_ref().map_or(0, |d| d.len() as u64),
            _ => 0,
        };
        // Upper first: SizeHint refuses a lower bound above the upper one.
        let mut hint = SizeHint::new();
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + held);
        }
        hint.set_lower(rest.lower() + held);
        hint
    }
}

/// The request body went over `max_body`.
#[derive(Debug)]
pub struct BodyTooLarge(pub u64);

impl std::fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "request body larger than the limit of {} bytes", self.0)
    }
}
impl std::error::Error for BodyTooLarge {}

/// Nothing arrived for longer than the timeout.
#[derive(Debug)]
pub struct BodyTimeout(pub Duration);

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no body data for {:?}", self.0)
    }
}
impl std::error::Error for BodyTimeout {}

/// Finds an error of type `T` in an error's source chain.
pub fn find_cause<'a, T: std::error::Error + 'static>(
    mut e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    loop {
        if let Some(t) = e.downcast_ref::<T>() {
            return Some(t);
        }
        e = e.source()?;
    }
}

pin_project! {
    /// Limits the total size and the silence between frames of a body.
    pub struct Guarded<B> {
        #[pin]
        inner: B,
        limit: u64,
        seen: u64,
        idle: Duration,
        #[pin]
        deadline: Sleep,
    }
}

impl<B> Guarded<B> {
    /// Wraps `inner`: at most `limit` bytes, at most `idle` between frames.
    pub fn new(inner: B, limit: u64, idle: Duration) -> Self {
        Guarded {
            inner,
            limit,
            seen: 0,
            idle,
            deadline: tokio::time::sleep(idle),
        }
    }
}

impl<B> HttpBody for Guarded<B>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    *this.seen += data.len() as u64;
                    if *this.seen > *this.limit {
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge(*this.limit)))));
                    }
                }
                let idle = *this.idle;
                this.deadline.as_mut().reset(Instant::now() + idle);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                ready!(this.deadline.poll(cx));
                Poll::Ready(Some(Err(Box::new(BodyTimeout(*this.idle)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project! {
    /// Counts the bytes that pass and runs `on_end` once, when the body
    /// ends or is dropped (a client that hangs up mid-download is still
    /// logged).
    pub struct Observed<B, F: FnOnce(u64, bool)> {
        #[pin]
        inner: B,
        bytes: u64,
        on_end: Option<F>,
    }

    impl<B, F: FnOnce(u64, bool)> PinnedDrop for Observed<B, F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(f) = this.on_end.take() {
                f(*this.bytes, false);
            }
        }
    }
}

impl<B, F: FnOnce(u64, bool)> Observed<B, F> {
    /// Wraps `inner`; `on_end` gets the byte count and whether the body ended.
    pub fn new(inner: B, on_end: F) -> Self {
        Observed {
            inner,
            bytes: 0,
            on_end: Some(on_end),
        }
    }
}

impl<B, F> HttpBody for Observed<B, F>
where
    B: HttpBody<Data = Bytes>,
    F: FnOnce(u64, bool),
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let r = ready!(this.inner.poll_frame(cx));
        match &r {
            Some(Ok(frame)) => {
                if let Some(d) = frame.data_ref() {
                    *this.bytes += d.len() as u64;
                }
            }
            Some(Err(_)) => {}
            None => {
                if let Some(f) = this.on_end.take() {
                    f(*this.bytes, true);
                }
            }
        }
        Poll::Ready(r)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// How much of an answer `Prefixed` keeps.
pub const PREFIX_MAX: usize = 4096;

pin_project! {
    /// Passes a body through unchanged, keeping its first `PREFIX_MAX`
    /// bytes, and hands them to `on_end` once it has them all, or the body
    /// has ended or is dropped (hyper stops polling a body once its
    /// Content-Length is sent).
    pub struct Prefixed<B, F: FnOnce(&[u8])> {
        #[pin]
        inner: B,
        prefix: Vec<u8>,
        on_end: Option<F>,
    }

    impl<B, F: FnOnce(&[u8])> PinnedDrop for Prefixed<B, F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(f) = this.on_end.take() {
                f(this.prefix);
            }
        }
    }
}

impl<B, F: FnOnce(&[u8])> Prefixed<B, F> {
    /// Wraps `inner`; `on_end` gets the first bytes.
    pub fn new(inner: B, on_end: F) -> Self {
        Prefixed {
            inner,
            prefix: Vec::new(),
            on_end: Some(on_end),
        }
    }
}

impl<B, F> HttpBody for Prefixed<B, F>
where
    B: HttpBody<Data = Bytes>,
    F: FnOnce(&[u8]),
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        let r = ready!(this.inner.as_mut().poll_frame(cx));
        match &r {
            Some(Ok(frame)) => {
                if let Some(d) = frame.data_ref() {
                    let room = PREFIX_MAX.saturating_sub(this.prefix.len());
                    this.prefix.extend_from_slice(&d[..d.len().min(room)]);
                    // Full, or the last piece of a body of known length:
                    // the verdict is given before that piece goes on.
                    if (this.prefix.len() >= PREFIX_MAX || this.inner.is_end_stream())
                        && let Some(f) = this.on_end.take()
                    {
                        f(this.prefix);
                    }
                }
            }
            Some(Err(_)) => {}
            None => {
                if let Some(f) = this.on_end.take() {
                    f(this.prefix);
                }
            }
        }
        Poll::Ready(r)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> Body {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p))))
            .collect();
        boxed(http_body_util::StreamBody::new(futures_util::stream::iter(
            frames,
        )))
    }

    #[tokio::test]
    async fn a_primed_answer_keeps_its_bytes_their_order_and_its_length() {
        let mut res = http::Response::new(chunks(&[b"<html>", b"login", b"</html>"]));
        assert_eq!(res.body().size_hint().exact(), None);
        res = primed(res).await;
        // Still of unknown length (HTTP/1.1 chunks it), at least what is held.
        assert_eq!(res.body().size_hint().exact(), None);
        assert_eq!(res.body().size_hint().lower(), 6);
        assert!(
            !res.body().is_end_stream(),
            "the held frame is still to send"
        );
        let got = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&got[..], b"<html>login</html>");
    }

    #[tokio::test]
    async fn a_primed_answer_of_known_length_still_says_its_length() {
        let mut res = http::Response::new(full(&b"0123456789"[..]));
        // Full says it is not at its end until its one frame is taken.
        assert_eq!(res.body().size_hint().exact(), Some(10));
        res = primed(res).await;
        assert_eq!(res.body().size_hint().exact(), Some(10));
        let mut body = res.into_body();
        let f = body.frame().await.unwrap().unwrap();
        assert_eq!(f.into_data().unwrap(), "0123456789");
        assert!(
            body.is_end_stream(),
            "nothing left: the end goes with the bytes"
        );
        assert_eq!(body.size_hint().exact(), Some(0));
    }

    #[tokio::test]
    async fn an_error_before_the_first_byte_still_reaches_the_client_side() {
        let failing: Vec<Result<Frame<Bytes>, BoxError>> = vec![Err("Odoo went silent".into())];
        let res = http::Response::new(boxed(http_body_util::StreamBody::new(
            futures_util::stream::iter(failing),
        )));
        let mut body = primed(res).await.into_body();
        let e = body.frame().await.unwrap().unwrap_err();
        assert_eq!(e.to_string(), "Odoo went silent");
    }

    #[tokio::test]
    async fn an_answer_already_at_its_end_is_not_polled() {
        let res = primed(http::Response::new(empty())).await;
        assert!(res.body().is_end_stream());
        assert_eq!(res.body().size_hint().exact(), Some(0));
    }
}
