//! The request body on its way to Odoo.
//!
//! A body is received whole before an Odoo worker is taken (`receive`):
//! in memory up to `MEMORY`, then in a private spool file, up to
//! `max_body`. Odoo's prefork workers read the body themselves, so a body
//! streamed to Odoo at the client's pace would hold a worker for as long
//! as the client likes. A malformed chunked body is refused with 400
//! before any upstream sees a byte, a body that falls below the minimum
//! pace (`body_pace`: on average and in every window) or is not complete
//! within `client_body_deadline` gets 408, and Odoo
//! gets a Content-Length. RPC bodies the guard reads are received the
//! same way, so they obey the same pace and the same memory and spool
//! shares. Paths a site lists in
//! `request_streaming` keep the old way (`prepare`): the first 64 KiB read
//! whole, the rest streamed with the limits enforced frame by frame; if
//! such a body breaks mid-way the upstream request is aborted, so Odoo
//! never acts on a partial body.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::body::{self, Body, BodyTimeout, BodyTooLarge, Guarded};
use crate::body_memory::Charge;
use crate::refusal::Refusal;
use crate::spool::{self, Spool, SpoolFile, SpoolReader};
use crate::stage::body_pace::{Pace, TooSlow};

/// Bodies up to this size are read whole first.
pub const PREBUFFER: usize = 64 * 1024;

/// A request body as it goes to Odoo.
pub enum Prepared {
    /// Read whole; send with Content-Length.
    Whole(Bytes),
    /// Streams; size and idle limits enforced as it passes.
    Streaming(Body),
}

/// Why a request body could not be received.
#[derive(Debug)]
pub enum BodyError {
    /// Over `max_body`, the limit it carries.
    TooLarge(u64),
    /// Nothing arrived within the idle timeout.
    Timeout,
    /// Broken framing or the client went away.
    Malformed(hyper::Error),
    /// The body arrived slower than the minimum rate.
    TooSlow,
    /// It could not be stored (spool budget or disk full, IO error).
    Spool {
        /// The budget or the disk is full.
        full: bool,
        /// What the spool or the file system said.
        source: std::io::Error,
    },
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::TooLarge(limit) => write!(f, "request body over {limit} bytes"),
            BodyError::Timeout => f.write_str("request body stalled"),
            BodyError::Malformed(_) => f.write_str("malformed request body"),
            BodyError::TooSlow => f.write_str("request body below the minimum rate"),
            BodyError::Spool { full: true, .. } => f.write_str("no room to spool the request body"),
            BodyError::Spool { full: false, .. } => f.write_str("cannot spool the request body"),
        }
    }
}

impl std::error::Error for BodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BodyError::Malformed(e) => Some(e),
            BodyError::Spool { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Bodies up to this size are kept in memory; larger ones are spooled.
pub const MEMORY: usize = 64 * 1024;

/// How a request body is received.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest body accepted.
    pub max_body: u64,
    /// The longest silence between two pieces.
    pub idle: Duration,
    /// Bytes per second the body must keep up once `grace` is over, on
    /// average and in every window of `grace` (`body_pace`; 0: off).
    pub min_rate: u64,
    /// How long the body may take before `min_rate` applies.
    pub grace: Duration,
    /// The whole body must have arrived within this of its start, however
    /// it is paced (zero: no limit). Without it a body sent fast and then
    /// trickled at `min_rate` holds what it spooled for (what is left) /
    /// `min_rate`: four addresses held a 4 GiB spool for hours on 16 KiB/s.
    pub deadline: Duration,
}

/// A request body received whole.
pub enum Received {
    /// In memory, charged to the client's memory share while it lives
    /// (bodies read for inspection are bounded by the inspection budget).
    Memory(Bytes, Option<Charge>),
    /// In a spool file.
    Spooled(SpoolFile),
}

impl Received {
    /// Its size in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Received::Memory(b, _) => b.len() as u64,
            Received::Spooled(f) => f.len(),
        }
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A body to send; may be called again for a retry.
    pub fn body(&self) -> Body {
        match self {
            Received::Memory(b, _) => body::full(b.clone()),
            Received::Spooled(f) => file_body(f.reader(), f.len()),
        }
    }
}

