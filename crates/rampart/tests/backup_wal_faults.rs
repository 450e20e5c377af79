//! Faults of point-in-time recovery, through the real binary against a
//! real PostgreSQL: a streamer killed with SIGKILL (pg_receivewal, then
//! Rampart itself) catches up and loses nothing; a slot that lost WAL is a
//! loud error and a new history starts; a full target disk and killed base
//! backups never leave a half object listed; a second streamer stands by.

mod common;

#[path = "../../backup/tests/common/mod.rs"]
mod backup_common;
#[path = "wal_rig/mod.rs"]
mod wal_rig;

use std::process::{Command, Stdio};
use std::time::Duration;

use backup_common::make_odoo_db;
use common::{bin, run_cli};
use wal_rig::{Mounted, Rig, assert_every_object_opens, fill, local_now, pids_of, receivewal_pids};

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
    let now = receivewal_pids(rig.dir.path());
    // Stopped before any assertion: a failing test leaves no process behind.
    let _ = second.kill();
    let _ = second.wait();
    // The first keeps its receiver: the second took nothing over.
    assert_eq!(now, first, "{}", rig.log());
    assert!(
        lines.join().unwrap().is_some(),
        "the second streamer said why it waits"
    );
}
