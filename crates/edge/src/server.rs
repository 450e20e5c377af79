//! Listeners and connections: accept with a connection cap, TLS with a
//! handshake deadline, HTTP/1.1 or HTTP/2 by ALPN (never by sniffing: a
//! silent client must not hold a task forever), idle timeouts that spare
//! connections waiting on a long Odoo request, and graceful shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use rampart_certs::CertStore;
use rampart_guard::Guard;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

use crate::access_log::AccessLog;
use crate::body::Body;
use crate::body_memory::BodyMemory;
use crate::config::{ListenConfig, LogConfig, SiteConfig};
use crate::headers::security::HeaderSet;
use crate::io::{Activity, Tracked, idle};
use crate::metrics::{Metrics, UpstreamLabels};
use crate::spool::Spool;
use crate::stage::framing::{Marks, Watched};
use crate::stage::site::SiteMatcher;
use crate::upstream::{Check, CheckSettings, HealthObserver, Pool, spawn_checks};
use crate::{admin, pipeline};

/// What the edge runs on; `reload` swaps it in whole.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// Spool files live in `<state_dir>/spool`.
    pub state_dir: std::path::PathBuf,
    pub listen: ListenConfig,
    pub log: LogConfig,
    pub sites: Vec<SiteConfig>,
}

/// Answers the admin API for another crate (bans, certificates):
/// (method, path, body) → Some((status, json)) when the path is its own.
pub type AdminHook = Arc<dyn Fn(&str, &str, &[u8]) -> Option<(u16, String)> + Send + Sync>;

/// One site, ready to serve.
pub struct SiteRuntime {
    /// For logs and metrics: the first host name.
    pub name: String,
    pub config: SiteConfig,
    pub headers: HeaderSet,
    pub odoo: Pool,
    pub websocket: Pool,
    pub client: Client<HttpConnector, Body>,
}

/// Everything a request needs from the config; replaced on reload while
/// requests in flight keep the one they started with.
pub struct Runtime {
    pub sites: Vec<Arc<SiteRuntime>>,
    pub matcher: SiteMatcher,
    pub listen: ListenConfig,
    /// From `listen.admin_token_file`, re-read on reload.
    pub admin_token: Option<Arc<admin::AdminToken>>,
    _checks: DropGuard,
}

/// Lives as long as the process.
pub struct Shared {
    pub runtime: ArcSwap<Runtime>,
    pub metrics: Metrics,
    pub access_log: AccessLog,
    pub certs: Arc<CertStore>,
    pub guard: Arc<Guard>,
    pub registry: Registry,
    pub admin_hooks: Vec<AdminHook>,
    /// Websocket tunnels, waited for on shutdown.
    pub tunnels: TaskTracker,
    /// Cancelled when the shutdown grace period is over.
    pub force_close: CancellationToken,
    /// Request and response bodies too large for memory.
    pub spool: Arc<Spool>,
    /// Open connections per client address.
    pub conn_cap: Arc<crate::conn_cap::ConnCap>,
    /// Odoo's immutable public answers, kept across reloads.
    pub cache: Arc<crate::cache::Cache>,
    /// Compressed static files, made once per (file, encoding).
    pub static_variants: crate::static_variants::StaticVariants,
}

/// What a request knows about its connection.
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub https: bool,
    pub sni: Option<String>,
    pub activity: Arc<Activity>,
    /// HTTP/1 requests to refuse for their framing (stage/framing.rs).
    pub framing: Arc<Marks>,
    /// Cancelled when the connection is stuck behind answers its client
    /// does not take (an HTTP/1.1 answer, or every HTTP/2 stream in flight,
    /// missed its send deadline): the connection is closed.
    pub stalled: CancellationToken,
    /// HTTP/2 streams of this connection that missed their send deadline.
    pub stalled_streams: std::sync::atomic::AtomicU64,
}

#[derive(Debug)]
pub struct EdgeError(pub String);

impl std::fmt::Display for EdgeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for EdgeError {}

pub struct Edge {
    shared: Arc<Shared>,
    https: TcpListener,
    http: Option<TcpListener>,
    admin: Option<admin::AdminListener>,
}

