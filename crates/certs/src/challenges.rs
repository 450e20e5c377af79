//! Pending ACME challenge answers: what the renewal task publishes and the
//! listeners read (the plain-HTTP listener for HTTP-01 tokens, the TLS
//! resolver for TLS-ALPN-01 certificates). Owned by the store.
//!
//! In a cluster the CA may reach any node, so the answers other nodes
//! published are kept too ("remote", replaced as a whole each time the
//! cluster reports the current set); a node's own answers come first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::shared::SharedChallenge;

/// Another node's TLS-ALPN-01 answer: its digest, and the certificate built here.
type RemoteAlpn = (Vec<u8>, Arc<CertifiedKey>);

#[derive(Default)]
pub(crate) struct Challenges {
    /// HTTP-01: token → key authorization.
    http01: Mutex<HashMap<String, String>>,
    /// TLS-ALPN-01: name → challenge certificate.
    alpn01: Mutex<HashMap<String, Arc<CertifiedKey>>>,
    /// Other nodes' answers: token → key authorization.
    remote_http01: Mutex<HashMap<String, String>>,
    /// Other nodes' answers: name → (digest, the certificate built here).
    remote_alpn01: Mutex<HashMap<String, RemoteAlpn>>,
}

impl Challenges {
    pub(crate) fn add_http01(&self, token: String, key_authorization: String) {
        self.http01.lock().unwrap().insert(token, key_authorization);
    }

    pub(crate) fn add_alpn01(&self, name: String, cert: Arc<CertifiedKey>) {
        self.alpn01.lock().unwrap().insert(name, cert);
    }

    pub(crate) fn http01(&self, token: &str) -> Option<String> {
        if let Some(k) = self.http01.lock().unwrap().get(token) {
            return Some(k.clone());
        }
        self.remote_http01.lock().unwrap().get(token).cloned()
    }

    /// `name` as `names::normalise` leaves it.
    pub(crate) fn alpn01(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        if let Some(c) = self.alpn01.lock().unwrap().get(name) {
            return Some(c.clone());
        }
        self.remote_alpn01
            .lock()
            .unwrap()
            .get(name)
            .map(|(_, c)| c.clone())
    }

    /// Drops the answers of an attempt that ended.
    pub(crate) fn remove(&self, tokens: &[String], names: &[String]) {
        let mut http = self.http01.lock().unwrap();
        for t in tokens {
            http.remove(t);
        }
        let mut alpn = self.alpn01.lock().unwrap();
        for n in names {
            alpn.remove(n);
        }
    }

    /// Replaces the other nodes' answers with `list` (the current set).
    /// TLS-ALPN-01 certificates are built once per name and digest.
    pub(crate) fn set_remote(&self, list: Vec<SharedChallenge>, provider: &CryptoProvider) {
        let mut http = HashMap::new();
        let old = self.remote_alpn01.lock().unwrap().clone();
        let mut alpn = HashMap::new();
        for c in list {
            match c {
                SharedChallenge::Http01 {
                    token,
                    key_authorization,
                } => {
                    http.insert(token, key_authorization);
                }
                SharedChallenge::TlsAlpn01 { name, digest } => {
                    let built = match old.get(&name) {
                        Some((d, cert)) if *d == digest => Ok(cert.clone()),
                        _ => alpn_challenge_cert(&name, &digest, provider),
                    };
                    match built {
                        Ok(cert) => {
                            alpn.insert(name, (digest, cert));
                        }
                        Err(e) => tracing::error!("another node's challenge: {e}"),
                    }
                }
            }
        }
        *self.remote_http01.lock().unwrap() = http;
        *self.remote_alpn01.lock().unwrap() = alpn;
    }
}

/// The self-signed certificate a TLS-ALPN-01 validation expects (RFC 8737):
/// the name as its only SAN and the acmeIdentifier extension (critical)
/// holding the SHA-256 of the key authorization.
pub(crate) fn alpn_challenge_cert(
    name: &str,
    digest: &[u8],
    provider: &rustls::crypto::CryptoProvider,
) -> Result<Arc<CertifiedKey>, String> {
    let bad = |e: rcgen::Error| format!("cannot build the TLS-ALPN-01 certificate for {name}: {e}");
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).map_err(bad)?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let key = rcgen::KeyPair::generate().map_err(bad)?;
    let cert = params.self_signed(&key).map_err(bad)?;
    // Not CertifiedKey::from_der: its key check parses the certificate with
    // webpki, which rejects the critical acmeIdentifier extension.
    let signing_key = provider
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            key.serialize_der(),
        )))
        .map_err(|e| format!("TLS-ALPN-01 key for {name}: {e}"))?;
    Ok(Arc::new(CertifiedKey::new(
        vec![cert.der().clone()],
        signing_key,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpn_challenge_certificate_builds() {
        let provider = rustls::crypto::ring::default_provider();
        alpn_challenge_cert("alpn.rampart.test", &[7u8; 32], &provider).unwrap();
    }

    #[test]
    fn other_nodes_answers_are_given_and_replaced_as_a_set() {
        let provider = rustls::crypto::ring::default_provider();
        let c = Challenges::default();
        c.add_http01("own".into(), "own.ka".into());
        c.set_remote(
            vec![
                SharedChallenge::Http01 {
                    token: "t1".into(),
                    key_authorization: "t1.ka".into(),
                },
                SharedChallenge::TlsAlpn01 {
                    name: "erp.test".into(),
                    digest: vec![1; 32],
                },
            ],
            &provider,
        );
        assert_eq!(c.http01("t1").as_deref(), Some("t1.ka"));
        assert_eq!(c.http01("own").as_deref(), Some("own.ka"));
        assert!(c.alpn01("erp.test").is_some());
        c.set_remote(vec![], &provider);
        assert_eq!(c.http01("t1"), None);
        assert!(c.alpn01("erp.test").is_none());
        assert_eq!(c.http01("own").as_deref(), Some("own.ka"));
    }
}
