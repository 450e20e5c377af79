//! Point-in-time recovery: the cluster's WAL streamed to the targets, base
//! backups, and `restore --at`.
//!
//! Why pg_receivewal on a replication slot, not `archive_command`:
//! - It loses less on a crash. archive_command hands PostgreSQL's WAL over
//!   one finished 16 MiB segment at a time, so a quiet server keeps its last
//!   minutes (or, without archive_timeout, hours) of commits only on its own
//!   disk. pg_receivewal receives every commit as it is written
//!   (`--synchronous`: flushed here at once), and the part of the open
//!   segment received so far is sent every `wal_upload_interval` as its own
//!   object. No forced segment switches, no superuser needed for them.
//! - It needs the REPLICATION attribute (what pg_basebackup needs anyway),
//!   not superuser, no `archive_mode` restart, nothing installed or
//!   configured on the database host: Rampart may run on the Odoo host.
//! - Rampart being down loses nothing: the slot keeps the WAL on the server
//!   until Rampart is back and catches up. The price is that a slot can fill
//!   the server's disk; `wal_max_behind` bounds it (PostgreSQL's own
//!   `max_slot_wal_keep_size` when set, which also holds while Rampart is
//!   down; else Rampart drops the slot itself) and says so loudly.
//!
//! Layout on a target, in `wal/` (flat, like the rest; append-only):
//!
//! ```text
//! wal/<segment>                    a whole segment (24 hex), zstd + age
//! wal/<segment>.<start>-<end>      bytes [start, end) (8 hex each) of a segment
//!                                  still being written: sent every interval,
//!                                  never replaced; superseded by the whole one
//! wal/<tli>.history                timeline history files
//! wal/base-<id>.tar, .wal.tar      pg_basebackup -Ft -X stream output, zstd + age
//! wal/base-<id>.json               plaintext index of a base backup, written last
//! ```
//!
//! Filestore files Odoo adds between snapshots go to `blobs/<sha1>` as
//! they appear (Odoo never rewrites one in place, so the name is the
//! content); `restore --at` takes the blobs the recovered database refers to.

mod base;
mod cluster;
mod fetch;
pub mod freshness;
mod pitr;
mod stream;

use anyhow::{Result, bail};

use crate::config::BackupConfig;

pub use base::{BaseBackup, base_backup, list_base_backups};
pub use fetch::{fetch_client, parse_at};
pub use pitr::{PitrOptions, PitrReport, restore_at};
pub use stream::run_stream;

/// The `wal*` keys that serde cannot check.
pub(crate) fn validate(cfg: &BackupConfig) -> std::result::Result<(), (String, String)> {
    let s = &cfg.wal_slot;
    if s.is_empty()
        || s.len() > 63
        || !s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err((
            "backup.wal_slot".into(),
            "a slot name is 1 to 63 of a-z, 0-9 and '_'".into(),
        ));
    }
    if cfg.wal_upload_interval.get() < std::time::Duration::from_secs(1) {
        return Err((
            "backup.wal_upload_interval".into(),
            "must be at least 1s".into(),
        ));
    }
    if cfg.wal_max_behind.get() < 64 << 20 {
        return Err((
            "backup.wal_max_behind".into(),
            "must be at least 64MiB (four WAL segments)".into(),
        ));
    }
    Ok(())
}

/// A WAL position (`"16/B374D848"`).
pub(crate) fn parse_lsn(s: &str) -> Result<u64> {
    let (hi, lo) = s
        .trim()
        .split_once('/')
        .ok_or_else(|| anyhow::Error::msg(format!("bad WAL position {s:?}")))?;
    let hi = u64::from_str_radix(hi, 16).map_err(|_| anyhow::Error::msg(format!("{s:?}")))?;
    let lo = u64::from_str_radix(lo, 16).map_err(|_| anyhow::Error::msg(format!("{s:?}")))?;
    if hi > u32::MAX as u64 || lo > u32::MAX as u64 {
        bail!("bad WAL position {s:?}");
    }
    Ok(hi << 32 | lo)
}

/// A segment file name (`TTTTTTTTXXXXXXXXYYYYYYYY`) → (timeline, segment number).
pub(crate) fn parse_segment(name: &str, seg_size: u64) -> Option<(u32, u64)> {
    if name.len() != 24 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let tli = u32::from_str_radix(&name[..8], 16).ok()?;
    let hi = u64::from_str_radix(&name[8..16], 16).ok()?;
    let lo = u64::from_str_radix(&name[16..], 16).ok()?;
    let per_id = 0x1_0000_0000 / seg_size;
    if lo >= per_id {
        return None;
    }
    Some((tli, hi * per_id + lo))
}

/// `00000002.history`.
pub(crate) fn is_history(name: &str) -> bool {
    name.strip_suffix(".history")
        .is_some_and(|t| t.len() == 8 && t.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `<segment>.<start>-<end>` → (segment, start, end).
pub(crate) fn parse_piece(name: &str) -> Option<(&str, u64, u64)> {
    let (seg, range) = name.split_once('.')?;
    let (a, b) = range.split_once('-')?;
    if seg.len() != 24 || a.len() != 8 || b.len() != 8 {
        return None;
    }
    let a = u64::from_str_radix(a, 16).ok()?;
    let b = u64::from_str_radix(b, 16).ok()?;
    (a < b).then_some((seg, a, b))
}

pub(crate) fn piece_name(seg: &str, start: u64, end: u64) -> String {
    format!("wal/{seg}.{start:08x}-{end:08x}")
}

/// How far a segment is covered from byte 0 by `pieces` ((start, end) ranges).
pub(crate) fn covered(pieces: &mut [(u64, u64)]) -> u64 {
    pieces.sort();
    let mut end = 0;
    for &(a, b) in pieces.iter() {
        if a > end {
            break;
        }
        end = end.max(b);
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_positions() {
        assert_eq!(parse_lsn("16/B374D848").unwrap(), 0x16_B374_D848);
        assert!(parse_lsn("16B374D848").is_err());
        let seg = 16 << 20;
        assert_eq!(
            parse_segment("000000010000000200000003", seg),
            Some((1, 2 * 256 + 3))
        );
        assert_eq!(parse_segment("000000010000000200000100", seg), None);
        assert_eq!(parse_segment("00000001000000020000000G", seg), None);
        assert!(is_history("0000000A.history"));
        assert!(!is_history("0000000A.partial"));
        let p = piece_name("000000010000000000000003", 0, 0x148);
        assert_eq!(p, "wal/000000010000000000000003.00000000-00000148");
        assert_eq!(
            parse_piece(p.strip_prefix("wal/").unwrap()),
            Some(("000000010000000000000003", 0, 0x148))
        );
        assert_eq!(
            parse_piece("000000010000000000000003.00000148-00000148"),
            None
        );
    }

    #[test]
    fn coverage_is_contiguous_from_zero() {
        assert_eq!(covered(&mut [(0, 10), (10, 20), (30, 40)]), 20);
        assert_eq!(covered(&mut [(5, 10)]), 0);
        assert_eq!(covered(&mut [(0, 10), (3, 25), (20, 22)]), 25);
        assert_eq!(covered(&mut []), 0);
    }
}