/// Reads the whole body, spooling past `MEMORY`.
pub async fn receive(
    mut incoming: Incoming,
    headers: &HeaderMap,
    limits: Limits,
    spool: &Arc<Spool>,
    client: std::net::IpAddr,
) -> Result<Received, BodyError> {
    if let Some(len) = declared_length(headers)
        && len > limits.max_body
    {
        linger(incoming);
        return Err(BodyError::TooLarge(limits.max_body));
    }
    let start = tokio::time::Instant::now();
    let mut pace = Pace::new(start, limits.min_rate, limits.grace);
    let due = (!limits.deadline.is_zero()).then(|| start + limits.deadline);
    let mut last = start;
    let mut buf = BytesMut::new();
    let mut file: Option<SpoolFile> = None;
    let mut charge = Charge::new(spool.memory.clone(), client);
    let mut seen = 0u64;
    while !incoming.is_end_stream() {
        let silent_at = last + limits.idle;
        let wake = pace
            .as_ref()
            .map_or(silent_at, |p| p.next_check().min(silent_at));
        let wake = due.map_or(wake, |d| d.min(wake));
        let frame = match tokio::time::timeout_at(wake, incoming.frame()).await {
            Err(_) => {
                let now = tokio::time::Instant::now();
                if due.is_some_and(|d| now >= d) {
                    return Err(BodyError::TooSlow);
                }
                if let Some(p) = &mut pace {
                    p.check(now).map_err(|TooSlow| BodyError::TooSlow)?;
                }
                if now >= silent_at {
                    return Err(BodyError::Timeout);
                }
                continue;
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(BodyError::Malformed(e)),
            Ok(Some(Ok(f))) => f,
        };
        last = tokio::time::Instant::now();
        if due.is_some_and(|d| last >= d) {
            return Err(BodyError::TooSlow);
        }
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if let Some(p) = &mut pace {
            p.arrived(data.len() as u64, last)
                .map_err(|TooSlow| BodyError::TooSlow)?;
        }
        seen += data.len() as u64;
        if seen > limits.max_body {
            linger(incoming);
            return Err(BodyError::TooLarge(limits.max_body));
        }
        let stored = match &mut file {
            Some(f) => f.append(data).await,
            // Memory while the body is small and the client's share has
            // room; otherwise the spool.
            None if buf.len() + data.len() <= MEMORY && charge.try_add(data.len()) => {
                buf.extend_from_slice(&data);
                Ok(())
            }
            None => match spool.create(client).await {
                Ok(mut f) => {
                    let r = match f.append(buf.split().freeze()).await {
                        Ok(()) => f.append(data).await,
                        Err(e) => Err(e),
                    };
                    file = Some(f);
                    charge = Charge::new(spool.memory.clone(), client);
                    r
                }
                Err(e) => Err(e),
            },
        };
        if let Err(e) = stored {
            // Read the rest away for a while, so the client sees the answer.
            linger(incoming);
            return Err(spool_error(e));
        }
    }
    Ok(match file {
        Some(f) => Received::Spooled(f),
        None => Received::Memory(buf.freeze(), Some(charge)),
    })
}

fn spool_error(e: std::io::Error) -> BodyError {
    let full = spool::is_full(&e);
    tracing::error!(error = %e, full, "a request body could not be spooled");
    BodyError::Spool { full, source: e }
}

/// Pieces read from a spool file at a time.
const FILE_CHUNK: usize = 64 * 1024;

/// The first `len` bytes of a spool file as a body.
pub fn file_body(reader: SpoolReader, len: u64) -> Body {
    let stream = futures_util::stream::unfold(0u64, move |at| {
        let reader = reader.clone();
        async move {
            if at >= len {
                return None;
            }
            let want = (len - at).min(FILE_CHUNK as u64) as usize;
            match reader.read_at(at, want).await {
                Ok(b) if b.is_empty() => Some((
                    Err(
                        Box::new(std::io::Error::from(std::io::ErrorKind::UnexpectedEof))
                            as body::BoxError,
                    ),
                    len,
                )),
                Ok(b) => {
                    let next = at + b.len() as u64;
                    Some((Ok(http_body::Frame::data(b)), next))
                }
                Err(e) => Some((Err(Box::new(e) as body::BoxError), len)),
            }
        }
    });
    body::boxed(http_body_util::StreamBody::new(stream))
}

/// The Content-Length the client declared, when it is a number.
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
            Ok(Some(Err(e))) => return Err(BodyError::Malformed(e)),
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

/// How each body failure is answered (the status table is refusal.rs).
impl From<BodyError> for Refusal {
    fn from(e: BodyError) -> Refusal {
        match e {
            BodyError::TooLarge(limit) => Refusal::BodyTooLarge(limit),
            BodyError::Timeout => Refusal::BodyTimeout,
            BodyError::Malformed(why) => Refusal::BodyMalformed(why.to_string()),
            BodyError::TooSlow => Refusal::BodyTooSlow,
            BodyError::Spool { full: true, .. } => Refusal::SpoolFull,
            BodyError::Spool { full: false, .. } => Refusal::SpoolError,
        }
    }
}
