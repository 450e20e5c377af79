//! The edge's sections of rampart.toml: `[listen]`, `[log]`, `[[site]]`.
//!
//! Every default here is the hardened one, and together they are the
//! embedded defaults `rampart serve` runs on without a config file.

use std::net::SocketAddr;
use std::path::PathBuf;

use rampart_certs::TlsSource;
use rampart_config::{ByteSize, Cidr, Duration};
use serde::{Deserialize, Serialize};

/// `[listen]`: where Rampart accepts connections.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ListenConfig {
    /// Plain HTTP: ACME HTTP-01 answers and the redirect to https.
    pub http: Option<SocketAddr>,
    /// HTTPS (HTTP/1.1 and HTTP/2).
    pub https: SocketAddr,
    /// The status page, `/metrics`, `/healthz` and the admin API: an
    /// address (keep it on loopback) or `unix:/run/rampart/admin.sock`.
    pub admin: Option<crate::admin_addr::AdminAddr>,
    /// A file holding a token that the admin listener then requires
    /// (`Authorization: Bearer`; the status page asks for it once).
    pub admin_token_file: Option<PathBuf>,
    /// Open client connections at most, over all listeners; more wait in
    /// the kernel's backlog.
    pub max_connections: usize,
    /// Open connections per client address (IPv6 by /64); more are closed
    /// at once. 0 = `max_connections` / 16, at least 64.
    pub max_connections_per_client: usize,
    /// A TLS handshake must finish within this.
    pub handshake_timeout: Duration,
    /// A request's headers must arrive within this (slowloris).
    pub header_timeout: Duration,
    /// An idle keep-alive connection is closed after this.
    pub idle_timeout: Duration,
    /// The longest silence inside a request body (slow uploads).
    pub client_body_timeout: Duration,
    /// Bytes per second a request body must keep up once
    /// `client_body_grace` is over, on average and in each successive
    /// period of `client_body_grace` ("0" turns the check off): an upload
    /// that crawls gets 408 (`stage::body_pace`).
    pub client_body_min_rate: ByteSize,
    /// How long a request body may take before `client_body_min_rate` applies.
    pub client_body_grace: Duration,
    /// A request body received whole must be complete within this of its
    /// start ("0": no limit), whatever its pace: a body sent fast and then
    /// trickled at the minimum rate would otherwise hold its spool share
    /// for (what is left) / `client_body_min_rate` (red team 5, F6).
    pub client_body_deadline: Duration,
    /// A response stream whose client accepts no bytes for this long is
    /// dropped (its spool and memory freed; on HTTP/1.1 the connection
    /// closed).
    pub send_timeout: Duration,
    /// Bytes all spool files (buffered request and response bodies) may
    /// hold on disk together, under `<state_dir>/spool`.
    pub spool_max: ByteSize,
    /// What one client address's bodies may hold of it (default: a
    /// quarter of `spool_max`, at least the largest site's `max_body`).
    pub spool_per_client: Option<ByteSize>,
    /// Memory one client address's buffered bodies (requests received
    /// whole, Odoo's answers drained) may keep before they are spooled.
    pub buffer_memory_per_client: ByteSize,
    /// Memory all buffered bodies together may keep; past it they go to
    /// the spool (as past a client's own share).
    pub buffer_memory_max: ByteSize,
    /// SIGTERM waits this long for in-flight requests and tunnels.
    pub shutdown_grace: Duration,
}

impl Default for ListenConfig {
    fn default() -> Self {
        ListenConfig {
            http: Some(SocketAddr::from(([127, 0, 0, 1], 8080))),
            https: SocketAddr::from(([127, 0, 0, 1], 8443)),
            admin: Some(crate::admin_addr::AdminAddr::Tcp(SocketAddr::from((
                [127, 0, 0, 1],
                9180,
            )))),
            admin_token_file: None,
            max_connections: 10_000,
            max_connections_per_client: 0,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(75),
            client_body_timeout: Duration::from_secs(60),
            client_body_min_rate: ByteSize::kib(1),
            client_body_grace: Duration::from_secs(10),
            client_body_deadline: Duration::from_secs(3600),
            send_timeout: Duration::from_secs(60),
            spool_max: ByteSize::mib(4096),
            spool_per_client: None,
            buffer_memory_per_client: ByteSize::mib(16),
            buffer_memory_max: ByteSize::mib(256),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// `[log]`: the access log, and the format of the process's own log.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A file path, or "-" for standard output, or "off".
    pub access: String,
    /// The access log's format.
    pub format: LogFormat,
    /// The process log on stderr (events filtered by `RAMPART_LOG`); read
    /// at start, a reload keeps the format it started with.
    pub process: ProcessLogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            access: "-".into(),
            format: LogFormat::Combined,
            process: ProcessLogFormat::Text,
        }
    }
}

