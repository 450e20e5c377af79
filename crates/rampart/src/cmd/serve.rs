//! `rampart serve`, `rampart reload`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};

use rampart_certs::CertStore;
use rampart_edge::{AdminHook, Edge, EdgeConfig, EdgeHandle};
use rampart_guard::Guard;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use super::backup_status::BackupStatus;
use super::{CmdError, Outcome};
use crate::config::Config;
use crate::notify::{self, notify};

#[derive(clap::Args)]
pub struct ServeArgs {}

#[derive(clap::Args)]
pub struct ReloadArgs {}

pub(crate) fn edge_config(c: &Config) -> EdgeConfig {
    EdgeConfig {
        state_dir: c.state_dir.clone(),
        listen: c.listen.clone(),
        log: c.log.clone(),
        sites: c.site.clone(),
    }
}

pub fn serve(config_path: Option<&Path>, _a: ServeArgs) -> Outcome {
    let config = super::load_config(config_path)?;
    super::logging::init_tracing(config.log.process);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("rampart")
        .build()
        .expect("tokio runtime");
    rt.block_on(run(config_path.map(Path::to_path_buf), config))
}

async fn run(config_path: Option<PathBuf>, config: Config) -> Outcome {
    let _ = rampart_edge::admin::status::VERSION.set(crate::VERSION.to_string());
    let certs = CertStore::open(&config.state_dir, config.acme.as_ref(), &config.site_tls())
        .map_err(CmdError::failure)?;
    let guard =
        rampart_guard::Guard::open(&config.guard, &config.state_dir).map_err(CmdError::failure)?;
    let mut registry = prometheus_client::registry::Registry::default();
    certs.register_metrics(&mut registry);
    guard.register_metrics(&mut registry);
    // [cluster]: bans and login budgets shared through PostgreSQL; the
    // node serves on local state until (and whenever) it is unreachable.
    let cluster = match &config.cluster {
        Some(c) => {
            let cluster = rampart_cluster::Cluster::new(c, crate::VERSION, &config.cluster_hash())
                .map_err(CmdError::usage)?;
            cluster.register_metrics(&mut registry);
            // ACME sites: the account and certificates are shared, one
            // node orders; their private keys need the cluster's key.
            if config
                .site_tls()
                .iter()
                .any(|s| s.source == rampart_certs::TlsSource::Acme)
            {
                // Config::validate made sure secret_key_file is set.
                cluster.join_certs(certs.clone());
            }
            cluster.start(guard.clone());
            Some(cluster)
        }
        None => None,
    };
    let certs_hook = certs.clone();
    let edge_slot: Arc<OnceLock<EdgeHandle>> = Arc::default();
    let reload_hook = {
        let (slot, certs, guard, path, cluster) = (
            edge_slot.clone(),
            certs.clone(),
            guard.clone(),
            config_path.clone(),
            cluster.clone(),
        );
        move |m: &str, p: &str, _b: &[u8]| -> Option<(u16, String)> {
            if (m, p) != ("POST", "/v1/reload") {
                return None;
            }
            let edge = slot.get()?;
            notify::reloading();
            let r = apply_reload(path.as_deref(), edge, &certs, &guard, cluster.as_deref());
            notify("READY=1");
            Some(match r {
                Ok(()) => {
                    notify::status("config reloaded");
                    (200, r#"{"status":"reloaded"}"#.to_string())
                }
                Err(e) => {
                    notify::status(&e);
                    (409, serde_json::json!({ "error": e }).to_string())
                }
            })
        }
    };
    let guard_hook = guard.clone();
    let backups = BackupStatus::new(&config);
    backups.register_metrics(&mut registry);
    let backups_hook = backups.clone();
    let hooks: Vec<AdminHook> = vec![
        Arc::new(move |m, p, _| {
            ((m, p) == ("GET", "/v1/status/backups")).then(|| (200, backups_hook.json()))
        }),
        Arc::new(move |m, p, b| certs_hook.admin(m, p, b)),
        Arc::new(move |m, p, b| guard_hook.admin(m, p, b)),
        Arc::new(reload_hook),
    ];
    let edge = Edge::bind(
        edge_config(&config),
        certs.clone(),
        guard.clone(),
        registry,
        hooks,
    )
    .await
    .map_err(CmdError::failure)?;
    let shutdown = CancellationToken::new();
    certs.spawn_background(shutdown.clone());
    spawn_housekeeping(guard.clone(), shutdown.clone());
    backups.spawn_refresh(shutdown.clone());
    if let Some(backup) = config.backup.clone() {
        // `schedule` inside serve; without one this returns at once.
        let stop = shutdown.clone();
        tokio::spawn(async move {
            rampart_backup::run_scheduled(&backup, async move { stop.cancelled().await }).await;
        });
        // `drill` inside serve; without one this returns at once.
        let (stop, backup) = (shutdown.clone(), config.backup.clone().expect("some"));
        tokio::spawn(async move {
            rampart_backup::run_drills(&backup, async move { stop.cancelled().await }).await;
        });
    }
    super::wal::spawn_in_serve(&config, shutdown.clone());
    let stop = shutdown.clone();
    guard.spawn_log_follower(async move { stop.cancelled().await });
    let handle = edge.handle();
    let _ = edge_slot.set(handle.clone());
    // The bound addresses: with port 0 in the config the kernel chose.
    let listening = listening(&edge);
    tracing::info!(
        https = %edge.https_addr(),
        http = ?edge.http_addr(),
        admin = ?edge.admin_addr().as_ref().map(ToString::to_string),
        sites = config.site.len(),
        local_ca = %certs.local_ca_cert_path().display(),
        "rampart serving"
    );
    let signals = tokio::spawn(signal_loop(
        config_path,
        handle,
        certs.clone(),
        guard.clone(),
        cluster.clone(),
        shutdown.clone(),
    ));
    if let Some(every) = notify::watchdog_interval() {
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = tick.tick() => notify("WATCHDOG=1"),
                    _ = stop.cancelled() => return,
                }
            }
        });
    }
    notify("READY=1");
    notify::status(&format!(
        "serving {} site(s) on {listening}",
        config.site.len()
    ));
    edge.run(shutdown).await;
    signals.abort();
    if let Err(e) = guard.flush() {
        tracing::error!("could not save the ban table: {e}");
    }
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// `https 127.0.0.1:8443, http 127.0.0.1:8080, admin unix:/run/rampart/admin.sock`:
/// what READY's STATUS= line names, so a supervisor (or the test harness)
/// learns the real ports of listeners configured with port 0.
fn listening(edge: &Edge) -> String {
    let mut parts = vec![format!("https {}", edge.https_addr())];
    if let Some(a) = edge.http_addr() {
        parts.push(format!("http {a}"));
    }
    if let Some(a) = edge.admin_addr() {
        parts.push(format!("admin {a}"));
    }
    parts.join(", ")
}

