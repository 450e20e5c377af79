//! The temporary cluster `restore --at` recovers in: a base backup
//! unpacked in the spool dir (no initdb), its own postgresql.conf and
//! pg_hba.conf (trust on a Unix socket in a 0700 directory, no TCP), run
//! as an unprivileged user, stopped and removed on drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::pg::Pg;

pub(crate) struct TempCluster {
    pub data: PathBuf,
    pub socket_dir: PathBuf,
    pub port: u16,
    bin: PathBuf,
    /// Run as this user (Rampart is root), else as ourselves.
    user: Option<String>,
    pub superuser: String,
    log: PathBuf,
    /// postgresql.auto.conf as prepared (never read back: the cluster's
    /// user may have replaced it with a link by then).
    auto_conf: String,
    /// A directory only this process may write: files are made there and
    /// renamed into the cluster's (which its user could plant links in).
    private: PathBuf,
    owner: Option<(u32, u32)>,
}

/// The (uid, gid) of an OS user.
pub(crate) fn os_user_ids(user: &str) -> Result<(u32, u32)> {
    let id = |flag: &str| -> Result<u32> {
        let out = Command::new("id")
            .arg(flag)
            .arg(user)
            .output()
            .context("running id")?;
        if !out.status.success() {
            bail!(
                "no OS user {user:?} (backup.wal_os_user): the recovery cluster cannot run as root"
            );
        }
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .context("id")
    };
    Ok((id("-u")?, id("-g")?))
}

/// True when this process runs as root (PostgreSQL then needs another user).
pub(crate) fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A loopback port nobody listens on now (the socket is Unix-only; the
/// port number names it).
fn spare_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a spare port")?;
    Ok(l.local_addr().context("spare port")?.port())
}

