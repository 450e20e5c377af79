//! ACME end to end through the real `rampart serve` (issue 3): Debian's
//! pebble (a real ACME CA) and pebble-challtestsrv (its DNS, which resolves
//! every name to 127.0.0.1) validate the challenges on Rampart's own
//! listeners, so what is tested is the path a user depends on: the edge
//! answering HTTP-01 on the plain-HTTP port or TLS-ALPN-01 on the TLS port,
//! the certificate swapped in without a restart, `rampart certs` listing
//! it, a forced renewal under a request loop with no failed request (and a
//! keep-alive connection from before the swap still working), a restart
//! that serves the stored certificate without a new order, and a renewal
//! with the CA down that is logged and counted while the old certificate
//! stays in service.
//!
//! Pebble is started only after Rampart has failed once to reach it: that
//! makes "HTTPS answers with a temporary certificate before issuance"
//! deterministic (the first attempt is in its 60 s backoff), and then
//! `rampart certs renew HOST` (an admin request bypasses the backoff while
//! the certificate is temporary) starts the real issue.

mod acme_common;
mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use acme_common::{
    HOST, ISSUE_WAIT, Pebble, Serve, cli, loopback, metrics, pem_to_der, require_pebble, sample,
    serial, served_chain, wait_for,
};
use common::{TempDir, wait_line};
use rampart_testkit::{OdooFixture, TestClient, free_port};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// One HTTP/1.1 keep-alive connection over TLS to HOST, to show that a
/// certificate swap leaves open connections alone.
struct KeepAlive {
    sender: hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    /// The certificate this connection was set up with.
    leaf: Vec<u8>,
}

impl KeepAlive {
    async fn open(https: SocketAddr, ca: &Path) -> KeepAlive {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(ca).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tcp = tokio::net::TcpStream::connect(https).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(HOST.try_into().unwrap(), tcp)
            .await
            .expect("TLS handshake for the keep-alive connection");
        let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(conn);
        KeepAlive { sender, leaf }
    }

