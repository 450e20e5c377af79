//! The rustls side: the server config and the SNI certificate resolver
//! (the crypto provider is in `provider`).

use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, version};

use crate::Challenge;
use crate::store::CertStore;

/// The ALPN protocol of a TLS-ALPN-01 validation (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

impl CertStore {
    /// A rustls server config (ring, TLS 1.3 + 1.2, AEAD suites, ALPN h2 and
    /// http/1.1, plus acme-tls/1 when TLS-ALPN-01 may be used) whose
    /// certificate resolver is this store, so renewals and reloads reach
    /// new handshakes without building a new config.
    pub fn server_config(self: &Arc<Self>) -> Arc<ServerConfig> {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&version::TLS13, &version::TLS12])
            .expect("ring supports TLS 1.2 and 1.3")
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        if self.uses_tls_alpn() {
            config.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
        }
        Arc::new(config)
    }

    /// Whether TLS-ALPN-01 challenges may be answered on the TLS listener.
    pub fn uses_tls_alpn(&self) -> bool {
        self.acme
            .as_ref()
            .is_some_and(|a| a.challenge != Challenge::Http01)
    }
}

/// Whether a ClientHello is an ACME validation: it offers `acme-tls/1` and nothing else.
pub fn is_acme_validation(hello: &ClientHello<'_>) -> bool {
    match hello.alpn() {
        Some(mut protocols) => {
            protocols.next() == Some(ACME_TLS_ALPN) && protocols.next().is_none()
        }
        None => false,
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if is_acme_validation(&hello) {
            // Only a pending challenge certificate: never a site's certificate
            // on a connection the edge is going to close anyway.
            return hello.server_name().and_then(|n| self.alpn_challenge(n));
        }
        let table = self.table();
        let site = table.lookup(hello.server_name())?;
        Some(site.loaded.certified.clone())
    }
}
