//! The certificates in service and the SNI lookup over them.
//!
//! A `Table` is immutable; a change (reload, renewal, file edit) builds a
//! new one and swaps the `Arc`, so a handshake never sees half an update
//! and open connections keep the certificate they started with.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use crate::names::{normalise, wildcard_parent};
use crate::pem::Loaded;
use crate::{CertError, TlsSource};

/// Size, modification time and inode of a certificate or key file: a
/// change in any means the administrator replaced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStamp(Vec<(u64, Option<SystemTime>, u64)>);

impl FileStamp {
    pub fn of(paths: &[&std::path::Path]) -> FileStamp {
        use std::os::unix::fs::MetadataExt;
        FileStamp(
            paths
                .iter()
                .map(|p| match std::fs::metadata(p) {
                    Ok(m) => (m.len(), m.modified().ok(), m.ino()),
                    Err(_) => (u64::MAX, None, 0),
                })
                .collect(),
        )
    }
}

/// One site's certificate in service.
#[derive(Debug, Clone)]
pub struct SiteCert {
    pub site: usize,
    pub hosts: Vec<String>,
    pub source: TlsSource,
    pub loaded: Arc<Loaded>,
    /// An ACME site serving a local-CA certificate until its real one arrives.
    pub temporary: bool,
    /// Where the served certificate is on disk (None for temporary ones).
    pub path: Option<PathBuf>,
    /// For `tls = { cert, key }`: how the files looked when read.
    pub stamp: Option<FileStamp>,
}

#[derive(Debug, Default)]
pub struct Table {
    pub sites: Vec<SiteCert>,
    exact: HashMap<String, usize>,
    wildcard: HashMap<String, usize>,
    any: Option<usize>,
}

impl Table {
    pub fn new(sites: Vec<SiteCert>) -> Result<Table, CertError> {
        let mut t = Table {
            sites,
            ..Default::default()
        };
        for (i, s) in t.sites.iter().enumerate() {
            for h in &s.hosts {
                let (map, key) = if h == "*" {
                    if let Some(j) = t.any {
                        return Err(dup(h, t.sites[j].site, s.site));
                    }
                    t.any = Some(i);
                    continue;
                } else if let Some(parent) = wildcard_parent(h) {
                    (&mut t.wildcard, parent.to_string())
                } else {
                    (&mut t.exact, h.clone())
                };
                if let Some(&j) = map.get(&key)
                    && j != i
                {
                    return Err(dup(h, t.sites[j].site, s.site));
                }
                map.insert(key, i);
            }
        }
        Ok(t)
    }

    /// The site for a ClientHello's SNI: exact name, then a one-label
    /// wildcard, then the catch-all. No SNI (a client connecting by IP
    /// address): the catch-all, else the first site.
    pub fn lookup(&self, sni: Option<&str>) -> Option<&SiteCert> {
        let i = match sni {
            None => self.any.or((!self.sites.is_empty()).then_some(0)),
            Some(name) => {
                let name = normalise(name);
                self.exact
                    .get(&name)
                    .copied()
                    .or_else(|| {
                        name.split_once('.')
                            .and_then(|(_, parent)| self.wildcard.get(parent).copied())
                    })
                    .or(self.any)
            }
        }?;
        self.sites.get(i)
    }

    /// Sites a `rampart certs renew HOST` means: those serving `host`, or all.
    pub fn matching(&self, host: Option<&str>) -> Vec<usize> {
        match host {
            None => (0..self.sites.len()).collect(),
            Some(h) => {
                let h = normalise(h);
                if h == "*" {
                    return self.any.into_iter().collect();
                }
                let exact_or_wild = self
                    .exact
                    .get(&h)
                    .or_else(|| self.wildcard.get(wildcard_parent(&h).unwrap_or("\u{0}")))
                    .or_else(|| h.split_once('.').and_then(|(_, p)| self.wildcard.get(p)));
                exact_or_wild.copied().into_iter().collect()
            }
        }
    }
}

fn dup(host: &str, a: usize, b: usize) -> CertError {
    CertError::site(
        b,
        format!("host {host:?} is already served by site[{a}]; each name belongs to one site"),
    )
}