/// The format of the process's own log on stderr.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ProcessLogFormat {
    /// One line an event, for people (and journald).
    #[default]
    Text,
    /// One JSON object a line with `timestamp`, `level`, `target` (the
    /// module), `fields`, for log collectors.
    Json,
}

/// The access log's format.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Apache/nginx "combined", which fail2ban and log tools read, with the
    /// site, upstream and duration appended.
    Combined,
    /// One JSON object a line.
    Json,
}

/// `[[site]]`: one Odoo deployment behind one set of host names.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// Host names this site answers: exact (`erp.example.com`), a wildcard
    /// for one label (`*.example.org`), or `*` for any host.
    pub hosts: Vec<String>,
    /// Where the site's certificate comes from (`local`, `acme`, or files).
    #[serde(default)]
    pub tls: TlsSource,
    /// Odoo's HTTP workers (`host:port`), balanced by least connections.
    #[serde(default = "default_odoo")]
    pub odoo: Vec<String>,
    /// Odoo's evented worker(s) (`gevent_port`, `longpolling_port` before 16).
    #[serde(default = "default_websocket")]
    pub websocket: Vec<String>,
    /// Where `/<module>/static/...` files are served from directly.
    #[serde(default)]
    pub addons_path: Vec<PathBuf>,
    /// Odoo's data_dir, for X-Accel-Redirect filestore downloads.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// Largest request body accepted (uploads, restores).
    #[serde(default = "default_max_body")]
    pub max_body: ByteSize,
    /// How long Odoo may take to answer, and the longest silence inside a
    /// body (reports and imports run for minutes; Odoo's docs use 720 s).
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// How long connecting to Odoo may take.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Duration,
    /// Requests in flight to one upstream at most (Odoo has a fixed number
    /// of workers; `workers` is the same key); more wait up to
    /// `queue_timeout` in per-client queues served round-robin, then 503.
    #[serde(default = "default_max_conns", alias = "workers")]
    pub max_conns: usize,
    /// How long a request may wait for an upstream slot before 503.
    #[serde(default = "default_queue_timeout")]
    pub queue_timeout: Duration,
    /// Upstream slots one client address may hold while other clients
    /// wait (default: a quarter of `max_conns`); its further requests wait
    /// for their turn (an idle pool is used in full by whoever comes).
    #[serde(default)]
    pub max_conns_per_client: Option<usize>,
    /// Open websocket tunnels (and long-polling requests) per websocket
    /// upstream; outside `max_conns`, which counts Odoo's HTTP workers.
    #[serde(default = "default_max_websockets")]
    pub max_websockets: usize,
    /// Websocket tunnels one client address may hold (default: a quarter
    /// of `max_websockets`).
    #[serde(default)]
    pub max_websockets_per_client: Option<usize>,
    /// Receive a request body whole (memory, then a spool file) before an
    /// Odoo worker is taken, so a slow upload never holds one.
    #[serde(default = "default_true")]
    pub request_buffering: bool,
    /// Path prefixes whose bodies stream to Odoo as they arrive even with
    /// `request_buffering` (matched on the canonical path).
    #[serde(default)]
    pub request_streaming: Vec<String>,
    /// A websocket tunnel with no traffic either way is closed after this.
    #[serde(default = "default_websocket_idle")]
    pub websocket_idle: Duration,
    /// Cookies that get `Secure` and `SameSite=Lax` added.
    #[serde(default = "default_session_cookies")]
    pub session_cookies: Vec<String>,
    /// Compress text responses (gzip, br, zstd by Accept-Encoding).
    #[serde(default = "default_true")]
    pub compression: bool,
    /// Security headers added to every response.
    #[serde(default)]
    pub headers: SecurityHeaders,
    /// `[site.cache]`: Odoo's immutable public assets kept at the edge.
    #[serde(default)]
    pub cache: CacheConfig,
    /// How each upstream is checked.
    #[serde(default)]
    pub health_check: HealthCheck,
    /// Who may reach Odoo's database manager.
    #[serde(default)]
    pub database_manager: DatabaseManager,
}

impl SiteConfig {
    /// Upstream slots one client may hold or wait for.
    pub fn conns_per_client(&self) -> usize {
        self.max_conns_per_client
            .unwrap_or(self.max_conns.div_ceil(4))
            .max(1)
    }

