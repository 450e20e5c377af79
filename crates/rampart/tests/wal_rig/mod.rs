//! The rig of the WAL tests: a PostgreSQL cluster, a file target, a
//! config with `wal = true`, `rampart wal-stream` as a child, and helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::backup_common::{self, Keys, PG_USER, PgCluster, keys, read_tree};
use crate::common::{TempDir, bin, run_cli};

/// A cluster, a file target, a config with `wal = true`, and the streamer.
pub struct Rig {
    pub pg: PgCluster,
    pub data: tempfile::TempDir,
    pub store: tempfile::TempDir,
    pub keys: Keys,
    pub dir: TempDir,
    pub config: PathBuf,
    /// The `[backup]` section alone (for `rampart serve`'s config).
    pub section: String,
    pub streamer: Option<Child>,
}

impl Rig {
    pub fn new(extra: &str) -> Rig {
        let pg = PgCluster::start();
        let data = tempfile::tempdir().unwrap();
        let store = tempfile::tempdir().unwrap();
        let keys = keys();
        let dir = TempDir::new("backup-wal");
        // The recovery cluster runs as the test user inside the spool dir.
        let spool = dir.path().join("spool");
        std::fs::create_dir_all(&spool).unwrap();
        let config = dir.path().join("rampart.toml");
        let section = format!(
            "[backup]\ndata_dir = {:?}\npg = {:?}\nrecipients = [{:?}]\n\
             spool_dir = {:?}\nwal = true\nwal_upload_interval = \"2s\"\n\
             wal_dir = {:?}\nwal_os_user = {PG_USER:?}\n{extra}\n\
             [[backup.target]]\nname = \"local\"\nurl = \"file://{}\"\n",
            data.path().display().to_string(),
            pg.conn(),
            keys.recipient,
            spool.display().to_string(),
            dir.path().join("wal").display().to_string(),
            store.path().display()
        );
        std::fs::write(
            &config,
            format!(
                "state_dir = {:?}\n{section}",
                dir.path().join("state").display().to_string()
            ),
        )
        .unwrap();
        Rig {
            pg,
            data,
            store,
            keys,
            dir,
            config,
            section,
            streamer: None,
        }
    }

    pub fn start_streamer(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = Command::new(bin())
            .args(["wal-stream", "--config"])
            .arg(&self.config)
            .env_remove("RAMPART_CONFIG")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.streamer = Some(child);
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("stream.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn kill_streamer(&mut self) {
        if let Some(mut c) = self.streamer.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn wal_objects(&self) -> Vec<String> {
        backup_common::objects(self.store.path(), "wal")
    }

    pub fn base_backups(&self) -> usize {
        self.wal_objects()
            .iter()
            .filter(|n| n.starts_with("base-") && n.ends_with(".json"))
            .count()
    }

    /// Waits (up to `limit`) for `cond`, naming `what` and the log on failure.
    pub fn wait(&self, what: &str, limit: Duration, mut cond: impl FnMut(&Rig) -> bool) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if cond(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "{what} within {limit:?}; objects: {:?}\nstreamer log:\n{}",
            self.wal_objects(),
            self.log()
        );
    }

    /// The WAL position now; then waits until the target holds the WAL up
    /// to it (a whole segment, or pieces reaching past it).
    pub fn wait_sent(&self, what: &str) {
        let row = self.pg.psql(
            "postgres",
            "SELECT file_name, file_offset FROM pg_walfile_name_offset(pg_current_wal_lsn())",
        );
        let (seg, off) = row.split_once('|').unwrap();
        let off: u64 = off.parse().unwrap();
        let seg = seg.to_string();
        self.wait(
            &format!("{what}: WAL up to {seg}+{off:#x} sent"),
            Duration::from_secs(60),
            |r| {
                let objs = r.wal_objects();
                let later = objs
                    .iter()
                    .any(|n| n.len() == 24 && n.as_str() > seg.as_str());
                later
                    || objs.iter().any(|n| {
                        n == &seg
                            || n.strip_prefix(&format!("{seg}."))
                                .and_then(|range| range.split_once('-'))
                                .and_then(|(_, end)| u64::from_str_radix(end, 16).ok())
                                .is_some_and(|end| end >= off)
                    })
            },
        );
    }

    pub fn restore_at(&self, at: &str, new_db: &str, extra: &[&str]) -> (i32, String) {
        let mut args = vec![
            "restore",
            "--at",
            at,
            "--as",
            new_db,
            "--identity",
            self.keys.identity.to_str().unwrap(),
            "--config",
            self.config.to_str().unwrap(),
        ];
        args.extend(extra);
        let (code, out, err) = run_cli(&args);
        (code, format!("{out}{err}"))
    }

    pub fn filestore(&self, db: &str) -> std::collections::BTreeMap<String, Vec<u8>> {
        read_tree(&self.data.path().join("filestore").join(db))
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.kill_streamer();
        // A pg_receivewal orphaned by a SIGKILLed streamer.
        for pid in receivewal_pids(self.dir.path()) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

/// pg_receivewal processes writing under `dir`.
pub fn receivewal_pids(dir: &Path) -> Vec<u32> {
    pids_of("pg_receivewal", dir)
}

/// Processes of `program` whose command line names `dir`.
pub fn pids_of(program: &str, dir: &Path) -> Vec<u32> {
    let needle = dir.display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            (cmd.contains(program) && cmd.contains(&needle)).then_some(pid)
        })
        .collect()
}

/// GNU date: the oracle for "local time" and its UTC equivalent.
pub fn date(args: &[&str]) -> String {
    let out = Command::new("date").args(args).output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn local_now() -> String {
    date(&["+%Y-%m-%d %H:%M:%S"])
}

pub fn orders(pg: &PgCluster, db: &str) -> String {
    pg.psql(db, "SELECT id, name FROM sale_order ORDER BY id")
}

/// A tmpfs mounted over a directory; unmounted on drop.
pub struct Mounted(PathBuf);

impl Mounted {
    pub fn tmpfs(at: &Path, size: &str) -> Mounted {
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .unwrap();
        assert!(st.success(), "mounting a tmpfs (the tests run as root)");
        Mounted(at.to_path_buf())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the disk holding `file` until it refuses another byte.
pub fn fill(file: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(file).unwrap();
    let block = vec![0u8; 64 * 1024];
    while f.write_all(&block).and_then(|_| f.sync_all()).is_ok() {}
    let _ = f.write_all(&[0; 1024]);
    let _ = f.write_all(&[0; 1]);
}

/// Every object in `wal/` opens with the identity (age + zstd) or is a
/// well-formed base backup index: nothing half-written.
pub fn assert_every_object_opens(rig: &Rig) {
    let id = std::fs::read_to_string(&rig.keys.identity).unwrap();
    let id: age::x25519::Identity = id.trim().parse().unwrap();
    for name in rig.wal_objects() {
        let bytes = std::fs::read(rig.store.path().join("wal").join(&name)).unwrap();
        if name.ends_with(".json") {
            let v: serde_json::Value =
                serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("wal/{name}: {e}"));
            assert!(v["id"].is_string(), "wal/{name}");
            continue;
        }
        let plain = age::decrypt(&id, &bytes).unwrap_or_else(|e| panic!("wal/{name}: {e}"));
        zstd::decode_all(&plain[..]).unwrap_or_else(|e| panic!("wal/{name}: {e}"));
    }
}
