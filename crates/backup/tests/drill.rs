//! A drill against a real PostgreSQL while the database is being written:
//! the manifest's row counts are taken in the dump's own snapshot, so the
//! restored copy matches them exactly however busy the server is.

mod common;

use std::process::{Command, Stdio};

use common::*;
use rampart_backup::{BackupOptions, Progress};

#[tokio::test(flavor = "multi_thread")]
async fn row_counts_match_the_dump_under_a_steady_write_load() {
    let pg = PgCluster::start();
    let (data, store, state) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let keys = keys();
    make_odoo_db(&pg, data.path(), "erp", 3, 1_000);
    let mut cfg = config(
        &pg,
        data.path(),
        &keys,
        vec![file_target("local", store.path())],
    );
    cfg.databases = vec!["erp".into()];
    cfg.state_dir = Some(state.path().to_path_buf());

    // A partner committed every millisecond or so, for the whole backup.
    let mut writer = Command::new(pg.bin.join("psql"))
        .args(["-X", "-q", "-d"])
        .arg(format!("postgresql://postgres@127.0.0.1:{}/erp", pg.port))
        .arg("-c")
        .arg(
            "DO $$ BEGIN FOR i IN 1..200000 LOOP \
               INSERT INTO res_partner (name) VALUES ('load ' || i); COMMIT; \
               PERFORM pg_sleep(0.001); END LOOP; END $$;",
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let before = pg.psql("erp", "SELECT count(*) FROM res_partner");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let r = rampart_backup::backup(&cfg, &BackupOptions::default(), &Progress::quiet())
        .await
        .unwrap();
    let after = pg.psql("erp", "SELECT count(*) FROM res_partner");
    writer.kill().unwrap();
    writer.wait().unwrap();
    assert!(r.ok(), "{r:?}");
    assert_ne!(before, after, "the write load did not run");

    let d = rampart_backup::drill(&cfg, &keys.identity, None, &Progress::quiet()).await;
    assert!(d.ok, "{d:?}");
    assert!(d.summary.contains("4 tables"), "{d:?}");
    // (duration_secs aside: serde_json's float parsing may differ by an ulp.)
    let kept = rampart_backup::last_drill(state.path()).unwrap();
    assert_eq!(
        (kept.ok, kept.time, kept.snapshots, kept.summary),
        (d.ok, d.time, d.snapshots, d.summary)
    );
}