fn site_name(c: &SiteConfig) -> String {
    match c.hosts.first().map(String::as_str) {
        Some("*") | None => "default".into(),
        Some(h) => h.to_string(),
    }
}

fn build_runtime(cfg: &EdgeConfig, metrics: &Metrics) -> Result<Runtime, EdgeError> {
    let stop = CancellationToken::new();
    let mut sites = Vec::new();
    for (i, c) in cfg.sites.iter().enumerate() {
        let headers =
            HeaderSet::new(&c.headers).map_err(|e| EdgeError(format!("site[{i}].{e}")))?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(c.connect_timeout.get()));
        connector.set_nodelay(true);
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_timer(TokioTimer::new())
            .pool_max_idle_per_host(c.max_conns)
            .build(connector);
        let site = SiteRuntime {
            name: site_name(c),
            config: c.clone(),
            headers,
            odoo: Pool::new(
                &c.odoo,
                c.max_conns,
                c.conns_per_client(),
                c.queue_timeout.get(),
            ),
            websocket: Pool::new(
                &c.websocket,
                c.max_websockets,
                c.websockets_per_client(),
                c.queue_timeout.get(),
            )
            .hard_per_client(),
            client,
        };
        let healthy = metrics.upstream_healthy.clone();
        let on_change: HealthObserver = Arc::new(move |site, up, ok| {
            healthy
                .get_or_create(&UpstreamLabels {
                    site: site.to_string(),
                    upstream: up.to_string(),
                })
                .set(i64::from(ok));
        });
        let hc = &c.health_check;
        if !hc.path.is_empty() {
            let http = Arc::new(CheckSettings {
                check: Check::Http(hc.path.clone()),
                interval: hc.interval.get(),
                timeout: hc.timeout.get(),
                fall: hc.fall,
                rise: hc.rise,
            });
            spawn_checks(
                site.name.clone(),
                &site.odoo,
                http,
                stop.clone(),
                on_change.clone(),
            );
            let tcp = Arc::new(CheckSettings {
                check: Check::Tcp,
                interval: hc.interval.get(),
                timeout: hc.timeout.get(),
                fall: hc.fall,
                rise: hc.rise,
            });
            spawn_checks(
                site.name.clone(),
                &site.websocket,
                tcp,
                stop.clone(),
                on_change,
            );
        }
        sites.push(Arc::new(site));
    }
    let matcher = SiteMatcher::new(cfg.sites.iter().map(|s| s.hosts.as_slice()));
    let admin_token = match &cfg.listen.admin_token_file {
        Some(p) => Some(Arc::new(admin::AdminToken::load(p).map_err(EdgeError)?)),
        None => None,
    };
    Ok(Runtime {
        sites,
        matcher,
        listen: cfg.listen.clone(),
        admin_token,
        _checks: stop.drop_guard(),
    })
}

pub(crate) async fn bind(what: &str, addr: SocketAddr) -> Result<TcpListener, EdgeError> {
    let sock = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }
    .map_err(|e| EdgeError(format!("listen.{what}: {e}")))?;
    let _ = sock.set_reuseaddr(true);
    sock.bind(addr)
        .map_err(|e| EdgeError(format!("listen.{what} = \"{addr}\": cannot bind: {e}")))?;
    sock.listen(4096)
        .map_err(|e| EdgeError(format!("listen.{what} = \"{addr}\": cannot listen: {e}")))
}

