//! Several Rampart nodes acting as one, through the PostgreSQL every Odoo
//! site already runs (issue 13).
//!
//! Each node keeps its own state and goes on with it whatever happens to
//! PostgreSQL; the cluster is an addition on top:
//! - bans are written to `rampart.bans`; a trigger NOTIFYs every node,
//!   which re-reads the row (the payload is only a hint, so a stale or
//!   forged NOTIFY cannot resurrect or invent a ban) and applies it;
//!   a node that (re)connects first writes what it decided while away,
//!   then reloads the whole table, and reloads it again every minute in
//!   case a NOTIFY was lost;
//! - each login attempt reserves a slot in `rampart.reserve` (one round
//!   trip, under a short deadline) on top of the local budget; when
//!   PostgreSQL is away or slow the local budget decides alone (at most
//!   `max × nodes`), logged and counted in `rampart_cluster_fallbacks_total`;
//! - every node says it is alive in `rampart.nodes` (`rampart cluster status`);
//! - the ACME account and certificates are shared (private keys sealed
//!   with `secret_key_file`), one node orders under a lease while the
//!   others wait and load its result, and every node answers every
//!   challenge (`certs`).
//!
//! One connection per node carries queries and notifications; a
//! heartbeat that does not come back within its interval ends it, and the
//! node reconnects with backoff.

#![warn(missing_docs)]

mod bans;
mod budget;
mod certs;
mod config;
mod metrics;
pub mod schema;
pub mod sealed;
pub mod status;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use rampart_certs::CertStore;
use rampart_guard::Guard;
pub use tokio_postgres::Client;
use tokio_postgres::{AsyncMessage, NoTls, Statement};

pub use config::ClusterConfig;

/// Reservations of a node that vanished are forgotten after this long.
const LEASE: Duration = Duration::from_secs(120);
/// Full reload of the ban table (a NOTIFY lost in a reconnect).
const RELOAD_EVERY: Duration = Duration::from_secs(60);
/// Ban changes kept while PostgreSQL is away (the oldest go first).
const MAX_PENDING: usize = 10_000;

/// This node in the cluster.
pub struct Cluster {
    cfg: ClusterConfig,
    node: String,
    version: String,
    config_hash: Mutex<String>,
    link: RwLock<Option<Arc<Link>>>,
    pending: Mutex<VecDeque<bans::Op>>,
    wake: tokio::sync::Notify,
    metrics: metrics::Metrics,
    last_warn: Mutex<Option<Instant>>,
    /// The key that seals private keys (`secret_key_file`).
    secret: Option<sealed::SecretKey>,
    /// The certificate store, once joined (`join_certs`).
    certs: OnceLock<Arc<CertStore>>,
}

/// A live connection and what was prepared on it.
struct Link {
    client: Client,
    reserve: Statement,
    finish: Statement,
    key: ring::hmac::Key,
}

impl Cluster {
    /// `version` and `config_hash` are what `rampart cluster status` shows.
    pub fn new(
        cfg: &ClusterConfig,
        version: &str,
        config_hash: &str,
    ) -> Result<Arc<Cluster>, String> {
        cfg.pg_config()?;
        let secret = cfg
            .secret_key_file
            .as_deref()
            .map(sealed::SecretKey::read)
            .transpose()?;
        Ok(Arc::new(Cluster {
            cfg: cfg.clone(),
            node: cfg.node_name(),
            version: version.to_string(),
            config_hash: Mutex::new(config_hash.to_string()),
            link: RwLock::new(None),
            pending: Mutex::new(VecDeque::new()),
            wake: tokio::sync::Notify::new(),
            metrics: metrics::Metrics::default(),
            last_warn: Mutex::new(None),
            secret,
            certs: OnceLock::new(),
        }))
    }

