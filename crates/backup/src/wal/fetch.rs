//! Reading the WAL back for a recovery, and `--at` times.
//!
//! The temporary cluster runs as an unprivileged user, which must not hold
//! the age identity or the target's credentials. So its `restore_command`
//! (`rampart wal-fetch --from STAGE %f %p`) only asks: it drops
//! `STAGE/<name>.want` and waits; the restoring process, which has the key,
//! answers with `STAGE/<name>` (whole, renamed into place), `<name>.none`
//! (not in the archive: the end of the WAL) or `<name>.error`. An error
//! exits 255, which PostgreSQL takes as fatal rather than as the end of
//! the archive, so a failing download never ends a recovery early.

use std::collections::HashMap;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{is_history, parse_piece, parse_segment};
use crate::seal::Identities;
use crate::target::Target;

/// How long `wal-fetch` waits for an answer before failing the recovery.
const ANSWER_WAIT: Duration = Duration::from_secs(30 * 60);

/// `--at`: `2026-11-30 15:59:30` in the local time zone, or with an offset
/// (`…+01:00`, `…Z`); `T` or a space between date and time; seconds optional.
pub fn parse_at(s: &str) -> Result<jiff::Timestamp> {
    let t = s.trim();
    if let Ok(ts) = t.parse::<jiff::Timestamp>() {
        return Ok(ts);
    }
    let civil: jiff::civil::DateTime = t.parse().map_err(|e| {
        anyhow::Error::msg(format!(
            "--at {s:?}: expected \"YYYY-MM-DD HH:MM:SS\" (local time) or with an offset \
             (\"2026-11-30 15:59:30+01:00\"): {e}"
        ))
    })?;
    let zoned = civil
        .to_zoned(jiff::tz::TimeZone::system())
        .map_err(|e| anyhow::Error::msg(format!("--at {s:?}: {e}")))?;
    Ok(zoned.timestamp())
}

/// A name the archive may be asked for.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        && !name.starts_with('.')
}

