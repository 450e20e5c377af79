//! Snapshots, targets, encryption, retention and restore (the backups issue).
//!
//! A snapshot is one database at one moment: `pg_dump -Fc` taken online plus
//! that database's filestore. Odoo names filestore files by the SHA-1 of
//! their content, so the filestore is already content-addressed: each file
//! becomes one blob stored once per target and shared by later snapshots.
//! Everything leaves the machine compressed (zstd) and encrypted to age
//! recipients whose private keys stay elsewhere.
//!
//! Layout on a target (flat on purpose: an SFTP receiver whose forced
//! command makes created files immutable cannot create new directories
//! that stay writable, and S3 has no directories anyway):
//!
//! ```text
//! blobs/<sha1>            one filestore file, zstd + age
//! data/<id>.dump          pg_dump -Fc output, zstd + age
//! data/<id>.manifest      the manifest (JSON), zstd + age
//! index/<id>.json         plaintext index entry, written LAST: a snapshot
//!                         exists only once this object exists
//! tmp/<random>            uploads in progress (SFTP, local), renamed or
//!                         linked into place; leftovers are pruned
//! ```
//!
//! The writer never overwrites or deletes; `prune` runs elsewhere, with
//! credentials that may delete.
//!
//! Setting up receivers so that a compromised server cannot erase history:
//! - SFTP: a backup user whose authorized_keys line is
//!   [`sftp_authorized_keys_line`] (files it creates are read-only, delete
//!   and rename are denied), with `blobs data index tmp wal` made beforehand;
//!   prune on the receiver: `rampart prune --url file:///srv/rampart …`.
//! - S3: Object Lock and a put/get/list-only key ([`s3_object_lock_advice`]);
//!   prune with another key.
//! - Local: a directory on another disk; `prune` as usual.
//!
//! Restores need the age identity (`--identity`), kept off the server.
//! Snapshots are standard files: `age -d -i key blobs/<sha1> | zstd -d`
//! gives a filestore file back without Rampart.
//!
//! For `rampart serve`: [`run_scheduled`] runs backups on `schedule`,
//! [`run_drills`] restore drills on `drill`.

#![warn(missing_docs)]

mod config;
mod drill;
mod filestore;
mod hash;
mod hash_cache;
mod odoo_zip;
mod pg;
mod progress;
mod prune;
mod restore;
mod schedule;
mod seal;
mod snapshot;
mod spool;
pub mod status;
pub mod target;
mod validate;
pub mod wal;

pub use anyhow::{Error, Result};
pub use config::{BackupConfig, TargetConfig};
pub use drill::{DrillRecord, drill, last_drill, restore_test, run_drills};
pub use odoo_zip::{export_odoo_zip, import_odoo_zip};
pub use progress::Progress;
pub use prune::{Keep, PruneReport, prune};
pub use restore::{RestoreOptions, restore};
pub use schedule::{Schedule, run_scheduled};

/// Reads an age identity file (for verify with checksums).
pub fn seal_identities(path: &std::path::Path) -> Result<seal::Identities> {
    seal::Identities::from_file(path)
}
pub use seal::Identities;
pub use snapshot::{
    BackupOptions, BackupReport, IndexEntry, Manifest, TargetOutcome, VerifyReport, backup,
    find_snapshot, list_snapshots, read_manifest, snapshots_json, verify,
};
pub use target::{Target, s3_object_lock_advice, sftp_authorized_keys_line};

/// Runs an async operation to completion on a fresh runtime: the command
/// line is synchronous, the targets are not.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("cannot start the async runtime")
        .block_on(f)
}
