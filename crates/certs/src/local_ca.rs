//! Rampart's own certificate authority, for `tls = "local"`, the embedded
//! defaults, and the temporary certificate an ACME site serves until its
//! real one arrives.
//!
//! The root lives in `<state_dir>/ca/` and is reused across restarts, so a
//! user adds `root.pem` to a trust store once. Leaves are short-lived (90
//! days) and re-issued automatically, which is why they are signed by a
//! root instead of being self-signed: nobody has to trust each new leaf.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};
use ring::rand::SecureRandom;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;

use crate::CertError;
use crate::fsio;
use crate::pem::{Loaded, load_der, load_pem, meta_of};

/// A leaf lives this long; re-issued in its last third.
pub const LEAF_LIFETIME: i64 = 90 * 86_400;
const CA_LIFETIME: i64 = 10 * 365 * 86_400;

pub struct LocalCa {
    dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    /// The root's SubjectPublicKeyInfo, to tell whether a stored leaf is ours.
    spki: Vec<u8>,
}

impl LocalCa {
    pub fn root_path(state_dir: &Path) -> PathBuf {
        state_dir.join("ca").join("root.pem")
    }

    /// Loads `<state_dir>/ca/`, creating the root on first use.
    pub fn open(state_dir: &Path) -> Result<LocalCa, CertError> {
        let dir = state_dir.join("ca");
        let cert_path = dir.join("root.pem");
        let key_path = dir.join("root.key");
        if !cert_path.exists() && !key_path.exists() {
            create_root(&cert_path, &key_path)?;
        }
        let cert_pem = fsio::read(&cert_path)?;
        let key_pem = fsio::read(&key_path)?;
        let key_str =
            String::from_utf8(key_pem).map_err(|_| CertError::file(&key_path, "not a PEM file"))?;
        let key = KeyPair::from_pem(&key_str)
            .map_err(|e| CertError::file(&key_path, format!("cannot parse the CA key: {e}")))?;
        let cert_der = CertificateDer::from_pem_slice(&cert_pem).map_err(|e| {
            CertError::file(&cert_path, format!("cannot parse the CA certificate: {e}"))
        })?;
        let spki = key.subject_public_key_info();
        let issuer = Issuer::from_ca_cert_der(&cert_der, key).map_err(|e| {
            CertError::file(&cert_path, format!("cannot use this CA certificate: {e}"))
        })?;
        Ok(LocalCa { dir, issuer, spki })
    }

    pub fn cert_path(&self) -> PathBuf {
        self.dir.join("root.pem")
    }

