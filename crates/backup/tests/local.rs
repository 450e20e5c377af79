//! Snapshots to a local directory against a real PostgreSQL: round trip,
//! incremental storage, refusals, verify, neutralize, swap, Odoo zip,
//! prune, and a run killed with SIGKILL halfway.

mod common;

use common::*;
use rampart_backup::{BackupOptions, Keep, Progress, RestoreOptions, Target};

fn quiet() -> Progress {
    Progress::quiet()
}

async fn target(dir: &std::path::Path) -> Target {
    Target::open(&file_target("local", dir)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn round_trip_restores_tables_and_filestore_and_second_snapshot_is_incremental() {
    let pg = PgCluster::start();
    let data = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let keys = keys();
    make_odoo_db(&pg, data.path(), "erp", 30, 20_000);
    let mut cfg = config(
        &pg,
        data.path(),
        &keys,
        vec![file_target("local", store.path())],
    );

    let r = rampart_backup::backup(&cfg, &BackupOptions::default(), &quiet())
        .await
        .unwrap();
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.targets[0].snapshots.len(), 1);
    // 30 attachments + the misnamed file, each one blob.
    assert_eq!(objects(store.path(), "blobs").len(), 31);
    let t = target(store.path()).await;
    let list = rampart_backup::list_snapshots(&t).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].db, "erp");

    // Nothing readable without the key: no plaintext partner names anywhere.
    for d in ["blobs", "data"] {
        for o in objects(store.path(), d) {
            let bytes = std::fs::read(store.path().join(d).join(o)).unwrap();
            assert!(bytes.starts_with(b"age-encryption.org/v1"));
            assert!(!bytes.windows(9).any(|w| w == b"Partner 1"));
        }
    }

    let first = list[0].clone();
    let opts = RestoreOptions {
        new_db: "erp_copy".into(),
        neutralize: false,
        swap: false,
        identity: keys.identity.clone(),
    };
    let got = rampart_backup::restore(&cfg, &t, &first, &opts, &quiet())
        .await
        .unwrap();
    assert_eq!(got, "erp_copy");
    assert_same_database(&pg, data.path(), "erp", "erp_copy");
    // The copy has its own identity.
    for k in ["database.uuid", "database.secret"] {
        assert_ne!(param(&pg, "erp", k), param(&pg, "erp_copy", k), "{k}");
        assert_eq!(param(&pg, "erp_copy", k).len(), 36);
    }
    // The misnamed file came back under its own name with its own bytes.
    let odd = data
        .path()
        .join("filestore/erp_copy/ab/abababababababababababababababababababab");
    assert_eq!(std::fs::read(odd).unwrap(), b"not what the name says");

    // An existing name is refused, and nothing of it is touched.
    let e = rampart_backup::restore(&cfg, &t, &first, &opts, &quiet())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("already exists"), "{e}");
    assert_same_database(&pg, data.path(), "erp", "erp_copy");

    // Without a list, every Odoo database is backed up; erp_copy now is one.
    cfg.databases = vec!["erp".into()];
    // One new attachment: the second snapshot uploads exactly one blob.
    let content = pseudo_random(999, 50_000);
    add_attachment(
        &pg,
        &data.path().join("filestore/erp"),
        "erp",
        "new.bin",
        &content,
    );
    let r2 = rampart_backup::backup(&cfg, &BackupOptions::default(), &quiet())
        .await
        .unwrap();
    assert!(r2.ok());
    assert_eq!(objects(store.path(), "blobs").len(), 32);
    assert!(
        r2.bytes_new() < r.bytes_new() / 4,
        "second run stored {} bytes, first {}",
        r2.bytes_new(),
        r.bytes_new()
    );
    let list = rampart_backup::list_snapshots(&t).await.unwrap();
    assert_eq!(list.len(), 2);
    let second = list[1].clone();
    assert_eq!(second.blobs.len(), 32);

    // Verify: complete, with the dump checksum; restore test passes.
    let ids = rampart_backup::seal_identities(&keys.identity).unwrap();
    let v = rampart_backup::verify(&t, &second, Some(&ids))
        .await
        .unwrap();
    assert!(v.ok(), "{:?}", v.problems);
    let tested = rampart_backup::restore_test(&cfg, &t, &second, &keys.identity, false, &quiet())
        .await
        .unwrap();
    assert!(
        tested.contains("3 users, 3 installed modules, 32 filestore files"),
        "{tested}"
    );
    assert!(
        !pg.psql("postgres", "SELECT datname FROM pg_database")
            .contains("rampart_drill")
    );

    // Restore of the second snapshot has the new attachment.
    let opts2 = RestoreOptions {
        new_db: "erp_two".into(),
        ..opts.clone()
    };
    rampart_backup::restore(&cfg, &t, &second, &opts2, &quiet())
        .await
        .unwrap();
    assert_same_database(&pg, data.path(), "erp", "erp_two");

    // A blob gone from the target: verify names it.
    let victim = &second.blobs[0];
    let p = store.path().join("blobs").join(victim);
    std::fs::remove_file(&p).unwrap();
    let v = rampart_backup::verify(&t, &second, None).await.unwrap();
    assert!(!v.ok());
    assert!(
        v.problems.iter().any(|p| p.contains(victim)),
        "{:?}",
        v.problems
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn neutralize_runs_installed_modules_scripts_and_swap_replaces_only_after_success() {
    let pg = PgCluster::start();
    let data = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let addons = tempfile::tempdir().unwrap();
    let keys = keys();
    make_odoo_db(&pg, data.path(), "erp", 3, 1000);
    let write = |module: &str, sql: &str| {
        let d = addons.path().join(module).join("data");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("neutralize.sql"), sql).unwrap();
    };
    write("mail", "UPDATE ir_mail_server SET active = false;");
    write(
        "base",
        "UPDATE ir_cron SET active = false WHERE name <> 'autovacuum';",
    );
    // Not installed: must not run (it would fail the whole transaction).
    write("sale", "SELECT 1/0;");
    let mut cfg = config(
        &pg,
        data.path(),
        &keys,
        vec![file_target("local", store.path())],
    );
    cfg.addons_path = vec![addons.path().to_path_buf()];
    rampart_backup::backup(&cfg, &BackupOptions::default(), &quiet())
        .await
        .unwrap();
    let t = target(store.path()).await;
    let snap = rampart_backup::find_snapshot(&t, "latest", Some("erp"))
        .await
        .unwrap();

    let opts = RestoreOptions {
        new_db: "erp_staging".into(),
        neutralize: true,
        swap: false,
        identity: keys.identity.clone(),
    };
    rampart_backup::restore(&cfg, &t, &snap, &opts, &quiet())
        .await
        .unwrap();
    assert_eq!(
        pg.psql("erp_staging", "SELECT active FROM ir_mail_server"),
        "f"
    );
    assert_eq!(
        pg.psql("erp_staging", "SELECT name FROM ir_cron WHERE active"),
        "autovacuum"
    );
    assert_eq!(param(&pg, "erp_staging", "database.is_neutralized"), "True");
    // The original is untouched.
    assert_eq!(pg.psql("erp", "SELECT active FROM ir_mail_server"), "t");

    // A failing restore (wrong key) leaves neither database nor filestore.
    let other = common::keys();
    let bad = RestoreOptions {
        new_db: "erp_bad".into(),
        identity: other.identity.clone(),
        ..opts.clone()
    };
    let e = rampart_backup::restore(&cfg, &t, &snap, &bad, &quiet())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("decrypt"), "{e}");
    assert!(!pg.exists("erp_bad"));
    assert!(!data.path().join("filestore/erp_bad").exists());

    // --swap: erp is replaced by the restored copy, the old one kept aside.
    pg.psql(
        "erp",
        "INSERT INTO res_partner (name) VALUES ('after the snapshot')",
    );
    let swap = RestoreOptions {
        new_db: "erp_new".into(),
        neutralize: false,
        swap: true,
        identity: keys.identity.clone(),
    };
    let name = rampart_backup::restore(&cfg, &t, &snap, &swap, &quiet())
        .await
        .unwrap();
    assert_eq!(name, "erp");
    assert!(!pg.exists("erp_new"));
    assert_eq!(
        pg.psql(
            "erp",
            "SELECT count(*) FROM res_partner WHERE name = 'after the snapshot'"
        ),
        "0"
    );
    let aside = pg.psql(
        "postgres",
        "SELECT datname FROM pg_database WHERE datname LIKE 'erp_old_%'",
    );
    assert!(aside.starts_with("erp_old_"), "{aside}");
    assert_eq!(
        pg.psql(
            &aside,
            "SELECT count(*) FROM res_partner WHERE name = 'after the snapshot'"
        ),
        "1"
    );
    assert!(data.path().join("filestore").join(&aside).is_dir());
    assert_eq!(read_tree(&data.path().join("filestore/erp")).len(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn odoo_zip_export_then_import_round_trips() {
    let pg = PgCluster::start();
    let data = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let keys = keys();
    make_odoo_db(&pg, data.path(), "erp", 5, 3000);
    let cfg = config(
        &pg,
        data.path(),
        &keys,
        vec![file_target("local", store.path())],
    );
    rampart_backup::backup(&cfg, &BackupOptions::default(), &quiet())
        .await
        .unwrap();
    let t = target(store.path()).await;
    let snap = rampart_backup::find_snapshot(&t, "latest", None)
        .await
        .unwrap();

    let out = tempfile::tempdir().unwrap();
    let zip_path = out.path().join("erp.zip");
    rampart_backup::export_odoo_zip(&cfg, &t, &snap, &keys.identity, &zip_path, &quiet())
        .await
        .unwrap();
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&zip_path).unwrap()).unwrap();
    assert_eq!(
        zip.by_index(0).unwrap().name().unwrap(),
        "dump.sql",
        "dump.sql comes first"
    );
    let manifest: serde_json::Value = {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut zip.by_name("manifest.json").unwrap(), &mut s).unwrap();
        serde_json::from_str(&s).unwrap()
    };
    assert_eq!(manifest["odoo_dump"], "1");
    assert_eq!(manifest["db_name"], "erp");
    assert_eq!(manifest["version"], "18.0");
    assert_eq!(manifest["major_version"], "18.0");
    assert_eq!(manifest["modules"]["mail"], "18.0.1.15");
    assert!(manifest["modules"].get("sale").is_none());
    assert!(
        manifest["pg_version"]
            .as_str()
            .unwrap()
            .starts_with(&pg.psql("postgres", "SHOW server_version_num")[..2])
    );
    let files = (0..zip.len())
        .filter(|&i| {
            zip.by_index(i)
                .unwrap()
                .name()
                .unwrap()
                .starts_with("filestore/")
        })
        .count();
    assert_eq!(files, 6);

    rampart_backup::import_odoo_zip(&cfg, &zip_path, "erp_from_zip", false, &quiet())
        .await
        .unwrap();
    assert_same_database(&pg, data.path(), "erp", "erp_from_zip");
    assert_ne!(
        param(&pg, "erp", "database.secret"),
        param(&pg, "erp_from_zip", "database.secret")
    );
    // Importing over an existing name is refused.
    let e = rampart_backup::import_odoo_zip(&cfg, &zip_path, "erp", false, &quiet())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("already exists"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn pg_dump_failure_lists_nothing_and_keeps_earlier_snapshots() {
    let pg = PgCluster::start();
    let data = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let keys = keys();
    make_odoo_db(&pg, data.path(), "erp", 2, 100);
    let cfg = config(
        &pg,
        data.path(),
        &keys,
        vec![file_target("local", store.path())],
    );
    rampart_backup::backup(&cfg, &BackupOptions::default(), &quiet())
        .await
        .unwrap();

    // A table pg_dump may not read: the dump fails, with pg_dump's words.
    pg.psql("postgres", "CREATE ROLE weak LOGIN");
    pg.psql("erp", "CREATE TABLE secret_stuff (id int); REVOKE ALL ON secret_stuff FROM PUBLIC; GRANT SELECT ON ir_module_module TO weak");
    let mut weak = cfg.clone();
    weak.pg = weak.pg.replace("postgres@", "weak@");
    weak.databases = vec!["erp".into()];
    let r = rampart_backup::backup(&weak, &BackupOptions::default(), &quiet())
        .await
        .unwrap();
    assert!(!r.ok());
    assert!(r.db_errors[0].contains("pg_dump"), "{:?}", r.db_errors);
    assert!(
        r.db_errors[0].contains("permission denied"),
        "{:?}",
        r.db_errors
    );

    let t = target(store.path()).await;
    assert_eq!(rampart_backup::list_snapshots(&t).await.unwrap().len(), 1);
    let r = rampart_backup::backup(&cfg, &BackupOptions::default(), &quiet())
        .await
        .unwrap();
    assert!(r.ok());
    assert_eq!(rampart_backup::list_snapshots(&t).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn prune_keeps_generations_and_deletes_only_unreferenced_blobs() {
    let pg = PgCluster::start();
    let data = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let keys = keys();
    make_odoo_db(&pg, data.path(), "erp", 2, 100);
    let cfg = config(
        &pg,
        data.path(),
        &keys,
        vec![file_target("local", store.path())],
    );
    let root = data.path().join("filestore/erp");
    // Three snapshots, each with one attachment only it has; older ones
    // lose theirs from the filestore as Odoo's garbage collector would.
    let mut only = Vec::new();
    for i in 0..3 {
        let rel = add_attachment(&pg, &root, "erp", "x", &pseudo_random(100 + i, 700));
        rampart_backup::backup(&cfg, &BackupOptions::default(), &quiet())
            .await
            .unwrap();
        std::fs::remove_file(root.join(&rel)).unwrap();
        only.push(rel.rsplit('/').next().unwrap().to_string());
    }
    let t = target(store.path()).await;
    let all = rampart_backup::list_snapshots(&t).await.unwrap();
    assert_eq!(all.len(), 3);
    // Backdate the blobs past prune's grace period (a run may be going on).
    for b in objects(store.path(), "blobs") {
        let f = std::fs::File::options()
            .write(true)
            .open(store.path().join("blobs").join(b))
            .ok();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3 * 24 * 3600);
        if let Some(f) = f {
            f.set_modified(old).unwrap();
        } else {
            panic!("cannot backdate");
        }
    }
    // All three are from today: one daily keeps only the newest.
    let keep = Keep {
        daily: 1,
        weekly: 0,
        monthly: 0,
    };
    let dry = rampart_backup::prune(&t, keep, true, &quiet())
        .await
        .unwrap();
    assert_eq!(dry.removed.len(), 2);
    assert_eq!(
        rampart_backup::list_snapshots(&t).await.unwrap().len(),
        3,
        "dry run deletes nothing"
    );
    let r = rampart_backup::prune(&t, keep, false, &quiet())
        .await
        .unwrap();
    assert_eq!(r.kept, vec![all[2].id.clone()]);
    assert_eq!(r.blobs_removed, 2, "{}", r.summary());
    let blobs = objects(store.path(), "blobs");
    assert!(!blobs.contains(&only[0]) && !blobs.contains(&only[1]));
    assert!(blobs.contains(&only[2]));
    assert_eq!(objects(store.path(), "index").len(), 1);
    assert_eq!(objects(store.path(), "data").len(), 2);
    // What is left restores.
    let opts = RestoreOptions {
        new_db: "erp_after_prune".into(),
        neutralize: false,
        swap: false,
        identity: keys.identity.clone(),
    };
    rampart_backup::restore(&cfg, &t, &all[2], &opts, &quiet())
        .await
        .unwrap();
    let ids = rampart_backup::seal_identities(&keys.identity).unwrap();
    assert!(
        rampart_backup::verify(&t, &all[2], Some(&ids))
            .await
            .unwrap()
            .ok()
    );
}
