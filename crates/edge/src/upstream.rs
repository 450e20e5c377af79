//! Upstream pools: Odoo's HTTP workers and its evented worker(s).
//!
//! Odoo runs a fixed number of worker processes, so each upstream has a
//! concurrency cap; requests over it wait (up to `queue_timeout`, then
//! 503) instead of piling onto a server that can only queue them anyway.
//! Among healthy upstreams the one with the fewest requests in flight is
//! chosen. An active check takes a failing upstream out after `fall`
//! failures and puts it back after `rise` successes; when every upstream
//! is out, requests still try them (a fresh 502 beats a guess).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

pub struct Upstream {
    /// `host:port` as configured.
    pub addr: String,
    active: AtomicUsize,
    healthy: AtomicBool,
    fails: AtomicU32,
    oks: AtomicU32,
    permits: Arc<Semaphore>,
}

impl Upstream {
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Records a check or request outcome; returns Some(new state) when it flips.
    pub fn record(&self, ok: bool, fall: u32, rise: u32) -> Option<bool> {
        if ok {
            self.fails.store(0, Ordering::Relaxed);
            let oks = self.oks.fetch_add(1, Ordering::Relaxed) + 1;
            if !self.is_healthy() && oks >= rise {
                self.healthy.store(true, Ordering::Relaxed);
                return Some(true);
            }
        } else {
            self.oks.store(0, Ordering::Relaxed);
            let fails = self.fails.fetch_add(1, Ordering::Relaxed) + 1;
            if self.is_healthy() && fails >= fall {
                self.healthy.store(false, Ordering::Relaxed);
                return Some(false);
            }
        }
        None
    }
}

/// One request's claim on an upstream: counts as in flight until dropped
/// (which happens when the response body is done).
pub struct Lease {
    pub upstream: Arc<Upstream>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.upstream.active.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug)]
pub struct QueueTimeout;

pub struct Pool {
    pub upstreams: Vec<Arc<Upstream>>,
    next: AtomicUsize,
    queue_timeout: Duration,
}

impl Pool {
    pub fn new(addrs: &[String], max_conns: usize, queue_timeout: Duration) -> Pool {
        Pool {
            upstreams: addrs
                .iter()
                .map(|a| {
                    Arc::new(Upstream {
                        addr: a.clone(),
                        active: AtomicUsize::new(0),
                        healthy: AtomicBool::new(true),
                        fails: AtomicU32::new(0),
                        oks: AtomicU32::new(0),
                        permits: Arc::new(Semaphore::new(max_conns)),
                    })
                })
                .collect(),
            next: AtomicUsize::new(0),
            queue_timeout,
        }
    }

    /// Least connections among healthy upstreams (round-robin on ties),
    /// waiting for a slot when all are at their cap.
    pub async fn acquire(&self) -> Result<Lease, QueueTimeout> {
        self.acquire_avoiding(None).await.ok_or(QueueTimeout)?
    }

    /// The same, never choosing `avoid` (the upstream that just refused a
    /// connection). `None` when no other upstream exists.
    pub async fn acquire_avoiding(
        &self,
        avoid: Option<&Arc<Upstream>>,
    ) -> Option<Result<Lease, QueueTimeout>> {
        let n = self.upstreams.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let usable = |u: &&Arc<Upstream>| avoid.is_none_or(|a| !Arc::ptr_eq(a, u));
        let any_healthy = self.upstreams.iter().filter(usable).any(|u| u.is_healthy());
        let chosen = (0..n)
            .map(|i| &self.upstreams[(start + i) % n])
            .filter(usable)
            .filter(|u| u.is_healthy() || !any_healthy)
            .min_by_key(|u| (u.permits.available_permits() == 0, u.active()))?
            .clone();
        let permit = match chosen.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => match tokio::time::timeout(
                self.queue_timeout,
                chosen.permits.clone().acquire_owned(),
            )
            .await
            {
                Ok(p) => p.expect("semaphores are never closed"),
                Err(_) => return Some(Err(QueueTimeout)),
            },
        };
        chosen.active.fetch_add(1, Ordering::Relaxed);
        Some(Ok(Lease {
            upstream: chosen,
            _permit: permit,
        }))
    }
}

/// How an upstream is checked.
#[derive(Clone)]
pub enum Check {
    /// GET this path; healthy on 2xx.
    Http(String),
    /// A TCP connect (the evented worker has no cheap HTTP answer before 16).
    Tcp,
}

pub struct CheckSettings {
    pub check: Check,
    pub interval: Duration,
    pub timeout: Duration,
    pub fall: u32,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn least_connections_and_health() {
        let pool = Pool::new(&["a:1".into(), "b:1".into()], 2, Duration::from_millis(50));
        let l1 = pool.acquire().await.unwrap();
        let l2 = pool.acquire().await.unwrap();
        assert_ne!(l1.upstream.addr, l2.upstream.addr, "spread over both");
        // Take b out: everything goes to a.
        let b = pool.upstreams[1].clone();
        assert_eq!(b.record(false, 2, 1), None);
        assert_eq!(b.record(false, 2, 1), Some(false));
        drop((l1, l2));
        let l3 = pool.acquire().await.unwrap();
        assert_eq!(l3.upstream.addr, "a:1");
        let l4 = pool.acquire().await.unwrap();
        assert_eq!(l4.upstream.addr, "a:1");
        // a is at its cap of 2: the queue times out.
        assert!(pool.acquire().await.is_err());
        drop(l3);
        assert!(pool.acquire().await.is_ok());
        assert_eq!(b.record(true, 2, 1), Some(true));
    }

    #[tokio::test]
    async fn avoiding_picks_another_or_none() {
        let pool = Pool::new(&["a:1".into(), "b:1".into()], 4, Duration::from_millis(50));
        let a = pool.upstreams[0].clone();
        for _ in 0..4 {
            let l = pool.acquire_avoiding(Some(&a)).await.unwrap().unwrap();
            assert_eq!(l.upstream.addr, "b:1");
        }
        let single = Pool::new(&["a:1".into()], 4, Duration::from_millis(50));
        let only = single.upstreams[0].clone();
        assert!(single.acquire_avoiding(Some(&only)).await.is_none());
    }

    #[tokio::test]
    async fn all_down_still_tries() {
        let pool = Pool::new(&["a:1".into()], 4, Duration::from_millis(50));
        pool.upstreams[0].record(false, 1, 1);
        assert!(pool.acquire().await.is_ok());
    }
}
