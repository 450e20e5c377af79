//! Point-in-time recovery through the real binary against a real
//! PostgreSQL: `rampart wal-stream` streams the WAL and new filestore files
//! and takes a base backup; `rampart restore --at` recovers a noted moment
//! into a new database with the filestore of that moment; a streamer killed
//! with SIGKILL (pg_receivewal, then Rampart itself) catches up; a slot
//! that lost WAL is a loud error and a new history starts.

mod common;

#[path = "../../backup/tests/common/mod.rs"]
mod backup_common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use backup_common::{Keys, PG_USER, PgCluster, add_attachment, keys, make_odoo_db, read_tree};
use common::{Rampart, Setup, Site, TempDir, bin, run_cli};

/// A cluster, a file target, a config with `wal = true`, and the streamer.
struct Rig {
    pg: PgCluster,
    data: tempfile::TempDir,
    store: tempfile::TempDir,
    keys: Keys,
    dir: TempDir,
    config: PathBuf,
    /// The `[backup]` section alone (for `rampart serve`'s config).
    section: String,
    streamer: Option<Child>,
}

impl Rig {
    fn new(extra: &str) -> Rig {
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

    fn start_streamer(&mut self) {
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

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("stream.log")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn kill_streamer(&mut self) {
        if let Some(mut c) = self.streamer.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn wal_objects(&self) -> Vec<String> {
        backup_common::objects(self.store.path(), "wal")
    }

    fn base_backups(&self) -> usize {
        self.wal_objects()
            .iter()
            .filter(|n| n.starts_with("base-") && n.ends_with(".json"))
            .count()
    }

    /// Waits (up to `limit`) for `cond`, naming `what` and the log on failure.
    fn wait(&self, what: &str, limit: Duration, mut cond: impl FnMut(&Rig) -> bool) {
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
    fn wait_sent(&self, what: &str) {
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

    fn restore_at(&self, at: &str, new_db: &str, extra: &[&str]) -> (i32, String) {
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

    fn filestore(&self, db: &str) -> std::collections::BTreeMap<String, Vec<u8>> {
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
fn receivewal_pids(dir: &Path) -> Vec<u32> {
    pids_of("pg_receivewal", dir)
}

/// Processes of `program` whose command line names `dir`.
fn pids_of(program: &str, dir: &Path) -> Vec<u32> {
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
fn date(args: &[&str]) -> String {
    let out = Command::new("date").args(args).output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn local_now() -> String {
    date(&["+%Y-%m-%d %H:%M:%S"])
}

fn orders(pg: &PgCluster, db: &str) -> String {
    pg.psql(db, "SELECT id, name FROM sale_order ORDER BY id")
}

#[test]
fn restore_at_a_noted_local_time_gets_that_moment_with_its_filestore() {
    let mut rig = Rig::new("");
    make_odoo_db(&rig.pg, rig.data.path(), "erp", 2, 1000);
    rig.pg.psql(
        "erp",
        "CREATE TABLE sale_order (id serial PRIMARY KEY, name varchar)",
    );
    rig.start_streamer();
    rig.wait("a first base backup", Duration::from_secs(120), |r| {
        r.base_backups() == 1
    });

    // Before the noted moment: orders 1-3 and an attachment.
    let root = rig.data.path().join("filestore").join("erp");
    rig.pg.psql(
        "erp",
        "INSERT INTO sale_order (name) VALUES ('S1'), ('S2'), ('S3')",
    );
    let before_file = add_attachment(&rig.pg, &root, "erp", "before.pdf", b"in the past");
    let expected_orders = orders(&rig.pg, "erp");
    let expected_attachments = rig.pg.table("erp", "ir_attachment");
    std::thread::sleep(Duration::from_millis(1100));
    let at = local_now();
    std::thread::sleep(Duration::from_millis(1100));
    // After it: an order changed, one deleted, one added, a new attachment.
    rig.pg.psql(
        "erp",
        "UPDATE sale_order SET name = 'S1 changed' WHERE id = 1; DELETE FROM sale_order WHERE id = 2; \
         INSERT INTO sale_order (name) VALUES ('S4')",
    );
    let after_file = add_attachment(&rig.pg, &root, "erp", "after.pdf", b"in the future");
    rig.wait_sent("the later commits");

    let (code, out) = rig.restore_at(&at, "erp_at", &[]);
    assert_eq!(code, 0, "{out}\nstreamer log:\n{}", rig.log());
    assert!(out.contains("restored into database erp_at"), "{out}");
    assert_eq!(orders(&rig.pg, "erp_at"), expected_orders, "{out}");
    assert_eq!(
        rig.pg.table("erp_at", "ir_attachment"),
        expected_attachments
    );
    let fs = rig.filestore("erp_at");
    assert!(fs.contains_key(&before_file), "{:?}", fs.keys());
    assert!(!fs.contains_key(&after_file), "{:?}", fs.keys());
    assert_eq!(fs[&before_file], b"in the past");
    // The original database is untouched, and still moves on.
    assert!(orders(&rig.pg, "erp").contains("S1 changed"));

    // The same moment with an explicit offset is the same moment.
    let utc = date(&["-u", "-d", &at, "+%Y-%m-%d %H:%M:%S+00:00"]);
    let (code, out) = rig.restore_at(&utc, "erp_at_utc", &["--db", "erp"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(orders(&rig.pg, "erp_at_utc"), expected_orders);
}

#[test]
fn a_killed_streamer_and_a_killed_receiver_catch_up_and_lose_nothing() {
    let mut rig = Rig::new("");
    make_odoo_db(&rig.pg, rig.data.path(), "erp", 1, 500);
    rig.pg.psql(
        "erp",
        "CREATE TABLE sale_order (id serial PRIMARY KEY, name varchar)",
    );
    rig.start_streamer();
    rig.wait("a first base backup", Duration::from_secs(120), |r| {
        r.base_backups() == 1
    });
    rig.pg
        .psql("erp", "INSERT INTO sale_order (name) VALUES ('A')");
    rig.wait_sent("A");

    // SIGKILL pg_receivewal: the streamer starts another.
    let pids = receivewal_pids(rig.dir.path());
    assert_eq!(pids.len(), 1, "one pg_receivewal: {pids:?}");
    Command::new("kill")
        .args(["-9", &pids[0].to_string()])
        .status()
        .unwrap();
    rig.pg
        .psql("erp", "INSERT INTO sale_order (name) VALUES ('B')");
    rig.wait_sent("B after pg_receivewal was killed");
    let pids2 = receivewal_pids(rig.dir.path());
    assert!(!pids2.is_empty() && pids2 != pids, "{pids2:?}");

    // SIGKILL Rampart: its pg_receivewal is orphaned and still holds the
    // slot; commits go on; a new streamer takes the slot over.
    rig.kill_streamer();
    rig.pg
        .psql("erp", "INSERT INTO sale_order (name) VALUES ('C')");
    rig.pg.psql("postgres", "SELECT pg_switch_wal()");
    rig.pg
        .psql("erp", "INSERT INTO sale_order (name) VALUES ('D')");
    rig.start_streamer();
    rig.wait_sent("C and D after Rampart was killed");
    assert!(
        rig.log().contains("pg_receivewal left behind"),
        "{}",
        rig.log()
    );
    assert_eq!(receivewal_pids(rig.dir.path()).len(), 1);

    std::thread::sleep(Duration::from_millis(1100));
    let (code, out) = rig.restore_at(&local_now(), "erp_now", &["--swap"]);
    assert_eq!(code, 0, "{out}\nstreamer log:\n{}", rig.log());
    // Nothing was committed after the moment asked for: the archive's end.
    assert!(out.contains("the archived WAL ends before"), "{out}");
    // --swap: the restored copy is now `erp`, the old one kept aside.
    assert!(!rig.pg.exists("erp_now"), "{out}");
    assert_eq!(
        rig.pg.psql(
            "erp",
            "SELECT string_agg(name, ',' ORDER BY id) FROM sale_order"
        ),
        "A,B,C,D",
        "{out}"
    );
    assert_eq!(
        rig.pg.psql(
            "postgres",
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'erp_old_%'"
        ),
        "1"
    );
}

#[test]
fn a_slot_that_lost_wal_is_a_loud_error_and_a_new_history_starts() {
    let mut rig = Rig::new("wal_max_behind = \"64MiB\"");
    make_odoo_db(&rig.pg, rig.data.path(), "erp", 1, 500);
    rig.start_streamer();
    rig.wait("a first base backup", Duration::from_secs(120), |r| {
        r.base_backups() == 1
    });
    // Rampart bounded the slot on the server (the test role is superuser).
    assert_eq!(
        rig.pg.psql("postgres", "SHOW max_slot_wal_keep_size"),
        "64MB",
        "{}",
        rig.log()
    );
    // Rampart down (and its receiver): the server writes more WAL than
    // the bound; at the checkpoint it removes it, the slot is lost.
    rig.kill_streamer();
    for pid in receivewal_pids(rig.dir.path()) {
        Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
    }
    for _ in 0..6 {
        rig.pg.psql(
            "erp",
            "CREATE TABLE IF NOT EXISTS t (x int); INSERT INTO t VALUES (1)",
        );
        rig.pg.psql("postgres", "SELECT pg_switch_wal()");
    }
    rig.pg.psql("postgres", "CHECKPOINT");
    assert_eq!(
        rig.pg.psql(
            "postgres",
            "SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'rampart'"
        ),
        "lost"
    );
    rig.start_streamer();
    rig.wait(
        "a loud error, a new slot and a second base backup",
        Duration::from_secs(120),
        |r| r.base_backups() == 2,
    );
    let log = rig.log();
    assert!(log.contains("ERROR") && log.contains("GAP"), "{log}");
    assert_eq!(
        rig.pg.psql(
            "postgres",
            "SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'rampart'"
        ),
        "reserved"
    );
}

/// A tmpfs mounted over a directory; unmounted on drop.
struct Mounted(PathBuf);

impl Mounted {
    fn tmpfs(at: &Path, size: &str) -> Mounted {
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
fn fill(file: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(file).unwrap();
    let block = vec![0u8; 64 * 1024];
    while f.write_all(&block).and_then(|_| f.sync_all()).is_ok() {}
    let _ = f.write_all(&[0; 1024]);
    let _ = f.write_all(&[0; 1]);
}

/// Every object in `wal/` opens with the identity (age + zstd) or is a
/// well-formed base backup index: nothing half-written.
fn assert_every_object_opens(rig: &Rig) {
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

#[test]
fn a_full_target_disk_loses_nothing_and_catches_up_when_freed() {
    let mut rig = Rig::new("");
    let disk = Mounted::tmpfs(rig.store.path(), "64m");
    make_odoo_db(&rig.pg, rig.data.path(), "erp", 1, 500);
    rig.pg.psql(
        "erp",
        "CREATE TABLE sale_order (id serial PRIMARY KEY, name varchar)",
    );
    rig.start_streamer();
    rig.wait("a first base backup", Duration::from_secs(120), |r| {
        r.base_backups() == 1
    });
    rig.pg
        .psql("erp", "INSERT INTO sale_order (name) VALUES ('A')");
    rig.wait_sent("A");

    let filler = rig.store.path().join("filler");
    fill(&filler);
    rig.pg
        .psql("erp", "INSERT INTO sale_order (name) VALUES ('B')");
    rig.pg.psql("postgres", "SELECT pg_switch_wal()");
    rig.pg
        .psql("erp", "INSERT INTO sale_order (name) VALUES ('C')");
    rig.wait("the full disk reported", Duration::from_secs(30), |r| {
        r.log().contains("No space left on device")
    });
    assert_every_object_opens(&rig);

    std::fs::remove_file(&filler).unwrap();
    rig.wait_sent("B and C once the disk has room");
    assert_every_object_opens(&rig);
    std::thread::sleep(Duration::from_millis(1100));
    let (code, out) = rig.restore_at(&local_now(), "erp_now", &[]);
    assert_eq!(code, 0, "{out}\nstreamer log:\n{}", rig.log());
    assert_eq!(
        rig.pg.psql(
            "erp_now",
            "SELECT string_agg(name, ',' ORDER BY id) FROM sale_order"
        ),
        "A,B,C",
        "{out}"
    );
    rig.kill_streamer();
    drop(disk);
}

#[test]
fn a_base_backup_killed_halfway_lists_nothing_and_the_next_one_completes() {
    let rig = Rig::new("");
    make_odoo_db(&rig.pg, rig.data.path(), "erp", 1, 500);
    let spool = rig.dir.path().join("spool");
    for delay_ms in [150u64, 600, 1200] {
        let mut child = Command::new(bin())
            .args(["wal-base", "--config"])
            .arg(&rig.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        // Its pg_basebackup, orphaned, may still be writing: end it too.
        for pid in pids_of("pg_basebackup", &spool) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        // Whatever got written: a listed base backup has both its tars.
        let objs = rig.wal_objects();
        for b in objs.iter().filter(|n| n.ends_with(".json")) {
            let id = b.trim_end_matches(".json");
            assert!(
                objs.contains(&format!("{id}.tar")),
                "{b} without its tar: {objs:?}"
            );
            assert!(
                objs.contains(&format!("{id}.wal.tar")),
                "{b} without its WAL: {objs:?}"
            );
        }
    }
    assert_every_object_opens(&rig);
    let before = rig.base_backups();
    let (code, out, err) = run_cli(&["wal-base", "--config", rig.config.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(rig.base_backups(), before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_streams_the_wal_when_wal_is_on() {
    let rig = Rig::new("");
    make_odoo_db(&rig.pg, rig.data.path(), "erp", 1, 500);
    let mut setup = Setup::site(Site::unreachable("erp.test"));
    setup.extra = format!("\n{}", rig.section);
    let r = Rampart::start(setup).await;
    let logs = || std::fs::read_to_string(&r.stderr_path).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(120);
    while rig.base_backups() == 0 {
        assert!(
            Instant::now() < deadline,
            "no base backup from serve:\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    rig.pg.psql(
        "erp",
        "CREATE TABLE sale_order (id serial PRIMARY KEY, name varchar)",
    );
    rig.wait_sent("a commit while serve runs");
    assert!(logs().contains("pg_receivewal started"), "{}", logs());
    drop(r);
}

#[test]
fn a_second_streamer_on_the_same_wal_dir_stands_by() {
    let mut rig = Rig::new("");
    make_odoo_db(&rig.pg, rig.data.path(), "erp", 1, 500);
    rig.start_streamer();
    rig.wait("a first base backup", Duration::from_secs(120), |r| {
        r.base_backups() == 1
    });
    let first = receivewal_pids(rig.dir.path());
    assert_eq!(first.len(), 1);
    let mut second = Command::new(bin())
        .args(["wal-stream", "--config"])
        .arg(&rig.config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = second.stderr.take().unwrap();
    let lines = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(err)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.contains("another Rampart streams into"))
    });
    std::thread::sleep(Duration::from_secs(3));
    // The first keeps its receiver: the second took nothing over.
    assert_eq!(receivewal_pids(rig.dir.path()), first, "{}", rig.log());
    let _ = second.kill();
    let _ = second.wait();
    assert!(
        lines.join().unwrap().is_some(),
        "the second streamer said why it waits"
    );
}