    /// Websocket tunnels one client may hold.
    pub fn websockets_per_client(&self) -> usize {
        self.max_websockets_per_client
            .unwrap_or(self.max_websockets.div_ceil(4))
            .max(1)
    }

    /// Whether a request body on `lower` (the canonical path, lowercased)
    /// is received whole before Odoo is asked.
    pub fn buffers_request(&self, lower: &str) -> bool {
        self.request_buffering
            && !self
                .request_streaming
                .iter()
                .any(|p| lower.starts_with(&p.to_ascii_lowercase()))
    }

    /// The embedded default site: any host, local CA, Odoo on loopback.
    pub fn embedded() -> Self {
        SiteConfig {
            hosts: vec!["*".into()],
            tls: TlsSource::Local,
            odoo: default_odoo(),
            websocket: default_websocket(),
            addons_path: vec![],
            data_dir: None,
            max_body: default_max_body(),
            timeout: default_timeout(),
            connect_timeout: default_connect_timeout(),
            max_conns: default_max_conns(),
            queue_timeout: default_queue_timeout(),
            max_conns_per_client: None,
            max_websockets: default_max_websockets(),
            max_websockets_per_client: None,
            request_buffering: true,
            request_streaming: Vec::new(),
            websocket_idle: default_websocket_idle(),
            session_cookies: default_session_cookies(),
            compression: true,
            headers: SecurityHeaders::default(),
            cache: CacheConfig::default(),
            health_check: HealthCheck::default(),
            database_manager: DatabaseManager::default(),
        }
    }
}

fn default_odoo() -> Vec<String> {
    vec!["127.0.0.1:8069".into()]
}
fn default_websocket() -> Vec<String> {
    vec!["127.0.0.1:8072".into()]
}
fn default_max_body() -> ByteSize {
    ByteSize::mib(256)
}
fn default_timeout() -> Duration {
    Duration::from_secs(720)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_max_conns() -> usize {
    256
}
fn default_max_websockets() -> usize {
    256
}
fn default_queue_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_websocket_idle() -> Duration {
    Duration::from_secs(3600)
}
fn default_session_cookies() -> Vec<String> {
    vec!["session_id".into()]
}
fn default_true() -> bool {
    true
}

/// `[site.headers]`: security headers added to every response. An empty
/// string turns one off.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityHeaders {
    /// `Strict-Transport-Security` (sent on HTTPS only).
    pub strict_transport_security: String,
    /// `X-Content-Type-Options`.
    pub content_type_options: String,
    /// `X-Frame-Options`.
    pub frame_options: String,
    /// `Referrer-Policy`.
    pub referrer_policy: String,
    /// `Permissions-Policy`.
    pub permissions_policy: String,
    /// Odoo's web client needs inline and eval'd scripts (QWeb), inline
    /// styles, data:/blob: images and its websocket; website pages embed
    /// fonts, images and videos from https origins. Scripts run only from
    /// this origin, no plugins, no framing by other sites, forms post here.
    /// Odoo's own CSP is kept where it sets `default-src` (its lock-down of
    /// served files).
    pub content_security_policy: String,
}

impl Default for SecurityHeaders {
    fn default() -> Self {
        SecurityHeaders {
            strict_transport_security: "max-age=31536000; includeSubDomains".into(),
            content_type_options: "nosniff".into(),
            frame_options: "SAMEORIGIN".into(),
            referrer_policy: "strict-origin-when-cross-origin".into(),
            permissions_policy: "camera=(), microphone=(), geolocation=(), payment=()".into(),
            content_security_policy: "default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; style-src 'self' 'unsafe-inline' https:; img-src 'self' data: blob: https:; font-src 'self' data: https:; media-src 'self' blob: https:; connect-src 'self' wss: https:; frame-src 'self' https:; worker-src 'self' blob:; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'self'".into(),
        }
    }
}

/// `[site.cache]`: the edge cache of Odoo's immutable public answers
/// (`crate::cache` says what is kept and why that is safe).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Whether the site's cache is used at all.
    pub enabled: bool,
    /// Memory all of this site's entries (and their compressed variants)
    /// may hold; the least recently used go first.
    pub max_memory: ByteSize,
    /// Larger answers are passed through, never kept.
    pub max_entry: ByteSize,
    /// Only answers Odoo lets shared caches keep at least this long.
    pub min_max_age: Duration,
    /// Bytes this site's entries may also hold on disk, under
    /// `<state_dir>/cache`, kept across restarts ("0": memory only).
    pub disk: ByteSize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            enabled: true,
            max_memory: ByteSize::mib(128),
            max_entry: ByteSize::mib(16),
            min_max_age: Duration::from_secs(86_400),
            disk: ByteSize(0),
        }
    }
}

