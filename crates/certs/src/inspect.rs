//! `rampart certs`: what is stored, read without writing anything.
//!
//! The CLI runs beside (or without) a server, possibly as another user, so
//! it must not create a CA, issue leaves or touch the state dir: it only
//! reads the files `CertStore` would serve.

use std::path::Path;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::local_ca::unix_now;
use crate::names::{file_stem, normalise};
use crate::pem::meta_of;
use crate::store::{CertInfo, CertStore, SiteTls, acme_cert_paths};
use crate::{AcmeConfig, TlsSource};

impl CertStore {
    /// The certificates stored for `sites`, read-only. A site with nothing
    /// usable yet is listed with `problem` set.
    pub fn inspect(
        state_dir: &Path,
        acme: Option<&AcmeConfig>,
        sites: &[SiteTls],
    ) -> Vec<CertInfo> {
        let now = unix_now();
        sites
            .iter()
            .map(|s| {
                let hosts: Vec<String> = s.hosts.iter().map(|h| normalise(h)).collect();
                let (path, source) = match &s.source {
                    TlsSource::Local => (
                        state_dir
                            .join("local")
                            .join(format!("{}.pem", file_stem(&hosts))),
                        "local",
                    ),
                    TlsSource::Files { cert, .. } => (cert.clone(), "files"),
                    TlsSource::Acme => (acme_cert_paths(state_dir, acme, &hosts).0, "acme"),
                };
                let mut info = CertInfo {
                    site: s.site,
                    hosts: hosts.clone(),
                    names: Vec::new(),
                    issuer: String::new(),
                    not_after: 0,
                    days_left: 0,
                    source,
                    temporary: false,
                    path: Some(path.clone()),
                    renew_at: None,
                    problem: None,
                };
                let leaf = std::fs::read(&path)
                    .map_err(|e| match e.kind() {
                        std::io::ErrorKind::NotFound if source != "files" => {
                            "not issued yet: `rampart serve` obtains it at start".to_string()
                        }
                        _ => format!("{}: {e}", path.display()),
                    })
                    .and_then(|pem| {
                        CertificateDer::from_pem_slice(&pem)
                            .map_err(|e| format!("{}: {e}", path.display()))
                    })
                    .and_then(|der| meta_of(&der).map_err(|e| format!("{}: {e}", path.display())));
                match leaf {
                    Ok(meta) => {
                        info.days_left = (meta.not_after - now).div_euclid(86_400);
                        info.names = meta.names;
                        info.issuer = meta.issuer;
                        info.not_after = meta.not_after;
                    }
                    Err(problem) => info.problem = Some(problem),
                }
                info
            })
            .collect()
    }
}
