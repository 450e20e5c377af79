//! The access log: one line a request, written when the response body is
//! done (so bytes and duration are what the client got). Combined format
//! (what fail2ban and log tools read) with site, upstream and timings
//! appended, or JSON. A writer thread writes them in batches (see
//! `BATCH`); SIGUSR1 reopens the file after rotation.

use std::fmt::Write as _;
use std::io::Write;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use http::{Method, Request, Response, Version, header};

use crate::body::{self, Body, Observed};
use crate::config::LogFormat;
use crate::io::Activity;
use crate::metrics::{Metrics, RequestLabels, SiteMeters};

/// One line of the access log: one request, once its response body is done.
pub struct Entry {
    /// The client's address, as the guard sees it.
    pub client: IpAddr,
    /// When the answer's headers were ready.
    pub time: SystemTime,
    /// The request method.
    pub method: String,
    /// The path and query, as received.
    pub target: String,
    /// `HTTP/1.1`, `HTTP/2.0`...
    pub version: &'static str,
    /// The status sent.
    pub status: u16,
    /// Body bytes the client got.
    pub bytes: u64,
    /// The Referer header, empty when absent.
    pub referer: String,
    /// The User-Agent header, empty when absent.
    pub user_agent: String,
    /// The site's name.
    pub site: String,
    /// The upstream that answered, empty when none did.
    pub upstream: String,
    /// From the request's arrival to the end of the response body.
    pub duration: Duration,
    /// Time Odoo took to its response headers, when it was asked.
    pub upstream_duration: Option<Duration>,
    /// `hit` or `miss` for requests the edge cache may answer.
    pub cache: Option<&'static str>,
    /// X-Request-ID (headers/request_id.rs: only safe characters).
    pub request_id: String,
    /// Why Rampart answered itself (`Refusal::reason`), if it did.
    pub reason: Option<&'static str>,
}

/// Lines wait in memory for the writer thread, which wakes every
/// FLUSH_EVERY or when BATCH bytes are waiting: request tasks never wait on
/// the disk, and a busy server does not wake a thread per line.
const BATCH: usize = 64 * 1024;
const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// When the disk cannot keep up, lines beyond this are dropped (and
/// counted) rather than growing memory without bound.
const MAX_PENDING: usize = 8 * 1024 * 1024;

struct Inner {
    pending: Mutex<Vec<u8>>,
    wake: Condvar,
    out: Mutex<Output>,
    reopen: AtomicBool,
    dest: String,
}

/// Where access log lines go; off, standard output, or a file a writer thread fills.
#[derive(Clone)]
pub struct AccessLog {
    inner: Option<Arc<Inner>>,
    format: LogFormat,
    dropped: prometheus_client::metrics::counter::Counter,
}

impl AccessLog {
    /// `dest`: a path, "-" for stdout, "off".
    pub fn open(
        dest: &str,
        format: LogFormat,
        dropped: prometheus_client::metrics::counter::Counter,
    ) -> std::io::Result<AccessLog> {
        if dest == "off" {
            return Ok(AccessLog {
                inner: None,
                format,
                dropped,
            });
        }
        let inner = Arc::new(Inner {
            pending: Mutex::new(Vec::with_capacity(BATCH)),
            wake: Condvar::new(),
            out: Mutex::new(Output::open(dest)?),
            reopen: AtomicBool::new(false),
            dest: dest.to_string(),
        });
        let writer = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                // Ends when the last AccessLog handle is gone.
                while let Some(inner) = writer.upgrade() {
                    {
                        let pending = inner.pending.lock().unwrap();
                        if pending.len() < BATCH && !inner.reopen.load(Ordering::Relaxed) {
                            let _ = inner.wake.wait_timeout(pending, FLUSH_EVERY);
                        }
                    }
                    inner.write_pending();
                }
            })?;
        Ok(AccessLog {
            inner: Some(inner),
            format,
            dropped,
        })
    }

    /// After logrotate renamed the file (SIGUSR1).
    pub fn reopen(&self) {
        if let Some(inner) = &self.inner {
            inner.reopen.store(true, Ordering::Relaxed);
            inner.wake.notify_one();
        }
    }

    /// Writes what is waiting now (at shutdown).
    pub fn flush(&self) {
        if let Some(inner) = &self.inner {
            inner.write_pending();
        }
    }

    /// Queues one line (dropped and counted when the writer has fallen too far behind).
    pub fn log(&self, e: &Entry) {
        let Some(inner) = &self.inner else { return };
        // Formatted into the thread's reused buffer, then copied once into
        // the batch: no allocation per line.
        thread_local! {
            static LINE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        LINE.with(|line| {
            let mut line = line.borrow_mut();
            line.clear();
            match self.format {
                LogFormat::Combined => combined_into(&mut line, e),
                LogFormat::Json => line.push_str(&json(e)),
            }
            let mut pending = inner.pending.lock().unwrap();
            if pending.len() + line.len() > MAX_PENDING {
                drop(pending);
                self.dropped.inc();
                return;
            }
            pending.extend_from_slice(line.as_bytes());
            if pending.len() >= BATCH {
                inner.wake.notify_one();
            }
        });
    }
}

