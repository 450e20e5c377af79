//! Point-in-time recovery through the real binary against a real
//! PostgreSQL: `rampart wal-stream` streams the WAL and new filestore files
//! and takes a base backup; `rampart restore --at` recovers a noted moment
//! (local time, or with an offset) into a new database with the filestore
//! of that moment; `rampart serve` streams when `wal = true`.

mod common;

#[path = "../../backup/tests/common/mod.rs"]
mod backup_common;
#[path = "wal_rig/mod.rs"]
mod wal_rig;

use std::time::{Duration, Instant};

use backup_common::{add_attachment, make_odoo_db};
use common::{Rampart, Setup, Site};
use wal_rig::{Rig, date, local_now, orders};

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
fn a_drill_with_wal_restores_a_recent_point_in_time() {
    let mut rig = Rig::new("");
    make_odoo_db(&rig.pg, rig.data.path(), "erp", 1, 500);
    rig.start_streamer();
    rig.wait("a first base backup", Duration::from_secs(120), |r| {
        r.base_backups() == 1
    });
    rig.pg.psql(
        "erp",
        "CREATE TABLE sale_order (id serial PRIMARY KEY, name varchar)",
    );
    rig.wait_sent("a commit after the base backup");
    // The drill recovers to two upload intervals (2 s each) ago.
    std::thread::sleep(Duration::from_secs(5));
    let identity = rig.keys.identity.clone();
    let config = rig.config.clone();
    let drill = |extra: &[&str]| {
        let mut args = vec![
            "backup",
            "drill",
            "--identity",
            identity.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ];
        args.extend(extra);
        let (code, out, err) = common::run_cli(&args);
        (code, format!("{out}{err}"))
    };
    let (code, out) = drill(&[]);
    assert_eq!(code, 0, "{out}\nstreamer log:\n{}", rig.log());
    assert!(
        out.contains("drill passed") && out.contains("point in time"),
        "{out}"
    );
    let left = rig.pg.psql(
        "postgres",
        "SELECT count(*) FROM pg_database WHERE datname LIKE 'rampart_drill_%'",
    );
    assert_eq!(left.trim(), "0", "the scratch database is dropped");
    // Without a base backup on the target, the same drill fails, and says so.
    rig.kill_streamer();
    std::fs::remove_dir_all(rig.store.path().join("wal")).unwrap();
    std::fs::create_dir(rig.store.path().join("wal")).unwrap();
    let (code, out) = drill(&[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("drill FAILED") && out.contains("point in time"),
        "{out}"
    );
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
    let committed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    rig.pg.psql(
        "erp",
        "CREATE TABLE sale_order (id serial PRIMARY KEY, name varchar)",
    );
    rig.wait_sent("a commit while serve runs");
    assert!(logs().contains("pg_receivewal started"), "{}", logs());
    // The freshness gauge an alert reads ("WAL N minutes behind") moves
    // past the commit once the target holds it.
    let name = "rampart_backup_wal_caught_up_timestamp_seconds";
    loop {
        let m = r.metrics().await;
        if m.contains(name) && common::metric(&m, name) >= committed.floor() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{name} not past the commit:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(r);
}
