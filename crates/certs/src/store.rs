//! `CertStore`: loads and issues every site's certificate, keeps the table
//! in service, and swaps entries when certificates change.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use serde::Serialize;

use crate::challenges::Challenges;
use crate::local_ca::{LocalCa, unix_now};
use crate::names::{file_stem, local_names, normalise, wildcard_parent};
use crate::pem::{Loaded, load_files};
use crate::shared::SharedCerts;
use crate::table::{FileStamp, SiteCert, Table};
use crate::{AcmeConfig, CertError, TlsSource, fsio};

/// A site as the certificate store sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteTls {
    /// The site's index in the config (`site[N]`), used in errors and labels.
    pub site: usize,
    /// `erp.example.com`, `*.example.org` (one label), or `*` (any name).
    pub hosts: Vec<String>,
    /// Where its certificate comes from.
    pub source: TlsSource,
}

/// One certificate as `rampart certs` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CertInfo {
    /// The site's index in the config (`site[N]`).
    pub site: usize,
    /// The site's host names, as configured.
    pub hosts: Vec<String>,
    /// The names the certificate lists.
    pub names: Vec<String>,
    /// Who issued the certificate.
    pub issuer: String,
    /// Unix seconds.
    pub not_after: i64,
    /// Whole days until `not_after` (negative once expired).
    pub days_left: i64,
    /// "local", "acme" or "files".
    pub source: &'static str,
    /// True while an ACME site serves a local-CA certificate, before its
    /// real certificate arrives.
    pub temporary: bool,
    /// The certificate file read.
    pub path: Option<PathBuf>,
    /// ACME: when the background task will renew it (unix secs).
    pub renew_at: Option<i64>,
    /// Set by [`CertStore::inspect`] when there is nothing usable to show
    /// (not issued yet, an unreadable file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// The certificates of every site: the TLS listener's SNI resolver,
/// updated in place on renewal or reload.
pub struct CertStore {
    pub(crate) state_dir: PathBuf,
    pub(crate) acme: Option<AcmeConfig>,
    pub(crate) provider: Arc<CryptoProvider>,
    pub(crate) ca: LocalCa,
    table: RwLock<Arc<Table>>,
    /// Serialises read-modify-write of the table (reload vs background swaps).
    update: Mutex<()>,
    /// Pending ACME challenge answers (HTTP-01 tokens, TLS-ALPN-01 certificates).
    pub(crate) challenges: Challenges,
    /// Wakes the background work (admin renew requests, reloads).
    pub(crate) wake: tokio::sync::Notify,
    /// Sites whose renewal was requested (site index → force).
    pub(crate) renew_requests: Mutex<HashMap<usize, bool>>,
    /// Failed renewals per site, for the metric.
    pub(crate) failures: Mutex<HashMap<usize, u64>>,
    /// In a cluster: the certificates, account and order leases all nodes share.
    pub(crate) shared: OnceLock<Arc<dyn SharedCerts>>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

impl CertStore {
    /// Opens `state_dir` (creating the local CA on first use), then loads or
    /// issues every site's certificate. A static file that is missing,
    /// unparsable or whose key does not match is an error naming the file.
    pub fn open(
        state_dir: &Path,
        acme: Option<&AcmeConfig>,
        sites: &[SiteTls],
    ) -> Result<Arc<CertStore>, CertError> {
        if let Some(a) = acme {
            a.validate()?;
        }
        fsio::ensure_dir(state_dir)?;
        let ca = LocalCa::open(state_dir)?;
        let store = CertStore {
            state_dir: state_dir.to_path_buf(),
            acme: acme.cloned(),
            provider: Arc::new(crate::provider::provider()),
            ca,
            table: RwLock::new(Arc::new(Table::default())),
            update: Mutex::new(()),
            challenges: Challenges::default(),
            wake: tokio::sync::Notify::new(),
            renew_requests: Mutex::default(),
            failures: Mutex::default(),
            shared: OnceLock::new(),
        };
        let table = store.build(sites, &Table::default())?;
        *store.table.write().unwrap() = Arc::new(table);
        Ok(Arc::new(store))
    }