impl Inner {
    fn write_pending(&self) {
        let batch = std::mem::take(&mut *self.pending.lock().unwrap());
        let mut out = self.out.lock().unwrap();
        if self.reopen.swap(false, Ordering::Relaxed) {
            let _ = out.w.flush();
            match Output::open(&self.dest) {
                Ok(o) => *out = o,
                Err(e) => tracing::error!("cannot reopen access log {}: {e}", self.dest),
            }
        }
        if !batch.is_empty() {
            let _ = out.w.write_all(&batch);
            let _ = out.w.flush();
        }
    }
}

struct Output {
    w: Box<dyn Write + Send>,
}

impl Output {
    fn open(dest: &str) -> std::io::Result<Output> {
        let w: Box<dyn Write + Send> = if dest == "-" {
            Box::new(std::io::stdout())
        } else {
            if let Some(parent) = std::path::Path::new(dest).parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent)?;
            }
            Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dest)?,
            )
        };
        Ok(Output { w })
    }
}

fn dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

/// Quotes what a client controls so a line cannot be forged.
fn quote_into(out: &mut String, s: &str) {
    // Most fields are plain printable ASCII: copied whole.
    if s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// Seconds with three decimals, rounded to the millisecond.
fn seconds_into(out: &mut String, d: Duration) {
    let ms = (d.as_micros() + 500) / 1000;
    let _ = write!(out, "{}.{:03}", ms / 1000, ms % 1000);
}

fn combined_into(out: &mut String, e: &Entry) {
    let _ = write!(out, "{} - - [", e.client);
    clf_time_into(out, e.time);
    out.push_str("] \"");
    quote_into(out, &e.method);
    out.push(' ');
    quote_into(out, &e.target);
    let _ = write!(out, " {}\" {} {} \"", e.version, e.status, e.bytes);
    quote_into(out, dash(&e.referer));
    out.push_str("\" \"");
    quote_into(out, dash(&e.user_agent));
    out.push_str("\" site=");
    out.push_str(dash(&e.site));
    out.push_str(" upstream=");
    out.push_str(dash(&e.upstream));
    out.push_str(" rt=");
    seconds_into(out, e.duration);
    out.push_str(" urt=");
    match e.upstream_duration {
        Some(d) => seconds_into(out, d),
        None => out.push('-'),
    }
    out.push_str(" rid=");
    out.push_str(dash(&e.request_id));
    if let Some(c) = e.cache {
        out.push_str(" cache=");
        out.push_str(c);
    }
    if let Some(r) = e.reason {
        out.push_str(" reason=");
        out.push_str(r);
    }
    out.push('\n');
}

#[cfg(test)]
fn combined(e: &Entry) -> String {
    let mut s = String::new();
    combined_into(&mut s, e);
    s
}

fn json(e: &Entry) -> String {
    let mut s = serde_json::json!({
        "time": rfc3339(e.time),
        "client": e.client.to_string(),
        "method": e.method,
        "target": e.target,
        "version": e.version,
        "status": e.status,
        "bytes": e.bytes,
        "referer": e.referer,
        "user_agent": e.user_agent,
        "site": e.site,
        "upstream": e.upstream,
        "duration_ms": e.duration.as_secs_f64() * 1000.0,
        "upstream_ms": e.upstream_duration.map(|d| d.as_secs_f64() * 1000.0),
        "cache": e.cache,
        "request_id": e.request_id,
        "reason": e.reason,
    })
    .to_string();
    s.push('\n');
    s
}

/// Common Log Format time, as fail2ban and log tools parse it: `24/Nov/2026:00:44:57 +0000`.
fn clf_time(t: SystemTime) -> String {
    rampart_config::time::utc(t, "%d/%b/%Y:%H:%M:%S +0000")
}

/// `clf_time`, formatted once a second per thread.
fn clf_time_into(out: &mut String, t: SystemTime) {
    thread_local! {
        static LAST: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != secs {
            *last = (secs, clf_time(t));
        }
        out.push_str(&last.1);
    });
}

