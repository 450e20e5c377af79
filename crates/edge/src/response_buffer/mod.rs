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
//!
//! The parts: this file holds what both sides share (the segments of the
//! answer, in memory or in the spool file, and the bounds) and [`buffer`],
//! which wires them; `drain` is Odoo's side (read as fast as Odoo writes,
//! within the bounds, then free the slot); `client` is the client's side
//! (the body hyper sends, and the send deadline).

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body::Body as HttpBody;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::body::{self, Body, BoxError};
use crate::body_memory::BodyMemory;
use crate::spool::{Spool, SpoolReader};
use crate::upstream::Lease;

use client::{Buffered, watch};
use drain::drain;

mod client;
mod drain;
#[cfg(test)]
mod tests;

pub(crate) use client::PIECE_MAX;
pub use client::SendTimeout;

/// An answer is kept in memory up to this, then spooled.
pub const MEMORY: usize = 256 * 1024;
/// One answer spools at most this; past it Odoo waits for the client.
pub const FILE_MAX: u64 = 1024 * 1024 * 1024;

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
    /// Wakes the send-deadline watch when the client side is gone, so the
    /// task ends with the answer rather than at the watch's next tick: a
    /// busy server otherwise held thousands of finished tasks for up to
    /// 5 s each (40 MB at 8,000 answers a second, measured).
    to_watch: Notify,
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
        self.to_watch.notify_one();
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
        to_watch: Notify::new(),
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
