//! Odoo's answer, read as fast as Odoo writes it.
//!
//! A prefork Odoo worker writes its answer itself: a client that reads
//! slowly (or, on HTTP/2, never opens its window) would hold the worker
//! and Rampart's upstream slot for as long as it likes. So a task drains
//! Odoo's body into memory (up to `MEMORY`) and then a spool file (up to
//! `FILE_MAX` per answer and the process's `spool_max`), and drops the
//! upstream lease the moment Odoo's body is complete. Past those bounds it
//! waits for the client, as a plain stream would (memory stays flat).
//!
//! The client is then served at its own pace, with a send deadline: when a
//! piece handed to the connection is not followed by a request for the
//! next within `send_timeout`, the stream is dropped, its memory and spool
//! freed, and `on_stall` told (HTTP/1.1 closes the connection; an HTTP/2
//! stream whose window stays shut just ends).

use std::collections::VecDeque;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::body::{self, Body, BoxError};
use crate::body_memory::BodyMemory;
use crate::spool::{Spool, SpoolFile, SpoolReader};
use crate::upstream::Lease;

/// An answer is kept in memory up to this, then spooled.
pub const MEMORY: usize = 256 * 1024;
/// One answer spools at most this; past it Odoo waits for the client.
pub const FILE_MAX: u64 = 1024 * 1024 * 1024;
/// Pieces read back from the spool file.
const READ_CHUNK: usize = 64 * 1024;

/// How one of Odoo's answers is buffered for its client.
pub struct Settings {
    /// Whose share of the spool the answer uses.
    pub client: std::net::IpAddr,
    /// The longest silence inside Odoo's body.
    pub upstream_idle: Duration,
    /// How long the client may accept no bytes before the answer is dropped.
    pub send_timeout: Duration,
    /// Read Odoo's answer to its end even when the client leaves: the
    /// guard's verdict on a password check is read from it.
    pub read_away: bool,
}

enum Seg {
    Mem(Bytes),
    File { from: u64, to: u64 },
}

#[derive(Default)]
struct State {
    segs: VecDeque<Seg>,
    mem: usize,
    reader: Option<SpoolReader>,
    /// Odoo's body is over: Ok, or what went wrong.
    end: Option<Result<(), String>>,
    /// A piece was handed to the client at this moment and the next was
    /// not asked for yet.
    handed_at: Option<Instant>,
    /// The client side is gone (dropped, or its send deadline passed).
    gone: bool,
    /// The client has taken everything and waits for more: this answer
    /// may take one piece past the client's memory share, so a stream
    /// being read always moves even while the client's unread streams
    /// hold the share (each of those holds at most one such piece).
    reader_waiting: bool,
    expired: bool,
}

struct Shared {
    state: Mutex<State>,
    /// `State::mem` is charged to the client's memory share here.
    memory: Arc<BodyMemory>,
    client: IpAddr,
    /// Wakes the client side (data or end arrived).
    to_reader: Notify,
    /// Wakes the drain (room freed, or the client gone).
    to_writer: Notify,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("response buffer lock")
    }

    fn drop_client(&self, expired: bool) {
        let mut s = self.lock();
        s.gone = true;
        s.expired |= expired;
        s.segs.clear();
        let freed = std::mem::take(&mut s.mem);
        s.reader = None;
        drop(s);
        self.memory.give_back(self.client, freed);
        self.to_writer.notify_one();
        self.to_reader.notify_one();
    }
}

/// Takes over Odoo's body and the lease; returns the body to send to the
/// client. `on_stall` runs if the client misses its send deadline.
pub fn buffer<B>(
    upstream: B,
    lease: Lease,
    spool: Arc<Spool>,
    settings: Settings,
    on_stall: Box<dyn FnOnce() + Send>,
) -> Body
where
    B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError> + Send,
{
    let remaining = upstream.size_hint().exact();
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        memory: spool.memory.clone(),
        client: settings.client,
        to_reader: Notify::new(),
        to_writer: Notify::new(),
    });
    let task = shared.clone();
    tokio::spawn(async move {
        let drain = drain(upstream, lease, &task, spool, &settings);
        let watch = watch(&task, settings.send_timeout, on_stall);
        tokio::join!(drain, watch);
    });
    body::boxed(Buffered {
        shared,
        next: None,
        remaining,
    })
}