/// `[site.health_check]`: the active check on each upstream.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheck {
    /// Odoo 16+ answers `/web/health`; set "" to turn checks off.
    pub path: String,
    /// Time between two checks of an upstream.
    pub interval: Duration,
    /// How long one check may take.
    pub timeout: Duration,
    /// Consecutive failures that take an upstream out.
    pub fall: u32,
    /// Consecutive successes that put it back.
    pub rise: u32,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            path: "/web/health".into(),
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(3),
            fall: 2,
            rise: 1,
        }
    }
}

/// `[site.database_manager]`: who may reach `/web/database/*`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseManager {
    /// Client address ranges allowed; empty blocks everyone.
    pub allow: Vec<Cidr>,
}

/// Checks across sites and fields; returns the key path and the problem.
pub fn validate_sites(sites: &[SiteConfig]) -> Result<(), (String, String)> {
    if sites.is_empty() {
        return Err(("site".into(), "at least one [[site]] is needed".into()));
    }
    let mut seen: Vec<(String, usize)> = Vec::new();
    for (i, site) in sites.iter().enumerate() {
        let key = |k: &str| format!("site[{i}].{k}");
        if site.hosts.is_empty() {
            return Err((key("hosts"), "a site needs at least one host name".into()));
        }
        for h in &site.hosts {
            check_host_pattern(h).map_err(|m| (key("hosts"), m))?;
            let lower = h.to_ascii_lowercase();
            if let Some((_, j)) = seen.iter().find(|(s, _)| *s == lower) {
                return Err((
                    key("hosts"),
                    format!("host {h:?} is already served by site[{j}]"),
                ));
            }
            seen.push((lower, i));
            if site.tls == TlsSource::Acme && h.starts_with('*') {
                return Err((
                    key("tls"),
                    format!(
                        "host {h:?} is a wildcard: ACME issues wildcard certificates only through DNS-01, which Rampart does not do yet; list the names, or use tls = {{ cert, key }}"
                    ),
                ));
            }
        }
        for (field, list) in [("odoo", &site.odoo), ("websocket", &site.websocket)] {
            if list.is_empty() {
                return Err((key(field), "at least one upstream address is needed".into()));
            }
            for a in list {
                check_upstream_addr(a).map_err(|m| (key(field), m))?;
            }
        }
        if site.max_conns == 0 {
            return Err((key("max_conns"), "must be at least 1".into()));
        }
        if site.max_websockets == 0 {
            return Err((key("max_websockets"), "must be at least 1".into()));
        }
        for (field, v) in [
            ("max_conns_per_client", site.max_conns_per_client),
            ("max_websockets_per_client", site.max_websockets_per_client),
        ] {
            if v == Some(0) {
                return Err((key(field), "must be at least 1".into()));
            }
        }
        for p in &site.request_streaming {
            if !p.starts_with('/') {
                return Err((
                    key("request_streaming"),
                    format!("{p:?} is not a path prefix: write e.g. \"/web/binary/upload\""),
                ));
            }
        }
        if site.cache.max_entry.get() > site.cache.max_memory.get() {
            return Err((
                key("cache.max_entry"),
                format!(
                    "{} is larger than cache.max_memory ({}): no entry could ever be kept",
                    site.cache.max_entry, site.cache.max_memory
                ),
            ));
        }
        if site.health_check.fall == 0 || site.health_check.rise == 0 {
            return Err((
                key("health_check"),
                "fall and rise must be at least 1".into(),
            ));
        }
    }
    Ok(())
}

fn check_host_pattern(h: &str) -> Result<(), String> {
    if h == "*" {
        return Ok(());
    }
    let name = h.strip_prefix("*.").unwrap_or(h);
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        || name.parse::<std::net::IpAddr>().is_ok();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{h:?} is not a host name: write e.g. \"erp.example.com\", \"*.example.org\" or \"*\" (no scheme, port or path)"
        ))
    }
}

fn check_upstream_addr(a: &str) -> Result<(), String> {
    let bad = || format!("{a:?} is not host:port (e.g. \"127.0.0.1:8069\" or \"odoo:8069\")");
    if a.contains("://") || a.contains('/') {
        return Err(bad());
    }
    let (host, port) = a.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().map(|p| p == 0).unwrap_or(true) {
        return Err(bad());
    }
    Ok(())
}
