//! The active health check: a GET of the configured path (or a TCP
//! connect) every `interval`, whose outcomes take an upstream out of
//! rotation and put it back ([`Upstream::record`](super::Upstream::record)). Apart from the pool
//! because it runs on its own timer and only flips the upstream's flag the
//! pool reads.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Pool;

/// How an upstream is checked.
#[derive(Clone)]
pub enum Check {
    /// GET this path; healthy on 2xx.
    Http(String),
    /// A TCP connect (the evented worker has no cheap HTTP answer before 16).
    Tcp,
}

/// How and how often one pool's upstreams are checked.
pub struct CheckSettings {
    /// What a check does.
    pub check: Check,
    /// Time between two checks.
    pub interval: Duration,
    /// How long one check may take.
    pub timeout: Duration,
    /// Consecutive failures that take an upstream out.
    pub fall: u32,
    /// Consecutive successes that put it back.
    pub rise: u32,
}

/// Told (site, upstream, healthy) after every check.
pub type HealthObserver = Arc<dyn Fn(&str, &str, bool) + Send + Sync>;

/// Runs the active health check for every upstream of a pool until
/// `stop` is cancelled (on reload or shutdown).
pub fn spawn_checks(
    site: String,
    pool: &Pool,
    settings: Arc<CheckSettings>,
    stop: CancellationToken,
    on_change: HealthObserver,
) {
    for up in &pool.upstreams {
        let up = up.clone();
        let settings = settings.clone();
        let stop = stop.clone();
        let on_change = on_change.clone();
        let site = site.clone();
        tokio::spawn(async move {
            loop {
                let ok = tokio::select! {
                    _ = stop.cancelled() => return,
                    ok = check_once(&up.addr, &settings) => ok,
                };
                if let Some(now) = up.record(ok, settings.fall, settings.rise) {
                    if now {
                        tracing::info!(site = %site, upstream = %up.addr, "upstream healthy again: back in rotation");
                    } else {
                        tracing::warn!(site = %site, upstream = %up.addr, "upstream failed its health check: taken out of rotation");
                    }
                }
                on_change(&site, &up.addr, up.is_healthy());
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(settings.interval) => {}
                }
            }
        });
    }
}

async fn check_once(addr: &str, s: &CheckSettings) -> bool {
    let fut = async {
        let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let Check::Http(path) = &s.check else {
            return Some(true);
        };
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut send, conn) =
            hyper::client::conn::http1::handshake::<_, http_body_util::Empty<bytes::Bytes>>(io)
                .await
                .ok()?;
        tokio::spawn(conn);
        let req = http::Request::get(path.as_str())
            .header(http::header::HOST, addr)
            .header(http::header::USER_AGENT, "rampart-health-check")
            .body(http_body_util::Empty::new())
            .ok()?;
        let res = send.send_request(req).await.ok()?;
        Some(res.status().is_success())
    };
    tokio::time::timeout(s.timeout, fut)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}
