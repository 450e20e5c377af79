//! The request body on its way to Odoo.
//!
//! Small bodies (most form posts and RPC calls) are read whole before
//! Odoo is contacted: a malformed chunked body is then refused with 400
//! before any upstream sees a byte, a slow client cannot hold an Odoo
//! worker while it trickles, and Odoo gets a Content-Length. Larger bodies
//! stream with the size limit and an idle timeout enforced frame by frame;
//! if they break mid-way the upstream request is aborted, so Odoo never
//! acts on a partial body.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::body::{self, Body, BodyTimeout, BodyTooLarge, Guarded};

/// Bodies up to this size are read whole first.
pub const PREBUFFER: usize = 64 * 1024;

pub enum Prepared {
    /// Read whole; send with Content-Length.
    Whole(Bytes),
    /// Streams; size and idle limits enforced as it passes.
    Streaming(Body),
}

#[derive(Debug)]
pub enum BodyError {
    TooLarge(u64),
    Timeout,
    /// Broken framing or the client went away.
    Malformed(String),
}

pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .split(',')
        .next()?
        .trim()
        .parse()
        .ok()
}

/// Reads up to `up_to` bytes (the whole body when it is smaller).
pub async fn prepare(
    mut incoming: Incoming,
    headers: &HeaderMap,
    max_body: u64,
    idle: Duration,
    up_to: usize,
) -> Result<Prepared, BodyError> {
    if let Some(len) = declared_length(headers)
        && len > max_body
    {
        linger(incoming);
        return Err(BodyError::TooLarge(max_body));
    }
    if incoming.is_end_stream() {
        return Ok(Prepared::Whole(Bytes::new()));
    }
    let mut buf = BytesMut::new();
    loop {
        let frame = match tokio::time::timeout(idle, incoming.frame()).await {
            Err(_) => return Err(BodyError::Timeout),
            Ok(None) => return Ok(Prepared::Whole(buf.freeze())),
            Ok(Some(Err(e))) => return Err(BodyError::Malformed(e.to_string())),
            Ok(Some(Ok(f))) => f,
        };
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
            if buf.len() as u64 > max_body {
                return Err(BodyError::TooLarge(max_body));
            }
        }
        if incoming.is_end_stream() {
            return Ok(Prepared::Whole(buf.freeze()));
        }
        if buf.len() > up_to {
            let prefix = buf.freeze();
            let seen = prefix.len() as u64;
            let rest = Guarded::new(incoming, max_body.saturating_sub(seen), idle);
            let first = http_body_util::Full::new(prefix).map_err(|n| match n {});
            let chained = body::boxed(Chain {
                first: Some(first),
                rest,
            });
            return Ok(Prepared::Streaming(chained));
        }
    }
}

/// Bytes and time a refused body is still read for (see `linger`).
const LINGER_BYTES: u64 = 64 * 1024 * 1024;
const LINGER_TIME: Duration = Duration::from_secs(5);

/// Reads and discards a refused body for a while, as nginx's lingering
/// close does: a client still sending when the 413 comes back would
/// otherwise hit a reset and never show the answer.
fn linger(mut incoming: Incoming) {
    tokio::spawn(async move {
        let mut seen = 0u64;
        let _ = tokio::time::timeout(LINGER_TIME, async {
            while let Some(Ok(frame)) = incoming.frame().await {
                seen += frame.data_ref().map_or(0, |d| d.len() as u64);
                if seen > LINGER_BYTES {
                    break;
                }
            }
        })
        .await;
    });
}

/// Classifies an upstream send error caused by the request body.
pub fn body_error_of(e: &(dyn std::error::Error + 'static)) -> Option<BodyError> {
    if let Some(t) = body::find_cause::<BodyTooLarge>(e) {
        return Some(BodyError::TooLarge(t.0));
    }
    if body::find_cause::<BodyTimeout>(e).is_some() {
        return Some(BodyError::Timeout);
    }
    None
}

pin_project_lite::pin_project! {
    struct Chain<A, B> {
        #[pin]
        first: Option<A>,
        #[pin]
        rest: B,
    }
}

impl<A, B> http_body::Body for Chain<A, B>
where
    A: http_body::Body<Data = Bytes>,
    A::Error: Into<body::BoxError>,
    B: http_body::Body<Data = Bytes, Error = body::BoxError>,
{
    type Data = Bytes;
    type Error = body::BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, body::BoxError>>> {
        let mut this = self.project();
        if let Some(first) = this.first.as_mut().as_pin_mut() {
            match std::task::ready!(first.poll_frame(cx)) {
                Some(r) => return std::task::Poll::Ready(Some(r.map_err(Into::into))),
                None => this.first.set(None),
            }
        }
        this.rest.poll_frame(cx)
    }
}
