//! SFTP (a real OpenSSH sshd with Rampart's forced-command line) and S3
//! (moto's S3-compatible server) targets, and a failing target among
//! working ones.

mod common;

use common::remote::{S3Server, Sshd};
use common::*;
use rampart_backup::{BackupOptions, Keep, Progress, RestoreOptions, Target, TargetConfig};

fn quiet() -> Progress {
    Progress::quiet()
}

#[tokio::test(flavor = "multi_thread")]
async fn sftp_target_round_trips_and_the_receiver_refuses_deletes_and_overwrites() {
    let sshd = Sshd::start();
    let pg = PgCluster::start();
    let data = tempfile::tempdir().unwrap();
    let keys = keys();
    make_odoo_db(&pg, data.path(), "erp", 8, 5000);
    let mut cfg = config(&pg, data.path(), &keys, vec![sshd.target("vault")]);
    cfg.databases = vec!["erp".into()];

    let r = rampart_backup::backup(&cfg, &BackupOptions::default(), &quiet())
        .await
        .unwrap();
    assert!(r.ok(), "{r:?}");
    assert_eq!(objects(&sshd.store, "blobs").len(), 9);
    assert_eq!(objects(&sshd.store, "index").len(), 1);

    let t = Target::open(&sshd.target("vault")).await.unwrap();
    let snap = rampart_backup::find_snapshot(&t, "latest", None)
        .await
        .unwrap();
    let opts = RestoreOptions {
        new_db: "erp_from_sftp".into(),
        neutralize: false,
        swap: false,
        identity: keys.identity.clone(),
    };
    rampart_backup::restore(&cfg, &t, &snap, &opts, &quiet())
        .await
        .unwrap();
    assert_same_database(&pg, data.path(), "erp", "erp_from_sftp");

    // Second run: one new file, one new blob.
    add_attachment(
        &pg,
        &data.path().join("filestore/erp"),
        "erp",
        "n",
        &pseudo_random(77, 4000),
    );
    let r = rampart_backup::backup(&cfg, &BackupOptions::default(), &quiet())
        .await
        .unwrap();
    assert!(r.ok(), "{r:?}");
    assert_eq!(objects(&sshd.store, "blobs").len(), 10);
    assert_eq!(rampart_backup::list_snapshots(&t).await.unwrap().len(), 2);

    // With the writer's own key, nothing stored can be removed, renamed
    // over, made writable or rewritten.
    let index = format!("index/{}.json", snap.id);
    let before = std::fs::read(sshd.store.join(&index)).unwrap();
    let junk = sshd.dir.path().join("junk");
    std::fs::write(&junk, b"junk").unwrap();
    for cmd in [
        format!("rm {}/{index}", sshd.store.display()),
        format!("rename {0}/{index} {0}/index/x.json", sshd.store.display()),
        format!("chmod 644 {}/{index}", sshd.store.display()),
        format!("put {} {}/{index}", junk.display(), sshd.store.display()),
    ] {
        let (ok, out) = sshd.sftp_batch(&format!("{cmd}\n"));
        assert!(!ok, "{cmd} was allowed: {out}");
        assert!(out.contains("Permission denied"), "{cmd}: {out}");
    }
    assert_eq!(std::fs::read(sshd.store.join(&index)).unwrap(), before);
    let ids = rampart_backup::seal_identities(&keys.identity).unwrap();
    assert!(
        rampart_backup::verify(&t, &snap, Some(&ids))
            .await
            .unwrap()
            .ok()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_target_round_trips_writes_only_if_absent_and_prunes() {
    let s3 = S3Server::start("rampart");
    let pg = PgCluster::start();
    let data = tempfile::tempdir().unwrap();
    let keys = keys();
    make_odoo_db(&pg, data.path(), "erp", 6, 5000);
    let mut cfg = config(
        &pg,
        data.path(),
        &keys,
        vec![s3.target("bucket", "erp-server")],
    );
    cfg.databases = vec!["erp".into()];

    let r = rampart_backup::backup(&cfg, &BackupOptions::default(), &quiet())
        .await
        .unwrap();
    assert!(r.ok(), "{r:?}");
    let t = Target::open(&s3.target("bucket", "erp-server"))
        .await
        .unwrap();
    assert_eq!(t.list("blobs").await.unwrap().len(), 7);
    let snap = rampart_backup::find_snapshot(&t, "latest", Some("erp"))
        .await
        .unwrap();
    let opts = RestoreOptions {
        new_db: "erp_from_s3".into(),
        neutralize: false,
        swap: false,
        identity: keys.identity.clone(),
    };
    rampart_backup::restore(&cfg, &t, &snap, &opts, &quiet())
        .await
        .unwrap();
    assert_same_database(&pg, data.path(), "erp", "erp_from_s3");

    // Write-if-absent: an existing object is never replaced.
    let index = format!("index/{}.json", snap.id);
    let before = t.get(&index).await.unwrap();
    assert!(
        !t.put(&index, rampart_backup::target::Payload::Bytes(b"{}"))
            .await
            .unwrap()
    );
    assert_eq!(t.get(&index).await.unwrap(), before);

    // Large objects (a real dump) go up in parts, still write-if-absent.
    let big = tempfile::NamedTempFile::new().unwrap();
    let big_data = pseudo_random(42, 40 * 1024 * 1024 + 123);
    std::fs::write(big.path(), &big_data).unwrap();
    let payload = rampart_backup::target::Payload::File(big.path());
    assert!(t.put("data/big.test", payload).await.unwrap());
    assert_eq!(t.get("data/big.test").await.unwrap(), big_data);
    let again = rampart_backup::target::Payload::Bytes(b"x");
    assert!(!t.put("data/big.test", again).await.unwrap());
    let fetched = tempfile::NamedTempFile::new().unwrap();
    let n = t
        .get_to_file("data/big.test", fetched.path())
        .await
        .unwrap();
    assert_eq!(n, big_data.len() as u64);
    assert!(std::fs::read(fetched.path()).unwrap() == big_data);
    t.delete("data/big.test").await.unwrap();

    // A second snapshot stores one new blob; prune (with delete rights)
    // then keeps the newest only and the blob set it needs.
    let rel = add_attachment(
        &pg,
        &data.path().join("filestore/erp"),
        "erp",
        "n",
        &pseudo_random(5, 3000),
    );
    let r = rampart_backup::backup(&cfg, &BackupOptions::default(), &quiet())
        .await
        .unwrap();
    assert!(r.ok(), "{r:?}");
    assert_eq!(t.list("blobs").await.unwrap().len(), 8);
    let r = rampart_backup::prune(
        &t,
        Keep {
            daily: 1,
            weekly: 0,
            monthly: 0,
        },
        false,
        &quiet(),
    )
    .await
    .unwrap();
    assert_eq!(r.removed, vec![snap.id.clone()]);
    // Blobs are younger than the grace period: none is collected yet.
    assert_eq!(r.blobs_removed, 0);
    assert!(
        t.list("blobs")
            .await
            .unwrap()
            .iter()
            .any(|o| rel.ends_with(&o.name))
    );
    assert_eq!(rampart_backup::list_snapshots(&t).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_target_is_reported_and_does_not_stop_the_others() {
    let s3 = S3Server::start("rampart");
    let pg = PgCluster::start();
    let data = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let keys = keys();
    make_odoo_db(&pg, data.path(), "erp", 3, 1000);
    let dead_port = free_port();
    let unreachable = TargetConfig {
        name: "offsite".into(),
        url: format!("sftp://{PG_USER}@127.0.0.1:{dead_port}/srv/rampart"),
        ..Default::default()
    };
    // A local disk whose directory cannot be created (a file is in the way).
    let blocked = tempfile::NamedTempFile::new().unwrap();
    let broken_local = TargetConfig {
        name: "usb".into(),
        url: format!("file://{}/sub", blocked.path().display()),
        ..Default::default()
    };
    let mut cfg = config(
        &pg,
        data.path(),
        &keys,
        vec![
            unreachable,
            file_target("local", store.path()),
            broken_local,
            s3.target("bucket", "p"),
        ],
    );
    cfg.databases = vec!["erp".into()];
    let r = rampart_backup::backup(&cfg, &BackupOptions::default(), &quiet())
        .await
        .unwrap();
    assert!(!r.ok());
    let by_name = |n: &str| r.targets.iter().find(|t| t.target == n).unwrap();
    let offsite = by_name("offsite");
    assert!(
        offsite.error.as_deref().unwrap().contains("offsite"),
        "{offsite:?}"
    );
    assert!(by_name("usb").error.is_some());
    assert_eq!(by_name("local").snapshots.len(), 1, "{r:?}");
    assert_eq!(by_name("bucket").snapshots.len(), 1, "{r:?}");
    assert!(
        r.summary().contains("FAILED targets: offsite, usb"),
        "{}",
        r.summary()
    );
    let local = Target::open(&file_target("local", store.path()))
        .await
        .unwrap();
    assert_eq!(
        rampart_backup::list_snapshots(&local).await.unwrap().len(),
        1
    );
}
