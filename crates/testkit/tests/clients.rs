//! The client helpers against a real TLS front: a certificate chain made by the openssl CLI, a
//! rustls server forwarding HTTP/1.1 to the fixture and answering HTTP/2 itself.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rampart_testkit::{
    OdooFixture, TestClient, raw_exchange, tls_handshake_info, wait_for_port, websocket_echo,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};

struct Pki {
    dir: PathBuf,
    ca: PathBuf,
    leaf: PathBuf,
    key: PathBuf,
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl CLI is needed for these tests");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a leaf for erp.test signed by it.
fn make_pki(tag: &str) -> Pki {
    let dir =
        std::env::temp_dir().join(format!("rampart-testkit-pki-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=Testkit CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(&dir, &ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=erp.test",
    ]);
    openssl(&dir, &csr);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:erp.test\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
    Pki {
        ca: dir.join("ca.pem"),
        leaf: dir.join("leaf.pem"),
        key: dir.join("leaf.key"),
        dir,
    }
}

/// A TLS front on a random port: h2 is answered here with the request's authority; HTTP/1.1 is
/// forwarded byte for byte to `upstream`.
async fn tls_front(pki: &Pki, upstream: SocketAddr) -> SocketAddr {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&pki.leaf)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(&pki.key).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                    let service = hyper::service::service_fn(
                        |req: http::Request<hyper::body::Incoming>| async move {
                            let body = format!(
                                "h2 {} {}",
                                req.uri().authority().map(|a| a.as_str()).unwrap_or("-"),
                                req.uri().path()
                            );
                            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                                Bytes::from(body),
                            )))
                        },
                    );
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                } else if let Ok(mut up) = TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                }
            });
        }
    });
    wait_for_port(addr, Duration::from_secs(10)).await.unwrap();
    addr
}

#[tokio::test]
async fn https_request_takes_sni_and_host_from_the_url() {
    let pki = make_pki("h1");
    let odoo = OdooFixture::start().await;
    let front = tls_front(&pki, odoo.http_addr).await;
    let client = TestClient::new(&pki.ca);
    let url = format!("https://erp.test:{}/echo/x?y=1", front.port());
    let response = client
        .request("POST", &url, &[("x-probe", "1")], b"hello".to_vec())
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.version, "HTTP/1.0",
        "the fixture's werkzeug-style answer passes through"
    );
    let seen = &odoo.requests()[0];
    assert_eq!(seen.target, "/echo/x?y=1");
    assert_eq!(
        seen.header("host"),
        Some(format!("erp.test:{}", front.port()).as_str())
    );
    assert_eq!(seen.header("x-probe"), Some("1"));
    assert_eq!(seen.body_len, 5);
}

#[tokio::test]
async fn request_h2_negotiates_http2() {
    let pki = make_pki("h2");
    let odoo = OdooFixture::start().await;
    let front = tls_front(&pki, odoo.http_addr).await;
    let client = TestClient::new(&pki.ca);
    let response = client
        .request_h2(
            "GET",
            &format!("https://erp.test:{}/odoo", front.port()),
            &[],
            Vec::new(),
        )
        .await;
    assert_eq!(response.version, "HTTP/2.0");
    assert_eq!(
        response.text(),
        format!("h2 erp.test:{} /odoo", front.port())
    );
}

#[tokio::test]
async fn https_to_an_untrusted_chain_fails() {
    let pki = make_pki("untrusted");
    let odoo = OdooFixture::start().await;
    let front = tls_front(&pki, odoo.http_addr).await;
    let url = format!("https://erp.test:{}/web/health", front.port());
    let err = TestClient::new_plain()
        .try_request("GET", &url, &[], Vec::new(), false)
        .await
        .unwrap_err();
    assert!(err.contains("TLS handshake"), "{err}");
    assert!(odoo.requests().is_empty());
}

#[tokio::test]
async fn handshake_info_reports_version_alpn_and_chain() {
    let pki = make_pki("info");
    let odoo = OdooFixture::start().await;
    let front = tls_front(&pki, odoo.http_addr).await;
    let (version, alpn, chain) =
        tls_handshake_info(front, &pki.ca, "erp.test", &[b"h2", b"http/1.1"])
            .await
            .unwrap();
    assert_eq!(version, "TLSv1.3");
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    let leaf = CertificateDer::from_pem_file(&pki.leaf).unwrap();
    assert_eq!(chain, vec![leaf.as_ref().to_vec()]);
    let wrong_name = tls_handshake_info(front, &pki.ca, "other.test", &[])
        .await
        .unwrap_err();
    assert!(wrong_name.contains("other.test"), "{wrong_name}");
}

#[tokio::test]
async fn raw_exchange_and_websocket_over_tls() {
    let pki = make_pki("raw");
    let odoo = OdooFixture::start().await;
    let http_front = tls_front(&pki, odoo.http_addr).await;
    let raw = raw_exchange(
        http_front,
        Some((&pki.ca, "erp.test")),
        b"GET /web/health HTTP/1.1\r\nHost: erp.test\r\n\r\n",
        Duration::from_secs(20),
    )
    .await;
    assert!(
        raw.starts_with(b"HTTP/1.0 200 OK\r\n"),
        "{}",
        String::from_utf8_lossy(&raw)
    );

    let ws_front = tls_front(&pki, odoo.ws_addr).await;
    let echoed = websocket_echo(
        ws_front,
        Some((&pki.ca, "erp.test")),
        "erp.test",
        "/websocket",
        Some("https://erp.test"),
        "over tls",
    )
    .await
    .unwrap();
    assert_eq!(echoed, "over tls");
}
