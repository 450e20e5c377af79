//! Pending ACME challenge answers: what the renewal task publishes and the
//! listeners read (the plain-HTTP listener for HTTP-01 tokens, the TLS
//! resolver for TLS-ALPN-01 certificates). Owned by the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rustls::sign::CertifiedKey;

#[derive(Default)]
pub(crate) struct Challenges {
    /// HTTP-01: token → key authorization.
    http01: Mutex<HashMap<String, String>>,
    /// TLS-ALPN-01: name → challenge certificate.
    alpn01: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl Challenges {
    pub(crate) fn add_http01(&self, token: String, key_authorization: String) {
        self.http01.lock().unwrap().insert(token, key_authorization);
    }

    pub(crate) fn add_alpn01(&self, name: String, cert: Arc<CertifiedKey>) {
        self.alpn01.lock().unwrap().insert(name, cert);
    }

    pub(crate) fn http01(&self, token: &str) -> Option<String> {
        self.http01.lock().unwrap().get(token).cloned()
    }

    /// `name` as `names::normalise` leaves it.
    pub(crate) fn alpn01(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        self.alpn01.lock().unwrap().get(name).cloned()
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
}
