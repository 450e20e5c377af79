//! `[acme]` in rampart.toml.

use std::path::PathBuf;

use rampart_config::Duration;
use serde::{Deserialize, Serialize};

/// Let's Encrypt production, the default CA.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AcmeConfig {
    /// Contact address for the ACME account (expiry warnings, policy mail).
    pub email: String,
    /// The CA's directory URL: Let's Encrypt production unless set
    /// (staging and other CAs by URL).
    #[serde(default = "default_directory")]
    pub directory: String,
    /// Extra PEM roots to trust for the directory's HTTPS (a private or test CA).
    #[serde(default)]
    pub ca_bundle: Option<PathBuf>,
    #[serde(default)]
    pub challenge: Challenge,
    /// External account binding, for CAs that require one (ZeroSSL, Google, ...).
    #[serde(default)]
    pub eab: Option<Eab>,
    /// Renew when a certificate has less than this left; default a third of
    /// its lifetime (30 days for Let's Encrypt's 90).
    #[serde(default)]
    pub renew_before: Option<Duration>,
}

impl Default for AcmeConfig {
    fn default() -> Self {
        AcmeConfig {
            email: String::new(),
            directory: default_directory(),
            ca_bundle: None,
            challenge: Challenge::Auto,
            eab: None,
            renew_before: None,
        }
    }
}

fn default_directory() -> String {
    LETS_ENCRYPT.to_string()
}

/// Which ACME challenge proves control of a name.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
pub enum Challenge {
    /// TLS-ALPN-01 when the CA offers it, else HTTP-01.
    #[default]
    #[serde(rename = "auto")]
    Auto,
    /// Answered on the plain-HTTP listener (port 80 must reach Rampart).
    #[serde(rename = "http-01")]
    Http01,
    /// Answered on the TLS listener (port 443 must reach Rampart).
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
}

/// `eab = { kid = "...", hmac_key = "..." }`: the key id and the
/// base64url HMAC key the CA gave you.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Eab {
    pub kid: String,
    #[serde(serialize_with = "rampart_config::secret::mask")]
    pub hmac_key: String,
}