/// `rampart wal-fetch --from STAGE NAME DEST`: 0 fetched, 1 not in the
/// archive, 255 an error (PostgreSQL aborts the recovery).
pub fn fetch_client(stage: &Path, name: &str, dest: &Path) -> i32 {
    if !valid_name(name) {
        eprintln!("wal-fetch: bad file name {name:?}");
        return 255;
    }
    let ans = |ext: &str| stage.join(format!("{name}{ext}"));
    if let Err(e) = std::fs::write(ans(".want"), b"") {
        eprintln!("wal-fetch: {}: {e}", ans(".want").display());
        return 255;
    }
    let deadline = Instant::now() + ANSWER_WAIT;
    while Instant::now() < deadline {
        if ans("").exists() {
            let r = std::fs::copy(ans(""), dest);
            let _ = std::fs::remove_file(ans(""));
            return match r {
                Ok(_) => 0,
                Err(e) => {
                    eprintln!("wal-fetch: copying to {}: {e}", dest.display());
                    255
                }
            };
        }
        if ans(".none").exists() {
            let _ = std::fs::remove_file(ans(".none"));
            return 1;
        }
        if let Ok(msg) = std::fs::read_to_string(ans(".error")) {
            eprintln!("wal-fetch: {name}: {msg}");
            return 255;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("wal-fetch: no answer for {name} within {ANSWER_WAIT:?}");
    255
}

/// What a target's `wal/` holds, listed once.
pub(crate) struct Archive<'a> {
    target: &'a Target,
    ids: &'a Identities,
    seg_size: u64,
    whole: std::collections::HashSet<String>,
    pieces: HashMap<String, Vec<(u64, u64)>>,
}

impl<'a> Archive<'a> {
    pub async fn open(target: &'a Target, ids: &'a Identities, seg_size: u64) -> Result<Self> {
        let mut whole = std::collections::HashSet::new();
        let mut pieces: HashMap<String, Vec<(u64, u64)>> = HashMap::new();
        for o in target.list("wal").await? {
            if let Some((seg, a, b)) = parse_piece(&o.name) {
                pieces.entry(seg.to_string()).or_default().push((a, b));
            } else {
                whole.insert(o.name);
            }
        }
        for p in pieces.values_mut() {
            p.sort();
        }
        Ok(Archive {
            target,
            ids,
            seg_size,
            whole,
            pieces,
        })
    }

    /// Writes `name` into `dest`; false when the archive does not have it.
    /// A segment known only in pieces is assembled from byte 0 as far as
    /// they reach and padded with zeros: PostgreSQL reads the end of the
    /// WAL there, as with pg_receivewal's own `.partial` files.
    pub async fn fetch(&self, name: &str, dest: &Path) -> Result<bool> {
        let is_segment = parse_segment(name, self.seg_size).is_some();
        if !is_segment && !is_history(name) {
            return Ok(false);
        }
        let mut out = std::fs::File::create(dest).with_context(|| dest.display().to_string())?;
        if self.whole.contains(name) {
            let data = self.read(&format!("wal/{name}")).await?;
            if is_segment && data.len() as u64 != self.seg_size {
                bail!("wal/{name} holds {} bytes, not a whole segment", data.len());
            }
            out.write_all(&data).context("writing")?;
            return Ok(true);
        }
        let Some(pieces) = self.pieces.get(name).filter(|_| is_segment) else {
            return Ok(false);
        };
        let mut end = 0u64;
        for &(a, b) in pieces {
            if a > end {
                break;
            }
            if b <= end {
                continue;
            }
            let data = self
                .read(&super::piece_name(name, a, b))
                .await
                .with_context(|| format!("a piece of {name}"))?;
            if data.len() as u64 != b - a {
                bail!(
                    "a piece of {name} holds {} bytes, its name says {}",
                    data.len(),
                    b - a
                );
            }
            out.seek(SeekFrom::Start(a)).context("writing")?;
            out.write_all(&data).context("writing")?;
            end = b;
        }
        if end == 0 {
            return Ok(false);
        }
        out.set_len(self.seg_size).context("writing")?;
        Ok(true)
    }

    async fn read(&self, object: &str) -> Result<Vec<u8>> {
        let sealed = self.target.get(object).await?;
        self.ids
            .open_bytes(&sealed)
            .with_context(|| format!("opening {object}"))
    }
}

/// Answers `wal-fetch` requests in `stage` until dropped. Answers are
/// made in `private` (this process's alone) and renamed into `stage`,
/// which the cluster's user owns and could plant links in.
pub(crate) async fn answer_requests(
    stage: PathBuf,
    private: PathBuf,
    archive: &Archive<'_>,
    owner: Option<(u32, u32)>,
) -> Result<()> {
    loop {
        let wants: Vec<String> = std::fs::read_dir(&stage)
            .with_context(|| stage.display().to_string())?
            .flatten()
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.strip_suffix(".want").map(str::to_string)
            })
            .filter(|n| valid_name(n))
            .collect();
        for name in wants {
            let tmp = private.join(format!("{name}.tmp"));
            let answer = match archive.fetch(&name, &tmp).await {
                Ok(true) => {
                    super::cluster::hand_over(&tmp, owner)?;
                    std::fs::rename(&tmp, stage.join(&name)).context("staging")?;
                    tracing::info!(file = %name, "WAL restored");
                    None
                }
                Ok(false) => Some((".none", String::new())),
                Err(e) => {
                    tracing::error!(file = %name, "WAL fetch failed: {e:#}");
                    Some((".error", format!("{e:#}")))
                }
            };
            let _ = std::fs::remove_file(&tmp);
            if let Some((ext, msg)) = answer {
                let p = stage.join(format!("{name}{ext}"));
                super::cluster::place(&private, &p, msg.as_bytes(), owner)?;
            }
            let _ = std::fs::remove_file(stage.join(format!("{name}.want")));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_is_local_unless_an_offset_is_given() {
        let utc = parse_at("2026-11-30 15:59:30Z").unwrap();
        assert_eq!(utc.to_string(), "2026-11-30T15:59:30Z");
        let plus = parse_at("2026-11-30 15:59:30+01:00").unwrap();
        assert_eq!(plus.to_string(), "2026-11-30T14:59:30Z");
        let local = parse_at("2026-11-30 15:59:30").unwrap();
        let expected = jiff::civil::date(2026, 11, 30)
            .at(15, 59, 30, 0)
            .to_zoned(jiff::tz::TimeZone::system())
            .unwrap()
            .timestamp();
        assert_eq!(local, expected);
        assert!(parse_at("2026-11-30 15:59").is_ok());
        assert!(parse_at("yesterday").is_err());
        assert!(parse_at("2026-13-30 15:59:30").is_err());
    }

    #[test]
    fn requested_names_are_plain() {
        assert!(valid_name("000000010000000000000003"));
        assert!(valid_name("00000002.history"));
        assert!(!valid_name("../x"));
        assert!(!valid_name(".x"));
        assert!(!valid_name("a/b"));
    }
}
