//! TLS as a checker needs it: a client that records what certificate
//! validation concluded instead of aborting, so the chain is reported as
//! one FAIL line and the other checks still run (nothing secret is sent;
//! a browser would stop here, the checklist should not).
//!
//! Roots: `--ca FILE` trusts exactly that file; otherwise the system's
//! roots via rustls-native-certs (`/etc/ssl/certs`, or SSL_CERT_FILE /
//! SSL_CERT_DIR). Not webpki-roots: the check should judge the
//! certificate as this machine's clients would, including a CA the admin
//! added locally, and a compiled-in Mozilla snapshot ages with the binary.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme, SupportedProtocolVersion,
};
use rustls_pki_types::pem::PemObject;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::target::{CONNECT_TIMEOUT, Target, tcp};

/// What the last certificate validation concluded.
#[derive(Debug, Clone)]
pub(crate) struct CertVerdict {
    /// Ok, or why a browser would refuse the chain.
    pub result: Result<(), String>,
    /// rustls said the chain is fine but not for this name.
    pub name_mismatch: bool,
}

#[derive(Debug)]
struct RecordingVerifier {
    /// None when there are no roots to validate against at all.
    inner: Option<Arc<WebPkiServerVerifier>>,
    roots_note: String,
    provider: Arc<CryptoProvider>,
    last: Mutex<Option<CertVerdict>>,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = match &self.inner {
            None => CertVerdict {
                result: Err(self.roots_note.clone()),
                name_mismatch: false,
            },
            Some(v) => {
                match v.verify_server_cert(
                    end_entity,
                    intermediates,
                    server_name,
                    ocsp_response,
                    now,
                ) {
                    Ok(_) => CertVerdict {
                        result: Ok(()),
                        name_mismatch: false,
                    },
                    Err(e) => CertVerdict {
                        name_mismatch: matches!(
                            e,
                            rustls::Error::InvalidCertificate(
                                rustls::CertificateError::NotValidForName
                                    | rustls::CertificateError::NotValidForNameContext { .. }
                            )
                        ),
                        result: Err(e.to_string()),
                    },
                }
            }
        };
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(verdict);
        Ok(ServerCertVerified::assertion())
    }

    // Handshake signatures are still checked for real: a server that
    // cannot prove it holds the key fails the handshake.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

pub(crate) struct TlsSetup {
    provider: Arc<CryptoProvider>,
    verifier: Arc<RecordingVerifier>,
    /// "the CA in FILE" or "N system roots": said in the chain check.
    pub roots_desc: String,
}

/// What one handshake negotiated.
pub(crate) struct Handshake {
    pub stream: TlsStream<TcpStream>,
    pub version: String,
    pub alpn: Option<String>,
    pub chain: Vec<CertificateDer<'static>>,
}

impl TlsSetup {
    /// Loads the roots; a bad `--ca` file is a usage error naming it.
    pub fn new(ca: Option<&Path>) -> Result<TlsSetup, String> {
        // ring, chosen explicitly: the process default is never relied on.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        let (roots_desc, note) = match ca {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| format!("--ca {}: {e}", path.display()))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("--ca {}: {e}", path.display()))?;
                if certs.is_empty() {
                    return Err(format!(
                        "--ca {}: no PEM certificate in the file",
                        path.display()
                    ));
                }
                for c in certs {
                    roots.add(c).map_err(|e| {
                        format!("--ca {}: not a usable CA certificate: {e}", path.display())
                    })?;
                }
                (format!("the CA in {}", path.display()), String::new())
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                let (added, _ignored) = roots.add_parsable_certificates(found.certs);
                (
                    format!("{added} system roots"),
                    format!(
                        "no trusted roots found on this machine (/etc/ssl/certs{}); install ca-certificates or pass --ca FILE",
                        found
                            .errors
                            .first()
                            .map(|e| format!(": {e}"))
                            .unwrap_or_default()
                    ),
                )
            }
        };
        let inner = if roots.is_empty() {
            None
        } else {
            Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| format!("cannot build the certificate verifier: {e}"))?,
            )
        };
        Ok(TlsSetup {
            verifier: Arc::new(RecordingVerifier {
                inner,
                roots_note: note,
                provider: provider.clone(),
                last: Mutex::new(None),
            }),
            provider,
            roots_desc,
        })
    }

    pub fn config(
        &self,
        versions: &[&'static SupportedProtocolVersion],
        alpn: &[&[u8]],
    ) -> Arc<ClientConfig> {
        let mut config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(versions)
            .expect("ring supports TLS 1.2 and 1.3")
            .dangerous()
            .with_custom_certificate_verifier(self.verifier.clone())
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// The verdict of the most recent handshake (checks run one at a time).
    pub fn last_verdict(&self) -> Option<CertVerdict> {
        self.verifier
            .last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// TCP to the target's TLS port, then a handshake with `config`.
    pub async fn connect(
        &self,
        target: &Target,
        config: Arc<ClientConfig>,
    ) -> Result<Handshake, String> {
        let tcp = tcp(target.addr).await?;
        let connector = TlsConnector::from(config);
        let stream = tokio::time::timeout(
            CONNECT_TIMEOUT,
            connector.connect(target.server_name(), tcp),
        )
        .await
        .map_err(|_| format!("no TLS handshake within {} s", CONNECT_TIMEOUT.as_secs()))?
        .map_err(|e| format!("TLS handshake failed: {e}"))?;
        let conn = stream.get_ref().1;
        let version = match conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLS 1.3".to_string(),
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLS 1.2".to_string(),
            Some(v) => format!("{v:?}"),
            None => "?".to_string(),
        };
        let alpn = conn
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned());
        let chain = conn
            .peer_certificates()
            .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
            .unwrap_or_default();
        Ok(Handshake {
            stream,
            version,
            alpn,
            chain,
        })
    }
}