    /// SIGHUP: re-reads certificate files and applies a new site list. On
    /// any error the certificates in service stay as they are.
    pub fn reload(&self, sites: &[SiteTls]) -> Result<(), CertError> {
        let _guard = self.update.lock().unwrap();
        let old = self.table();
        let new = self.build(sites, &old)?;
        *self.table.write().unwrap() = Arc::new(new);
        self.wake.notify_one();
        tracing::info!(sites = sites.len(), "certificates reloaded");
        Ok(())
    }

    /// `<state_dir>/ca/root.pem`: what users add to their trust store.
    pub fn local_ca_cert_path(&self) -> PathBuf {
        LocalCa::root_path(&self.state_dir)
    }

    /// The certificates in service.
    pub fn certificates(&self) -> Vec<CertInfo> {
        let now = unix_now();
        self.table()
            .sites
            .iter()
            .map(|s| CertInfo {
                renew_at: self.renew_at(s),
                ..info(s, now)
            })
            .collect()
    }

    /// HTTP-01: the key authorization for a pending challenge token.
    pub fn http01_response(&self, token: &str) -> Option<String> {
        self.challenges.http01(token)
    }

    /// The site (`site[N]`) whose certificate a handshake without SNI
    /// gets: the catch-all, else the first site.
    pub fn site_without_sni(&self) -> Option<usize> {
        self.table().lookup(None).map(|s| s.site)
    }

    pub(crate) fn table(&self) -> Arc<Table> {
        self.table.read().unwrap().clone()
    }

    /// Replaces one site's certificate (renewal, file change) for new handshakes.
    pub(crate) fn swap(&self, site: usize, f: impl FnOnce(&SiteCert) -> Option<SiteCert>) {
        let _guard = self.update.lock().unwrap();
        let old = self.table();
        let Some(pos) = old.sites.iter().position(|s| s.site == site) else {
            return;
        };
        let Some(new_entry) = f(&old.sites[pos]) else {
            return;
        };
        let mut sites = old.sites.clone();
        sites[pos] = new_entry;
        match Table::new(sites) {
            Ok(t) => *self.table.write().unwrap() = Arc::new(t),
            Err(e) => tracing::error!(site, "cannot swap the certificate: {e}"),
        }
    }

    /// Builds a table for `sites`, reusing what `old` serves where it can.
    fn build(&self, sites: &[SiteTls], old: &Table) -> Result<Table, CertError> {
        let now = unix_now();
        let mut out = Vec::with_capacity(sites.len());
        for s in sites {
            let hosts: Vec<String> = s.hosts.iter().map(|h| normalise(h)).collect();
            check_hosts(s.site, &hosts, &s.source)?;
            let previous = old
                .sites
                .iter()
                .find(|o| o.hosts == hosts && o.source == s.source);
            out.push(self.load_site(s.site, hosts, &s.source, previous, now)?);
        }
        Table::new(out)
    }