    /// GET /web/health on this same connection; its status.
    async fn get_health(&mut self) -> u16 {
        let request = http::Request::get("/web/health")
            .header("host", HOST)
            .body(http_body_util::Empty::new())
            .unwrap();
        let send = async {
            self.sender.ready().await?;
            self.sender.send_request(request).await
        };
        let response = tokio::time::timeout(Duration::from_secs(10), send)
            .await
            .expect("no answer within 10 s on the keep-alive connection")
            .expect("the keep-alive connection failed");
        let status = response.status().as_u16();
        // Read the body so the connection is ready for the next request.
        http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap();
        status
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Via {
    Http01,
    TlsAlpn01,
}

async fn issue_renew_restart(via: Via) {
    let started = Instant::now();
    let tmp = TempDir::new(match via {
        Via::Http01 => "acme-http01",
        Via::TlsAlpn01 => "acme-alpn",
    });
    let odoo = OdooFixture::start().await;
    let (http, https, admin) = (
        loopback(free_port()),
        loopback(free_port()),
        loopback(free_port()),
    );
    // The challenge not chosen points at a closed port: a certificate
    // proves the chosen one was answered by Rampart.
    let (pebble_http, pebble_tls, challenge) = match via {
        Via::Http01 => (http.port(), 1, "http-01"),
        Via::TlsAlpn01 => (1, https.port(), "tls-alpn-01"),
    };
    let mut pebble = Pebble::prepare(tmp.path().join("pebble"), pebble_http, pebble_tls);
    let state_dir = tmp.path().join("state");
    let config = tmp.path().join("rampart.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = {state:?}\n\n[listen]\nhttp = \"{http}\"\nhttps = \"{https}\"\nadmin = \"{admin}\"\n\n\
             [log]\naccess = {access:?}\n\n\
             [guard]\nrate = {{ per_second = 100000, burst = 100000 }}\n\n\
             [acme]\nemail = \"ops@example.com\"\ndirectory = \"{directory}\"\nca_bundle = {bundle:?}\nchallenge = \"{challenge}\"\n\n\
             [[site]]\nhosts = [\"{HOST}\"]\ntls = \"acme\"\nodoo = [\"{odoo_http}\"]\nwebsocket = [\"{odoo_ws}\"]\n",
            state = state_dir.display().to_string(),
            access = tmp.path().join("access.log").display().to_string(),
            directory = pebble.directory(),
            bundle = pebble.bundle().display().to_string(),
            odoo_http = odoo.http_addr,
            odoo_ws = odoo.ws_addr,
        ),
    )
    .unwrap();
    let listeners = [http, https, admin];
    let mut serve = Serve::start(&config, tmp.path().join("stderr-1.log"), &listeners).await;

    // The CA is not up yet: the failure names the site and the CA, and the
    // site keeps answering HTTPS with a temporary local-CA certificate.
    let line = wait_line(&serve.stderr, &["cannot obtain a certificate", HOST]).await;
    assert!(line.contains(&pebble.directory()), "{line}");
    let local_root = state_dir.join("ca").join("root.pem");
    let temporary = served_chain(https, &local_root).await.unwrap_or_else(|e| {
        panic!(
            "no temporary certificate before issuance: {e}\n{}",
            serve.log()
        )
    });
    let r = TestClient::new(&local_root)
        .get(&format!("https://{HOST}:{}/web/health", https.port()))
        .await;
    assert_eq!(r.status, 200, "HTTPS before issuance: {}", r.text());
    // Plain HTTP still answers: a redirect, and the challenge path is Rampart's own.
    let plain = TestClient::new_plain();
    let r = plain
        .get(&format!("http://{HOST}:{}/web/login", http.port()))
        .await;
    assert_eq!(r.status, 308, "plain HTTP before issuance: {}", r.text());
    assert_eq!(
        r.header("location"),
        Some(format!("https://{HOST}:{}/web/login", https.port()).as_str())
    );
    let r = plain
        .get(&format!(
            "http://{HOST}:{}/.well-known/acme-challenge/not-a-token",
            http.port()
        ))
        .await;
    assert_eq!(r.status, 404, "an unknown challenge token: {}", r.text());

    pebble.start().await;
    let pebble_root = tmp.path().join("pebble-root.pem");
    std::fs::write(&pebble_root, pebble.management_pem("/roots/0").await).unwrap();
    let intermediate = pem_to_der(&pebble.management_pem("/intermediates/0").await);
    // Not forced: a temporary certificate is due, and an admin request skips the backoff.
    let (code, out, err) = cli(&config, &["certs", "renew", HOST]).await;
    assert_eq!(code, 0, "certs renew: {out}{err}");
    assert!(out.contains("ACME renewal started"), "{out}");

    let issued_at = Instant::now();
    let first = wait_for(ISSUE_WAIT, || async {
        served_chain(https, &pebble_root).await.ok()
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "the certificate served for {HOST} is not pebble's after {ISSUE_WAIT:?}\nrampart:\n{}\npebble:\n{}",
            serve.log(),
            pebble.log()
        )
    });
    let issue_time = issued_at.elapsed();
    assert_eq!(
        first.get(1),
        Some(&intermediate),
        "the chain names pebble's intermediate"
    );
    assert_ne!(first[0], temporary[0]);
    assert!(
        served_chain(https, &local_root).await.is_err(),
        "the issued certificate must not chain to Rampart's local CA"
    );
    let pebble_client = TestClient::new(&pebble_root);
    let health = format!("https://{HOST}:{}/web/health", https.port());
    assert_eq!(pebble_client.get(&health).await.status, 200);

    let (code, out, err) = cli(&config, &["certs", "--json"]).await;
    assert_eq!(code, 0, "certs --json: {out}{err}");
    let list: serde_json::Value = serde_json::from_str(&out).expect("certs --json is JSON");
    let certs = list.as_array().expect("a JSON array");
    assert_eq!(certs.len(), 1, "{out}");
    assert_eq!(certs[0]["source"], "acme", "{out}");
    assert_eq!(certs[0]["names"], serde_json::json!([HOST]), "{out}");
    assert_eq!(certs[0]["temporary"], false, "{out}");
    assert!(
        certs[0]["issuer"].as_str().unwrap_or("").contains("Pebble"),
        "{out}"
    );
    assert!(certs[0]["days_left"].as_i64().unwrap_or(0) > 0, "{out}");

