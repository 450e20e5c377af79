//! Issue 9, findings 1, 5 and parts of 6: what reaches Odoo is what
//! Rampart judged, in the form werkzeug reads it. HTTP/2 → HTTP/1.1
//! translation (cookies, Host, underscored and repeated fields), only
//! origin-form targets, paths werkzeug would read differently, framing after
//! an `Upgrade`, no SNI, one `Date` on X-Accel-Redirect files.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Rampart, Setup, Site, TempDir, raw_status};
use rampart_testkit::{FixtureOptions, OdooFixture, raw_exchange};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn one_site() -> (OdooFixture, Rampart) {
    let fixture = OdooFixture::start().await;
    let r = Rampart::start(Setup::site(Site::new("erp.test", &fixture))).await;
    (fixture, r)
}

/// Raw bytes over TLS (SNI erp.test, HTTP/1.1), read for up to 3 s.
async fn raw(r: &Rampart, bytes: &[u8]) -> String {
    let out = raw_exchange(
        r.https,
        Some((&r.ca_path(), "erp.test")),
        bytes,
        Duration::from_secs(3),
    )
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The targets Odoo received, health checks aside.
fn odoo_saw(fixture: &OdooFixture) -> Vec<String> {
    fixture
        .requests()
        .into_iter()
        .filter(|s| s.header("user-agent") != Some("rampart-health-check"))
        .map(|s| s.target)
        .collect()
}

/// Logs in over HTTP/1.1 as a browser does (the form's session and CSRF token first); the
/// session id.
async fn login(r: &Rampart) -> String {
    let (cookie, token) = r.login_form("erp.test").await;
    let res = r
        .client
        .request(
            "POST",
            &r.url("erp.test", "/web/login"),
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("cookie", &cookie),
            ],
            format!("csrf_token={token}&login=admin&password=admin&redirect=%2Fodoo").into_bytes(),
        )
        .await;
    assert_eq!(res.status, 303, "login: {}", res.text());
    let cookie = res.header("set-cookie").expect("session cookie");
    cookie
        .strip_prefix("session_id=")
        .and_then(|c| c.split(';').next())
        .expect("session_id=...")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_cookie_fields_reach_odoo_as_one_cookie_header() {
    let (fixture, r) = one_site().await;
    let sid = login(&r).await;
    fixture.clear();
    let session = format!("session_id={sid}");
    // As Chromium sends them over HTTP/2: one field per cookie.
    let res = r
        .client
        .request_h2(
            "GET",
            &r.url("erp.test", "/odoo"),
            &[
                ("cookie", "frontend_lang=en_US"),
                ("cookie", &session),
                ("cookie", "tz=Europe/Brussels"),
            ],
            vec![],
        )
        .await;
    assert_eq!(res.status, 200, "the session is found: {}", res.text());
    let seen = fixture.requests();
    let odoo = seen
        .iter()
        .find(|s| s.target == "/odoo")
        .expect("Odoo saw /odoo");
    assert_eq!(
        odoo.header_all("cookie"),
        [format!("frontend_lang=en_US; {session}; tz=Europe/Brussels").as_str()],
        "exactly one Cookie header, joined with \"; \""
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odoo_gets_the_host_that_was_judged_and_no_field_werkzeug_would_confuse() {
    let (fixture, r) = one_site().await;
    // h2: :authority and a Host header for the same name but another port.
    let res = r
        .client
        .request_h2(
            "GET",
            &r.url("erp.test", "/echo/port"),
            &[("host", "erp.test:1")],
            vec![],
        )
        .await;
    assert_eq!(res.status, 400, "{}", res.text());
    assert_eq!(fixture.count("/echo/port"), 0);

    // The Host sent to Odoo is the judged one (dbfilter's %h reads it).
    let res = r
        .client
        .request(
            "GET",
            &r.url("erp.test", "/echo/host"),
            &[("host", "ERP.Test.:443")],
            vec![],
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let seen = fixture.requests();
    let echo = seen.iter().find(|s| s.target == "/echo/host").unwrap();
    assert_eq!(echo.header_all("host"), ["erp.test:443"]);
    assert_eq!(echo.header_all("x-forwarded-host"), ["erp.test:443"]);

    // werkzeug maps X_Forwarded_Host and Content_Length onto the same
    // environ keys as the real fields: never forwarded.
    let res = r
        .client
        .request_h2(
            "POST",
            &r.url("erp.test", "/echo/underscore"),
            &[
                ("x_forwarded_host", "evil.test"),
                ("content_length", "0"),
                ("x-odoo-ok", "1"),
            ],
            b"hello".to_vec(),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let seen = fixture.requests();
    let echo = seen
        .iter()
        .find(|s| s.target == "/echo/underscore")
        .unwrap();
    assert!(
        echo.headers.iter().all(|(k, _)| !k.contains('_')),
        "{:?}",
        echo.headers
    );
    assert_eq!(echo.header("x-odoo-ok"), Some("1"));
    assert_eq!(
        echo.header_all("x-forwarded-host"),
        [format!("erp.test:{}", r.https.port()).as_str()]
    );

    // Two Content-Types: Rampart would read the first, werkzeug the last.
    let res = r
        .client
        .request_h2(
            "POST",
            &r.url("erp.test", "/echo/ct"),
            &[
                ("content-type", "application/json"),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            b"{}".to_vec(),
        )
        .await;
    assert_eq!(res.status, 400, "{}", res.text());
    assert_eq!(fixture.count("/echo/ct"), 0);
}

/// An HTTP/2 request with `:path` `*` (testkit's client cannot spell it).
async fn h2_asterisk(r: &Rampart, method: &str) -> u16 {
    use http_body_util::Empty;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(r.ca_path()).unwrap();
    for c in rustls_pemfile_certs(&pem) {
        roots.add(c).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(r.https).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect("erp.test".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let uri = http::Uri::from_parts({
        let mut p = http::uri::Parts::default();
        p.scheme = Some(http::uri::Scheme::HTTPS);
        p.authority = Some(format!("erp.test:{}", r.https.port()).parse().unwrap());
        p.path_and_query = Some(http::uri::PathAndQuery::from_static("*"));
        p
    })
    .unwrap();
    let req = http::Request::builder()
        .method(method)
        .uri(uri)
        .version(http::Version::HTTP_2)
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    send.send_request(req)
        .await
        .unwrap_or_else(|e| panic!("{method} * over h2: {e}"))
        .status()
        .as_u16()
}

/// The certificates of a PEM file (rustls' own PEM reader).
fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .expect("CA PEM")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asterisk_targets_never_reach_odoo() {
    let (fixture, r) = one_site().await;
    let text = raw(
        &r,
        b"OPTIONS * HTTP/1.1\r\nHost: erp.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(text.as_bytes()), 200, "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("\r\nallow: get, head, post, options\r\n"),
        "{text}"
    );
    for req in [
        &b"GET * HTTP/1.1\r\nHost: erp.test\r\nConnection: close\r\n\r\n"[..],
        b"POST * HTTP/1.1\r\nHost: erp.test\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    ] {
        let text = raw(&r, req).await;
        assert_eq!(raw_status(text.as_bytes()), 400, "{text}");
    }
    // HTTP/2 `:path: *`.
    assert_eq!(h2_asterisk(&r, "OPTIONS").await, 200);
    assert_eq!(h2_asterisk(&r, "GET").await, 400);
    assert_eq!(odoo_saw(&fixture), Vec::<String>::new());
    // Health is untouched: Odoo is still served and counted healthy.
    let res = r.get("erp.test", "/web/login").await;
    assert_eq!(res.status, 200);
    let m = r.metrics().await;
    let unhealthy: Vec<&str> = m
        .lines()
        .filter(|l| l.starts_with("rampart_upstream_healthy") && l.trim_end().ends_with(" 0"))
        .collect();
    assert!(unhealthy.is_empty(), "{unhealthy:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_is_forwarded_in_origin_form_with_the_judged_host() {
    let (fixture, r) = one_site().await;
    let req = format!(
        "GET https://ERP.test:{}/echo/abs?x=1 HTTP/1.1\r\nConnection: close\r\n\r\n",
        r.https.port()
    );
    let text = raw(&r, req.as_bytes()).await;
    assert_eq!(raw_status(text.as_bytes()), 200, "{text}");
    let seen = fixture.requests();
    let echo = seen
        .iter()
        .find(|s| s.target.starts_with("/echo/abs"))
        .expect("forwarded");
    assert_eq!(echo.target, "/echo/abs?x=1");
    assert_eq!(
        echo.header_all("host"),
        [format!("erp.test:{}", r.https.port()).as_str()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_werkzeug_would_read_differently_are_refused() {
    let (fixture, r) = one_site().await;
    for path in [
        // werkzeug: /web/database/<path> (Odoo 18's db manager routes);
        // a resolving reader: /web/login.
        "/web/database/..%2f..%2fweb/login",
        "/web/database/%2e%2e/%2e%2e/web/login",
        "/web/database/..;/..;/web/login",
        "/web/database/%252e%252e/%252e%252e/web/login",
        "/web/static/..%2f..%2fdatabase/manager",
    ] {
        let res = r.get("erp.test", path).await;
        assert_eq!(res.status, 400, "{path}: {}", res.text());
    }
    assert_eq!(odoo_saw(&fixture), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_request_does_not_switch_off_the_framing_check() {
    let (fixture, r) = one_site().await;
    // A refused upgrade, then a keep-alive Content-Length + Transfer-Encoding request.
    let text = raw(
        &r,
        b"GET /echo/upgrade HTTP/1.1\r\nHost: erp.test\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n\
POST /echo/smuggle HTTP/1.1\r\nHost: erp.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    .await;
    let statuses: Vec<&str> = text
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| &text[i + 9..i + 12])
        .collect();
    assert_eq!(statuses, ["200", "400"], "{text}");
    assert_eq!(fixture.count("/echo/smuggle"), 0, "smuggled to Odoo");
    assert_eq!(fixture.count("/echo/upgrade"), 1);
}

/// One HTTP/1.1 request over TLS without SNI (a client that connects by
/// IP address), the certificate checked for `verify_as`.
async fn no_sni_request(r: &Rampart, verify_as: &str, host: &str) -> String {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile_certs(&std::fs::read(r.ca_path()).unwrap()) {
        roots.add(c).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    cfg.enable_sni = false;
    let tcp = TcpStream::connect(r.https).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(verify_as.to_string().try_into().unwrap(), tcp)
        .await
        .unwrap_or_else(|e| panic!("no-SNI handshake (certificate for {verify_as}): {e}"));
    let req = format!("GET /web/login HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_sni_only_the_default_site_is_served() {
    let a = OdooFixture::start().await;
    let b = OdooFixture::start().await;
    let r = Rampart::start(Setup {
        sites: vec![Site::new("erp.test", &a), Site::new("b.test", &b)],
        ..Setup::default()
    })
    .await;
    // The handshake presents the first site's certificate.
    let text = no_sni_request(&r, "erp.test", "b.test").await;
    assert_eq!(raw_status(text.as_bytes()), 421, "{text}");
    assert_eq!(b.count("/web/login"), 0, "site b served without SNI");
    let text = no_sni_request(&r, "erp.test", "erp.test").await;
    assert_eq!(raw_status(text.as_bytes()), 200, "{text}");
    assert_eq!(a.count("/web/login"), 1);
}

/// An upstream that answers every request as Odoo 18 with --x-sendfile
/// does: werkzeug's Date, Odoo's own Date, X-Accel-Redirect, empty body.
async fn odoo_with_two_dates(accel: String) -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let accel = accel.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let res = format!(
                    "HTTP/1.0 200 OK\r\nServer: Werkzeug/2.2.2 Python/3.11.2\r\nDate: Tue, 01 Dec 2026 00:00:00 GMT\r\nContent-Type: application/pdf\r\nDate: Tue, 01 Dec 2026 00:00:01 GMT\r\nX-Accel-Redirect: {accel}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = s.write_all(res.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_accel_redirect_files_carry_one_date() {
    let dir = TempDir::new("dates");
    let data_dir = dir.path().join("odoo-data");
    let sha1 = "ab".to_string() + &"c".repeat(38);
    let file_dir = data_dir.join("filestore").join("demo1").join("ab");
    std::fs::create_dir_all(&file_dir).unwrap();
    std::fs::write(file_dir.join(&sha1), b"%PDF-1.4 fake").unwrap();
    let up = odoo_with_two_dates(format!("/web/filestore/demo1/ab/{sha1}")).await;
    let fixture = OdooFixture::start_with(FixtureOptions::default()).await;
    let mut site = Site::new("erp.test", &fixture)
        .extra(&format!("data_dir = {:?}", data_dir.display().to_string()));
    site.odoo = vec![up.to_string()];
    let r = Rampart::start(Setup::site(site)).await;
    let res = r.get("erp.test", "/web/content/7").await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.body, b"%PDF-1.4 fake");
    assert_eq!(res.header_all("date").len(), 1, "{:?}", res.headers);
    let res = r
        .client
        .request_h2("GET", &r.url("erp.test", "/web/content/7"), &[], vec![])
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header_all("date").len(), 1, "{:?}", res.headers);
}
