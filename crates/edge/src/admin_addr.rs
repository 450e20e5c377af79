//! `listen.admin`, the admin listener's address as the config gives it.
//! Its own file because the config (below everything) holds it and the
//! admin listener (above the runtime state) binds it.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `listen.admin`: `"127.0.0.1:9180"` or `"unix:/run/rampart/admin.sock"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminAddr {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A Unix socket's path.
    Unix(PathBuf),
}

impl AdminAddr {
    /// The TCP address, when it is one.
    pub fn tcp(&self) -> Option<SocketAddr> {
        match self {
            AdminAddr::Tcp(a) => Some(*a),
            AdminAddr::Unix(_) => None,
        }
    }
}

impl std::fmt::Display for AdminAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminAddr::Tcp(a) => write!(f, "{a}"),
            AdminAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl std::str::FromStr for AdminAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(p) = s.strip_prefix("unix:") {
            let path = PathBuf::from(p);
            if !path.is_absolute() || path.file_name().is_none() {
                return Err(format!(
                    "{s:?}: a Unix socket needs an absolute path, e.g. \"unix:/run/rampart/admin.sock\""
                ));
            }
            return Ok(AdminAddr::Unix(path));
        }
        s.parse().map(AdminAddr::Tcp).map_err(|_| {
            format!(
                "{s:?} is neither an address with a port (\"127.0.0.1:9180\", \"[::1]:9180\") nor \"unix:/path/to/admin.sock\""
            )
        })
    }
}

impl<'de> Deserialize<'de> for AdminAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for AdminAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
