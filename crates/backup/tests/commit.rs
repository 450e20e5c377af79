//! The snapshot's commit point, as each target sees it: what a run reports
//! it stored is what landed on the target, byte for byte, and a target
//! that fails while blobs are uploading is failed once, gets no dump,
//! manifest or index entry (so lists no snapshot that lacks its blobs),
//! while the other targets complete.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::*;
use rampart_backup::{BackupConfig, BackupOptions, Progress, Target};

const CHILD_ENV: &str = "RAMPART_BACKUP_COMMIT_CHILD_CONFIG";

/// Every file under a target's directory: relative path → size.
fn sizes(root: &Path) -> BTreeMap<String, u64> {
    read_tree(root)
        .into_iter()
        .map(|(k, v)| (k, v.len() as u64))
        .collect()
}

/// The bytes of the files in `after` that were not in `before`.
fn added(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> (u64, Vec<String>) {
    let new: Vec<String> = after
        .keys()
        .filter(|k| !before.contains_key(*k))
        .cloned()
        .collect();
    (new.iter().map(|k| after[k]).sum(), new)
}

#[tokio::test(flavor = "multi_thread")]
async fn each_target_reports_exactly_the_bytes_it_stored() {
    let pg = PgCluster::start();
    let data = tempfile::tempdir().unwrap();
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let keys = keys();
    make_odoo_db(&pg, data.path(), "erp", 12, 30_000);
    let mut cfg = config(
        &pg,
        data.path(),
        &keys,
        vec![file_target("one", one.path())],
    );
    cfg.databases = vec!["erp".into()];
    let quiet = Progress::quiet();

    // First run, one target: every blob, the dump, the manifest, the index entry.
    let r = rampart_backup::backup(&cfg, &BackupOptions::default(), &quiet)
        .await
        .unwrap();
    assert!(r.ok(), "{r:?}");
    let first = sizes(one.path());
    let (bytes, files) = added(&BTreeMap::new(), &first);
    assert_eq!(files.iter().filter(|f| f.starts_with("blobs/")).count(), 13);
    assert_eq!(r.targets[0].bytes_new, bytes, "stored: {files:?}");
    assert_eq!(r.bytes_new(), bytes);

    // Second run, a second (empty) target joins and one attachment is new:
    // the first stores one blob plus the snapshot's three objects, the
    // second everything.
    let content = pseudo_random(4242, 70_000);
    add_attachment(
        &pg,
        &data.path().join("filestore/erp"),
        "erp",
        "new.bin",
        &content,
    );
    cfg.targets.push(file_target("two", two.path()));
    let r = rampart_backup::backup(&cfg, &BackupOptions::default(), &quiet)
        .await
        .unwrap();
    assert!(r.ok(), "{r:?}");
    let (bytes_one, files_one) = added(&first, &sizes(one.path()));
    assert_eq!(
        files_one.iter().filter(|f| f.starts_with("blobs/")).count(),
        1,
        "{files_one:?}"
    );
    assert_eq!(files_one.len(), 4, "{files_one:?}");
    let (bytes_two, files_two) = added(&BTreeMap::new(), &sizes(two.path()));
    assert_eq!(files_two.len(), 14 + 3, "{files_two:?}");
    let by_name: BTreeMap<&str, u64> = r
        .targets
        .iter()
        .map(|t| (t.target.as_str(), t.bytes_new))
        .collect();
    assert_eq!(by_name["one"], bytes_one, "target one stored {files_one:?}");
    assert_eq!(by_name["two"], bytes_two, "target two stored {files_two:?}");
    assert_eq!(r.bytes_new(), bytes_one + bytes_two);
}

/// A tmpfs mounted on a directory; unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(dir)
            .status()
            .expect("cannot run mount");
        assert!(st.success(), "mounting a tmpfs (the tests run as root)");
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// In the child the test below starts (this same binary, with the config
/// in `CHILD_ENV`): one backup with progress lines on stderr, the report
/// on stdout.
async fn child_runs_one_backup(text: &str) {
    let cfg: BackupConfig = serde_json::from_str(text).unwrap();
    let r = rampart_backup::backup(&cfg, &BackupOptions::default(), &Progress::auto())
        .await
        .unwrap();
    for t in &r.targets {
        println!(
            "REPORT {} snapshots={} error={}",
            t.target,
            t.snapshots.len(),
            t.error.as_deref().unwrap_or("none")
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_target_failing_its_blob_uploads_fails_once_and_lists_no_snapshot() {
    if let Ok(text) = std::env::var(CHILD_ENV) {
        return child_runs_one_backup(&text).await;
    }
    let pg = PgCluster::start();
    let data = tempfile::tempdir().unwrap();
    let (good, broken) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let keys = keys();
    // Enough files that several uploads to each target are in flight when
    // the first failure is booked.
    make_odoo_db(&pg, data.path(), "erp", 40, 2_000);
    // `blobs` is another filesystem on the broken target: every blob's
    // link from tmp/ fails (EXDEV), while listing it and writing the other
    // directories work. (Tests run as root: permissions would not stop it.)
    let _mount = Tmpfs::mount(&broken.path().join("blobs"));
    let json = serde_json::json!({
        "databases": ["erp"],
        "data_dir": data.path(),
        "pg": pg.conn(),
        "recipients": [keys.recipient],
        "target": [
            {"name": "good", "url": format!("file://{}", good.path().display())},
            {"name": "broken", "url": format!("file://{}", broken.path().display())},
        ],
    });
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_target_failing_its_blob_uploads_fails_once_and_lists_no_snapshot",
            "--test-threads",
            "1",
            "--nocapture",
        ])
        .env(CHILD_ENV, json.to_string())
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "the child failed:\n{stdout}\n{stderr}"
    );
    let report = |name: &str| {
        // libtest's "test NAME ... " may precede the first one on its line.
        let tag = format!("REPORT {name} ");
        stdout
            .lines()
            .find_map(|l| l.find(&tag).map(|at| l[at..].to_string()))
            .unwrap_or_else(|| panic!("no report for {name}:\n{stdout}\n{stderr}"))
    };

    // The broken target: failed, told once (the first error is its story),
    // nothing of the snapshot written.
    let failed: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("target broken: FAILED"))
        .collect();
    assert_eq!(failed.len(), 1, "one failure line per target:\n{stderr}");
    let line = report("broken");
    assert!(line.contains("snapshots=0"), "{line}");
    let error = line.split_once("error=").unwrap().1;
    assert_ne!(error, "none", "{line}");
    assert!(failed[0].ends_with(error), "{}\n{line}", failed[0]);
    for dir in ["data", "index"] {
        assert_eq!(
            objects(broken.path(), dir),
            Vec::<String>::new(),
            "{dir}/ on the failed target"
        );
    }
    let t = Target::open(&file_target("broken", broken.path()))
        .await
        .unwrap();
    assert!(rampart_backup::list_snapshots(&t).await.unwrap().is_empty());

    // The good target: complete and verifiable.
    let line = report("good");
    assert!(line.contains("snapshots=1 error=none"), "{line}");
    assert!(!stderr.contains("target good: FAILED"), "{stderr}");
    let t = Target::open(&file_target("good", good.path()))
        .await
        .unwrap();
    let list = rampart_backup::list_snapshots(&t).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(objects(good.path(), "blobs").len(), 41);
    let ids = rampart_backup::seal_identities(&keys.identity).unwrap();
    let v = rampart_backup::verify(&t, &list[0], Some(&ids))
        .await
        .unwrap();
    assert!(v.ok(), "{:?}", v.problems);
}
