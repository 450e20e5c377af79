//! The crypto provider every TLS use in Rampart shares: ring, chosen
//! explicitly (never a process default another crate might install).

use rustls::crypto::CryptoProvider;
use rustls::crypto::ring::cipher_suite as cs;

/// ring, with only forward-secret AEAD suites: TLS 1.3's three, and for
/// TLS 1.2 ECDHE with AES-GCM or ChaCha20-Poly1305 (no CBC, no RSA key exchange).
pub fn provider() -> CryptoProvider {
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites = vec![
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS13_AES_256_GCM_SHA384,
        cs::TLS13_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ];
    p
}
