//! The hash cache against a real PostgreSQL and real files: unchanged
//! files are not read again; a file changed behind the cache's back (same
//! size, mtime put back), a damaged cache, `--rehash`, and a forged cache
//! entry never let wrong bytes into a snapshot.

mod common;

use std::time::Duration;

use common::*;
use rampart_backup::{BackupOptions, Progress, RestoreOptions, Target};

/// Files younger than this are "racy" and never remembered (hash_cache::RACY).
fn let_files_age() {
    std::thread::sleep(Duration::from_millis(3_500));
}

async fn run(cfg: &rampart_backup::BackupConfig, rehash: bool) -> rampart_backup::BackupReport {
    let opts = BackupOptions {
        rehash,
        ..Default::default()
    };
    let r = rampart_backup::backup(cfg, &opts, &Progress::quiet())
        .await
        .unwrap();
    assert!(r.ok(), "{r:?}");
    r
}

#[tokio::test(flavor = "multi_thread")]
async fn unchanged_files_are_not_read_again_and_a_changed_one_always_is() {
    let pg = PgCluster::start();
    let (data, store, state) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let keys = keys();
    make_odoo_db(&pg, data.path(), "erp", 30, 20_000);
    let mut cfg = config(
        &pg,
        data.path(),
        &keys,
        vec![file_target("local", store.path())],
    );
    cfg.state_dir = Some(state.path().to_path_buf());
    cfg.databases = vec!["erp".into()];
    let_files_age();

    let first = run(&cfg, false).await;
    assert_eq!((first.files_hashed, first.files_cached), (31, 0));
    let second = run(&cfg, false).await;
    assert_eq!((second.files_hashed, second.files_cached), (0, 31));
    assert!(
        second.bytes_read < first.bytes_read - 30 * 20_000,
        "{} vs {}",
        second.bytes_read,
        first.bytes_read
    );

    // Changed in place, same size, mtime put back: ctime still tells.
    let odd = data
        .path()
        .join("filestore/erp/ab/abababababababababababababababababababab");
    let mtime = std::fs::metadata(&odd).unwrap().modified().unwrap();
    std::fs::write(&odd, b"NOT what the name says").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&odd)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let third = run(&cfg, false).await;
    assert_eq!((third.files_hashed, third.files_cached), (1, 30));
    let t = Target::open(&file_target("local", store.path()))
        .await
        .unwrap();
    let latest = rampart_backup::find_snapshot(&t, "latest", None)
        .await
        .unwrap();
    let opts = RestoreOptions {
        new_db: "erp_copy".into(),
        neutralize: false,
        swap: false,
        identity: keys.identity.clone(),
    };
    rampart_backup::restore(&cfg, &t, &latest, &opts, &Progress::quiet())
        .await
        .unwrap();
    let back = data
        .path()
        .join("filestore/erp_copy/ab/abababababababababababababababababababab");
    assert_eq!(std::fs::read(back).unwrap(), b"NOT what the name says");

    // --rehash reads everything.
    let all = run(&cfg, true).await;
    assert_eq!((all.files_hashed, all.files_cached), (31, 0));

    // A damaged cache is ignored (every file read), and the run succeeds;
    // it then remembers every file (the changed one has aged past racy).
    let_files_age();
    let cache = state.path().join("backup-hashes/erp.json");
    let text = std::fs::read_to_string(&cache).unwrap();
    std::fs::write(&cache, &text[..text.len() / 2]).unwrap();
    let after_damage = run(&cfg, false).await;
    assert_eq!(after_damage.files_hashed, 31);
    assert_eq!(run(&cfg, false).await.files_cached, 31);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_cache_entry_cannot_put_other_bytes_under_a_blob_name() {
    let pg = PgCluster::start();
    let (data, a, b, state) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let keys = keys();
    make_odoo_db(&pg, data.path(), "erp", 5, 1_000);
    let mut cfg = config(&pg, data.path(), &keys, vec![file_target("a", a.path())]);
    cfg.state_dir = Some(state.path().to_path_buf());
    let_files_age();
    run(&cfg, false).await;

    // Someone who can write the state dir says every file holds other bytes.
    let cache = state.path().join("backup-hashes/erp.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&cache).unwrap()).unwrap();
    let mut forged = v.clone();
    for (_, e) in forged["entries"].as_object_mut().unwrap() {
        e["sha1"] = "0123456789012345678901234567890123456789".into();
    }
    std::fs::write(&cache, serde_json::to_vec(&forged).unwrap()).unwrap();

    // A fresh target lacks that blob: each file is read again and stored
    // under the hash of what was read.
    cfg.targets = vec![file_target("b", b.path())];
    let r = run(&cfg, false).await;
    assert_eq!(r.files_hashed, 6);
    let names = objects(b.path(), "blobs");
    assert!(!names.contains(&"0123456789012345678901234567890123456789".to_string()));
    assert_eq!(names, objects(a.path(), "blobs"));
}

/// The figure issue 14 asks for, not a pass/fail speed test: a 1 GiB
/// filestore (4096 files of 256 KiB), a full run, 1 % of the files
/// replaced (as Odoo does: new files, old ones unlinked), then the
/// incremental run with the hash cache and with `--rehash` (what every
/// run cost before the cache). Needs ~2.2 GiB in TMPDIR, removed after.
/// `cargo test -p rampart-backup --test incremental -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement (1 GiB of test data), run by hand"]
async fn measure_one_gib_with_one_percent_changed() {
    let pg = PgCluster::start();
    let (data, store, state) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let keys = keys();
    make_odoo_db(&pg, data.path(), "erp", 0, 0);
    let root = data.path().join("filestore/erp");
    let write = |seed: u64| {
        let content = pseudo_random(seed, 256 * 1024);
        let sha = sha1_hex(&content);
        let p = root.join(&sha[..2]).join(&sha);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, &content).unwrap();
        p
    };
    let files: Vec<_> = (0..4096u64).map(|i| write(i + 1)).collect();
    let mut cfg = config(
        &pg,
        data.path(),
        &keys,
        vec![file_target("local", store.path())],
    );
    cfg.state_dir = Some(state.path().to_path_buf());
    cfg.databases = vec!["erp".into()];
    let_files_age();
    let show = |what: &str, r: &rampart_backup::BackupReport| {
        println!(
            "{what:<28} {:>7.2} s  read {:>11} B  stored {:>11} B  hashed {:>5}  cached {:>5}",
            r.duration.as_secs_f64(),
            r.bytes_read,
            r.bytes_new(),
            r.files_hashed,
            r.files_cached
        );
    };
    show("full (cold cache)", &run(&cfg, false).await);
    let mut changed = files.iter();
    let mut change_one_percent = |seed: u64| {
        for (i, p) in changed.by_ref().take(41).enumerate() {
            std::fs::remove_file(p).unwrap();
            write(seed + i as u64);
        }
    };
    change_one_percent(100_000);
    let_files_age();
    show("1 % changed, hash cache", &run(&cfg, false).await);
    change_one_percent(200_000);
    let_files_age();
    // Every file read: what each incremental run cost before the cache.
    show("1 % changed, --rehash", &run(&cfg, true).await);
    show("nothing changed, hash cache", &run(&cfg, false).await);
}
