//! The local CA, static files and the SNI resolver, through real TLS
//! handshakes on loopback.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{TempDir, cert_names, handshake, roots_from_pem, self_signed, serial, tls_server};
use rampart_certs::{AcmeConfig, CertStore, SiteTls, TlsSource};

fn site(i: usize, hosts: &[&str], source: TlsSource) -> SiteTls {
    SiteTls {
        site: i,
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        source,
    }
}

fn local_roots(store: &CertStore) -> rustls::RootCertStore {
    roots_from_pem(&std::fs::read(store.local_ca_cert_path()).unwrap())
}

#[tokio::test]
async fn local_ca_is_created_once_and_reused_across_restarts() {
    let dir = TempDir::new("reuse");
    let sites = [site(0, &["erp.example.com"], TlsSource::Local)];
    let store = CertStore::open(dir.path(), None, &sites).unwrap();
    let root = std::fs::read(store.local_ca_cert_path()).unwrap();
    assert_eq!(store.local_ca_cert_path(), dir.path().join("ca/root.pem"));
    let key_mode = std::fs::metadata(dir.path().join("ca/root.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600, "the CA key must be private");
    let addr = tls_server(store.server_config()).await;
    let first = handshake(addr, "erp.example.com", local_roots(&store), &[])
        .await
        .unwrap();
    assert_eq!(cert_names(&first), ["erp.example.com"]);
    let leaf_key = std::fs::read_dir(dir.path().join("local"))
        .unwrap()
        .flatten()
        .find(|e| e.path().extension().is_some_and(|x| x == "key"))
        .unwrap();
    assert_eq!(
        leaf_key.metadata().unwrap().permissions().mode() & 0o777,
        0o600
    );
    drop(store);

    // A restart: same root (users trusted it once), same leaf (still fresh).
    let store = CertStore::open(dir.path(), None, &sites).unwrap();
    assert_eq!(std::fs::read(store.local_ca_cert_path()).unwrap(), root);
    let addr = tls_server(store.server_config()).await;
    let again = handshake(addr, "erp.example.com", local_roots(&store), &[])
        .await
        .unwrap();
    assert_eq!(
        serial(&again),
        serial(&first),
        "a fresh leaf is reused, not re-issued"
    );

    // Names changed: a new leaf from the same root.
    let sites = [site(
        0,
        &["erp.example.com", "odoo.example.com"],
        TlsSource::Local,
    )];
    let store = CertStore::open(dir.path(), None, &sites).unwrap();
    let addr = tls_server(store.server_config()).await;
    let renamed = handshake(addr, "odoo.example.com", local_roots(&store), &[])
        .await
        .unwrap();
    assert_eq!(
        cert_names(&renamed),
        ["erp.example.com", "odoo.example.com"]
    );
    assert_eq!(std::fs::read(store.local_ca_cert_path()).unwrap(), root);
}

#[tokio::test]
async fn sni_picks_the_site_and_unknown_names_get_no_certificate() {
    let dir = TempDir::new("sni");
    let sites = [
        site(0, &["erp.example.com"], TlsSource::Local),
        site(1, &["*.example.org"], TlsSource::Local),
    ];
    let store = CertStore::open(dir.path(), None, &sites).unwrap();
    let addr = tls_server(store.server_config()).await;
    let roots = || local_roots(&store);

    let a = handshake(addr, "erp.example.com", roots(), &[])
        .await
        .unwrap();
    assert_eq!(cert_names(&a), ["erp.example.com"]);
    let b = handshake(addr, "shop.example.org", roots(), &[])
        .await
        .unwrap();
    assert_eq!(cert_names(&b), ["*.example.org"]);
    // Case and a trailing dot do not matter.
    let c = handshake(addr, "ERP.Example.COM", roots(), &[])
        .await
        .unwrap();
    assert_eq!(cert_names(&c), ["erp.example.com"]);

    // Unknown names fail the handshake: never another site's certificate.
    let err = handshake(addr, "other.example.net", roots(), &[])
        .await
        .unwrap_err();
    assert!(
        err.to_lowercase().contains("alert") || err.contains("handshake"),
        "{err}"
    );
    // A wildcard covers one label only.
    handshake(addr, "a.b.example.org", roots(), &[])
        .await
        .unwrap_err();
    handshake(addr, "example.org", roots(), &[])
        .await
        .unwrap_err();
    // No SNI (by IP) and no catch-all: the first site's certificate (which then fails verification for an IP).
    let by_ip = handshake(addr, "127.0.0.1", roots(), &[])
        .await
        .unwrap_err();
    assert!(
        by_ip.contains("NotValidForName") || by_ip.contains("not valid"),
        "{by_ip}"
    );
}

#[tokio::test]
async fn catch_all_serves_unknown_names_and_clients_without_sni() {
    let dir = TempDir::new("any");
    let sites = [
        site(0, &["erp.example.com"], TlsSource::Local),
        site(1, &["*"], TlsSource::Local),
    ];
    let store = CertStore::open(dir.path(), None, &sites).unwrap();
    let addr = tls_server(store.server_config()).await;
    let roots = || local_roots(&store);
    for target in ["127.0.0.1", "localhost", "::1"] {
        let cert = handshake(addr, target, roots(), &[]).await.unwrap();
        let names = cert_names(&cert);
        for n in ["localhost", "127.0.0.1", "::1"] {
            assert!(names.contains(&n.to_string()), "{target}: {names:?}");
        }
    }
    let cert = handshake(addr, "erp.example.com", roots(), &[])
        .await
        .unwrap();
    assert_eq!(cert_names(&cert), ["erp.example.com"]);
}

#[tokio::test]
async fn certificate_files_are_reloaded_for_new_handshakes() {
    let dir = TempDir::new("files");
    let (cert1, key1) = self_signed(&["files.example.com"]);
    let cert_path = dir.path().join("fullchain.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, &cert1).unwrap();
    std::fs::write(&key_path, &key1).unwrap();
    let sites = [site(
        0,
        &["files.example.com"],
        TlsSource::Files {
            cert: cert_path.clone(),
            key: key_path.clone(),
        },
    )];
    let store = CertStore::open(&dir.path().join("state"), None, &sites).unwrap();
    let addr = tls_server(store.server_config()).await;
    let got = handshake(
        addr,
        "files.example.com",
        roots_from_pem(cert1.as_bytes()),
        &[],
    )
    .await
    .unwrap();
    assert_eq!(
        got.as_ref(),
        rustls::pki_types::CertificateDer::from_pem_slice_first(&cert1).as_ref()
    );

    // SIGHUP after the administrator replaced the files.
    let (cert2, key2) = self_signed(&["files.example.com"]);
    std::fs::write(&cert_path, &cert2).unwrap();
    std::fs::write(&key_path, &key2).unwrap();
    store.reload(&sites).unwrap();
    handshake(
        addr,
        "files.example.com",
        roots_from_pem(cert2.as_bytes()),
        &[],
    )
    .await
    .unwrap();

    // Changed on disk, no signal: the background watcher picks it up.
    let shutdown = tokio_util::sync::CancellationToken::new();
    store.spawn_background(shutdown.clone());
    let (cert3, key3) = self_signed(&["files.example.com"]);
    std::fs::write(dir.path().join("new.key"), &key3).unwrap();
    std::fs::write(dir.path().join("new.pem"), &cert3).unwrap();
    std::fs::rename(dir.path().join("new.key"), &key_path).unwrap();
    std::fs::rename(dir.path().join("new.pem"), &cert_path).unwrap();
    let mut swapped = false;
    for _ in 0..300 {
        if handshake(
            addr,
            "files.example.com",
            roots_from_pem(cert3.as_bytes()),
            &[],
        )
        .await
        .is_ok()
        {
            swapped = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    shutdown.cancel();
    assert!(swapped, "the watcher never served the replaced certificate");
}

trait FirstPem {
    fn from_pem_slice_first(pem: &str) -> rustls::pki_types::CertificateDer<'static>;
}
impl FirstPem for rustls::pki_types::CertificateDer<'static> {
    fn from_pem_slice_first(pem: &str) -> Self {
        use rustls::pki_types::pem::PemObject;
        Self::from_pem_slice(pem.as_bytes()).unwrap()
    }
}

#[tokio::test]
async fn bad_certificate_files_are_errors_naming_the_file_and_keep_the_old_certificate() {
    let dir = TempDir::new("badfiles");
    let state = dir.path().join("state");
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let files = || TlsSource::Files {
        cert: cert.clone(),
        key: key.clone(),
    };
    let sites = [site(0, &["bad.example.com"], files())];

    // Missing.
    let err = CertStore::open(&state, None, &sites)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(cert.to_str().unwrap()) && err.contains("not found"),
        "{err}"
    );

    // Not PEM.
    std::fs::write(&cert, "hello").unwrap();
    std::fs::write(&key, "hello").unwrap();
    let err = CertStore::open(&state, None, &sites)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with(cert.to_str().unwrap()), "{err}");

    // A key that belongs to another certificate.
    let (c1, _) = self_signed(&["bad.example.com"]);
    let (_, k2) = self_signed(&["bad.example.com"]);
    std::fs::write(&cert, &c1).unwrap();
    std::fs::write(&key, &k2).unwrap();
    let err = CertStore::open(&state, None, &sites)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(key.to_str().unwrap()) && err.contains("does not match"),
        "{err}"
    );

    // A good pair, then a broken edit: reload fails and the old certificate stays.
    let (c3, k3) = self_signed(&["bad.example.com"]);
    std::fs::write(&cert, &c3).unwrap();
    std::fs::write(&key, &k3).unwrap();
    let store = CertStore::open(&state, None, &sites).unwrap();
    let addr = tls_server(store.server_config()).await;
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let err = store.reload(&sites).unwrap_err().to_string();
    assert!(err.contains(key.to_str().unwrap()), "{err}");
    handshake(addr, "bad.example.com", roots_from_pem(c3.as_bytes()), &[])
        .await
        .unwrap();
}

#[tokio::test]
async fn acme_site_serves_a_temporary_local_certificate_until_issued() {
    let dir = TempDir::new("temp");
    let acme = AcmeConfig {
        email: "ops@example.com".into(),
        directory: "https://127.0.0.1:1/dir".into(),
        ..Default::default()
    };
    let sites = [site(0, &["new.example.com"], TlsSource::Acme)];
    let store = CertStore::open(dir.path(), Some(&acme), &sites).unwrap();
    let addr = tls_server(store.server_config()).await;
    let cert = handshake(addr, "new.example.com", local_roots(&store), &[])
        .await
        .unwrap();
    assert_eq!(cert_names(&cert), ["new.example.com"]);
    let info = store.certificates();
    assert!(info[0].temporary && info[0].source == "acme", "{info:?}");

    // Wildcards need DNS-01: a clear error.
    let sites = [site(0, &["*.example.com"], TlsSource::Acme)];
    let err = CertStore::open(dir.path(), Some(&acme), &sites)
        .unwrap_err()
        .to_string();
    assert!(err.contains("site[0]") && err.contains("DNS-01"), "{err}");
}

#[tokio::test]
async fn admin_lists_and_force_renews_local_certificates_and_metrics_show_days_left() {
    let dir = TempDir::new("admin");
    let sites = [
        site(0, &["erp.example.com"], TlsSource::Local),
        site(1, &["*"], TlsSource::Local),
    ];
    let store = CertStore::open(dir.path(), None, &sites).unwrap();
    let (status, body) = store.admin("GET", "/v1/certs", b"").unwrap();
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let list = v["certificates"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["names"][0], "erp.example.com");
    assert!(list[0]["days_left"].as_i64().unwrap() >= 89, "{body}");
    assert!(
        list[0]["issuer"]
            .as_str()
            .unwrap()
            .starts_with("Rampart local CA"),
        "{body}"
    );

    let addr = tls_server(store.server_config()).await;
    let before = handshake(addr, "erp.example.com", local_roots(&store), &[])
        .await
        .unwrap();
    let (status, body) = store
        .admin(
            "POST",
            "/v1/certs/renew",
            br#"{"host":"erp.example.com","force":true}"#,
        )
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let after = handshake(addr, "erp.example.com", local_roots(&store), &[])
        .await
        .unwrap();
    assert_ne!(
        serial(&before),
        serial(&after),
        "forced renewal issues a new certificate"
    );

    let (status, _) = store
        .admin("POST", "/v1/certs/renew", br#"{"host":"nope.example.net"}"#)
        .unwrap();
    assert_eq!(status, 404);
    let (status, _) = store
        .admin("POST", "/v1/certs/renew", b"{not json")
        .unwrap();
    assert_eq!(status, 400);
    assert!(store.admin("GET", "/metrics", b"").is_none());

    let mut registry = prometheus_client::registry::Registry::default();
    store.register_metrics(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("rampart_certificate_days_left{site=\"0\",name=\"erp.example.com\"} ")
        })
        .unwrap_or_else(|| panic!("{text}"));
    let days: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!((89.0..=90.1).contains(&days), "{line}");
}

#[test]
fn inspect_reads_what_is_stored_and_writes_nothing() {
    let dir = TempDir::new("inspect");
    let state = dir.path().join("state");
    let sites = [site(0, &["erp.example.com"], TlsSource::Local)];
    let before = CertStore::inspect(&state, None, &sites);
    assert!(
        before[0]
            .problem
            .as_deref()
            .unwrap()
            .contains("not issued yet"),
        "{before:?}"
    );
    assert!(!state.exists(), "listing must not create the state dir");

    let store = CertStore::open(&state, None, &sites).unwrap();
    let served = store.certificates();
    let listed = CertStore::inspect(&state, None, &sites);
    assert_eq!(listed[0].problem, None);
    assert_eq!(
        (&listed[0].names, listed[0].not_after),
        (&served[0].names, served[0].not_after)
    );
    assert_eq!(listed[0].issuer, served[0].issuer);
}

#[tokio::test]
async fn stored_acme_certificate_is_served_at_start_and_kept_when_names_are_added() {
    let dir = TempDir::new("acme-stored");
    let acme = AcmeConfig {
        email: "ops@example.com".into(),
        directory: "https://127.0.0.1:1/dir".into(),
        ..Default::default()
    };
    let sites = [site(0, &["shop.example.com"], TlsSource::Acme)];
    // What an earlier run stored (any CA will do for this test).
    let path = CertStore::inspect(dir.path(), Some(&acme), &sites)[0]
        .path
        .clone()
        .unwrap();
    let (cert, key) = self_signed(&["shop.example.com"]);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &cert).unwrap();
    std::fs::write(path.with_extension("key"), &key).unwrap();

    let store = CertStore::open(dir.path(), Some(&acme), &sites).unwrap();
    let info = &store.certificates()[0];
    assert!(!info.temporary && info.renew_at.is_some(), "{info:?}");
    let addr = tls_server(store.server_config()).await;
    handshake(
        addr,
        "shop.example.com",
        roots_from_pem(cert.as_bytes()),
        &[],
    )
    .await
    .unwrap();

    // A name added: the stored certificate keeps serving its name, and is due now.
    let sites = [site(
        0,
        &["shop.example.com", "www.example.com"],
        TlsSource::Acme,
    )];
    store.reload(&sites).unwrap();
    let info = &store.certificates()[0];
    assert!(info.temporary, "{info:?}");
    handshake(
        addr,
        "shop.example.com",
        roots_from_pem(cert.as_bytes()),
        &[],
    )
    .await
    .unwrap();

    let bad = AcmeConfig {
        directory: "http://insecure.example/dir".into(),
        ..acme
    };
    let err = CertStore::open(dir.path(), Some(&bad), &sites)
        .unwrap_err()
        .to_string();
    assert!(err.contains("https://"), "{err}");
}
