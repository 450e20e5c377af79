//! README's backup promises through the real binary: `rampart backup`
//! with no `databases` backs up every Odoo database on the server (and not
//! a database without Odoo's tables), `rampart backups list --json` lists
//! them, `rampart backup verify` and `rampart restore` work from the
//! listing, and `schedule` runs a backup inside `rampart serve`.

mod common;

#[path = "../../backup/tests/common/mod.rs"]
mod backup_common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use backup_common::{Keys, PgCluster, assert_same_database, keys, make_odoo_db};
use common::{Rampart, Setup, Site, TempDir, run_cli};

/// The `[backup]` section for this cluster, data dir and file target.
fn backup_section(pg: &PgCluster, data: &Path, store: &Path, keys: &Keys, extra: &str) -> String {
    format!(
        "\n[backup]\ndata_dir = {:?}\npg = {:?}\nrecipients = [{:?}]\n{extra}\n\
         [[backup.target]]\nname = \"local\"\nurl = \"file://{}\"\n",
        data.display().to_string(),
        pg.conn(),
        keys.recipient,
        store.display()
    )
}

fn cli(config: &Path, args: &[&str]) -> (i32, String) {
    let mut args = args.to_vec();
    args.extend(["--config", config.to_str().unwrap()]);
    let (code, out, err) = run_cli(&args);
    (code, format!("{out}{err}"))
}

/// (id, db) of every listed snapshot.
fn listed(config: &Path) -> Vec<(String, String)> {
    let (code, out) = cli(config, &["backups", "list", "--json"]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| {
            assert_eq!(s["target"], "local", "{s}");
            (
                s["id"].as_str().unwrap().to_string(),
                s["db"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_cli_covers_every_odoo_database_then_lists_verifies_and_restores() {
    let pg = PgCluster::start();
    let data = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let keys = keys();
    make_odoo_db(&pg, data.path(), "erp", 3, 2000);
    make_odoo_db(&pg, data.path(), "erp2", 2, 1000);
    pg.psql("postgres", "CREATE DATABASE notodoo");
    let dir = TempDir::new("backup-cli");
    let config = dir.path().join("rampart.toml");
    std::fs::write(
        &config,
        backup_section(&pg, data.path(), store.path(), &keys, ""),
    )
    .unwrap();

    let (code, out) = cli(&config, &["backup"]);
    assert_eq!(code, 0, "{out}");
    let snaps = listed(&config);
    let dbs: BTreeSet<&str> = snaps.iter().map(|(_, db)| db.as_str()).collect();
    assert_eq!(
        dbs,
        BTreeSet::from(["erp", "erp2"]),
        "the default is every Odoo database: {snaps:?}"
    );
    assert_eq!(snaps.len(), 2, "{snaps:?}");

    let identity = keys.identity.to_str().unwrap();
    let (code, out) = cli(
        &config,
        &[
            "backup",
            "verify",
            "latest",
            "--db",
            "erp",
            "--identity",
            identity,
        ],
    );
    assert_eq!(code, 0, "{out}");
    let id = &snaps.iter().find(|(_, db)| db == "erp").unwrap().0;
    let (code, out) = cli(
        &config,
        &["restore", id, "--as", "erp_copy", "--identity", identity],
    );
    assert_eq!(code, 0, "{out}");
    assert_same_database(&pg, data.path(), "erp", "erp_copy");
    // Restoring over an existing name is refused.
    let (code, out) = cli(
        &config,
        &["restore", id, "--as", "erp_copy", "--identity", identity],
    );
    assert_ne!(code, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_the_backup_schedule() {
    let pg = PgCluster::start();
    let data = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let keys = keys();
    make_odoo_db(&pg, data.path(), "erp", 2, 1000);
    // The next whole minute at least 20 s away, in UTC (the server's zone here).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let at = (now + 20).div_ceil(60) * 60;
    let schedule = format!(
        "databases = [\"erp\"]\nschedule = \"daily {:02}:{:02}\"",
        at % 86_400 / 3600,
        at % 3600 / 60
    );
    let mut setup = Setup::site(Site::unreachable("erp.test"));
    setup.extra = backup_section(&pg, data.path(), store.path(), &keys, &schedule);
    setup.env.push(("TZ".into(), "UTC".into()));
    let r = Rampart::start(setup).await;
    r.wait_stderr_line(&["next backup"]).await;
    let early = listed(&r.config_path);
    let checked_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if checked_at + 1 < at {
        assert!(early.is_empty(), "a backup before its time: {early:?}");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(at - now + 120);
    loop {
        let snaps = listed(&r.config_path);
        if !snaps.is_empty() {
            assert_eq!(snaps.len(), 1, "{snaps:?}");
            assert_eq!(snaps[0].1, "erp");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no scheduled backup by {at} (unix time):\n{}",
            r.stderr()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    r.wait_stderr_line(&["backup: "]).await;
}
