//! The access log: one line a request, written when the response body is
//! done (so bytes and duration are what the client got). Combined format
//! (what fail2ban and log tools read) with site, upstream and timings
//! appended, or JSON. A writer thread batches lines so request tasks never
//! wait on the disk; SIGUSR1 reopens the file after rotation.

use std::io::Write;
use std::net::IpAddr;
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::LogFormat;

pub struct Entry {
    pub client: IpAddr,
    pub time: SystemTime,
    pub method: String,
    pub target: String,
    pub version: &'static str,
    pub status: u16,
    pub bytes: u64,
    pub referer: String,
    pub user_agent: String,
    pub site: String,
    pub upstream: String,
    pub duration: Duration,
    pub upstream_duration: Option<Duration>,
}

enum Msg {
    Line(String),
    Reopen,
}

#[derive(Clone)]
pub struct AccessLog {
    tx: Option<mpsc::SyncSender<Msg>>,
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
                tx: None,
                format,
                dropped,
            });
        }
        let mut out = Output::open(dest)?;
        let (tx, rx) = mpsc::sync_channel::<Msg>(65_536);
        let dest = dest.to_string();
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                while let Ok(msg) = rx.recv() {
                    let handle = |m: Msg, out: &mut Output| match m {
                        Msg::Line(l) => {
                            let _ = out.w.write_all(l.as_bytes());
                        }
                        Msg::Reopen => {
                            let _ = out.w.flush();
                            match Output::open(&dest) {
                                Ok(o) => *out = o,
                                Err(e) => {
                                    eprintln!("rampart: cannot reopen access log {dest}: {e}")
                                }
                            }
                        }
                    };
                    handle(msg, &mut out);
                    while let Ok(m) = rx.try_recv() {
                        handle(m, &mut out);
                    }
                    let _ = out.w.flush();
                }
            })?;
        Ok(AccessLog {
            tx: Some(tx),
            format,
            dropped,
        })
    }

    pub fn reopen(&self) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Msg::Reopen);
        }
    }

    pub fn log(&self, e: &Entry) {
        let Some(tx) = &self.tx else { return };
        let line = match self.format {
            LogFormat::Combined => combined(e),
            LogFormat::Json => json(e),
        };
        if tx.try_send(Msg::Line(line)).is_err() {
            self.dropped.inc();
        }
    }
}

struct Output {
    w: Box<dyn Write + Send>,
}

impl Output {
    fn open(dest: &str) -> std::io::Result<Output> {
        let w: Box<dyn Write + Send> = if dest == "-" {
            Box::new(std::io::BufWriter::with_capacity(
                64 * 1024,
                std::io::stdout(),
            ))
        } else {
            if let Some(parent) = std::path::Path::new(dest).parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent)?;
            }
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dest)?;
            Box::new(std::io::BufWriter::with_capacity(64 * 1024, f))
        };
        Ok(Output { w })
    }
}

fn dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

/// Quotes what a client controls so a line cannot be forged.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fn combined(e: &Entry) -> String {
    format!(
        "{} - - [{}] \"{} {} {}\" {} {} \"{}\" \"{}\" site={} upstream={} rt={:.3} urt={}\n",
        e.client,
        clf_time(e.time),
        quote(&e.method),
        quote(&e.target),
        e.version,
        e.status,
        e.bytes,
        quote(dash(&e.referer)),
        quote(dash(&e.user_agent)),
        dash(&e.site),
        dash(&e.upstream),
        e.duration.as_secs_f64(),
        e.upstream_duration
            .map(|d| format!("{:.3}", d.as_secs_f64()))
            .unwrap_or_else(|| "-".into()),
    )
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
    })
    .to_string();
    s.push('\n');
    s
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn parts(t: SystemTime) -> (i64, u32, u32, u64, u64, u64, u32) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = civil((secs / 86_400) as i64);
    let rem = secs % 86_400;
    (
        y,
        m,
        day,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis(),
    )
}

fn clf_time(t: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, m, d, hh, mm, ss, _) = parts(t);
    format!(
        "{d:02}/{}/{y}:{hh:02}:{mm:02}:{ss:02} +0000",
        MONTHS[(m - 1) as usize]
    )
}

pub fn rfc3339(t: SystemTime) -> String {
    let (y, m, d, hh, mm, ss, ms) = parts(t);
    format!("{y}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{ms:03}Z")
}

#[cfg(test)]
mod tests {
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
        }
    }

    #[test]
    fn combined_line() {
        let l = combined(&entry());
        assert_eq!(
            l,
            "203.0.113.9 - - [24/Nov/2026:00:44:57 +0000] \"GET /web/login?x=\\\"y\\\" HTTP/1.1\" 200 3300 \"-\" \"curl/8.0\" site=erp.example.com upstream=127.0.0.1:8069 rt=0.012 urt=0.010\n"
        );
    }

    #[test]
    fn json_line() {
        let v: serde_json::Value = serde_json::from_str(&json(&entry())).unwrap();
        assert_eq!(v["client"], "203.0.113.9");
        assert_eq!(v["status"], 200);
        assert_eq!(v["time"], "2026-11-24T00:44:57.000Z");
    }
}
