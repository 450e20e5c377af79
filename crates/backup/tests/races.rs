//! Two writers racing for the same object, on every target kind: the
//! conditional write itself (link-if-absent, SFTP's exclusive hard link,
//! S3's `If-None-Match: *`) decides, not `put`'s existence check, which
//! these tests step around by calling `Target::write_if_absent` directly,
//! as a writer does whose check ran before the other's object landed.
//! Exactly one writer wins, what is stored is the winner's bytes whole,
//! and the losers are told so rather than failing.

mod common;

use common::remote::{S3Server, Sshd};
use common::*;
use futures_util::future::join_all;
use rampart_backup::Target;
use rampart_backup::target::Payload;

const WRITERS: usize = 6;

async fn one_writer_wins(t: &Target, spool: &std::path::Path) {
    // put: writes what is absent, then leaves it alone.
    assert!(t.put("blobs/cc", Payload::Bytes(b"put")).await.unwrap());
    assert!(!t.put("blobs/cc", Payload::Bytes(b"again")).await.unwrap());
    assert_eq!(t.get("blobs/cc").await.unwrap(), b"put");
    // A spooled upload (the dump's path) arrives whole.
    let dump = spool.join("dump");
    let bytes = format!("{:?}", (0..20_000).collect::<Vec<u32>>()).into_bytes();
    std::fs::write(&dump, &bytes).unwrap();
    assert!(
        t.write_if_absent("data/d.dump", Payload::File(&dump))
            .await
            .unwrap()
    );
    assert_eq!(t.get("data/d.dump").await.unwrap(), bytes);

    // In turn: the second writer's check said "absent" before the first landed.
    assert!(
        t.write_if_absent("blobs/aa", Payload::Bytes(b"first"))
            .await
            .unwrap()
    );
    let second = t
        .write_if_absent("blobs/aa", Payload::Bytes(b"second"))
        .await;
    assert!(!second.unwrap(), "the second writer replaced the first");
    assert_eq!(t.get("blobs/aa").await.unwrap(), b"first");
    // And the same for an index entry, from a spool file (the large-object path).
    let file = spool.join("index-entry");
    std::fs::write(&file, b"{\"snapshot\": \"second\"}").unwrap();
    assert!(
        t.write_if_absent("index/x.json", Payload::Bytes(b"{\"snapshot\": \"first\"}"))
            .await
            .unwrap()
    );
    assert!(
        !t.write_if_absent("index/x.json", Payload::File(&file))
            .await
            .unwrap(),
        "a spooled upload replaced an index entry"
    );
    assert_eq!(
        t.get("index/x.json").await.unwrap(),
        b"{\"snapshot\": \"first\"}"
    );

    // At once: every writer offers different bytes; one wins.
    let bodies: Vec<Vec<u8>> = (0..WRITERS)
        .map(|i| format!("writer {i} ").repeat(1000 + i).into_bytes())
        .collect();
    let results = join_all(
        bodies
            .iter()
            .map(|b| t.write_if_absent("blobs/bb", Payload::Bytes(b))),
    )
    .await;
    let won: Vec<usize> = results
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| {
            r.unwrap_or_else(|e| panic!("writer {i} failed instead of losing: {e}"))
                .then_some(i)
        })
        .collect();
    assert_eq!(
        won.len(),
        1,
        "writers {won:?} all think they wrote blobs/bb"
    );
    assert_eq!(t.get("blobs/bb").await.unwrap(), bodies[won[0]]);
    assert!(!t.put("blobs/bb", Payload::Bytes(b"late")).await.unwrap());
    assert_eq!(t.get("blobs/bb").await.unwrap(), bodies[won[0]]);
}

#[tokio::test(flavor = "multi_thread")]
async fn racing_writers_on_a_file_target_store_one_object() {
    let store = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let t = Target::open(&file_target("local", store.path()))
        .await
        .unwrap();
    one_writer_wins(&t, spool.path()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn racing_writers_on_an_sftp_target_store_one_object() {
    let sshd = Sshd::start();
    let spool = tempfile::tempdir().unwrap();
    let t = Target::open(&sshd.target("vault")).await.unwrap();
    one_writer_wins(&t, spool.path()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn racing_writers_on_an_s3_target_store_one_object() {
    let s3 = S3Server::start("races");
    let spool = tempfile::tempdir().unwrap();
    let t = Target::open(&s3.target("s3", "rampart")).await.unwrap();
    one_writer_wins(&t, spool.path()).await;
}

/// A write that fails for any other reason than "already there" is an
/// error, never a quiet "someone else stored it" (the snapshot would then
/// list a blob that is not on the target).
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_write_is_an_error_not_a_lost_race() {
    // File: the name's directory is on another filesystem, so link(2)
    // fails with EXDEV (tmp/ is under the target's root).
    let store = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir_in("/dev/shm").unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), store.path().join("blobs")).unwrap();
    let t = Target::open(&file_target("local", store.path()))
        .await
        .unwrap();
    let r = t.write_if_absent("blobs/aa", Payload::Bytes(b"x")).await;
    assert!(r.is_err(), "{r:?}");
    // S3: a bucket that does not exist.
    let s3 = S3Server::start("present");
    let mut cfg = s3.target("s3", "rampart");
    cfg.url = "s3://absent/rampart".into();
    let t = Target::open(&cfg).await.unwrap();
    let r = t.write_if_absent("blobs/aa", Payload::Bytes(b"x")).await;
    assert!(r.is_err(), "{r:?}");
    // SFTP: the receiver's blobs/ is not writable, so the link fails and
    // nothing is at the name.
    let sshd = Sshd::start();
    let t = Target::open(&sshd.target("vault")).await.unwrap();
    use std::os::unix::fs::PermissionsExt;
    let blobs = sshd.store.join("blobs");
    std::fs::set_permissions(&blobs, std::fs::Permissions::from_mode(0o555)).unwrap();
    let r = t.write_if_absent("blobs/aa", Payload::Bytes(b"x")).await;
    std::fs::set_permissions(&blobs, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(r.is_err(), "{r:?}");
}