impl Edge {
    /// Binds the listeners and starts health checks; `registry` already
    /// holds the other crates' metrics.
    pub async fn bind(
        cfg: EdgeConfig,
        certs: Arc<CertStore>,
        guard: Arc<Guard>,
        mut registry: Registry,
        admin_hooks: Vec<AdminHook>,
    ) -> Result<Edge, EdgeError> {
        let metrics = Metrics::new(&mut registry);
        let access_log = AccessLog::open(
            &cfg.log.access,
            cfg.log.format,
            metrics.access_log_dropped.clone(),
        )
        .map_err(|e| EdgeError(format!("log.access = {:?}: {e}", cfg.log.access)))?;
        let runtime = build_runtime(&cfg, &metrics)?;
        admin::status::mark_started();
        let largest_body = cfg.sites.iter().map(|s| s.max_body.get()).max();
        let per_client = cfg
            .listen
            .spool_per_client
            .map(|b| b.get())
            .unwrap_or((cfg.listen.spool_max.get() / 4).max(largest_body.unwrap_or(0)));
        let spool = Spool::open(
            &cfg.state_dir,
            cfg.listen.spool_max.get(),
            per_client,
            BodyMemory::new(
                usize::try_from(cfg.listen.buffer_memory_per_client.get()).unwrap_or(usize::MAX),
                usize::try_from(cfg.listen.buffer_memory_max.get()).unwrap_or(usize::MAX),
            ),
            crate::spool::files_max(),
        )
        .map_err(|e| {
            EdgeError(format!(
                "state_dir {:?}: cannot prepare the spool directory: {e}",
                cfg.state_dir.join("spool").display().to_string()
            ))
        })?;
        registry.register(
            "rampart_buffered_memory_bytes",
            "Bytes buffered request and response bodies hold in memory now",
            spool.memory.gauge.clone(),
        );
        registry.register(
            "rampart_spooled_bytes",
            "Bytes of request and response bodies written to spool files",
            spool.written.clone(),
        );
        let cache = if cfg.sites.iter().any(|s| s.cache.disk.get() > 0) {
            let dir = cfg.state_dir.join("cache");
            crate::cache::Cache::with_disk(&dir).map_err(|e| {
                EdgeError(format!("cache.disk: cannot prepare {}: {e}", dir.display()))
            })?
        } else {
            crate::cache::Cache::default()
        };
        let cache = Arc::new(cache);
        cache.metrics.register(&mut registry);
        let https = bind("https", cfg.listen.https).await?;
        let http = match cfg.listen.http {
            Some(a) => Some(bind("http", a).await?),
            None => None,
        };
        let admin = match &cfg.listen.admin {
            Some(a) => Some(admin::AdminListener::bind(a).await?),
            None => None,
        };
        let shared = Arc::new(Shared {
            runtime: ArcSwap::from_pointee(runtime),
            metrics,
            access_log,
            certs,
            guard,
            registry,
            admin_hooks,
            tunnels: TaskTracker::new(),
            force_close: CancellationToken::new(),
            spool,
            conn_cap: Arc::default(),
            cache,
            static_variants: Default::default(),
        });
        Ok(Edge {
            shared,
            https,
            http,
            admin,
        })
    }

    pub fn https_addr(&self) -> SocketAddr {
        self.https.local_addr().expect("bound")
    }

    pub fn handle(&self) -> EdgeHandle {
        EdgeHandle {
            shared: self.shared.clone(),
        }
    }

    /// Serves until `shutdown` is cancelled, then stops accepting, lets
    /// requests and tunnels finish for `shutdown_grace`, and closes the rest.
    pub async fn run(self, shutdown: CancellationToken) {
        let shared = self.shared;
        let listen = shared.runtime.load().listen.clone();
        let limit = Arc::new(Semaphore::new(listen.max_connections));
        let conns = TaskTracker::new();
        let tls = shared.certs.server_config();
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let mut loops = Vec::new();
        loops.push(tokio::spawn(accept_loop(
            self.https,
            Some(acceptor),
            shared.clone(),
            limit.clone(),
            conns.clone(),
            shutdown.clone(),
        )));
        if let Some(l) = self.http {
            loops.push(tokio::spawn(accept_loop(
                l,
                None,
                shared.clone(),
                limit.clone(),
                conns.clone(),
                shutdown.clone(),
            )));
        }
        if let Some(l) = self.admin {
            loops.push(tokio::spawn(admin::serve(
                l,
                shared.clone(),
                shutdown.clone(),
            )));
        }
        shutdown.cancelled().await;
        for l in loops {
            let _ = l.await;
        }
        conns.close();
        shared.tunnels.close();
        let grace = shared.runtime.load().listen.shutdown_grace.get();
        let drained = tokio::time::timeout(grace, async {
            conns.wait().await;
            shared.tunnels.wait().await;
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                connections = conns.len(),
                tunnels = shared.tunnels.len(),
                "shutdown grace period over: closing what is left"
            );
            shared.force_close.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                conns.wait().await;
                shared.tunnels.wait().await;
            })
            .await;
        }
        shared.access_log.flush();
    }
}

