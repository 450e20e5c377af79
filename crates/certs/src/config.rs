//! `[acme]` in rampart.toml.

use std::path::PathBuf;

use instant_acme::ExternalAccountKey;
use rampart_config::Duration;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};

use crate::{CertError, fsio};

/// Let's Encrypt production, the default CA.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// `[acme]` in rampart.toml: the account and CA that `tls = "acme"` sites use.
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
    /// Which challenge proves control of the names (`auto` unless set).
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

impl AcmeConfig {
    /// Bad ACME settings are config errors at startup, not a log line at
    /// the first renewal: the directory URL, the CA bundle, the EAB key.
    pub(crate) fn validate(&self) -> Result<(), CertError> {
        if let Some(problem) = self.directory_problem() {
            return Err(CertError::Acme {
                site: None,
                detail: format!("[acme] directory {problem}"),
            });
        }
        if let Some(bundle) = &self.ca_bundle {
            read_bundle(bundle)?;
        }
        if let Some(eab) = &self.eab {
            eab_key(eab)?;
        }
        Ok(())
    }
}

impl AcmeConfig {
    /// What is wrong with `directory`, checked as the ACME client will parse
    /// it (one it cannot parse made its task panic at the first renewal,
    /// after `check` had said ok); `serve` and `check` share it.
    pub(crate) fn directory_problem(&self) -> Option<String> {
        if !self.directory.starts_with("https://") {
            return Some(format!("{:?} must be an https:// URL", self.directory));
        }
        match self.directory.parse::<http::Uri>() {
            Ok(_) => None,
            Err(e) => Some(format!("{:?} is not a valid URL: {e}", self.directory)),
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
    /// The key id.
    pub kid: String,
    /// The base64url HMAC key (masked when the config is shown).
    #[serde(serialize_with = "rampart_config::secret::mask")]
    pub hmac_key: String,
}

/// The PEM certificates in `ca_bundle`, with an error naming the file.
pub(crate) fn read_bundle(
    path: &std::path::Path,
) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let pem = fsio::read(path)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            CertError::file(
                path,
                format!("[acme] ca_bundle: cannot parse the PEM certificates: {e}"),
            )
        })?;
    if certs.is_empty() {
        return Err(CertError::file(
            path,
            "[acme] ca_bundle: no PEM certificate in this file",
        ));
    }
    Ok(certs)
}

pub(crate) fn eab_key(eab: &Eab) -> Result<ExternalAccountKey, CertError> {
    let key = base64url_decode(&eab.hmac_key).ok_or_else(|| CertError::Acme {
        site: None,
        detail: "[acme] eab.hmac_key is not base64url (the key exactly as the CA gave it)".into(),
    })?;
    Ok(ExternalAccountKey::new(eab.kid.clone(), &key))
}

/// base64url without padding (RFC 8555's encoding); also accepts the
/// standard alphabet and padding, which some CAs' dashboards show.
fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    use base64::alphabet::{STANDARD, URL_SAFE};
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    let lenient = GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true);
    let s = s.trim();
    GeneralPurpose::new(&URL_SAFE, lenient)
        .decode(s)
        .or_else(|_| GeneralPurpose::new(&STANDARD, lenient).decode(s))
        .ok()
        .filter(|k| !k.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_the_acme_client_cannot_parse_is_a_config_error() {
        for bad in [
            "ftp://ca.example/dir",
            "https://acme:pw@[::1",
            "https://ca example/dir",
        ] {
            let c = AcmeConfig {
                directory: bad.into(),
                ..AcmeConfig::default()
            };
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains("[acme] directory"), "{bad}: {e}");
        }
        let good = AcmeConfig {
            directory: "https://127.0.0.1:14000/dir".into(),
            ..AcmeConfig::default()
        };
        assert!(good.validate().is_ok());
    }

    #[test]
    fn base64url_decodes_pebble_keys() {
        assert_eq!(base64url_decode("aGVsbG8").unwrap(), b"hello");
        assert_eq!(base64url_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64url_decode("_-8").unwrap(), [0xff, 0xef]);
        assert!(base64url_decode("not base64!").is_none());
    }
}
