//! What several nodes share about certificates (issue 13), as an interface
//! this crate defines and `rampart-cluster` implements over PostgreSQL.
//!
//! The store stays independent of the database: it asks for the ACME
//! account, a certificate, or a lease on an order through
//! [`SharedCerts`], and is told about other nodes' challenge answers
//! through [`CertStore::set_remote_challenges`]. Every call may fail
//! (PostgreSQL away or slow); the store then carries on with what it has
//! in `state_dir`, and orders alone only when its certificate is close to
//! expiry. The implementation encrypts private keys; nothing here does.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// A boxed future, so the trait stays object-safe without a macro crate.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A certificate as the nodes share it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedCert {
    /// The chain, leaf first (PEM).
    pub chain_pem: String,
    /// The private key (PEM); encrypted at rest by the implementation.
    pub key_pem: String,
}

/// A challenge answer one node publishes so any node can give it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SharedChallenge {
    /// HTTP-01: the token and its key authorization.
    Http01 {
        /// The token in `/.well-known/acme-challenge/<token>`.
        token: String,
        /// What the path answers.
        key_authorization: String,
    },
    /// TLS-ALPN-01: the name and the SHA-256 of the key authorization;
    /// each node builds its own self-signed certificate from them.
    TlsAlpn01 {
        /// The name validated (as `names::normalise` leaves it).
        name: String,
        /// SHA-256 of the key authorization.
        digest: Vec<u8>,
    },
}

/// Certificates, the ACME account and order leases shared by the nodes
/// of a cluster. `key` names a certificate: [`shared_key`].
pub trait SharedCerts: Send + Sync {
    /// The ACME account's credentials (JSON) for `directory`, if stored.
    fn load_account<'a>(
        &'a self,
        directory: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, String>>;
    /// Stores the account's credentials for `directory`.
    fn save_account<'a>(
        &'a self,
        directory: &'a str,
        credentials: &'a [u8],
    ) -> BoxFuture<'a, Result<(), String>>;
    /// The stored certificate for `key`, if any.
    fn load_cert<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<SharedCert>, String>>;
    /// Stores the certificate for `key` and tells the other nodes.
    fn save_cert<'a>(
        &'a self,
        key: &'a str,
        cert: &'a SharedCert,
        not_after: i64,
    ) -> BoxFuture<'a, Result<(), String>>;
    /// Takes (or extends) the order lease on `key` for `lease`; false when
    /// another node holds an unexpired one. A node that dies holding it
    /// only blocks the others until it expires.
    fn try_lease<'a>(
        &'a self,
        key: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<bool, String>>;
    /// Gives the lease back (a no-op when another node holds it).
    fn release<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), String>>;
    /// Publishes a challenge answer and returns once the other live nodes
    /// have it (or a bounded wait has passed).
    fn publish_challenge<'a>(
        &'a self,
        challenge: &'a SharedChallenge,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), String>>;
    /// Withdraws a challenge answer whose order ended.
    fn withdraw_challenge<'a>(
        &'a self,
        challenge: &'a SharedChallenge,
    ) -> BoxFuture<'a, Result<(), String>>;
}

/// The name a certificate is shared under: the CA's directory and the
/// site's hosts (normalised, in config order), readable in the database.
pub fn shared_key(directory: &str, hosts: &[String]) -> String {
    format!("{directory} {}", hosts.join(","))
}
