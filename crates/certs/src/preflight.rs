//! `rampart check`: what [`CertStore::open`](crate::CertStore::open) would
//! refuse, found without writing anything (no state dir, no local CA).

use crate::pem::load_files;
use crate::{AcmeConfig, SiteTls, TlsSource};

/// One problem: the config key it is about, the message, and whether
/// `serve` would refuse to start (error) or start and misbehave (warning).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The config key concerned (`acme.directory`, `site[0].tls`...).
    pub key: String,
    /// What is wrong, for the administrator.
    pub message: String,
    /// `serve` would refuse to start (an error, not a warning).
    pub fatal: bool,
}

/// The problems [`CertStore::open`](crate::CertStore::open) would meet with this config,
/// for `rampart check`; reads files but writes nothing.
pub fn preflight(acme: Option<&AcmeConfig>, sites: &[SiteTls]) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut push = |key: String, message: String, fatal: bool| {
        out.push(Problem {
            key,
            message,
            fatal,
        })
    };
    if let Some(a) = acme {
        if let Some(problem) = a.directory_problem() {
            push("acme.directory".into(), problem, true);
        }
        if let Some(bundle) = &a.ca_bundle
            && let Err(e) = crate::config::read_bundle(bundle)
        {
            push("acme.ca_bundle".into(), e.to_string(), true);
        }
        if let Some(eab) = &a.eab
            && let Err(e) = crate::config::eab_key(eab)
        {
            push("acme.eab".into(), e.to_string(), true);
        }
    }
    let provider = crate::provider::provider();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    for s in sites {
        let TlsSource::Files { cert, key } = &s.source else {
            continue;
        };
        let k = format!("site[{}].tls", s.site);
        match load_files(cert, key, &provider) {
            Err(e) => push(k, e.to_string(), true),
            Ok(loaded) => {
                if loaded.secs_left(now) <= 0 {
                    push(
                        k.clone(),
                        format!("{}: this certificate has expired", cert.display()),
                        false,
                    );
                }
                let missing: Vec<&String> = s
                    .hosts
                    .iter()
                    .filter(|h| !covers(&loaded.meta.names, h))
                    .collect();
                if !missing.is_empty() {
                    push(
                        k,
                        format!(
                            "{} does not cover {}: browsers will refuse those names",
                            cert.display(),
                            missing
                                .iter()
                                .map(|h| h.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        false,
                    );
                }
            }
        }
    }
    out
}

/// Whether a certificate listing `names` is valid for `host` (one-label
/// wildcards; a `*` site host matches anything and is not judged).
fn covers(names: &[String], host: &str) -> bool {
    if host == "*" {
        return true;
    }
    let host = host.to_ascii_lowercase();
    names.iter().any(|n| {
        let n = n.to_ascii_lowercase();
        n == host
            || n.strip_prefix("*.").is_some_and(|suffix| {
                host.split_once('.').is_some_and(|(_, rest)| rest == suffix)
                    || host.strip_prefix("*.") == Some(suffix)
            })
    })
}
