//! Certificates for the TLS listener: a local CA for `tls = "local"`,
//! certificate files for `tls = { cert, key }`, and ACME for `tls = "acme"`.
//!
//! The edge asks this crate for one thing: a `rustls::ServerConfig` whose
//! certificate resolver ([`CertStore`]) picks the site's certificate by SNI
//! and is updated in place — new handshakes see a renewed or reloaded
//! certificate, open connections are untouched, and nothing restarts.
//!
//! Everything lives in `state_dir`: `ca/` (the local root, reused across
//! restarts), `local/` (local leaves), `acme/` (account and certificates).
//! Every file there is written atomically; private keys are mode 0600.
//!
//! In a cluster (`[cluster]`) the ACME account and certificates are also
//! shared through [`SharedCerts`], which `rampart-cluster` implements: one
//! node orders under a lease, the others load its result, and every node
//! answers every challenge (`acme_shared`).

#![warn(missing_docs)]

mod acme;
mod acme_shared;
mod admin;
mod background;
mod challenges;
mod config;
mod error;
mod fsio;
mod inspect;
mod local_ca;
mod metrics;
mod names;
mod pem;
mod preflight;
mod provider;
mod shared;
mod source;
mod store;
mod table;
mod tls;

pub use config::{AcmeConfig, Challenge, Eab};
pub use error::CertError;
pub use preflight::{Problem, preflight};
pub use shared::{BoxFuture, SharedCert, SharedCerts, SharedChallenge, shared_key};
pub use source::TlsSource;
pub use store::{CertInfo, CertStore, SiteTls};