    // Forced renewal while a client loop keeps making HTTPS requests.
    let running = Arc::new(AtomicBool::new(true));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let errors = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let load = {
        let (running, ok, failed, errors) =
            (running.clone(), ok.clone(), failed.clone(), errors.clone());
        let (client, health) = (TestClient::new(&pebble_root), health.clone());
        tokio::spawn(async move {
            while running.load(Ordering::Relaxed) {
                match client
                    .try_request("GET", &health, &[], Vec::new(), false)
                    .await
                {
                    Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    Ok(r) => {
                        errors
                            .lock()
                            .unwrap()
                            .push(format!("status {}: {}", r.status, r.text()));
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                    Err(e) => {
                        errors.lock().unwrap().push(e);
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        })
    };
    // A connection opened before the swap keeps working after it.
    let mut open = KeepAlive::open(https, &pebble_root).await;
    assert_eq!(open.get_health().await, 200);
    let orders_before_renewal = pebble.orders();
    let (code, out, err) = cli(&config, &["certs", "renew", "--force", HOST]).await;
    assert_eq!(code, 0, "certs renew --force: {out}{err}");
    let renewed_at = Instant::now();
    let second = wait_for(ISSUE_WAIT, || async {
        served_chain(https, &pebble_root)
            .await
            .ok()
            .filter(|c| serial(&c[0]) != serial(&first[0]))
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "no new serial after a forced renewal\nrampart:\n{}\npebble:\n{}",
            serve.log(),
            pebble.log()
        )
    });
    let renew_time = renewed_at.elapsed();
    // Keep the loop going through a few requests on the new certificate.
    let after_swap = ok.load(Ordering::Relaxed);
    let more = wait_for(Duration::from_secs(30), || async {
        (ok.load(Ordering::Relaxed) >= after_swap + 20).then_some(())
    })
    .await;
    running.store(false, Ordering::Relaxed);
    load.await.unwrap();
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(
        more.is_some(),
        "the client loop stalled after the swap ({ok} ok)"
    );
    assert_eq!(
        failed,
        0,
        "requests failed during the renewal (first ones): {:?}",
        errors.lock().unwrap().iter().take(5).collect::<Vec<_>>()
    );
    assert_eq!(
        open.get_health().await,
        200,
        "a connection opened before the renewal"
    );
    assert_eq!(serial(&open.leaf), serial(&first[0]));
    assert!(
        pebble.orders() > orders_before_renewal,
        "the renewal was a new order"
    );
    assert_eq!(second.get(1), Some(&intermediate));

    // Restart: the stored certificate is served at once, no new order.
    serve.stop();
    let orders_before_restart = pebble.orders();
    let serve = Serve::start(&config, tmp.path().join("stderr-2.log"), &listeners).await;
    let after_restart = served_chain(https, &pebble_root)
        .await
        .unwrap_or_else(|e| panic!("after a restart: {e}\n{}", serve.log()));
    assert_eq!(
        serial(&after_restart[0]),
        serial(&second[0]),
        "the stored certificate is served"
    );
    // The ACME loop looks at the table as soon as it starts; give it time to
    // (wrongly) order, then make sure it did not.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !serve.log().contains("ordering a certificate"),
        "a restart ordered again:\n{}",
        serve.log()
    );
    assert_eq!(
        pebble.orders(),
        orders_before_restart,
        "pebble saw a new order"
    );
    assert_eq!(pebble_client.get(&health).await.status, 200);

    // The CA goes away; a forced renewal fails, is logged and counted, and
    // the certificate in service stays.
    pebble.stop();
    let (code, out, err) = cli(&config, &["certs", "renew", "--force", HOST]).await;
    assert_eq!(code, 0, "certs renew --force with the CA down: {out}{err}");
    let line = wait_line(&serve.stderr, &["cannot obtain a certificate", HOST]).await;
    assert!(line.contains(&pebble.directory()), "{line}");
    let still = served_chain(https, &pebble_root)
        .await
        .unwrap_or_else(|e| panic!("after a failed renewal: {e}\n{}", serve.log()));
    assert_eq!(serial(&still[0]), serial(&second[0]));
    assert_eq!(pebble_client.get(&health).await.status, 200);
    let m = metrics(admin).await;
    assert_eq!(
        sample(
            &m,
            "rampart_certificate_renewal_failures_total{site=\"0\"} "
        ),
        Some(1.0),
        "{m}"
    );
    let days = sample(
        &m,
        &format!("rampart_certificate_days_left{{site=\"0\",name=\"{HOST}\"}} "),
    );
    assert!(days.is_some_and(|d| d > 1.0), "{m}");

    eprintln!(
        "{challenge}: issued in {issue_time:?}, forced renewal in {renew_time:?} under {ok} requests (0 failed), whole test {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http01_through_rampart() {
    require_pebble();
    tokio::time::timeout(Duration::from_secs(300), issue_renew_restart(Via::Http01))
        .await
        .expect("the test did not finish within 300 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_alpn01_through_rampart() {
    require_pebble();
    tokio::time::timeout(
        Duration::from_secs(300),
        issue_renew_restart(Via::TlsAlpn01),
    )
    .await
    .expect("the test did not finish within 300 s");
}

/// Issue 3, bad input: the name does not lead to this server (the CA's
/// validation reaches a closed port). Rampart logs the site and the CA's
/// own error, keeps serving the temporary certificate, retries on request
/// with the failure counted, and does not crash.
async fn failed_validation_is_reported_and_retried() {
    let tmp = TempDir::new("acme-refused");
    let odoo = OdooFixture::start().await;
    let (http, https, admin) = (
        loopback(free_port()),
        loopback(free_port()),
        loopback(free_port()),
    );
    // Pebble validates HTTP-01 on port 1, where nothing listens: for the
    // CA the domain does not point here.
    let mut pebble = Pebble::prepare(tmp.path().join("pebble"), 1, 1);
    pebble.start().await;
    let state_dir = tmp.path().join("state");
    let config = tmp.path().join("rampart.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = {state:?}\n\n[listen]\nhttp = \"{http}\"\nhttps = \"{https}\"\nadmin = \"{admin}\"\n\n\
             [acme]\nemail = \"ops@example.com\"\ndirectory = \"{directory}\"\nca_bundle = {bundle:?}\nchallenge = \"http-01\"\n\n\
             [[site]]\nhosts = [\"{HOST}\"]\ntls = \"acme\"\nodoo = [\"{odoo_http}\"]\nwebsocket = [\"{odoo_ws}\"]\n",
            state = state_dir.display().to_string(),
            directory = pebble.directory(),
            bundle = pebble.bundle().display().to_string(),
            odoo_http = odoo.http_addr,
            odoo_ws = odoo.ws_addr,
        ),
    )
    .unwrap();
    let serve = Serve::start(
        &config,
        tmp.path().join("stderr.log"),
        &[http, https, admin],
    )
    .await;
    let line = wait_for(ISSUE_WAIT, || async {
        let log = serve.log();
        log.lines()
            .find(|l| l.contains("cannot obtain a certificate") && l.contains(HOST))
            .map(str::to_string)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "no failure logged:\n{}\npebble:\n{}",
            serve.log(),
            pebble.log()
        )
    });
    // The site, the CA, the retry, and the CA's own words on why.
    assert!(line.contains(&pebble.directory()), "{line}");
    assert!(line.contains("retry_in_secs"), "{line}");
    assert!(
        line.contains("connection")
            || line.contains("refused")
            || line.contains("urn:ietf:params:acme:error"),
        "the CA's error detail is in the line: {line}"
    );
    // Still serving, on the temporary local certificate.
    let local_root = state_dir.join("ca").join("root.pem");
    let r = TestClient::new(&local_root)
        .get(&format!("https://{HOST}:{}/web/health", https.port()))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // An administrator's retry is another attempt, counted; the process lives on.
    let (code, out, err) = cli(&config, &["certs", "renew", HOST]).await;
    assert_eq!(code, 0, "certs renew: {out}{err}");
    let counted = wait_for(ISSUE_WAIT, || async {
        let m = metrics(admin).await;
        sample(&m, "rampart_certificate_renewal_failures_total").filter(|n| *n >= 2.0)
    })
    .await;
    assert!(
        counted.is_some(),
        "second failure not counted:\n{}",
        serve.log()
    );
    assert!(
        serve.log().matches("cannot obtain a certificate").count() >= 2,
        "{}",
        serve.log()
    );
    let r = TestClient::new(&local_root)
        .get(&format!("https://{HOST}:{}/web/health", https.port()))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn domain_not_pointing_here_is_reported_and_retried() {
    require_pebble();
    tokio::time::timeout(
        Duration::from_secs(300),
        failed_validation_is_reported_and_retried(),
    )
    .await
    .expect("the test did not finish within 300 s");
}
