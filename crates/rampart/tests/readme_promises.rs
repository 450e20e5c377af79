//! What README.md promises about a running `rampart serve`, each checked on
//! the real binary (sd_notify has its own file, sd_notify.rs): the start-up
//! line naming the local CA (`local_ca=`),
//! `rampart_connections_open`, and `rampart certs` exiting 1 when a
//! certificate is missing or expired (0 when all are good).

mod common;

use std::time::Duration;

use common::{Rampart, Setup, Site, TempDir, run_cli};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_startup_line_names_the_local_ca_file() {
    let r = Rampart::start(Setup::site(Site::unreachable("erp.test"))).await;
    let line = r.wait_stderr_line(&["rampart serving", "local_ca="]).await;
    let ca = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("local_ca="))
        .unwrap()
        .trim_matches('"');
    assert_eq!(std::path::Path::new(ca), r.ca_path(), "{line}");
    let pem = std::fs::read_to_string(ca).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    // It is the CA that signed what the site serves: the harness's client,
    // which trusts only this file, gets through.
    assert_eq!(r.get("erp.test", "/web/login").await.status, 502);
}

fn connections_open(metrics: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("rampart_connections_open "))
        .unwrap_or_else(|| panic!("no rampart_connections_open in\n{metrics}"))
        .parse()
        .unwrap()
}

async fn wait_connections(r: &Rampart, want: f64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m = r.metrics().await;
        if connections_open(&m) == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "rampart_connections_open is {}, expected {want}",
            connections_open(&m)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_open_counts_client_connections() {
    let r = Rampart::start(Setup::site(Site::unreachable("erp.test"))).await;
    wait_connections(&r, 0.0).await;
    // Three idle clients (two on the TLS port, one on plain HTTP).
    let mut held = Vec::new();
    for addr in [r.https, r.https, r.http] {
        held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    wait_connections(&r, 3.0).await;
    drop(held.pop());
    wait_connections(&r, 2.0).await;
    drop(held);
    wait_connections(&r, 0.0).await;
}

/// A self-signed certificate for `host` valid between the two dates; (cert, key) PEM.
fn cert_pem(host: &str, from: (i32, u8, u8), until: (i32, u8, u8)) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![host.to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
    params.not_after = rcgen::date_time_ymd(until.0, until.1, until.2);
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// `rampart certs --config` on sites with these certificate files.
fn certs_exit(dir: &TempDir, files: &[(&str, Option<(String, String)>)]) -> (i32, String) {
    let mut config = format!(
        "state_dir = {:?}\n",
        dir.path().join("state").display().to_string()
    );
    for (host, pem) in files {
        let cert = dir.path().join(format!("{host}.crt"));
        let key = dir.path().join(format!("{host}.key"));
        let _ = std::fs::remove_file(&cert);
        if let Some((c, k)) = pem {
            std::fs::write(&cert, c).unwrap();
            std::fs::write(&key, k).unwrap();
        }
        config.push_str(&format!(
            "\n[[site]]\nhosts = [\"{host}\"]\ntls = {{ cert = {:?}, key = {:?} }}\nodoo = [\"127.0.0.1:1\"]\nwebsocket = [\"127.0.0.1:1\"]\n",
            cert.display().to_string(),
            key.display().to_string()
        ));
    }
    let path = dir.path().join("rampart.toml");
    std::fs::write(&path, config).unwrap();
    let (code, out, err) = run_cli(&["certs", "--config", path.to_str().unwrap()]);
    (code, format!("{out}{err}"))
}

#[test]
fn certs_exits_1_on_a_missing_or_expired_certificate() {
    let dir = TempDir::new("certs-exit");
    let good = || Some(cert_pem("good.test", (2020, 1, 1), (2090, 1, 1)));
    let (code, out) = certs_exit(&dir, &[("good.test", good())]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("good.test"), "{out}");

    let expired = Some(cert_pem("old.test", (2020, 1, 1), (2021, 1, 1)));
    let (code, out) = certs_exit(&dir, &[("good.test", good()), ("old.test", expired)]);
    assert_eq!(code, 1, "an expired certificate: {out}");
    assert!(out.contains("old.test"), "{out}");

    let (code, out) = certs_exit(&dir, &[("good.test", good()), ("gone.test", None)]);
    assert_eq!(code, 1, "a missing certificate: {out}");
    assert!(out.contains("gone.test"), "{out}");
}
