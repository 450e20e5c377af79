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
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use rampart_certs::CertStore;
use rampart_guard::Guard;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::access_log::AccessLog;
use crate::body_memory::BodyMemory;
use crate::config::ListenConfig;
use crate::error::EdgeError;
use crate::framing::{Marks, Watched};
use crate::io::{Activity, Tracked, idle};
use crate::metrics::Metrics;
use crate::socket::bind;
use crate::spool::Spool;
use crate::state::{AdminHook, ConnInfo, EdgeConfig, Shared, build_runtime};
use crate::{admin, pipeline};

/// The bound listeners and the state they share: the running edge.
pub struct Edge {
    shared: Arc<Shared>,
    https: TcpListener,
    http: Option<TcpListener>,
    admin: Option<admin::AdminListener>,
}

fn local_addr(l: &TcpListener) -> Result<SocketAddr, EdgeError> {
    l.local_addr()
        .map_err(|e| EdgeError(format!("cannot read a bound listener's address: {e}")))
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
        let mut runtime = build_runtime(&cfg, &metrics)?;
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
        // Port 0 in the config: the kernel picked one; redirects to https
        // and the READY status name the real ports.
        runtime.listen.https = local_addr(&https)?;
        runtime.listen.http = http.as_ref().map(local_addr).transpose()?;
        if let Some(admin::AdminListener::Tcp(l)) = &admin {
            runtime.listen.admin = Some(admin::AdminAddr::Tcp(local_addr(l)?));
        }
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

    /// The HTTPS listener's address (the real port when the config said 0).
    pub fn https_addr(&self) -> SocketAddr {
        self.https.local_addr().expect("bound")
    }

    /// The plain-HTTP listener's address, if there is one (the real port
    /// when the config said 0).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The admin listener's address (`unix:/path` for a socket).
    pub fn admin_addr(&self) -> Option<admin::AdminAddr> {
        match self.admin.as_ref()? {
            admin::AdminListener::Tcp(l) => l.local_addr().ok().map(admin::AdminAddr::Tcp),
            admin::AdminListener::Unix(_, path, _) => Some(admin::AdminAddr::Unix(path.clone())),
        }
    }

    /// A handle for reloads and log reopening while [`Edge::run`] serves.
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
        // `old` holds the bound addresses; port 0 in the file matches any.
        let same = |bound: SocketAddr, want: SocketAddr| {
            bound == want || (want.port() == 0 && bound.ip() == want.ip())
        };
        let same_admin = match (&old.listen.admin, &cfg.listen.admin) {
            (Some(admin::AdminAddr::Tcp(b)), Some(admin::AdminAddr::Tcp(w))) => same(*b, *w),
            (b, w) => b == w,
        };
        let same_http = match (old.listen.http, cfg.listen.http) {
            (Some(b), Some(w)) => same(b, w),
            (b, w) => b == w,
        };
        if !same(old.listen.https, cfg.listen.https) || !same_http || !same_admin {
            tracing::warn!("listen addresses changed: they take effect at the next restart");
        }
        let mut runtime = build_runtime(&cfg, &self.shared.metrics)?;
        runtime.listen.https = old.listen.https;
        runtime.listen.http = old.listen.http;
        runtime.listen.admin = old.listen.admin.clone();
        self.shared.runtime.store(Arc::new(runtime));
        Ok(())
    }

    /// Reopens the access log (after logrotate).
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
        // The request's future is ~6 KB; boxed once here, what hyper moves
        // about (an HTTP/2 stream is spawned, then set in its task) is a
        // pointer.
        let handled = Box::pin(pipeline::handle(req, info, shared));
        async move { Ok::<_, Infallible>(handled.await) }
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
