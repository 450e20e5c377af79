//! The WAL streamer: supervises pg_receivewal on the slot, sends finished
//! segments, the received part of the open one, new filestore files, and
//! takes base backups (at start when a target has none, then on
//! `schedule`). Every failure is logged and retried; nothing here stops
//! `rampart serve`.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::AsyncBufReadExt;

mod send;

use super::{covered, is_history, parse_lsn, parse_piece, parse_segment};
use crate::config::{BackupConfig, TargetConfig};
use crate::pg::{Pg, literal};
use crate::progress::Progress;
use crate::seal::Recipients;
use crate::target::Target;

/// How often the directory is looked at for finished segments.
const TICK: Duration = Duration::from_secs(1);

struct Dest {
    cfg: TargetConfig,
    target: Option<Arc<Target>>,
    /// Whole objects in `wal/` (segments, history files).
    have: HashSet<String>,
    /// Open segments: how far from byte 0 the pieces sent cover.
    pieces: HashMap<String, u64>,
    blobs: HashSet<String>,
    has_base: bool,
}

struct Streamer {
    _lock: std::fs::File,
    cfg: BackupConfig,
    pg: Pg,
    dir: PathBuf,
    seg_size: u64,
    recipients: Recipients,
    dests: Vec<Dest>,
    child: Option<tokio::process::Child>,
    child_log: Arc<std::sync::Mutex<Vec<String>>>,
    restart_after: Instant,
    backoff: Duration,
    spool_full: bool,
    server_bounds_slot: bool,
    need_base: bool,
    base_task: Option<tokio::task::JoinHandle<Result<super::BaseBackup>>>,
    base_retry_after: Instant,
    next_base: Option<jiff::Zoned>,
    last_pass: Option<Instant>,
    databases: (Vec<String>, Option<Instant>),
    last_error: String,
}

/// Streams until `stop` resolves. Errors only for a config it cannot run
/// with; everything else is logged and retried.
pub async fn run_stream<F: Future<Output = ()>>(cfg: &BackupConfig, stop: F) -> Result<()> {
    if !cfg.wal {
        bail!("backup.wal is not true");
    }
    tokio::pin!(stop);
    // The server may come up after Rampart: keep trying.
    let mut s = loop {
        match Streamer::new(cfg) {
            Ok(s) => break s,
            Err(e) => tracing::error!("WAL streaming cannot start (retrying in 30 s): {e:#}"),
        }
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
    };
    tracing::info!(dir = %s.dir.display(), slot = %cfg.wal_slot, "WAL streaming starts");
    loop {
        if let Err(e) = s.tick().await {
            let msg = format!("{e:#}");
            if msg != s.last_error {
                tracing::error!("WAL streaming: {msg}");
                s.last_error = msg;
            }
        } else {
            s.last_error.clear();
        }
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep(TICK) => {}
        }
    }
    if let Some(mut c) = s.child.take() {
        let _ = c.kill().await;
    }
    if let Some(t) = s.base_task.take() {
        t.abort();
    }
    Ok(())
}

