//! Where request state lives: what lives as long as the process
//! (`Shared`), what a reload replaces whole (`Runtime`, one `SiteRuntime`
//! a site), what a request knows of its connection (`ConnInfo`). The
//! listener (`server`) builds them; the pipeline, admin API and websocket
//! tunnel read them, so none of those depends on the listener.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::HeaderValue;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use prometheus_client::registry::Registry;
use rampart_certs::CertStore;
use rampart_guard as guard;
use rampart_guard::Guard;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

use crate::access_log::{AccessLog, Done};
use crate::admin_token::AdminToken;
use crate::body::Body;
use crate::config::{ListenConfig, LogConfig, SiteConfig};
use crate::error::EdgeError;
use crate::framing::Marks;
use crate::headers::security::HeaderSet;
use crate::io::Activity;
use crate::metrics::{Metrics, SiteMeters, UpstreamLabels};
use crate::site_matcher::SiteMatcher;
use crate::spool::Spool;
use crate::upstream::{self, Check, CheckSettings, HealthObserver, Pool, spawn_checks};

/// What the edge runs on; `reload` swaps it in whole.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// Spool files live in `<state_dir>/spool`.
    pub state_dir: std::path::PathBuf,
    /// `[listen]`.
    pub listen: ListenConfig,
    /// `[log]`.
    pub log: LogConfig,
    /// The `[[site]]` sections, in order.
    pub sites: Vec<SiteConfig>,
}

/// Answers the admin API for another crate (bans, certificates):
/// (method, path, body) → Some((status, json)) when the path is its own.
pub type AdminHook = Arc<dyn Fn(&str, &str, &[u8]) -> Option<(u16, String)> + Send + Sync>;

/// One site, ready to serve.
pub struct SiteRuntime {
    /// For logs and metrics: the first host name.
    pub name: String,
    /// The site's section as configured.
    pub config: SiteConfig,
    /// Its security headers, parsed once.
    pub headers: HeaderSet,
    /// Odoo's HTTP workers.
    pub odoo: Pool,
    /// Odoo's evented workers (websocket, longpolling).
    pub websocket: Pool,
    /// The HTTP client that talks to this site's upstreams.
    pub client: Client<HttpConnector, Body>,
    /// This site's metric series, resolved once.
    pub meters: SiteMeters,
}

/// Everything a request needs from the config; replaced on reload while
/// requests in flight keep the one they started with.
pub struct Runtime {
    /// Every site, in config order.
    pub sites: Vec<Arc<SiteRuntime>>,
    /// Finds a request's site by host.
    pub matcher: SiteMatcher,
    /// `[listen]`, as of this runtime.
    pub listen: ListenConfig,
    /// From `listen.admin_token_file`, re-read on reload.
    pub admin_token: Option<Arc<AdminToken>>,
    _checks: DropGuard,
}

/// Lives as long as the process.
pub struct Shared {
    /// The runtime requests start with; swapped whole on reload.
    pub runtime: ArcSwap<Runtime>,
    /// The edge's metric families.
    pub metrics: Metrics,
    /// The access log.
    pub access_log: AccessLog,
    /// Certificates for the TLS listener (and ACME challenges).
    pub certs: Arc<CertStore>,
    /// The login and brute-force guard.
    pub guard: Arc<Guard>,
    /// Every metric of the process, for `/metrics`.
    pub registry: Registry,
    /// Other crates' admin API handlers, asked in order.
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
    /// The socket peer (or the PROXY header's source).
    pub peer: SocketAddr,
    /// Whether the connection is TLS.
    pub https: bool,
    /// The TLS server name the client asked for.
    pub sni: Option<String>,
    /// When the connection last moved bytes, for idle timeouts.
    pub activity: Arc<Activity>,
    /// HTTP/1 requests to refuse for their framing (framing.rs).
    pub framing: Arc<Marks>,
    /// Cancelled when the connection is stuck behind answers its client
    /// does not take (an HTTP/1.1 answer, or every HTTP/2 stream in flight,
    /// missed its send deadline): the connection is closed.
    pub stalled: CancellationToken,
    /// HTTP/2 streams of this connection that missed their send deadline.
    pub stalled_streams: std::sync::atomic::AtomicU64,
}

fn site_name(c: &SiteConfig) -> String {
    match c.hosts.first().map(String::as_str) {
        Some("*") | None => "default".into(),
        Some(h) => h.to_string(),
    }
}

pub(crate) fn build_runtime(cfg: &EdgeConfig, metrics: &Metrics) -> Result<Runtime, EdgeError> {
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
        let name = site_name(c);
        let site = SiteRuntime {
            meters: SiteMeters::new(metrics, &name),
            name,
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
        Some(p) => Some(Arc::new(AdminToken::load(p).map_err(EdgeError)?)),
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

/// What the access log and metrics need, filled in as the stages run.
pub(crate) struct Ctx {
    pub(crate) client: IpAddr,
    /// The proven session the request carries (its own client), if any.
    pub(crate) session: Option<guard::SessionKey>,
    pub(crate) site: Option<Arc<SiteRuntime>>,
    pub(crate) upstream: Option<String>,
    pub(crate) upstream_time: Option<std::time::Duration>,
    /// `hit` or `miss` when the edge cache could answer this request.
    pub(crate) cache: Option<&'static str>,
    /// Set when this request fetches a cache entry (stage 7a keeps it).
    pub(crate) cache_fill: Option<crate::cache::FillGuard>,
    /// The access log's `reason=` when Rampart answered itself.
    pub(crate) refusal: Option<&'static str>,
    pub(crate) request_id: HeaderValue,
}

impl Ctx {
    /// What the access log keeps of the request once its answer is ready.
    pub(crate) fn done(self, started: std::time::Instant) -> Done {
        Done {
            client: self.client,
            site: self.site.map(|s| s.name.clone()).unwrap_or_default(),
            upstream: self.upstream.unwrap_or_default(),
            upstream_time: self.upstream_time,
            cache: self.cache,
            reason: self.refusal,
            request_id: String::from_utf8_lossy(self.request_id.as_bytes()).into_owned(),
            started,
        }
    }

    /// Who waits in the fair queues: the proven session, else the address.
    pub(crate) fn who(&self) -> upstream::Client {
        upstream::Client {
            addr: self.client,
            session: self.session,
        }
    }

    pub(crate) fn queue_class(&self) -> &'static str {
        if self.session.is_some() {
            "session"
        } else {
            "address"
        }
    }
}
