//! Restore drills and backup freshness through the real binary, against a
//! real PostgreSQL and the Odoo-like fixture: `rampart backup drill`
//! passes on a good snapshot (row counts, modules, files, an Odoo login),
//! fails on a corrupted blob, a manifest whose row counts the dump does
//! not hold, and a refused login; each result is recorded, the scratch
//! database is always dropped, and `rampart serve` shows the last drill
//! and the last snapshot per target and database in /metrics and on the
//! status page.

mod common;

#[path = "../../backup/tests/common/mod.rs"]
mod backup_common;

use std::io::Write;
use std::path::Path;

use backup_common::{Keys, PgCluster, keys, make_odoo_db, objects};
use common::{Rampart, Setup, Site, run_cli};
use rampart_testkit::OdooFixture;

fn backup_section(pg: &PgCluster, data: &Path, store: &Path, keys: &Keys, extra: &str) -> String {
    format!(
        "\n[backup]\ndatabases = [\"erp\"]\ndata_dir = {:?}\npg = {:?}\nrecipients = [{:?}]\n{extra}\n\
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

fn scratch_databases(pg: &PgCluster) -> String {
    pg.psql(
        "postgres",
        "SELECT datname FROM pg_database WHERE datname LIKE 'rampart_drill_%'",
    )
}

fn record(r: &Rampart) -> serde_json::Value {
    let text = std::fs::read_to_string(r.state_dir.join("backup-drill.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// zstd then age to the recipient: what Rampart's sealing does.
fn seal(recipient: &str, data: &[u8]) -> Vec<u8> {
    let r: age::x25519::Recipient = recipient.parse().unwrap();
    let z = zstd::encode_all(data, 3).unwrap();
    let enc = age::Encryptor::with_recipients(std::iter::once(&r as &dyn age::Recipient)).unwrap();
    let mut out = Vec::new();
    let mut w = enc.wrap_output(&mut out).unwrap();
    w.write_all(&z).unwrap();
    w.finish().unwrap();
    out
}

fn open(identity: &Path, sealed: &[u8]) -> Vec<u8> {
    let ids = age::IdentityFile::from_file(identity.to_str().unwrap().to_string())
        .unwrap()
        .into_identities()
        .unwrap();
    let d = age::Decryptor::new(sealed).unwrap();
    let mut r = d
        .decrypt(ids.iter().map(|i| i.as_ref() as &dyn age::Identity))
        .unwrap();
    let mut z = Vec::new();
    std::io::Read::read_to_end(&mut r, &mut z).unwrap();
    zstd::decode_all(&z[..]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drills_pass_fail_and_are_shown_with_snapshot_freshness() {
    let pg = PgCluster::start();
    let data = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let keys = keys();
    make_odoo_db(&pg, data.path(), "erp", 4, 2_000);
    let odoo = OdooFixture::start().await;
    let login = format!(
        "drill_odoo_url = \"http://{}\"\ndrill_login = \"admin\"\ndrill_password = \"admin\"\n\
         drill_identity = {:?}\ndrill = \"weekly sun 05:00\"",
        odoo.http_addr,
        keys.identity.display().to_string()
    );
    let mut setup = Setup::site(Site::unreachable("erp.test"));
    setup.extra = backup_section(&pg, data.path(), store.path(), &keys, &login);
    let mut r = Rampart::start(setup).await;

    // Nothing drilled yet: the status page says so.
    let page = r.admin_get("/").await.text();
    assert!(page.contains("Restore drill: never run"), "{page}");

    let (code, out) = cli(&r.config_path, &["backup"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = cli(&r.config_path, &["backup", "drill"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("drill passed on local"), "{out}");
    // make_odoo_db: 3 users, 500 partners, 5 attachments, 4 modules.
    assert!(out.contains("3 users, 3 installed modules"), "{out}");
    assert!(out.contains("4 tables (512 rows) as counted"), "{out}");
    assert!(out.contains("5 filestore files"), "{out}");
    assert!(out.contains("admin signed in through Odoo"), "{out}");
    assert_eq!(record(&r)["ok"], true);
    assert_eq!(scratch_databases(&pg), "");

    // Freshness and the drill, after a listing (at start). The listing
    // runs beside start-up: until it ends the gauges are not shown yet
    // (the status says "listing the backup targets…"), so wait for it.
    r.restart().await;
    let mut m = r.metrics().await;
    let listed = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !m.contains("rampart_backup_target_up{") && std::time::Instant::now() < listed {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        m = r.metrics().await;
    }
    let snap_line = m
        .lines()
        .find(|l| {
            l.starts_with("rampart_backup_last_snapshot_timestamp_seconds{")
                && l.contains("target=\"local\"")
                && l.contains("db=\"erp\"")
        })
        .unwrap_or_else(|| panic!("no snapshot gauge:\n{m}"));
    let ts: i64 = snap_line.rsplit(' ').next().unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - 600..=now).contains(&ts), "{snap_line} (now {now})");
    assert!(
        m.contains("rampart_backup_target_up{target=\"local\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("rampart_backup_drill_last_success{target=\"local\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("rampart_backup_drill_last_timestamp_seconds{target=\"local\"}"),
        "{m}"
    );
    let status: serde_json::Value =
        serde_json::from_str(&r.admin_get("/v1/status/backups").await.text()).unwrap();
    assert_eq!(status["drill"]["last"]["ok"], true, "{status}");
    assert_eq!(status["drill"]["schedule"], "weekly sun 05:00", "{status}");

    // A refused login fails the drill.
    let text = std::fs::read_to_string(&r.config_path).unwrap();
    r.write_config_text(&text.replace("drill_password = \"admin\"", "drill_password = \"wrong\""));
    let (code, out) = cli(&r.config_path, &["backup", "drill"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("Odoo refused \"admin\""), "{out}");
    assert_eq!(scratch_databases(&pg), "");
    r.write_config_text(&text);

    // A manifest whose row counts the dump does not hold.
    let manifest = store.path().join("data").join(
        objects(store.path(), "data")
            .into_iter()
            .find(|o| o.ends_with(".manifest"))
            .unwrap(),
    );
    let good = std::fs::read(&manifest).unwrap();
    let mut m: serde_json::Value = serde_json::from_slice(&open(&keys.identity, &good)).unwrap();
    assert_eq!(m["row_counts"]["res_partner"], 500, "{}", m["row_counts"]);
    m["row_counts"]["res_partner"] = 501.into();
    std::fs::set_permissions(
        &manifest,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    std::fs::write(&manifest, seal(&keys.recipient, m.to_string().as_bytes())).unwrap();
    let (code, out) = cli(&r.config_path, &["backup", "drill"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("res_partner: 500 rows restored, the manifest says 501"),
        "{out}"
    );
    std::fs::write(&manifest, &good).unwrap();

    // A corrupted blob: the drill fails, says which, and is shown.
    let blob = store
        .path()
        .join("blobs")
        .join(&objects(store.path(), "blobs")[0]);
    std::fs::set_permissions(&blob, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut bytes = std::fs::read(&blob).unwrap();
    let n = bytes.len();
    bytes[n - 20] ^= 0x55;
    std::fs::write(&blob, &bytes).unwrap();
    let (code, out) = cli(&r.config_path, &["backup", "drill"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("drill FAILED on local"), "{out}");
    assert!(out.contains(&objects(store.path(), "blobs")[0]), "{out}");
    assert_eq!(record(&r)["ok"], false);
    assert_eq!(scratch_databases(&pg), "");
    let m = r.metrics().await;
    assert!(
        m.contains("rampart_backup_drill_last_success{target=\"local\"} 0"),
        "{m}"
    );
    let page = r.admin_get("/").await.text();
    assert!(
        page.contains("Restore drill: <span class=\"bad\">FAILED</span>"),
        "{page}"
    );
}