/// RFC 3339 in UTC to the millisecond: `2026-11-24T00:44:57.000Z`.
fn rfc3339(t: SystemTime) -> String {
    rampart_config::time::utc(t, "%Y-%m-%dT%H:%M:%S%.3fZ")
}

/// The parts of the request line the access log keeps.
pub(crate) struct RequestLine {
    pub(crate) method: Method,
    pub(crate) target: String,
    pub(crate) version: &'static str,
    pub(crate) referer: String,
    pub(crate) user_agent: String,
}

impl RequestLine {
    pub(crate) fn of<B>(req: &Request<B>) -> RequestLine {
        let h = req.headers();
        let text = |n: header::HeaderName| {
            h.get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        RequestLine {
            method: req.method().clone(),
            target: req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".into()),
            version: match req.version() {
                Version::HTTP_09 => "HTTP/0.9",
                Version::HTTP_10 => "HTTP/1.0",
                Version::HTTP_2 => "HTTP/2.0",
                Version::HTTP_3 => "HTTP/3.0",
                _ => "HTTP/1.1",
            },
            referer: text(header::REFERER),
            user_agent: text(header::USER_AGENT),
        }
    }
}

/// What stage 9 logs of a request besides its line, as the stages left it.
pub(crate) struct Done {
    pub(crate) client: IpAddr,
    pub(crate) site: String,
    pub(crate) upstream: String,
    pub(crate) upstream_time: Option<Duration>,
    pub(crate) cache: Option<&'static str>,
    /// `Refusal::reason` when Rampart answered itself.
    pub(crate) reason: Option<&'static str>,
    pub(crate) request_id: String,
    /// When the request arrived.
    pub(crate) started: Instant,
}

/// 9: counts the answer now, and logs it when its body is done (bytes and
/// duration as the client got them), releasing the connection's in-flight
/// mark at the same moment.
pub(crate) fn finish(
    res: Response<Body>,
    done: Done,
    line: RequestLine,
    activity: Arc<Activity>,
    log: AccessLog,
    meters: Option<&SiteMeters>,
    metrics: &Metrics,
) -> Response<Body> {
    let status = res.status().as_u16();
    match meters {
        Some(m) => m.request(status),
        None => {
            metrics
                .requests
                .get_or_create(&RequestLabels {
                    site: String::new(),
                    status,
                })
                .inc();
        }
    }
    let time = SystemTime::now();
    let (parts, body) = res.into_parts();
    let on_end = move |bytes: u64, _complete: bool| {
        activity.in_flight.fetch_sub(1, Ordering::Relaxed);
        activity.touch();
        log.log(&Entry {
            client: done.client,
            time,
            method: line.method.to_string(),
            target: line.target,
            version: line.version,
            status,
            bytes,
            referer: line.referer,
            user_agent: line.user_agent,
            site: done.site,
            upstream: done.upstream,
            duration: done.started.elapsed(),
            upstream_duration: done.upstream_time,
            cache: done.cache,
            request_id: done.request_id,
            reason: done.reason,
        });
    };
    Response::from_parts(parts, body::boxed(Observed::new(body, on_end)))
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    fn entry() -> Entry {
        Entry {
            client: "203.0.113.9".parse().unwrap(),
            time: UNIX_EPOCH + Duration::from_secs(1_795_481_097),
            method: "GET".into(),
            target: "/web/login?x=\"y\"".into(),
            version: "HTTP/1.1",
            status: 200,
            bytes: 3300,
            referer: String::new(),
            user_agent: "curl/8.0".into(),
            site: "erp.example.com".into(),
            upstream: "127.0.0.1:8069".into(),
            duration: Duration::from_millis(12),
            upstream_duration: Some(Duration::from_millis(10)),
            cache: None,
            request_id: "0f8fad5b-d9cb-469f".into(),
            reason: None,
        }
    }

    #[test]
    fn combined_line() {
        let l = combined(&entry());
        assert_eq!(
            l,
            "203.0.113.9 - - [24/Nov/2026:00:44:57 +0000] \"GET /web/login?x=\\\"y\\\" HTTP/1.1\" 200 3300 \"-\" \"curl/8.0\" site=erp.example.com upstream=127.0.0.1:8069 rt=0.012 urt=0.010 rid=0f8fad5b-d9cb-469f\n"
        );
    }

    #[test]
    fn a_refused_request_says_why() {
        let e = Entry {
            status: 421,
            reason: Some("unknown-host"),
            ..entry()
        };
        assert!(combined(&e).ends_with(" rid=0f8fad5b-d9cb-469f reason=unknown-host\n"));
        let v: serde_json::Value = serde_json::from_str(&json(&e)).unwrap();
        assert_eq!(v["reason"], "unknown-host");
        let v: serde_json::Value = serde_json::from_str(&json(&entry())).unwrap();
        assert!(v["reason"].is_null());
    }

    #[test]
    fn the_request_line_as_the_client_sent_it() {
        let req = Request::builder()
            .method("PROPFIND")
            .uri("/web?a=1")
            .version(Version::HTTP_10)
            .header(header::USER_AGENT, "curl/8.0")
            .body(())
            .unwrap();
        let l = RequestLine::of(&req);
        assert_eq!(l.method, "PROPFIND");
        assert_eq!(l.target, "/web?a=1");
        assert_eq!(l.version, "HTTP/1.0");
        assert_eq!(l.user_agent, "curl/8.0");
        assert_eq!(l.referer, "");
        let h2 = Request::builder()
            .uri("https://erp.example.com")
            .version(Version::HTTP_2)
            .body(())
            .unwrap();
        let l = RequestLine::of(&h2);
        assert_eq!((l.target.as_str(), l.version), ("/", "HTTP/2.0"));
    }

    #[test]
    fn combined_quotes_and_rounds() {
        let mut e = entry();
        e.user_agent = "a\"b\\c\u{1}d\u{85}é".into();
        e.referer = "-".into();
        e.duration = Duration::from_micros(1_234_567);
        e.upstream_duration = None;
        e.cache = Some("hit");
        let l = combined(&e);
        assert!(l.contains("\"-\" \"a\\\"b\\\\c\\x01d\\x85é\" "), "{l}");
        assert!(
            l.ends_with("rt=1.235 urt=- rid=0f8fad5b-d9cb-469f cache=hit\n"),
            "{l}"
        );
        // The reused time string follows the clock.
        let later = combined(&Entry {
            time: e.time + Duration::from_secs(61),
            ..entry()
        });
        assert!(later.contains("[24/Nov/2026:00:45:58 +0000]"), "{later}");
    }

    #[test]
    fn json_line() {
        let v: serde_json::Value = serde_json::from_str(&json(&entry())).unwrap();
        assert_eq!(v["client"], "203.0.113.9");
        assert_eq!(v["status"], 200);
        assert_eq!(v["time"], "2026-11-24T00:44:57.000Z");
    }

    #[test]
    fn times_pad_days_and_keep_milliseconds() {
        let t = UNIX_EPOCH + Duration::from_millis(1_799_197_506_042);
        assert_eq!(clf_time(t), "06/Jan/2027:01:05:06 +0000");
        assert_eq!(rfc3339(t), "2027-01-06T01:05:06.042Z");
    }
}
