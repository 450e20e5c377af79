//! ACME against Debian's pebble on loopback: issue via HTTP-01 and
//! TLS-ALPN-01, renewal under handshake load, restart without a new
//! order, CA down during renewal, external account binding.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::pebble::{self, Pebble};
use common::{TempDir, handshake_any, serial, tls_server_on, wait_until};
use rampart_certs::{AcmeConfig, CertStore, Challenge, Eab, SiteTls, TlsSource};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

fn acme_site(host: &str) -> Vec<SiteTls> {
    vec![SiteTls {
        site: 0,
        hosts: vec![host.to_string()],
        source: TlsSource::Acme,
    }]
}

fn config(p: &Pebble, challenge: Challenge) -> AcmeConfig {
    AcmeConfig {
        email: "ops@example.com".into(),
        directory: p.directory.clone(),
        ca_bundle: Some(p.bundle.clone()),
        challenge,
        ..Default::default()
    }
}

/// What the edge does on its plain-HTTP listener for `/.well-known/acme-challenge/`.
fn serve_http01(listener: TcpListener, store: Arc<CertStore>) {
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            let store = store.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut n = 0;
                while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") && n < buf.len() {
                    match tcp.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => n += k,
                    }
                }
                let head = String::from_utf8_lossy(&buf[..n]);
                let path = head.split_whitespace().nth(1).unwrap_or("");
                let answer = path
                    .strip_prefix("/.well-known/acme-challenge/")
                    .and_then(|t| store.http01_response(t));
                let resp = match answer {
                    Some(body) => format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    ),
                    None => {
                        "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                            .to_string()
                    }
                };
                let _ = tcp.write_all(resp.as_bytes()).await;
            });
        }
    });
}

fn failures(store: &Arc<CertStore>) -> u64 {
    let mut registry = prometheus_client::registry::Registry::default();
    store.register_metrics(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    text.lines()
        .find(|l| l.starts_with("rampart_certificate_renewal_failures_total{site=\"0\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{text}"))
}

fn stored_leaf(store: &CertStore) -> CertificateDer<'static> {
    let path = store.certificates()[0].path.clone().expect("stored");
    CertificateDer::from_pem_file(path).unwrap()
}