impl Streamer {
    fn new(cfg: &BackupConfig) -> Result<Streamer> {
        if !cfg.wal {
            bail!("backup.wal is not true");
        }
        let dir = cfg
            .wal_dir
            .clone()
            .ok_or_else(|| anyhow::Error::msg("backup.wal_dir is not set"))?;
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        // The WAL is every row in plaintext.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("making {} 0700", dir.display()))?;
        }
        // One streamer per wal_dir (serve and a wal-stream would otherwise
        // take the slot from each other); the kernel drops the lock with
        // the process, also on SIGKILL.
        let lock_path = dir.join(".rampart.lock");
        let lock = std::fs::File::create(&lock_path)
            .with_context(|| format!("creating {}", lock_path.display()))?;
        if lock.try_lock().is_err() {
            bail!(
                "another Rampart streams into {} (its lock is held)",
                dir.display()
            );
        }
        let recipients = Recipients::parse(&cfg.recipients, cfg.zstd_level)?;
        if cfg.targets.is_empty() {
            bail!("no backup target: add a [[backup.target]]");
        }
        let pg = Pg::connect(&cfg.pg, cfg.pg_bin.as_deref())?;
        let seg_size: u64 = pg
            .query_one(
                "postgres",
                "SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'",
            )?
            .parse()
            .context("wal_segment_size")?;
        let next_base = match &cfg.schedule {
            Some(s) => Some(
                s.parse::<crate::Schedule>()?
                    .next_after(&jiff::Zoned::now())?,
            ),
            None => None,
        };
        let dests = cfg
            .targets
            .iter()
            .map(|t| Dest {
                cfg: t.clone(),
                target: None,
                have: HashSet::new(),
                pieces: HashMap::new(),
                blobs: HashSet::new(),
                has_base: false,
            })
            .collect();
        let mut s = Streamer {
            _lock: lock,
            cfg: cfg.clone(),
            pg,
            dir,
            seg_size,
            recipients,
            dests,
            child: None,
            child_log: Arc::default(),
            restart_after: Instant::now(),
            backoff: Duration::from_secs(1),
            spool_full: false,
            server_bounds_slot: false,
            need_base: false,
            base_task: None,
            base_retry_after: Instant::now(),
            next_base,
            last_pass: None,
            databases: (Vec::new(), None),
            last_error: String::new(),
        };
        s.bound_the_server();
        Ok(s)
    }

    /// PostgreSQL's own bound on the slot, which holds while Rampart is
    /// down too: set it when the role may (superuser), else say how.
    fn bound_the_server(&mut self) {
        let max = self.cfg.wal_max_behind.get() >> 20;
        let current = self
            .pg
            .query_one(
                "postgres",
                "SELECT setting FROM pg_settings WHERE name = 'max_slot_wal_keep_size'",
            )
            .unwrap_or_default();
        if current.trim() != "-1" && !current.is_empty() {
            self.server_bounds_slot = true;
            return;
        }
        let set = self.pg.query(
            "postgres",
            &format!("ALTER SYSTEM SET max_slot_wal_keep_size = '{max}MB'"),
        );
        match set.and_then(|_| self.pg.query("postgres", "SELECT pg_reload_conf()")) {
            Ok(_) => {
                self.server_bounds_slot = true;
                tracing::warn!(
                    "set max_slot_wal_keep_size = '{max}MB' on the server (it was unlimited): \
                     the replication slot can no longer fill its disk"
                );
            }
            Err(e) => tracing::error!(
                "max_slot_wal_keep_size is unlimited and this role may not change it ({e:#}): \
                 while Rampart runs it drops the slot past backup.wal_max_behind, while it is \
                 down nothing bounds the slot. As a superuser: ALTER SYSTEM SET \
                 max_slot_wal_keep_size = '{max}MB'; SELECT pg_reload_conf();"
            ),
        }
    }

    async fn tick(&mut self) -> Result<()> {
        self.open_targets().await;
        self.supervise().await?;
        self.send_finished().await?;
        let due = self
            .last_pass
            .is_none_or(|t| t.elapsed() >= self.cfg.wal_upload_interval.get());
        if due {
            self.last_pass = Some(Instant::now());
            let pass = jiff::Timestamp::now().as_second();
            let lsn = self.check_slot()?;
            if let Some(lsn) = lsn {
                self.send_open_segment(lsn).await?;
                // A target still open after this pass took every finished
                // segment and the open one up to the slot's position.
                for d in self.dests.iter().filter(|d| d.target.is_some()) {
                    crate::wal::freshness::caught_up_at(&d.cfg.name, pass);
                }
            }
            self.send_new_files().await?;
        }
        self.base_backups().await;
        Ok(())
    }

    async fn open_targets(&mut self) {
        for d in self.dests.iter_mut().filter(|d| d.target.is_none()) {
            let opened = async {
                let t = Target::open(&d.cfg).await?;
                let wal = t.list("wal").await?;
                let blobs = t.list("blobs").await?;
                Ok::<_, anyhow::Error>((t, wal, blobs))
            }
            .await;
            match opened {
                Ok((t, wal, blobs)) => {
                    d.have.clear();
                    d.pieces.clear();
                    d.has_base = false;
                    let mut ranges: HashMap<String, Vec<(u64, u64)>> = HashMap::new();
                    for o in wal {
                        if let Some((seg, a, b)) = parse_piece(&o.name) {
                            ranges.entry(seg.to_string()).or_default().push((a, b));
                        } else if o.name.starts_with("base-") && o.name.ends_with(".json") {
                            d.has_base = true;
                        } else {
                            d.have.insert(o.name);
                        }
                    }
                    for (seg, mut r) in ranges {
                        d.pieces.insert(seg, covered(&mut r));
                    }
                    d.blobs = blobs.into_iter().map(|o| o.name).collect();
                    if !d.has_base {
                        self.need_base = true;
                    }
                    tracing::info!(target = %d.cfg.name, "WAL streaming: target open");
                    d.target = Some(Arc::new(t));
                }
                Err(e) => tracing::warn!(target = %d.cfg.name, "WAL streaming: {e:#}"),
            }
        }
    }

    /// Keeps one pg_receivewal running on the slot (unless the local
    /// spool is full), restarting it with a backoff.
    async fn supervise(&mut self) -> Result<()> {
        if let Some(c) = &mut self.child {
            match c.try_wait() {
                Ok(None) => return Ok(()),
                Ok(Some(st)) => {
                    let log = self
                        .child_log
                        .lock()
                        .map(|l| l.join(" | "))
                        .unwrap_or_default();
                    self.child = None;
                    self.restart_after = Instant::now() + self.backoff;
                    self.backoff = (self.backoff * 2).min(Duration::from_secs(60));
                    bail!("pg_receivewal exited ({st}): {log}");
                }
                Err(e) => bail!("pg_receivewal: {e}"),
            }
        }
        if self.spool_full || Instant::now() < self.restart_after {
            return Ok(());
        }
        self.ensure_slot()?;
        let mut cmd = tokio::process::Command::new(self.pg.program("pg_receivewal"));
        cmd.arg("-D")
            .arg(&self.dir)
            .args(["-S", &self.cfg.wal_slot, "--synchronous", "-n", "-w", "-d"])
            .arg(self.pg.conn_for("postgres"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", self.pg.program("pg_receivewal").display()))?;
        let log = self.child_log.clone();
        if let Ok(mut l) = log.lock() {
            l.clear();
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(err).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::info!("pg_receivewal: {line}");
                    if let Ok(mut l) = log.lock() {
                        if l.len() >= 5 {
                            l.remove(0);
                        }
                        l.push(line);
                    }
                }
            });
        }
        tracing::info!(pid = child.id(), "pg_receivewal started");
        self.child = Some(child);
        self.backoff = Duration::from_secs(1);
        Ok(())
    }

    fn slot_sql(&self) -> String {
        format!(
            "SELECT coalesce(restart_lsn::text, ''), coalesce(wal_status, ''), \
             coalesce(active_pid::text, ''), \
             coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint::text, '0') \
             FROM pg_replication_slots WHERE slot_name = {} AND slot_type = 'physical'",
            literal(&self.cfg.wal_slot)
        )
    }

    /// Creates the slot when missing, and replaces one that lost WAL;
    /// ends a walsender left over from a killed Rampart's pg_receivewal.
    fn ensure_slot(&mut self) -> Result<()> {
        let rows = self.pg.query("postgres", &self.slot_sql())?;
        let slot = literal(&self.cfg.wal_slot);
        match rows.first() {
            None => {
                self.pg.query(
                    "postgres",
                    &format!("SELECT pg_create_physical_replication_slot({slot}, true)"),
                )?;
                tracing::info!(slot = %self.cfg.wal_slot, "replication slot created");
                self.fresh_start();
            }
            Some(r) if r.get(1).is_some_and(|s| s == "lost") => {
                tracing::error!(
                    "the replication slot lost WAL the server removed (max_slot_wal_keep_size): \
                     point-in-time recovery has a GAP until the new base backup; recreating the slot"
                );
                self.pg.query(
                    "postgres",
                    &format!(
                        "SELECT pg_drop_replication_slot({slot}); \
                         SELECT pg_create_physical_replication_slot({slot}, true)"
                    ),
                )?;
                self.fresh_start();
            }
            Some(r) => {
                if let Some(pid) = r.get(2).filter(|p| !p.is_empty()) {
                    let pid: i64 = pid.parse().context("active_pid")?;
                    tracing::warn!(
                        pid,
                        "ending the slot's walsender (a pg_receivewal left behind)"
                    );
                    self.pg
                        .query("postgres", &format!("SELECT pg_terminate_backend({pid})"))?;
                    // pg_receivewal may find the slot still active once:
                    // it is then restarted after the backoff.
                }
            }
        }
        Ok(())
    }

    /// After a new slot: what wal_dir holds predates it (what could be sent
    /// was sent), and a base backup must start the new history.
    fn fresh_start(&mut self) {
        for e in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let seg = name.strip_suffix(".partial").unwrap_or(&name);
            // WAL files only: the lock file stays (a new one would be unlocked).
            if parse_segment(seg, self.seg_size).is_some() || is_history(&name) {
                let _ = std::fs::remove_file(e.path());
            }
        }
        self.need_base = true;
    }

    /// Slot state each pass: its flushed position, and the bound.
    fn check_slot(&mut self) -> Result<Option<u64>> {
        let rows = self.pg.query("postgres", &self.slot_sql())?;
        let Some(r) = rows.first() else {
            return Ok(None);
        };
        let lag: u64 = r.get(3).and_then(|l| l.parse().ok()).unwrap_or(0);
        let max = self.cfg.wal_max_behind.get();
        if lag > max && !self.server_bounds_slot {
            if let Some(c) = &mut self.child {
                let _ = c.start_kill();
            }
            self.child = None;
            self.pg.query(
                "postgres",
                &format!(
                    "SELECT pg_drop_replication_slot({})",
                    literal(&self.cfg.wal_slot)
                ),
            )?;
            bail!(
                "the replication slot held {lag} bytes of WAL, more than backup.wal_max_behind \
                 ({max}): DROPPED it so the server's disk does not fill; point-in-time recovery \
                 has a GAP until the next base backup (taken once streaming is back)"
            );
        }
        match r.first().filter(|l| !l.is_empty()) {
            Some(l) => Ok(Some(parse_lsn(l)?)),
            None => Ok(None),
        }
    }

    /// A base backup when a target has none or a new slot began, and on
    /// `schedule`; one at a time, in the background.
    async fn base_backups(&mut self) {
        if let Some(t) = &self.base_task {
            if !t.is_finished() {
                return;
            }
            let t = self.base_task.take().expect("checked");
            match t.await {
                Ok(Ok(b)) => {
                    tracing::info!(id = %b.id, "base backup stored");
                    self.need_base = false;
                    for d in &mut self.dests {
                        d.has_base = d.target.is_some() || d.has_base;
                    }
                }
                Ok(Err(e)) => {
                    tracing::error!("base backup FAILED: {e:#}");
                    self.base_retry_after = Instant::now() + Duration::from_secs(600);
                }
                Err(e) => tracing::error!("base backup task: {e}"),
            }
        }
        if let Some(next) = &self.next_base
            && &jiff::Zoned::now() >= next
        {
            self.need_base = true;
            self.next_base = self
                .cfg
                .schedule
                .as_deref()
                .and_then(|s| s.parse::<crate::Schedule>().ok())
                .and_then(|s| s.next_after(&jiff::Zoned::now()).ok());
        }
        // Only with the stream running: the backup is worth something only
        // with the WAL that follows it.
        if !self.need_base || self.child.is_none() || Instant::now() < self.base_retry_after {
            return;
        }
        let targets: Vec<Arc<Target>> =
            self.dests.iter().filter_map(|d| d.target.clone()).collect();
        if targets.is_empty() {
            return;
        }
        let cfg = self.cfg.clone();
        let rt = tokio::runtime::Handle::current();
        self.base_task = Some(tokio::task::spawn_blocking(move || {
            let refs: Vec<&Target> = targets.iter().map(|t| t.as_ref()).collect();
            rt.block_on(super::base_backup(&cfg, &refs, &Progress::quiet()))
        }));
    }
}