async fn drain<B>(
    mut upstream: B,
    lease: Lease,
    shared: &Shared,
    spool: Arc<Spool>,
    settings: &Settings,
) where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError> + Send,
{
    let idle = settings.upstream_idle;
    let mut file: Option<SpoolFile> = None;
    let mut spool_ok = true;
    let end = 'read: loop {
        // Wait for room when neither memory nor the spool can take more.
        loop {
            let room = shared.to_writer.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            // Another stream of this client may free its share.
            let freed = shared.memory.freed();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let (gone, mem) = {
                let s = shared.lock();
                (s.gone, s.mem)
            };
            if gone {
                return left(upstream, lease, settings).await;
            }
            let spoolable = spool_ok && file.as_ref().is_none_or(|f| f.len() < FILE_MAX);
            let read_now = mem == 0 && shared.lock().reader_waiting;
            if (mem < MEMORY && shared.memory.has_room(settings.client)) || spoolable || read_now {
                break;
            }
            tokio::select! {
                _ = room => {}
                _ = freed => {}
            }
        }
        let gone = shared.to_writer.notified();
        let frame = tokio::select! {
            f = tokio::time::timeout(idle, upstream.frame()) => f,
            _ = gone => continue,
        };
        let data = match frame {
            Err(_) => break Err(format!("no data from Odoo for {idle:?}")),
            Ok(None) => break Ok(()),
            Ok(Some(Err(e))) => {
                let e: BoxError = e.into();
                break Err(e.to_string());
            }
            Ok(Some(Ok(f))) => match f.into_data() {
                Ok(d) => d,
                Err(_) => continue,
            },
        };
        if data.is_empty() {
            continue;
        }
        let n = data.len();
        let gone = 'push: {
            let mut s = shared.lock();
            if s.gone {
                break 'push true;
            }
            // Memory while this answer is small and the client's share has
            // room; the spool next; memory again (past the share by this
            // one piece) only when the spool cannot take it, and then the
            // room loop above waits before reading more.
            let in_memory = (s.mem + n <= MEMORY && shared.memory.try_take(settings.client, n))
                || ((!spool_ok || (s.mem == 0 && s.reader_waiting)) && {
                    shared.memory.force_take(settings.client, n);
                    true
                });
            if in_memory {
                s.mem += n;
                // A copy: the piece may share a much larger read buffer,
                // which `mem` would not count.
                s.segs.push_back(Seg::Mem(Bytes::copy_from_slice(&data)));
                drop(s);
                shared.to_reader.notify_one();
                continue 'read;
            }
            false
        };
        if gone {
            return left(upstream, lease, settings).await;
        }
        if file.is_none() {
            match spool.create(settings.client).await {
                Ok(f) => file = Some(f),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot spool Odoo's answer: the client is served at its own pace");
                    spool_ok = false;
                }
            }
        }
        let appended = match &mut file {
            Some(f) => {
                let from = f.len();
                match f.append(data.clone()).await {
                    Ok(()) => Some((from, f.len(), f.reader())),
                    Err(e) => {
                        tracing::debug!(error = %e, "spool full: the client is served at its own pace");
                        spool_ok = false;
                        None
                    }
                }
            }
            None => None,
        };
        let gone = 'push: {
            let mut s = shared.lock();
            if s.gone {
                break 'push true;
            }
            match appended {
                Some((from, to, reader)) => {
                    s.reader.get_or_insert(reader);
                    match s.segs.back_mut() {
                        Some(Seg::File { to: end, .. }) if *end == from => *end = to,
                        _ => s.segs.push_back(Seg::File { from, to }),
                    }
                }
                None => {
                    shared.memory.force_take(settings.client, n);
                    s.mem += n;
                    s.segs.push_back(Seg::Mem(data));
                }
            }
            false
        };
        if gone {
            return left(upstream, lease, settings).await;
        }
        shared.to_reader.notify_one();
    };
    // Odoo is done with this request: its worker and our slot are free.
    drop(lease);
    drop(upstream);
    shared.lock().end = Some(end);
    shared.to_reader.notify_one();
    // The spool file stays open (unlinked) while the client reads it.
    if let Some(f) = file {
        loop {
            let wake = shared.to_writer.notified();
            tokio::pin!(wake);
            wake.as_mut().enable();
            {
                let s = shared.lock();
                if s.gone || (s.segs.is_empty() && s.end.is_some()) {
                    break;
                }
            }
            wake.await;
        }
        drop(f);
    }
}

