//! The client's side of a buffered answer: the body hyper sends, which
//! takes pieces from memory or reads them back from the spool file at the
//! client's pace, and the watch that drops the stream when the client
//! takes no bytes for `send_timeout`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::Instant;

use super::{Seg, Shared};
use crate::body::BoxError;

/// The most one piece handed to hyper holds. What hyper has taken is no
/// longer counted, and HTTP/2 keeps a piece whole until the client's
/// window lets it go: a client granting each stream one byte of window
/// made every stream hold a whole answer as one uncounted piece (red
/// team: 1,024 streams of 256 KiB answers from one address, 310 MB).
/// One HTTP/2 frame's worth; HTTP/1.1 writes several pieces at once.
pub(crate) const PIECE_MAX: usize = 16 * 1024;

pub(super) async fn watch(shared: &Shared, limit: Duration, on_stall: Box<dyn FnOnce() + Send>) {
    let step = (limit / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
    loop {
        // A tick, or the client side ending (permits are kept, so an end
        // before this wait is not missed).
        tokio::select! {
            _ = tokio::time::sleep(step) => {}
            _ = shared.to_watch.notified() => {}
        }
        let s = shared.lock();
        if s.gone || (s.segs.is_empty() && s.end.is_some() && s.handed_at.is_none()) {
            return;
        }
        if s.handed_at.is_some_and(|t| t.elapsed() >= limit) {
            drop(s);
            tracing::info!(send_timeout = ?limit, "client took no bytes for send_timeout: stream dropped");
            shared.drop_client(true);
            on_stall();
            return;
        }
    }
}

type Next = Pin<Box<dyn Future<Output = Option<Result<Bytes, BoxError>>> + Send>>;

pub(super) struct Buffered {
    pub(super) shared: Arc<Shared>,
    pub(super) next: Option<Next>,
    pub(super) remaining: Option<u64>,
}

/// The client stream's deadline passed.
#[derive(Debug)]
pub struct SendTimeout;

impl std::fmt::Display for SendTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the client took no bytes for send_timeout")
    }
}
impl std::error::Error for SendTimeout {}

async fn next_piece(shared: Arc<Shared>) -> Option<Result<Bytes, BoxError>> {
    loop {
        let wake = shared.to_reader.notified();
        tokio::pin!(wake);
        wake.as_mut().enable();
        let read = {
            let mut s = shared.lock();
            if s.expired {
                return Some(Err(Box::new(SendTimeout)));
            }
            match s.segs.front_mut() {
                Some(Seg::Mem(b)) if b.len() > PIECE_MAX => {
                    // The rest stays in the segment, counted.
                    let piece = b.split_to(PIECE_MAX);
                    s.mem -= piece.len();
                    drop(s);
                    shared.memory.give_back(shared.client, piece.len());
                    shared.to_writer.notify_one();
                    return Some(Ok(piece));
                }
                Some(Seg::Mem(_)) => {
                    let Some(Seg::Mem(b)) = s.segs.pop_front() else {
                        unreachable!()
                    };
                    s.mem -= b.len();
                    drop(s);
                    shared.memory.give_back(shared.client, b.len());
                    shared.to_writer.notify_one();
                    return Some(Ok(b));
                }
                Some(Seg::File { from, to }) => {
                    let want = (*to - *from).min(PIECE_MAX as u64) as usize;
                    let at = *from;
                    s.reader.clone().map(|r| (r, at, want))
                }
                None => match &s.end {
                    Some(Ok(())) => return None,
                    Some(Err(e)) => return Some(Err(e.clone().into())),
                    None => {
                        s.reader_waiting = true;
                        None
                    }
                },
            }
        };
        let Some((reader, at, want)) = read else {
            shared.to_writer.notify_one();
            wake.await;
            shared.lock().reader_waiting = false;
            continue;
        };
        let bytes = match reader.read_at(at, want).await {
            Ok(b) if !b.is_empty() => b,
            Ok(_) => return Some(Err("the spool file ended early".into())),
            Err(e) => return Some(Err(Box::new(e))),
        };
        let mut s = shared.lock();
        if let Some(Seg::File { from, to }) = s.segs.front_mut()
            && *from == at
        {
            *from += bytes.len() as u64;
            if *from >= *to {
                s.segs.pop_front();
            }
        }
        drop(s);
        shared.to_writer.notify_one();
        return Some(Ok(bytes));
    }
}

impl HttpBody for Buffered {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.next.is_none() {
            // Asked for more: the last piece was taken.
            this.shared.lock().handed_at = None;
            this.next = Some(Box::pin(next_piece(this.shared.clone())));
        }
        let r = ready!(this.next.as_mut().expect("set above").as_mut().poll(cx));
        this.next = None;
        Poll::Ready(match r {
            Some(Ok(b)) => {
                if let Some(rem) = &mut this.remaining {
                    *rem = rem.saturating_sub(b.len() as u64);
                }
                this.shared.lock().handed_at = Some(Instant::now());
                Some(Ok(Frame::data(b)))
            }
            Some(Err(e)) => Some(Err(e)),
            None => None,
        })
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == Some(0)
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

impl Drop for Buffered {
    fn drop(&mut self) {
        self.shared.drop_client(false);
    }
}