    /// The leaf for `names` stored under `<state_dir>/local/<file>`,
    /// re-issued when missing, unreadable, not ours, for other names, or in
    /// the last third of its life.
    pub fn leaf(
        &self,
        state_dir: &Path,
        file: &str,
        names: &[String],
        provider: &CryptoProvider,
        now: i64,
    ) -> Result<Loaded, CertError> {
        let cert_path = state_dir.join("local").join(format!("{file}.pem"));
        let key_path = state_dir.join("local").join(format!("{file}.key"));
        if let (Ok(c), Ok(k)) = (std::fs::read(&cert_path), std::fs::read(&key_path))
            && let Ok(loaded) = load_pem(&c, &k, &cert_path, &key_path, provider)
            && self.still_good(&loaded, names, now)
        {
            return Ok(loaded);
        }
        let (cert, key) = self.issue(names, now)?;
        let (cert_der, key_der) = (cert.der().to_vec(), key.serialize_der());
        let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
        // Key first: a crash between the two leaves a mismatch, which is re-issued next time.
        fsio::write_atomic(&key_path, key_pem.as_bytes(), fsio::PRIVATE)?;
        fsio::write_atomic(&cert_path, cert_pem.as_bytes(), fsio::PUBLIC)?;
        tracing::info!(names = ?names, path = %cert_path.display(), "issued a local CA certificate");
        let meta = meta_of(&cert_der).map_err(|e| CertError::file(&cert_path, e))?;
        load_der(
            vec![CertificateDer::from(cert_der)],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_der)),
            meta,
            &cert_path,
            &key_path,
            provider,
        )
    }

    /// A leaf in memory only (temporary certificates).
    pub fn ephemeral(
        &self,
        names: &[String],
        provider: &CryptoProvider,
        now: i64,
    ) -> Result<Loaded, CertError> {
        let (cert, key) = self.issue(names, now)?;
        let (cert_der, key_der) = (cert.der().to_vec(), key.serialize_der());
        let meta = meta_of(&cert_der).map_err(|e| CertError::file(&self.cert_path(), e))?;
        let p = self.cert_path();
        load_der(
            vec![CertificateDer::from(cert_der)],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_der)),
            meta,
            &p,
            &p,
            provider,
        )
    }

    /// Whether a stored leaf can still be served as is.
    pub fn still_good(&self, loaded: &Loaded, names: &[String], now: i64) -> bool {
        let mut have = loaded.meta.names.clone();
        let mut want = names.to_vec();
        have.sort();
        want.sort();
        have == want && self.signed_it(loaded) && !needs_reissue(&loaded.meta, now)
    }

    fn signed_it(&self, loaded: &Loaded) -> bool {
        let Some(der) = loaded.certified.cert.first() else {
            return false;
        };
        let Ok((_, leaf)) = x509_parser::parse_x509_certificate(der) else {
            return false;
        };
        let Ok((_, spki)) =
            <x509_parser::x509::SubjectPublicKeyInfo as x509_parser::prelude::FromDer<_>>::from_der(
                &self.spki,
            )
        else {
            return false;
        };
        leaf.verify_signature(Some(&spki)).is_ok()
    }

    fn issue(
        &self,
        names: &[String],
        now: i64,
    ) -> Result<(rcgen::Certificate, KeyPair), CertError> {
        let bad = |e: rcgen::Error| {
            CertError::file(
                &self.cert_path(),
                format!("cannot issue a certificate for {names:?}: {e}"),
            )
        };
        let mut params = CertificateParams::default();
        params.subject_alt_names = names
            .iter()
            .map(|n| match n.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => n.clone().try_into().map(SanType::DnsName),
            })
            .collect::<Result<_, _>>()
            .map_err(bad)?;
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.distinguished_name = dn;
        params.not_before = at(now - 3600); // tolerate a client clock slightly behind
        params.not_after = at(now + LEAF_LIFETIME);
        params.serial_number = Some(random_serial());
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().map_err(bad)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(bad)?;
        Ok((cert, key))
    }
}

/// Local leaves are re-issued in the last third of their lifetime.
pub fn needs_reissue(meta: &crate::pem::CertMeta, now: i64) -> bool {
    let lifetime = (meta.not_after - meta.not_before).max(0);
    meta.not_after - now < lifetime / 3
}

fn create_root(cert_path: &Path, key_path: &Path) -> Result<(), CertError> {
    let bad =
        |e: rcgen::Error| CertError::file(cert_path, format!("cannot create the local CA: {e}"));
    let now = unix_now();
    let host = crate::names::machine_hostname().unwrap_or_else(|| "localhost".into());
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    // The host and creation time tell apart the roots of several machines in one trust store.
    dn.push(
        DnType::CommonName,
        format!("Rampart local CA ({host}, {})", at(now).date()),
    );
    dn.push(DnType::OrganizationName, "Rampart");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = at(now - 3600);
    params.not_after = at(now + CA_LIFETIME);
    params.serial_number = Some(random_serial());
    let key = KeyPair::generate().map_err(bad)?;
    let cert = params.self_signed(&key).map_err(bad)?;
    fsio::write_atomic(key_path, key.serialize_pem().as_bytes(), fsio::PRIVATE)?;
    fsio::write_atomic(cert_path, cert.pem().as_bytes(), fsio::PUBLIC)?;
    tracing::info!(path = %cert_path.display(), "created the local CA; add root.pem to trust stores to trust local certificates");
    Ok(())
}

fn random_serial() -> SerialNumber {
    let mut b = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .expect("system random");
    b[0] &= 0x7f; // positive INTEGER
    SerialNumber::from_slice(&b)
}

fn at(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