/// For the binary: reload and log reopening while the edge runs.
#[derive(Clone)]
pub struct EdgeHandle {
    shared: Arc<Shared>,
}

impl EdgeHandle {
    /// Applies a new config to new requests; requests in flight finish on
    /// the old one. Listener addresses only change with a restart.
    pub fn reload(&self, cfg: EdgeConfig) -> Result<(), EdgeError> {
        let old = self.shared.runtime.load();
        if old.listen.https != cfg.listen.https
            || old.listen.http != cfg.listen.http
            || old.listen.admin != cfg.listen.admin
        {
            tracing::warn!("listen addresses changed: they take effect at the next restart");
        }
        let mut runtime = build_runtime(&cfg, &self.shared.metrics)?;
        runtime.listen.https = old.listen.https;
        runtime.listen.http = old.listen.http;
        runtime.listen.admin = old.listen.admin.clone();
        self.shared.runtime.store(Arc::new(runtime));
        Ok(())
    }

    pub fn reopen_logs(&self) {
        self.shared.access_log.reopen();
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    limit: Arc<Semaphore>,
    conns: TaskTracker,
    shutdown: CancellationToken,
) {
    loop {
        // Accept first, then wait for a slot: a listener that waited for a
        // slot before accepting would hold one while idle and starve the
        // other listener at the cap.
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: pause, don't spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => p.expect("never closed"),
            _ = shutdown.cancelled() => return,
        };
        let shared = shared.clone();
        let tls = tls.clone();
        let shutdown = shutdown.clone();
        conns.spawn(async move {
            shared.metrics.connections.inc();
            serve_connection(stream, peer, tls, &shared, shutdown).await;
            shared.metrics.connections.dec();
            drop(permit);
        });
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: &Arc<Shared>,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let listen = shared.runtime.load().listen.clone();
    // Behind an L4 balancer that speaks the PROXY protocol, the header's
    // source address stands for the peer.
    let peer = if shared.guard.expects_proxy_header(peer.ip()) {
        match tokio::time::timeout(
            listen.handshake_timeout.get(),
            rampart_guard::read_proxy_header(&stream),
        )
        .await
        {
            Ok(Ok(source)) => source.unwrap_or(peer),
            Ok(Err(e)) => {
                tracing::warn!(%peer, "PROXY protocol header expected from this trusted proxy: {e}");
                return;
            }
            Err(_) => {
                tracing::warn!(%peer, "PROXY protocol header did not arrive in time");
                return;
            }
        }
    } else {
        peer
    };
    // One address may hold only its share of `max_connections`.
    let share = match listen.max_connections_per_client {
        // Never below 64: a small `max_connections` keeps its queueing
        // (extra clients wait for a slot) and one office's browsers fit.
        0 => (listen.max_connections / 16).max(64),
        n => n,
    };
    let Some(_conn_slot) = shared.conn_cap.try_take(peer.ip(), share) else {
        tracing::debug!(%peer, share, "connection closed: this address holds its share of max_connections");
        return;
    };
    let activity = Activity::new();
    let io = Tracked::new(stream, activity.clone());
    match tls {
        Some(acceptor) => {
            let tls_stream =
                match tokio::time::timeout(listen.handshake_timeout.get(), acceptor.accept(io))
                    .await
                {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        shared.metrics.tls_failures.inc();
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        shared.metrics.tls_failures.inc();
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
            let (_, session) = tls_stream.get_ref();
            let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
            // A TLS-ALPN-01 validation only needs the handshake.
            if alpn.as_deref() == Some(b"acme-tls/1") {
                return;
            }
            let marks = Arc::new(Marks::default());
            let info = Arc::new(ConnInfo {
                peer,
                https: true,
                sni: session.server_name().map(str::to_ascii_lowercase),
                activity: activity.clone(),
                framing: marks.clone(),
                stalled: CancellationToken::new(),
                stalled_streams: std::sync::atomic::AtomicU64::new(0),
            });
            if alpn.as_deref() != Some(b"h2") {
                let io = TokioIo::new(Watched::new(tls_stream, marks));
                drive(io, info, false, shared, &listen, shutdown).await;
                return;
            }
            drive(
                TokioIo::new(tls_stream),
                info,
                true,
                shared,
                &listen,
                shutdown,
            )
            .await;
        }
        None => {
            let marks = Arc::new(Marks::default());
            let info = Arc::new(ConnInfo {
                peer,
                https: false,
                sni: None,
                activity: activity.clone(),
                framing: marks.clone(),
                stalled: CancellationToken::new(),
                stalled_streams: std::sync::atomic::AtomicU64::new(0),
            });
            let io = TokioIo::new(Watched::new(io, marks));
            drive(io, info, false, shared, &listen, shutdown).await;
        }
    }
}

async fn drive<I>(
    io: I,
    info: Arc<ConnInfo>,
    h2: bool,
    shared: &Arc<Shared>,
    listen: &ListenConfig,
    shutdown: CancellationToken,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let activity = info.activity.clone();
    let stalled = info.stalled.clone();
    let svc_shared = shared.clone();
    let service = service_fn(move |req| {
        let info = info.clone();
        let shared = svc_shared.clone();
        async move { Ok::<_, Infallible>(pipeline::handle(req, info, shared).await) }
    });
    let force = shared.force_close.clone();
    // The first request must start within header_timeout; later ones
    // within idle_timeout.
    let first_limit = listen.header_timeout.get().min(listen.idle_timeout.get());
    let idle_limit = listen.idle_timeout.get();
    let watchdog = async {
        idle(&activity, first_limit).await;
        if activity
            .in_flight
            .load(std::sync::atomic::Ordering::Relaxed)
            == 0
            && !seen_request(&activity)
        {
            return;
        }
        idle(&activity, idle_limit).await;
    };
    tokio::pin!(watchdog);
    if h2 {
        let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        b.timer(TokioTimer::new())
            .max_header_list_size(32 * 1024)
            .max_concurrent_streams(128)
            .keep_alive_interval(Some(Duration::from_secs(60)))
            .keep_alive_timeout(Duration::from_secs(20));
        let conn = b.serve_connection(io, service);
        tokio::pin!(conn);
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = stalled.cancelled() => return,
            _ = &mut watchdog => conn.as_mut().graceful_shutdown(),
            _ = shutdown.cancelled() => conn.as_mut().graceful_shutdown(),
        }
        tokio::select! {
            _ = conn.as_mut() => {}
            _ = force.cancelled() => {}
        }
    } else {
        let mut b = hyper::server::conn::http1::Builder::new();
        b.timer(TokioTimer::new())
            .header_read_timeout(listen.header_timeout.get())
            .max_buf_size(64 * 1024)
            // hyper's read buffer can overshoot max_buf_size: bound the head itself (431).
            .max_header_size(64 * 1024)
            .keep_alive(true);
        let conn = b.serve_connection(io, service).with_upgrades();
        tokio::pin!(conn);
        tokio::select! {
            _ = conn.as_mut() => return,
            // A client that takes no bytes of its answer: close at once.
            _ = stalled.cancelled() => return,
            _ = &mut watchdog => conn.as_mut().graceful_shutdown(),
            _ = shutdown.cancelled() => conn.as_mut().graceful_shutdown(),
        }
        tokio::select! {
            _ = conn.as_mut() => {}
            _ = force.cancelled() => {}
        }
    }
}

/// Whether the connection has carried a request: until it has, silence is
/// held to `header_timeout` (a client that connects and says nothing);
/// after, to `idle_timeout` (keep-alive between requests).
fn seen_request(activity: &Activity) -> bool {
    activity.requests.load(std::sync::atomic::Ordering::Relaxed) > 0
}