async fn wait_issued(store: &Arc<CertStore>, p: &Pebble) {
    let issued = wait_until(90, || !store.certificates()[0].temporary).await;
    assert!(
        issued,
        "no certificate from pebble: {:?}\npebble log:\n{}",
        store.certificates(),
        p.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_issue_renew_under_load_restart_and_ca_down() {
    pebble::require();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut p = Pebble::start("pebble-http01", http.local_addr().unwrap().port(), 1, false);
    let state = TempDir::new("state-http01");
    let host = "http01.rampart.test";
    let acme = config(&p, Challenge::Http01);
    let store = CertStore::open(state.path(), Some(&acme), &acme_site(host)).unwrap();
    assert!(store.certificates()[0].temporary);
    serve_http01(http, store.clone());
    let addr = tls_server_on(tls, store.server_config());
    let stop = CancellationToken::new();
    store.spawn_background(stop.clone());

    wait_issued(&store, &p).await;
    let info = &store.certificates()[0];
    assert!(info.issuer.to_lowercase().contains("pebble"), "{info:?}");
    assert_eq!(info.names, [host]);
    let first = handshake_any(addr, host, &[]).await.unwrap();
    assert_eq!(first, stored_leaf(&store), "the new certificate is served");
    // Account and key on disk, private.
    let acme_dir = info
        .path
        .as_ref()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    for private in [
        acme_dir.join("account.json"),
        info.path.as_ref().unwrap().with_extension("key"),
    ] {
        let mode = std::fs::metadata(&private).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", private.display());
    }

    // Renewal under load: handshakes keep succeeding through the swap.
    let running = Arc::new(AtomicBool::new(true));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load = {
        let (running, ok, failed) = (running.clone(), ok.clone(), failed.clone());
        tokio::spawn(async move {
            while running.load(Ordering::Relaxed) {
                match handshake_any(addr, host, &[b"h2"]).await {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };
    let (status, body) = store
        .admin("POST", "/v1/certs/renew", br#"{"force":true}"#)
        .unwrap();
    assert_eq!(status, 202, "{body}");
    let renewed = wait_until(90, || stored_leaf(&store) != first).await;
    assert!(renewed, "forced renewal did not happen: {}", p.log());
    let before_stop = ok.load(Ordering::Relaxed);
    // A few more handshakes after the swap, then stop the load.
    assert!(wait_until(30, || ok.load(Ordering::Relaxed) > before_stop + 5).await);
    running.store(false, Ordering::Relaxed);
    load.await.unwrap();
    eprintln!(
        "renewal under load: {} handshakes, {} failed",
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "handshakes failed during the renewal"
    );
    let second = handshake_any(addr, host, &[]).await.unwrap();
    assert_eq!(second, stored_leaf(&store));
    assert_ne!(serial(&second), serial(&first));
    stop.cancel();
    drop(store);

    // The CA goes away; a restart serves the stored certificate and plans no order.
    p.stop();
    let store = CertStore::open(state.path(), Some(&acme), &acme_site(host)).unwrap();
    let info = &store.certificates()[0];
    assert!(!info.temporary, "{info:?}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(info.renew_at.unwrap() > now + 30 * 86_400, "{info:?}");
    let tls = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tls_server_on(tls, store.server_config());
    assert_eq!(handshake_any(addr, host, &[]).await.unwrap(), second);

    // Renewal while the CA is down: it fails, is counted, and the old certificate stays.
    let stop = CancellationToken::new();
    store.spawn_background(stop.clone());
    assert_eq!(failures(&store), 0);
    let (status, _) = store
        .admin(
            "POST",
            "/v1/certs/renew",
            br#"{"host":"http01.rampart.test","force":true}"#,
        )
        .unwrap();
    assert_eq!(status, 202);
    assert!(
        wait_until(60, || failures(&store) >= 1).await,
        "the failed renewal was not counted"
    );
    assert_eq!(handshake_any(addr, host, &[]).await.unwrap(), second);
    assert!(!store.certificates()[0].temporary);
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn01_issue() {
    pebble::require();
    let tls = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let p = Pebble::start("pebble-alpn", 1, tls.local_addr().unwrap().port(), false);
    let state = TempDir::new("state-alpn");
    let host = "alpn.rampart.test";
    let store = CertStore::open(
        state.path(),
        Some(&config(&p, Challenge::TlsAlpn01)),
        &acme_site(host),
    )
    .unwrap();
    let server = store.server_config();
    assert!(server.alpn_protocols.contains(&b"acme-tls/1".to_vec()));
    let addr = tls_server_on(tls, server);
    // No challenge pending: an acme-tls/1 hello gets no certificate at all.
    assert!(handshake_any(addr, host, &[b"acme-tls/1"]).await.is_err());
    let stop = CancellationToken::new();
    store.spawn_background(stop.clone());
    wait_issued(&store, &p).await;
    assert_eq!(
        handshake_any(addr, host, &[b"h2", b"http/1.1"])
            .await
            .unwrap(),
        stored_leaf(&store)
    );
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_account_binding() {
    pebble::require();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let p = Pebble::start("pebble-eab", http.local_addr().unwrap().port(), 1, true);
    let host = "eab.rampart.test";

    // Without the binding pebble refuses the account: counted, temporary certificate stays.
    let state = TempDir::new("state-noeab");
    let store = CertStore::open(
        state.path(),
        Some(&config(&p, Challenge::Http01)),
        &acme_site(host),
    )
    .unwrap();
    let stop = CancellationToken::new();
    store.spawn_background(stop.clone());
    assert!(wait_until(60, || failures(&store) >= 1).await);
    assert!(store.certificates()[0].temporary);
    stop.cancel();

    let state = TempDir::new("state-eab");
    let acme = AcmeConfig {
        eab: Some(Eab {
            kid: pebble::EAB_KID.into(),
            hmac_key: pebble::EAB_KEY.into(),
        }),
        ..config(&p, Challenge::Http01)
    };
    let store = CertStore::open(state.path(), Some(&acme), &acme_site(host)).unwrap();
    serve_http01(http, store.clone());
    let stop = CancellationToken::new();
    store.spawn_background(stop.clone());
    wait_issued(&store, &p).await;
    stop.cancel();
}

#[test]
fn bad_acme_settings_are_errors_at_open() {
    let state = TempDir::new("state-bad");
    let acme = AcmeConfig {
        email: "ops@example.com".into(),
        ca_bundle: Some(state.path().join("missing.pem")),
        ..Default::default()
    };
    let err = CertStore::open(state.path(), Some(&acme), &acme_site("x.rampart.test"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("missing.pem") && err.contains("not found"),
        "{err}"
    );
    let acme = AcmeConfig {
        email: "ops@example.com".into(),
        eab: Some(Eab {
            kid: "k".into(),
            hmac_key: "not base64!".into(),
        }),
        ..Default::default()
    };
    let err = CertStore::open(state.path(), Some(&acme), &acme_site("x.rampart.test"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("eab.hmac_key"), "{err}");
}
