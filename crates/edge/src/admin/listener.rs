//! Where the admin listener listens: a TCP address (loopback by default)
//! or a Unix socket (`admin = "unix:/run/rampart/admin.sock"`), which no
//! web page can reach at all and whose file mode (0600) says who may talk
//! to it.

use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::{TcpListener, UnixListener};

pub use crate::admin_addr::AdminAddr;
use crate::error::EdgeError;

/// A bound admin listener.
pub enum AdminListener {
    /// On a TCP address.
    Tcp(TcpListener),
    /// The socket, its path, and its inode (so shutdown removes only its own).
    Unix(UnixListener, PathBuf, u64),
}

impl AdminListener {
    /// Binds `addr`, with an error naming it.
    pub async fn bind(addr: &AdminAddr) -> Result<AdminListener, EdgeError> {
        match addr {
            AdminAddr::Tcp(a) => crate::socket::bind("admin", *a)
                .await
                .map(AdminListener::Tcp),
            AdminAddr::Unix(p) => bind_unix(p),
        }
    }

    /// Removes the socket file at shutdown, unless another process has
    /// replaced it since.
    pub fn cleanup(&self) {
        if let AdminListener::Unix(_, path, ino) = self
            && std::fs::symlink_metadata(path).is_ok_and(|m| m.ino() == *ino)
        {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn err(path: &Path, msg: impl std::fmt::Display) -> EdgeError {
    EdgeError(format!("listen.admin = \"unix:{}\": {msg}", path.display()))
}

/// Binds the socket inside a private (0700) directory next to `path`,
/// makes it 0600 there, then renames it into place: nobody can connect
/// before the mode is set, and a stale socket left by a crash is replaced
/// in one step. A live socket (another rampart answers on it) and anything
/// that is not a socket are never replaced.
fn bind_unix(path: &Path) -> Result<AdminListener, EdgeError> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .ok_or_else(|| err(path, "no parent directory"))?;
    if !parent.is_dir() {
        return Err(err(
            path,
            format!(
                "the directory {} does not exist (systemd: RuntimeDirectory=rampart)",
                parent.display()
            ),
        ));
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => {
                    return Err(err(
                        path,
                        "another process answers on this socket (is rampart already running?)",
                    ));
                }
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    // Stale, left by a process that died: replaced below.
                }
                Err(e) => return Err(err(path, format!("cannot check the existing socket: {e}"))),
            }
        }
        Ok(_) => {
            return Err(err(
                path,
                "exists and is not a socket; refusing to replace it",
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(path, e)),
    }
    let private = parent.join(format!(".rampart-admin.{}.tmp", std::process::id()));
    let _ = std::fs::remove_dir_all(&private);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .map_err(|e| err(path, format!("cannot create {}: {e}", private.display())))?;
    let result = (|| -> Result<AdminListener, EdgeError> {
        let tmp = private.join("admin.sock");
        let l = std::os::unix::net::UnixListener::bind(&tmp)
            .map_err(|e| err(path, format!("cannot bind: {e}")))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| err(path, format!("cannot set mode 0600: {e}")))?;
        std::fs::rename(&tmp, path)
            .map_err(|e| err(path, format!("cannot move into place: {e}")))?;
        l.set_nonblocking(true).map_err(|e| err(path, e))?;
        let ino = std::fs::symlink_metadata(path)
            .map_err(|e| err(path, e))?
            .ino();
        let l = UnixListener::from_std(l).map_err(|e| err(path, e))?;
        Ok(AdminListener::Unix(l, path.to_path_buf(), ino))
    })();
    let _ = std::fs::remove_dir_all(&private);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tcp_and_unix() {
        assert_eq!(
            "127.0.0.1:9180".parse::<AdminAddr>().unwrap(),
            AdminAddr::Tcp("127.0.0.1:9180".parse().unwrap())
        );
        assert_eq!(
            "unix:/run/rampart/admin.sock".parse::<AdminAddr>().unwrap(),
            AdminAddr::Unix("/run/rampart/admin.sock".into())
        );
        for bad in [
            "unix:admin.sock",
            "unix:",
            "localhost:9180",
            "9180",
            "unix:/",
        ] {
            assert!(bad.parse::<AdminAddr>().is_err(), "{bad} accepted");
        }
    }
}