/// The client left before Odoo's answer was over: the answer is read away
/// when the guard waits for its verdict, then the slot freed.
async fn left<B>(mut upstream: B, lease: Lease, settings: &Settings)
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    if settings.read_away {
        while let Ok(Some(Ok(_))) =
            tokio::time::timeout(settings.upstream_idle, upstream.frame()).await
        {}
    }
    drop(upstream);
    drop(lease);
}

/// Ends the stream when the client stops taking bytes for `limit`.
async fn watch(shared: &Shared, limit: Duration, on_stall: Box<dyn FnOnce() + Send>) {
    let step = (limit / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
    loop {
        tokio::time::sleep(step).await;
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

struct Buffered {
    shared: Arc<Shared>,
    next: Option<Next>,
    remaining: Option<u64>,
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
                    let want = (*to - *from).min(READ_CHUNK as u64) as usize;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::Pool;
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::atomic::{AtomicBool, Ordering};

    const C: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

    fn spool() -> (Arc<Spool>, std::path::PathBuf) {
        let d = std::env::temp_dir().join(format!(
            "rampart-rbuf-test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        (
            Spool::open(
                &d,
                1 << 30,
                1 << 30,
                BodyMemory::new(1 << 30, 1 << 30),
                1000,
            )
            .unwrap(),
            d,
        )
    }

    fn odoo(
        data: &[u8],
    ) -> impl HttpBody<Data = Bytes, Error = std::convert::Infallible> + Unpin + use<> {
        let chunks: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = data
            .chunks(16 * 1024)
            .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        http_body_util::StreamBody::new(futures_util::stream::iter(chunks))
    }

    async fn until(what: &str, f: impl Fn() -> bool) {
        for _ in 0..500 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("never: {what}");
    }

    #[tokio::test]
    async fn the_slot_is_freed_when_odoo_is_done_not_when_the_client_is() {
        let (spool, dir) = spool();
        let pool = Pool::new(&["a:1".into()], 1, 1, Duration::from_millis(10));
        let lease = pool.acquire(C).await.unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let settings = Settings {
            client: C,
            upstream_idle: Duration::from_secs(5),
            send_timeout: Duration::from_secs(60),
            read_away: false,
        };
        let body = buffer(odoo(&data), lease, spool.clone(), settings, Box::new(|| {}));
        until("slot freed", || pool.upstreams[0].active() == 0).await;
        assert!(spool.written.get() > 0, "the rest went to the spool");
        let got = body.collect().await.unwrap().to_bytes();
        assert_eq!(got.len(), data.len());
        assert!(got == data, "bytes changed on the way");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_client_that_stops_taking_bytes_loses_the_stream() {
        let (spool, dir) = spool();
        let pool = Pool::new(&["a:1".into()], 1, 1, Duration::from_millis(10));
        let lease = pool.acquire(C).await.unwrap();
        let data = vec![7u8; 1_000_000];
        let stalled = Arc::new(AtomicBool::new(false));
        let flag = stalled.clone();
        let settings = Settings {
            client: C,
            upstream_idle: Duration::from_secs(5),
            send_timeout: Duration::from_millis(200),
            read_away: false,
        };
        let mut body = buffer(
            odoo(&data),
            lease,
            spool.clone(),
            settings,
            Box::new(move || flag.store(true, Ordering::SeqCst)),
        );
        // Take one piece, then nothing.
        let first = body.frame().await.unwrap().unwrap();
        assert!(first.is_data());
        until("stall noticed", || stalled.load(Ordering::SeqCst)).await;
        until("spool given back", || spool.used() == 0).await;
        let next = body.frame().await.unwrap();
        assert!(next.is_err(), "the stream ends with an error");
        // A client waiting on Odoo (nothing handed) is never timed out.
        let lease = pool.acquire(C).await.unwrap();
        let never = http_body_util::StreamBody::new(futures_util::stream::pending::<
            Result<Frame<Bytes>, std::convert::Infallible>,
        >());
        let flag = Arc::new(AtomicBool::new(false));
        let f2 = flag.clone();
        let settings = Settings {
            client: C,
            upstream_idle: Duration::from_secs(5),
            send_timeout: Duration::from_millis(100),
            read_away: false,
        };
        let waiting = buffer(
            never,
            lease,
            spool,
            settings,
            Box::new(move || f2.store(true, Ordering::SeqCst)),
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!flag.load(Ordering::SeqCst));
        drop(waiting);
        until("slot freed when the client left", || {
            pool.upstreams[0].active() == 0
        })
        .await;
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn answers_a_client_never_reads_are_bounded_by_its_memory_share() {
        // No spool share, 300 KB of memory per client: the red team's
        // unread HTTP/2 answers, each would otherwise keep 256 KiB.
        let d = std::env::temp_dir().join(format!(
            "rampart-rbuf-share-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let spool = Spool::open(&d, 1 << 30, 0, BodyMemory::new(300_000, 1 << 30), 1000).unwrap();
        const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9));
        let pool = Pool::new(&["a:1".into()], 8, 8, Duration::from_millis(10));
        let settings = |client| Settings {
            client,
            upstream_idle: Duration::from_secs(5),
            send_timeout: Duration::from_secs(60),
            read_away: false,
        };
        let data = vec![5u8; 200_000];
        let mut unread = Vec::new();
        // The first answer fits in the share.
        let lease = pool.acquire(C).await.unwrap();
        unread.push(buffer(
            odoo(&data),
            lease,
            spool.clone(),
            settings(C),
            Box::new(|| {}),
        ));
        until("the first answer drained", || {
            pool.upstreams[0].active() == 0
        })
        .await;
        // The rest wait for the client, holding only their own slots, and
        // the memory stays within the share (plus the one piece a waiting
        // drain holds).
        for _ in 0..3 {
            let lease = pool.acquire(C).await.unwrap();
            unread.push(buffer(
                odoo(&data),
                lease,
                spool.clone(),
                settings(C),
                Box::new(|| {}),
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            pool.upstreams[0].active(),
            3,
            "unread answers drained past the share"
        );
        assert!(
            spool.memory.used() <= 300_000 + 3 * 16 * 1024,
            "memory held: {}",
            spool.memory.used()
        );
        // Another client is not charged for it.
        let lease = pool.acquire(OTHER).await.unwrap();
        let other = buffer(
            odoo(&data),
            lease,
            spool.clone(),
            settings(OTHER),
            Box::new(|| {}),
        );
        until("the other client's answer drained", || {
            pool.upstreams[0].active() == 3
        })
        .await;
        assert_eq!(other.collect().await.unwrap().to_bytes().len(), data.len());
        // Reading frees the share and the waiting answers drain, whole; the
        // last one read first, while the others still hold the share: a
        // stream being read always moves.
        let last = unread.pop().unwrap();
        let read = tokio::time::timeout(Duration::from_secs(10), last.collect());
        let got = read.await.expect("a stream being read moves").unwrap();
        assert_eq!(got.to_bytes(), data);
        for body in unread {
            assert_eq!(body.collect().await.unwrap().to_bytes(), data);
        }
        until("every slot freed", || pool.upstreams[0].active() == 0).await;
        assert_eq!(spool.memory.used(), 0, "memory given back");
        std::fs::remove_dir_all(d).unwrap();
    }
}