    /// This node's name in `rampart.nodes` (`node`, else the hostname).
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Registers the `rampart_cluster_*` metrics in `registry`.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.metrics.register(registry);
    }

    /// A reloaded config: the next heartbeat shows its hash.
    pub fn set_config_hash(&self, hash: &str) {
        *self.config_hash.lock().unwrap_or_else(|e| e.into_inner()) = hash.to_string();
    }

    /// Joins `guard` to the cluster and keeps a connection for as long as
    /// the process runs (reconnecting with backoff). Never fails: without
    /// PostgreSQL the node serves on local state.
    pub fn start(self: &Arc<Self>, guard: Arc<Guard>) -> tokio::task::JoinHandle<()> {
        guard.set_shared(self.clone());
        let me = self.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(500);
            let mut first = true;
            loop {
                let began = Instant::now();
                let err = me.session(&guard, &mut first).await;
                *me.link.write().unwrap_or_else(|e| e.into_inner()) = None;
                me.metrics.up.set(0);
                tracing::warn!(
                    target: "rampart::cluster",
                    node = %me.node,
                    "PostgreSQL unreachable: {err}; bans and login budgets are local until it returns"
                );
                if began.elapsed() > Duration::from_secs(30) {
                    backoff = Duration::from_millis(500);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        })
    }

    fn link(&self) -> Option<Arc<Link>> {
        self.link.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// One connection, from connect to loss; returns why it ended.
    async fn session(&self, guard: &Guard, first: &mut bool) -> String {
        let pg = match self.cfg.pg_config() {
            Ok(c) => c,
            Err(e) => return e,
        };
        let (client, mut connection) = match pg.connect(NoTls).await {
            Ok(c) => c,
            Err(e) => return error_text(&e),
        };
        // The connection is driven here; notifications go to the loop
        // below (bounded: a flood only asks for a full reload).
        let (ntx, mut nrx) = tokio::sync::mpsc::channel::<(String, String)>(1024);
        let overflow = Arc::new(AtomicBool::new(false));
        let flag = overflow.clone();
        let driver = tokio::spawn(async move {
            loop {
                match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(n))) => {
                        if ntx
                            .try_send((n.channel().to_string(), n.payload().to_string()))
                            .is_err()
                        {
                            flag.store(true, Ordering::Release);
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return error_text(&e),
                    None => return "the server closed the connection".to_string(),
                }
            }
        });
        let setup = async {
            let v = schema::version(&client).await.map_err(|e| error_text(&e))?;
            schema::usable(v)?;
            client
                .batch_execute(
                    "LISTEN rampart_bans; LISTEN rampart_challenges; LISTEN rampart_certs",
                )
                .await
                .map_err(|e| error_text(&e))?;
            let key: Vec<u8> = client
                .query_one(
                    "SELECT value FROM rampart.meta WHERE key = 'login_key'",
                    &[],
                )
                .await
                .map_err(|e| error_text(&e))?
                .get(0);
            let reserve = client
                .prepare("SELECT verdict, addr_failures, login_failures, login_counted FROM rampart.reserve($1, $2, $3, $4, $5, $6, $7, $8)")
                .await
                .map_err(|e| error_text(&e))?;
            let finish = client
                .prepare("SELECT rampart.finish($1, $2, $3, $4, $5, $6, $7, $8, $9)")
                .await
                .map_err(|e| error_text(&e))?;
            Ok::<_, String>((key, reserve, finish))
        };
        let (key, reserve, finish) =
            match tokio::time::timeout(Duration::from_secs(10), setup).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    driver.abort();
                    return e;
                }
                Err(_) => {
                    driver.abort();
                    return "no answer to the connection set-up within 10 s".into();
                }
            };
        let link = Arc::new(Link {
            client,
            reserve,
            finish,
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key),
        });
        let why = self
            .connected(guard, &link, first, &mut nrx, &overflow)
            .await;
        driver.abort();
        match driver.await {
            Ok(e) => format!("{why} ({e})"),
            Err(_) => why,
        }
    }

    /// Resync, then serve notifications, writes and heartbeats until the
    /// connection fails.
    async fn connected(
        &self,
        guard: &Guard,
        link: &Arc<Link>,
        first: &mut bool,
        nrx: &mut tokio::sync::mpsc::Receiver<(String, String)>,
        overflow: &AtomicBool,
    ) -> String {
        let beat = self.cfg.heartbeat.get().max(Duration::from_millis(100));
        let resync = async {
            self.heartbeat(&link.client).await?;
            let written = self.write_pending(&link.client).await?;
            let loaded = self.reload(guard, &link.client).await?;
            self.sync_challenges(&link.client).await?;
            Ok::<_, String>((written, loaded))
        };
        let (written, loaded) = match tokio::time::timeout(beat * 4, resync).await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return e,
            Err(_) => return "the resync did not finish in time".into(),
        };
        *self.link.write().unwrap_or_else(|e| e.into_inner()) = Some(link.clone());
        self.metrics.up.set(1);
        if !*first {
            self.metrics.reconnects.inc();
        }
        *first = false;
        // Back: a certificate due while PostgreSQL was away is looked at now.
        self.cert_stored();
        tracing::info!(
            target: "rampart::cluster",
            node = %self.node,
            "connected to the cluster's PostgreSQL: {written} ban change(s) written, {loaded} active ban(s) loaded"
        );
        let mut tick = tokio::time::interval(beat);
        tick.tick().await;
        let mut last_reload = Instant::now();
        loop {
            let step = async {
                tokio::select! {
                    n = nrx.recv() => match n {
                        Some((channel, payload)) => match channel.as_str() {
                            "rampart_challenges" => self.sync_challenges(&link.client).await,
                            "rampart_certs" => {
                                self.cert_stored();
                                Ok(())
                            }
                            _ => self.apply_one(guard, &link.client, &payload).await,
                        },
                        None => Err("the connection ended".to_string()),
                    },
                    _ = self.wake.notified() => self.write_pending(&link.client).await.map(|_| ()),
                    _ = tick.tick() => {
                        self.heartbeat(&link.client).await?;
                        if last_reload.elapsed() >= RELOAD_EVERY {
                            last_reload = Instant::now();
                            self.reload(guard, &link.client).await?;
                            self.prune(&link.client).await?;
                        }
                        Ok(())
                    }
                }
            };
            // Every step has the heartbeat's deadline: a server that stops
            // answering ends the connection instead of stalling the node.
            match tokio::time::timeout(beat * 2, step).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return e,
                Err(_) => return format!("no answer within {:?}", beat * 2),
            }
            if overflow.swap(false, Ordering::AcqRel) {
                let again = async {
                    self.reload(guard, &link.client).await?;
                    self.sync_challenges(&link.client).await?;
                    self.cert_stored();
                    Ok::<_, String>(())
                };
                if let Err(e) = again.await {
                    return e;
                }
            }
        }
    }

    async fn heartbeat(&self, client: &Client) -> Result<(), String> {
        let hash = self
            .config_hash
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        client
            .execute(
                "INSERT INTO rampart.nodes AS n (name, version, config_hash, schema_version, pid, started, last_seen)
                 VALUES ($1, $2, $3, $4, $5, now(), now())
                 ON CONFLICT (name) DO UPDATE SET version = EXCLUDED.version,
                    config_hash = EXCLUDED.config_hash, schema_version = EXCLUDED.schema_version,
                    started = CASE WHEN n.pid = EXCLUDED.pid THEN n.started ELSE now() END,
                    pid = EXCLUDED.pid, last_seen = now()",
                &[
                    &self.node,
                    &self.version,
                    &hash,
                    &schema::VERSION,
                    &(std::process::id() as i32),
                ],
            )
            .await
            .map(|_| ())
            .map_err(|e| error_text(&e))
    }

    /// Forgets what no longer matters: idle budgets, old known logins,
    /// bans ended more than a week ago.
    async fn prune(&self, client: &Client) -> Result<(), String> {
        client
            .batch_execute(
                "DELETE FROM rampart.budgets WHERE lease_until < now() - interval '1 day';
                 DELETE FROM rampart.known_logins WHERE until < now();
                 DELETE FROM rampart.bans WHERE until < now() - interval '7 days';
                 DELETE FROM rampart.challenges WHERE expires < now();
                 DELETE FROM rampart.challenge_acks a WHERE NOT EXISTS (SELECT 1 FROM rampart.challenges c
                     WHERE c.kind = a.kind AND c.key = a.key);
                 DELETE FROM rampart.order_leases WHERE until < now() - interval '1 day';",
            )
            .await
            .map_err(|e| error_text(&e))
    }

    /// Logs a decision taken without the cluster, at most every 30 s.
    fn fallback(&self, why: &str) {
        self.metrics.fallbacks.inc();
        let mut last = self.last_warn.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(30)) {
            *last = Some(Instant::now());
            tracing::warn!(
                target: "rampart::cluster",
                "login budget decided on this node alone ({why}): at most max × nodes attempts reach Odoo until PostgreSQL answers"
            );
        }
    }
}

/// The server's message when there is one, else the client's with causes.
pub fn error_text(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return db.message().to_string();
    }
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// A client for the CLI (`rampart cluster init/status`).
pub async fn connect(cfg: &ClusterConfig) -> Result<Client, String> {
    let (client, connection) = cfg
        .pg_config()?
        .connect(NoTls)
        .await
        .map_err(|e| error_text(&e))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// SHA-256 (hex, first 16 characters) of the parts of a config every node
/// should share, for `rampart cluster status`.
pub fn config_hash(bytes: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
}