    pub(crate) fn load_site(
        &self,
        site: usize,
        hosts: Vec<String>,
        source: &TlsSource,
        previous: Option<&SiteCert>,
        now: i64,
    ) -> Result<SiteCert, CertError> {
        let entry = |loaded: Loaded, temporary, path, stamp| SiteCert {
            site,
            hosts: hosts.clone(),
            source: source.clone(),
            loaded: Arc::new(loaded),
            temporary,
            path,
            stamp,
        };
        match source {
            TlsSource::Local => {
                let stem = file_stem(&hosts);
                let loaded = self.ca.leaf(
                    &self.state_dir,
                    &stem,
                    &local_names(&hosts),
                    &self.provider,
                    now,
                )?;
                let path = self.state_dir.join("local").join(format!("{stem}.pem"));
                Ok(entry(loaded, false, Some(path), None))
            }
            TlsSource::Files { cert, key } => {
                let stamp = FileStamp::of(&[cert, key]);
                let loaded = load_files(cert, key, &self.provider)?;
                if loaded.secs_left(now) <= 0 {
                    tracing::warn!(site, path = %cert.display(), "this certificate has expired");
                }
                Ok(entry(loaded, false, Some(cert.clone()), Some(stamp)))
            }
            TlsSource::Acme => {
                if self.acme.is_none() {
                    return Err(CertError::site(
                        site,
                        "tls = \"acme\" needs an [acme] section",
                    ));
                }
                let (cert_path, key_path) = self.acme_cert_paths(&hosts);
                if let Ok(loaded) = load_files(&cert_path, &key_path, &self.provider)
                    && loaded.secs_left(now) > 0
                {
                    if hosts.iter().all(|h| loaded.meta.names.contains(h)) {
                        return Ok(entry(loaded, false, Some(cert_path), None));
                    }
                    // Names were added: the stored certificate still serves the
                    // names it has while a new one is ordered at once.
                    if previous.is_none() && hosts.iter().any(|h| loaded.meta.names.contains(h)) {
                        return Ok(entry(loaded, true, Some(cert_path), None));
                    }
                }
                if let Some(p) = previous {
                    return Ok(p.clone());
                }
                // Until the CA answers, HTTPS for this name uses a local-CA certificate.
                let loaded = self
                    .ca
                    .ephemeral(&local_names(&hosts), &self.provider, now)?;
                Ok(entry(loaded, true, None, None))
            }
        }
    }

    pub(crate) fn acme_dir(&self) -> PathBuf {
        acme_dir(&self.state_dir, self.acme.as_ref())
    }

    pub(crate) fn acme_cert_paths(&self, hosts: &[String]) -> (PathBuf, PathBuf) {
        acme_cert_paths(&self.state_dir, self.acme.as_ref(), hosts)
    }

    /// Files whose stamp changed since they were read: re-read and swap;
    /// a broken edit keeps the old certificate and is logged.
    pub(crate) fn check_files(&self) {
        for s in self.table().sites.iter() {
            let TlsSource::Files { cert, key } = &s.source else {
                continue;
            };
            if s.stamp.as_ref() == Some(&FileStamp::of(&[cert, key])) {
                continue;
            }
            self.refresh_files(s.site);
        }
    }

    pub(crate) fn refresh_files(&self, site: usize) -> Option<CertError> {
        let mut failure = None;
        self.swap(site, |cur| {
            let TlsSource::Files { cert, key } = &cur.source else { return None };
            let stamp = FileStamp::of(&[cert, key]);
            match load_files(cert, key, &self.provider) {
                Ok(loaded) => {
                    tracing::info!(site, path = %cert.display(), "certificate file changed: new handshakes use it");
                    Some(SiteCert { loaded: Arc::new(loaded), stamp: Some(stamp), ..cur.clone() })
                }
                Err(e) => {
                    tracing::error!(site, "certificate file changed but cannot be used, keeping the old certificate: {e}");
                    failure = Some(e);
                    // Remember the stamp so a broken file is not re-read (and logged) every few seconds.
                    Some(SiteCert { stamp: Some(stamp), ..cur.clone() })
                }
            }
        });
        failure
    }

    /// Local leaves in the last third of their life: re-issue and swap.
    pub(crate) fn check_local(&self) -> Vec<CertError> {
        let sites: Vec<usize> = self.table().sites.iter().map(|s| s.site).collect();
        sites
            .into_iter()
            .flat_map(|site| self.check_local_site(site, false))
            .collect()
    }

