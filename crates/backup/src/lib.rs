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

mod config;
mod error;
mod filestore;
mod hash;
mod odoo_zip;
mod pg;
mod progress;
mod prune;
mod restore;
mod schedule;
mod seal;
mod snapshot;
pub mod target;

pub use config::{BackupConfig, TargetConfig};
pub use error::{Error, Result};
pub use odoo_zip::{export_odoo_zip, import_odoo_zip};
pub use progress::Progress;
pub use prune::{Keep, PruneReport, prune};
pub use restore::{RestoreOptions, restore, restore_test};
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