/// Unpacks a tar file into `dir` with the system tar (what pg_basebackup's
/// own documentation uses).
pub(crate) fn untar(tar: &Path, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
    let out = Command::new("tar")
        .arg("-xf")
        .arg(tar)
        .arg("-C")
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .context("running tar")?;
    if !out.status.success() {
        bail!(
            "tar -xf {}: {}",
            tar.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl TempCluster {
    /// Prepares `data` (an unpacked base backup) to recover with
    /// `restore_command` up to `target_time` (RFC 3339, UTC).
    #[allow(clippy::too_many_arguments)]
    pub fn prepare(
        work: &Path,
        private: &Path,
        data: PathBuf,
        bin: PathBuf,
        user: Option<String>,
        owner: Option<(u32, u32)>,
        superuser: String,
        restore_command: &str,
    ) -> Result<TempCluster> {
        let port = spare_port()?;
        let mut c = TempCluster {
            auto_conf: String::new(),
            private: private.to_path_buf(),
            owner,
            socket_dir: work.to_path_buf(),
            log: work.join("postgres.log"),
            data,
            port,
            bin,
            user,
            superuser,
        };
        let settings = format!(
            "\n# rampart restore --at\nlisten_addresses = ''\nport = {port}\n\
             unix_socket_directories = '{}'\nmax_connections = 20\nshared_buffers = '32MB'\n\
             archive_mode = off\nhot_standby = off\nlogging_collector = off\n\
             shared_preload_libraries = ''\nrestore_command = '{}'\n\
             recovery_target_action = 'promote'\n",
            conf_escape(&work.display().to_string()),
            conf_escape(restore_command),
        );
        let w = |name: &str, text: &str| {
            let p = c.data.join(name);
            std::fs::write(&p, text).with_context(|| p.display().to_string())
        };
        // Debian keeps postgresql.conf and pg_hba.conf in /etc: a base
        // backup may have none, or ones naming paths of the old server.
        w("postgresql.conf", &settings)?;
        w("pg_hba.conf", "local all all trust\n")?;
        w("pg_ident.conf", "")?;
        let auto = c.data.join("postgresql.auto.conf");
        c.auto_conf = std::fs::read_to_string(&auto).unwrap_or_default();
        c.auto_conf.push_str(&settings);
        std::fs::write(&auto, &c.auto_conf).with_context(|| auto.display().to_string())?;
        let _ = std::fs::remove_file(c.data.join("standby.signal"));
        w("recovery.signal", "")?;
        Ok(c)
    }

    /// Sets (or, with None, clears) the recovery target for the next start.
    pub fn set_target(&mut self, time: Option<&str>) -> Result<()> {
        self.auto_conf.push_str(&format!(
            "recovery_target_time = '{}'\n",
            time.map(conf_escape).unwrap_or_default()
        ));
        place(
            &self.private,
            &self.data.join("postgresql.auto.conf"),
            self.auto_conf.as_bytes(),
            self.owner,
        )
    }

    fn pg_ctl(&self) -> Command {
        match &self.user {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--"]).arg(self.bin.join("pg_ctl"));
                c
            }
            None => Command::new(self.bin.join("pg_ctl")),
        }
    }

    pub fn start(&self) -> Result<()> {
        let out = self
            .pg_ctl()
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .args(["-W", "start"])
            .stdin(Stdio::null())
            .output()
            .context("running pg_ctl start")?;
        if !out.status.success() {
            bail!(
                "pg_ctl start: {} {}",
                String::from_utf8_lossy(&out.stderr).trim(),
                self.log_tail()
            );
        }
        Ok(())
    }

    /// Whether the postmaster is running (`pg_ctl status`).
    pub fn running(&self) -> bool {
        self.pg_ctl()
            .arg("-D")
            .arg(&self.data)
            .arg("status")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// The client side: connect as the bootstrap superuser over the socket.
    pub fn client(&self) -> Pg {
        Pg::tools(Some(&self.bin)).with_conn(&format!(
            "host='{}' port={} user='{}'",
            self.socket_dir.display(),
            self.port,
            self.superuser
        ))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(8)..].join("\n")
    }

    fn stop(&self) {
        let _ = self
            .pg_ctl()
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .stdin(Stdio::null())
            .output();
    }
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        if self.running() {
            self.stop();
        }
    }
}

/// Writes `dest` in a directory another user controls without following
/// a link planted there: made in `private`, handed over, renamed into place.
pub(crate) fn place(
    private: &Path,
    dest: &Path,
    content: &[u8],
    owner: Option<(u32, u32)>,
) -> Result<()> {
    let tmp = tempfile::NamedTempFile::new_in(private).context("temp file")?;
    std::fs::write(tmp.path(), content).context("temp file")?;
    hand_over(tmp.path(), owner)?;
    tmp.persist(dest)
        .map_err(|e| e.error)
        .with_context(|| dest.display().to_string())?;
    Ok(())
}

/// Gives a file in the private directory to the cluster's user, readable.
pub(crate) fn hand_over(path: &Path, owner: Option<(u32, u32)>) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| path.display().to_string())?;
    if let Some((u, g)) = owner {
        std::os::unix::fs::lchown(path, Some(u), Some(g))
            .with_context(|| path.display().to_string())?;
    }
    Ok(())
}

/// A value inside single quotes in postgresql.conf.
fn conf_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\'', "''")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_planted_in_the_cluster_dir_is_replaced_not_followed() {
        let private = tempfile::tempdir().unwrap();
        let theirs = tempfile::tempdir().unwrap();
        let victim = private.path().join("victim");
        std::fs::write(&victim, b"root's file").unwrap();
        let dest = theirs.path().join("postgresql.auto.conf");
        std::os::unix::fs::symlink(&victim, &dest).unwrap();
        place(private.path(), &dest, b"port = 5999\n", None).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"root's file");
        assert!(!std::fs::symlink_metadata(&dest).unwrap().is_symlink());
        assert_eq!(std::fs::read(&dest).unwrap(), b"port = 5999\n");
    }

    #[test]
    fn config_values_are_quoted() {
        assert_eq!(conf_escape(r"a'b\c"), r"a''b\\c");
    }
}