    /// One local site: re-issue when due, or now when `forced`.
    pub(crate) fn check_local_site(&self, site: usize, forced: bool) -> Vec<CertError> {
        let now = unix_now();
        let mut errors = Vec::new();
        for s in self.table().sites.iter().filter(|s| s.site == site) {
            if s.source != TlsSource::Local {
                continue;
            }
            if !forced && !crate::local_ca::needs_reissue(&s.loaded.meta, now) {
                continue;
            }
            if forced {
                let stem = file_stem(&s.hosts);
                let _ =
                    std::fs::remove_file(self.state_dir.join("local").join(format!("{stem}.pem")));
            }
            match self.load_site(s.site, s.hosts.clone(), &s.source, None, now) {
                Ok(new) => self.swap(s.site, |_| Some(new)),
                Err(e) => {
                    tracing::error!(site = s.site, "cannot re-issue the local certificate: {e}");
                    errors.push(e);
                }
            }
        }
        errors
    }

    /// The TLS-ALPN-01 challenge certificate for `name`, if one is pending.
    pub(crate) fn alpn_challenge(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        self.challenges.alpn01(&normalise(name))
    }
}

impl SiteTls {
    /// The checks `CertStore::open` makes on a site's hosts and source
    /// (host syntax; no wildcard or catch-all with ACME, which needs DNS-01),
    /// for `rampart check` to report with the file and line.
    pub fn check(&self) -> Result<(), CertError> {
        let hosts: Vec<String> = self.hosts.iter().map(|h| normalise(h)).collect();
        check_hosts(self.site, &hosts, &self.source)
    }
}

fn check_hosts(site: usize, hosts: &[String], source: &TlsSource) -> Result<(), CertError> {
    if hosts.is_empty() {
        return Err(CertError::site(
            site,
            "no hosts: list at least one name, or \"*\"",
        ));
    }
    for h in hosts {
        let name = wildcard_parent(h).unwrap_or(h);
        if h != "*" && (name.is_empty() || name.contains('*') || name.contains('/')) {
            return Err(CertError::site(
                site,
                format!(
                    "{h:?} is not a host name (use \"erp.example.com\", \"*.example.org\" or \"*\")"
                ),
            ));
        }
        if *source == TlsSource::Acme && (h == "*" || h.starts_with("*.")) {
            return Err(CertError::site(
                site,
                format!(
                    "{h:?}: ACME certificates for wildcard or catch-all names need the DNS-01 challenge, \
                     which Rampart does not support yet; list the names, or use tls = {{ cert, key }}"
                ),
            ));
        }
    }
    Ok(())
}

pub(crate) fn info(s: &SiteCert, now: i64) -> CertInfo {
    CertInfo {
        site: s.site,
        hosts: s.hosts.clone(),
        names: s.loaded.meta.names.clone(),
        issuer: s.loaded.meta.issuer.clone(),
        not_after: s.loaded.meta.not_after,
        days_left: (s.loaded.meta.not_after - now).div_euclid(86_400),
        source: match s.source {
            TlsSource::Local => "local",
            TlsSource::Acme => "acme",
            TlsSource::Files { .. } => "files",
        },
        temporary: s.temporary,
        path: s.path.clone(),
        renew_at: None,
        problem: None,
    }
}

/// `<state_dir>/acme/<host>-<hash of the directory URL>/`: per CA, so
/// staging certificates are never served after switching to production.
pub(crate) fn acme_dir(state_dir: &Path, acme: Option<&AcmeConfig>) -> PathBuf {
    let directory = acme.map(|a| a.directory.as_str()).unwrap_or("");
    let digest = ring::digest::digest(&ring::digest::SHA256, directory.as_bytes());
    let host = directory
        .split("://")
        .nth(1)
        .and_then(|r| r.split(['/', ':']).next())
        .unwrap_or("ca");
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let hex: String = digest.as_ref()[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    state_dir.join("acme").join(format!("{host}-{hex}"))
}

/// Where an ACME site's certificate chain and key are stored.
pub(crate) fn acme_cert_paths(
    state_dir: &Path,
    acme: Option<&AcmeConfig>,
    hosts: &[String],
) -> (PathBuf, PathBuf) {
    let stem = file_stem(hosts);
    let dir = acme_dir(state_dir, acme).join("certs");
    (
        dir.join(format!("{stem}.pem")),
        dir.join(format!("{stem}.key")),
    )
}
