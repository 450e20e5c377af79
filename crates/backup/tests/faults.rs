//! Faults: a run killed with SIGKILL halfway, a target disk that fills
//! up. No partial snapshot is ever listed, earlier snapshots stay intact,
//! and the next run succeeds.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use rampart_backup::{BackupConfig, BackupOptions, Progress, RestoreOptions, Target};

const CHILD_ENV: &str = "RAMPART_BACKUP_TEST_CHILD_CONFIG";

/// In the child this test starts (this same test binary, re-run on this
/// test with the config in `CHILD_ENV`): one backup, to be killed halfway.
async fn child_runs_one_backup(text: &str) {
    let cfg: BackupConfig = serde_json::from_str(text).unwrap();
    rampart_backup::backup(&cfg, &BackupOptions::default(), &Progress::quiet())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_mid_run_lists_no_partial_snapshot() {
    if let Ok(text) = std::env::var(CHILD_ENV) {
        return child_runs_one_backup(&text).await;
    }
    let pg = PgCluster::start();
    let data = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let keys = keys();
    make_odoo_db(&pg, data.path(), "erp", 20, 1000);
    let mut cfg = config(
        &pg,
        data.path(),
        &keys,
        vec![file_target("local", store.path())],
    );
    cfg.databases = vec!["erp".into()];
    cfg.spool_dir = Some(spool.path().to_path_buf());
    let quiet = Progress::quiet();
    rampart_backup::backup(&cfg, &BackupOptions::default(), &quiet)
        .await
        .unwrap();
    let t = Target::open(&file_target("local", store.path()))
        .await
        .unwrap();
    let first = rampart_backup::list_snapshots(&t).await.unwrap();
    assert_eq!(first.len(), 1);

    // Enough new files that the next run is still uploading when killed.
    let root = data.path().join("filestore/erp");
    for i in 0..3000 {
        let content = pseudo_random(10_000 + i, 4096);
        let sha = sha1_hex(&content);
        let p = root.join(&sha[..2]).join(&sha);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    let before = objects(store.path(), "blobs").len();
    let json = serde_json::json!({
        "databases": ["erp"],
        "data_dir": data.path(),
        "pg": pg.conn(),
        "recipients": [keys.recipient],
        "spool_dir": spool.path(),
        "target": [{"name": "local", "url": format!("file://{}", store.path().display())}],
    });
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "killed_mid_run_lists_no_partial_snapshot",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, json.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            Instant::now() < deadline,
            "the child never started uploading"
        );
        if objects(store.path(), "blobs").len() > before + 50 {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the child finished before the kill"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let after_kill = objects(store.path(), "blobs").len();
    assert!(after_kill < before + 3000, "the run was cut short");

    // Only the complete snapshot is listed, and it is intact.
    let list = rampart_backup::list_snapshots(&t).await.unwrap();
    assert_eq!(list, first);
    let ids = rampart_backup::seal_identities(&keys.identity).unwrap();
    assert!(
        rampart_backup::verify(&t, &first[0], Some(&ids))
            .await
            .unwrap()
            .ok()
    );

    // The next run completes, reusing what the killed run uploaded.
    let r = rampart_backup::backup(&cfg, &BackupOptions::default(), &quiet)
        .await
        .unwrap();
    assert!(r.ok(), "{r:?}");
    assert_eq!(objects(store.path(), "blobs").len(), before + 3000);
    let list = rampart_backup::list_snapshots(&t).await.unwrap();
    assert_eq!(list.len(), 2);
    let opts = RestoreOptions {
        new_db: "erp_after_kill".into(),
        neutralize: false,
        swap: false,
        identity: keys.identity.clone(),
    };
    rampart_backup::restore(&cfg, &t, &list[1], &opts, &quiet)
        .await
        .unwrap();
    assert_same_database(&pg, data.path(), "erp", "erp_after_kill");
}

/// A small tmpfs as the target's disk; unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(st.success(), "mounting a tmpfs (the tests run as root)");
        SmallDisk { dir }
    }
    fn grow(&self, size: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.dir.path())
            .status()
            .unwrap();
        assert!(st.success());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn full_target_disk_is_a_clear_error_and_the_next_run_succeeds() {
    let pg = PgCluster::start();
    let data = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let keys = keys();
    // About 1.2 MB of incompressible files for a 512 KB disk.
    make_odoo_db(&pg, data.path(), "erp", 60, 20_000);
    let disk = SmallDisk::mount("512k");
    let mut cfg = config(
        &pg,
        data.path(),
        &keys,
        vec![
            file_target("small", disk.dir.path()),
            file_target("big", other.path()),
        ],
    );
    cfg.databases = vec!["erp".into()];
    let quiet = Progress::quiet();
    let r = rampart_backup::backup(&cfg, &BackupOptions::default(), &quiet)
        .await
        .unwrap();
    assert!(!r.ok());
    let small = r.targets.iter().find(|t| t.target == "small").unwrap();
    let err = small.error.as_deref().unwrap();
    assert!(
        err.contains("No space left on device") && err.contains("small"),
        "{err}"
    );
    assert_eq!(
        r.targets
            .iter()
            .find(|t| t.target == "big")
            .unwrap()
            .snapshots
            .len(),
        1
    );
    let t = Target::open(&file_target("small", disk.dir.path()))
        .await
        .unwrap();
    assert!(rampart_backup::list_snapshots(&t).await.unwrap().is_empty());
    // Nothing half-written under a blob's name: every blob there decrypts.
    let ids = rampart_backup::seal_identities(&keys.identity).unwrap();
    for b in objects(disk.dir.path(), "blobs") {
        let bytes = std::fs::read(disk.dir.path().join("blobs").join(&b)).unwrap();
        assert_eq!(sha1_hex(&ids.open_bytes(&bytes).unwrap()), b);
    }

    disk.grow("8m");
    let mut only_small = cfg.clone();
    only_small.targets.truncate(1);
    let r = rampart_backup::backup(&only_small, &BackupOptions::default(), &quiet)
        .await
        .unwrap();
    assert!(r.ok(), "{r:?}");
    let list = rampart_backup::list_snapshots(&t).await.unwrap();
    assert_eq!(list.len(), 1);
    assert!(
        rampart_backup::verify(&t, &list[0], Some(&ids))
            .await
            .unwrap()
            .ok()
    );
}