/// Expired bans, idle rate-limiter keys, old failure windows.
fn spawn_housekeeping(guard: Arc<Guard>, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tokio::select! {
                // It may fsync the ban table: keep it off the request threads.
                _ = tick.tick() => {
                    let g = guard.clone();
                    let _ = tokio::task::spawn_blocking(move || g.housekeeping()).await;
                }
                _ = shutdown.cancelled() => return,
            }
        }
    });
}

async fn signal_loop(
    config_path: Option<PathBuf>,
    edge: EdgeHandle,
    certs: Arc<CertStore>,
    guard: Arc<Guard>,
    cluster: Option<Arc<rampart_cluster::Cluster>>,
    shutdown: CancellationToken,
) {
    let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    let mut usr1 = signal(SignalKind::user_defined1()).expect("SIGUSR1 handler");
    loop {
        tokio::select! {
            _ = hup.recv() => {
                notify::reloading();
                let r = apply_reload(config_path.as_deref(), &edge, &certs, &guard, cluster.as_deref());
                notify("READY=1");
                notify::status(&match r {
                    Ok(()) => "config reloaded".to_string(),
                    Err(e) => e,
                });
            }
            _ = usr1.recv() => {
                tracing::info!("SIGUSR1: reopening log files");
                edge.reopen_logs();
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    notify("STOPPING=1");
    notify::status("draining requests and websocket tunnels");
    tracing::info!("shutting down: draining requests and websocket tunnels");
    shutdown.cancel();
}

/// SIGHUP: re-read and check the config; apply it only when all of it is
/// good, otherwise keep serving the old one and say why.
fn apply_reload(
    config_path: Option<&Path>,
    edge: &EdgeHandle,
    certs: &CertStore,
    guard: &Guard,
    cluster: Option<&rampart_cluster::Cluster>,
) -> Result<(), String> {
    let config = match config_path {
        Some(p) => match Config::load(p) {
            Ok(c) => c,
            Err(e) => return Err(refused(e)),
        },
        None => Config::default(),
    };
    certs.reload(&config.site_tls()).map_err(refused)?;
    edge.reload(edge_config(&config)).map_err(refused)?;
    guard.reconfigure(&config.guard);
    if let Some(cluster) = cluster {
        cluster.set_config_hash(&config.cluster_hash());
    }
    tracing::info!("config reloaded");
    Ok(())
}

fn refused(e: impl std::fmt::Display) -> String {
    tracing::error!("reload refused, still serving the previous config: {e}");
    format!("reload refused, still serving the previous config: {e}")
}

/// Like SIGHUP, through the admin listener (no pid file needed), and
/// says whether the new config was taken.
pub fn reload(config_path: Option<&Path>, _a: ReloadArgs) -> Outcome {
    let config = super::load_config(config_path)?;
    match super::admin::call(&config, "POST", "/v1/reload", None).map_err(CmdError::failure)? {
        (200, _) => {
            println!("reloaded");
            Ok(ExitCode::SUCCESS)
        }
        (_, body) => {
            let msg = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or(body);
            Err(CmdError::findings(msg))
        }
    }
}
