//! Certificates for the TLS listener: a local CA for `tls = "local"`,
//! certificate files for `tls = { cert, key }`, and ACME for `tls = "acme"`.
//!
//! The edge asks this crate for one thing: a `rustls::ServerConfig` whose
//! certificate resolver picks the site's certificate by SNI and can be
//! updated in place (new handshakes see the new certificate, open
//! connections are untouched).

mod source;

pub use source::TlsSource;

use serde::Deserialize;

/// `[acme]` in rampart.toml (filled in by the certificates issue).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AcmeConfig {}
