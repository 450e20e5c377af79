//! PEM certificate chains and keys → a rustls `CertifiedKey`, with what we
//! show about them (names, issuer, expiry).

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::CertError;

/// What `rampart certs` and the metrics show about a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertMeta {
    /// DNS names and IP addresses in the subjectAltName extension.
    pub names: Vec<String>,
    pub issuer: String,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
}

/// A certificate chain with its key, ready for handshakes.
#[derive(Debug)]
pub struct Loaded {
    pub certified: Arc<CertifiedKey>,
    pub meta: CertMeta,
}

impl Loaded {
    /// Seconds from `now` to expiry (negative when expired).
    pub fn secs_left(&self, now: i64) -> i64 {
        self.meta.not_after - now
    }
}

/// Parses the end-entity certificate's names and dates.
pub fn meta_of(der: &[u8]) -> Result<CertMeta, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("not a valid X.509 certificate: {e}"))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                x509_parser::extensions::GeneralName::DNSName(d) => names.push(d.to_string()),
                x509_parser::extensions::GeneralName::IPAddress(b) => {
                    if let Ok(a) = <[u8; 4]>::try_from(*b) {
                        names.push(std::net::Ipv4Addr::from(a).to_string());
                    } else if let Ok(a) = <[u8; 16]>::try_from(*b) {
                        names.push(std::net::Ipv6Addr::from(a).to_string());
                    }
                }
                _ => {}
            }
        }
    }
    let issuer = cert
        .issuer()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok().map(str::to_string))
        .unwrap_or_else(|| cert.issuer().to_string());
    Ok(CertMeta {
        names,
        issuer,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
    })
}

/// Builds a `Loaded` from PEM bytes; `cert_path`/`key_path` name the files in errors.
pub fn load_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<Loaded, CertError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            CertError::file(cert_path, format!("cannot parse the PEM certificates: {e}"))
        })?;
    let Some(leaf) = chain.first() else {
        return Err(CertError::file(
            cert_path,
            "no PEM certificate (-----BEGIN CERTIFICATE-----) in this file",
        ));
    };
    let meta = meta_of(leaf).map_err(|e| CertError::file(cert_path, e))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
        CertError::file(
            key_path,
            format!("no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"),
        )
    })?;
    load_der(chain, key, meta, cert_path, key_path, provider)
}

/// Builds a `Loaded` from DER parts, checking that the key matches the certificate.
pub fn load_der(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    meta: CertMeta,
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<Loaded, CertError> {
    let certified = CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => CertError::file(
            key_path,
            format!(
                "this private key does not match the certificate in {}",
                cert_path.display()
            ),
        ),
        other => CertError::file(key_path, format!("unusable private key: {other}")),
    })?;
    Ok(Loaded {
        certified: Arc::new(certified),
        meta,
    })
}

/// Reads a `{ cert, key }` pair of files.
pub fn load_files(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<Loaded, CertError> {
    let cert_pem = crate::fsio::read(cert)?;
    let key_pem = crate::fsio::read(key)?;
    load_pem(&cert_pem, &key_pem, cert, key, provider)
}
