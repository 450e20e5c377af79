//! Issue 2, behaviours 5 and 6: what Odoo receives (forwarded headers,
//! hop-by-hop stripped, HTTP/1.1, the concurrency cap) and what the client
//! receives (cookies, security headers, Server, keep-alive, compression).

mod common;

use std::time::Duration;

use common::{Rampart, Setup, Site, TempDir, raw_status};
use rampart_testkit::{
    ALREADY_GZIPPED_TEXT, FixtureOptions, OdooFixture, TestResponse, raw_exchange,
};

/// Decodes a `Content-Encoding` body with the reference decoders (zlib's
/// gzip, Google's brotli, Facebook's zstd, as Rust ports and bindings).
fn decode(encoding: &str, data: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    match encoding {
        "gzip" => flate2::read::GzDecoder::new(data)
            .read_to_end(&mut out)
            .map(|_| ()),
        "br" => brotli_decompressor::Decompressor::new(data, 4096)
            .read_to_end(&mut out)
            .map(|_| ()),
        "zstd" => zstd::stream::read::Decoder::new(data)
            .and_then(|mut d| d.read_to_end(&mut out))
            .map(|_| ()),
        other => panic!("no decoder for {other}"),
    }
    .unwrap_or_else(|e| panic!("{encoding} body does not decode: {e}"));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_are_set_and_spoofs_overwritten() {
    let fixture = OdooFixture::start().await;
    let r = Rampart::start(Setup::site(Site::new("erp.test", &fixture))).await;
    let res = r
        .client
        .request(
            "GET",
            &r.url("erp.test", "/echo/forwarded"),
            &[
                ("x-forwarded-for", "6.6.6.6"),
                ("x-forwarded-host", "evil.example"),
                ("x-forwarded-proto", "http"),
                ("x-real-ip", "7.7.7.7"),
            ],
            vec![],
        )
        .await;
    assert_eq!(res.status, 200);
    let seen = fixture.requests();
    let req = seen.iter().find(|s| s.target == "/echo/forwarded").unwrap();
    // Odoo's ProxyFix trusts exactly one hop: the last entry must be the real client.
    let xff = req.header_all("x-forwarded-for");
    assert_eq!(xff.len(), 1, "{xff:?}");
    assert_eq!(xff[0].rsplit(',').next().unwrap().trim(), "127.0.0.1");
    assert!(
        !xff[0].contains("6.6.6.6"),
        "spoofed XFF forwarded: {xff:?}"
    );
    assert_eq!(
        req.header_all("x-forwarded-host"),
        vec![format!("erp.test:{}", r.https.port()).as_str()]
    );
    assert_eq!(req.header_all("x-forwarded-proto"), vec!["https"]);
    assert_eq!(req.header_all("x-real-ip"), vec!["127.0.0.1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_never_reach_odoo_and_h2_becomes_http11() {
    let fixture = OdooFixture::start().await;
    let r = Rampart::start(Setup::site(Site::new("erp.test", &fixture))).await;
    let res = r
        .client
        .request(
            "GET",
            &r.url("erp.test", "/echo/hop"),
            &[
                ("connection", "keep-alive, x-secret-hop"),
                ("x-secret-hop", "must-not-pass"),
                ("te", "trailers, deflate"),
                ("keep-alive", "timeout=5"),
                ("proxy-connection", "keep-alive"),
                ("proxy-authorization", "Basic Zm9vOmJhcg=="),
                ("x-kept", "yes"),
            ],
            vec![],
        )
        .await;
    assert_eq!(res.status, 200);
    let seen = fixture.requests();
    let req = seen.iter().find(|s| s.target == "/echo/hop").unwrap();
    for name in [
        "x-secret-hop",
        "te",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
    ] {
        assert!(
            req.header(name).is_none(),
            "{name} reached Odoo: {:?}",
            req.headers
        );
    }
    if let Some(c) = req.header("connection") {
        assert!(!c.to_ascii_lowercase().contains("x-secret-hop"), "{c}");
    }
    assert_eq!(req.header("x-kept"), Some("yes"));

    // HTTP/2 in, HTTP/1.1 with a Host header out.
    let res = r
        .client
        .request_h2(
            "GET",
            &r.url("erp.test", "/echo/h2?q=1"),
            &[("x-kept", "h2")],
            vec![],
        )
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.version, "HTTP/2.0");
    let seen = fixture.requests();
    let req = seen.iter().find(|s| s.target == "/echo/h2?q=1").unwrap();
    assert_eq!(req.version, "HTTP/1.1");
    assert_eq!(
        req.header("host"),
        Some(format!("erp.test:{}", r.https.port()).as_str())
    );
    assert_eq!(req.header("x-kept"), Some("h2"));
    assert!(
        req.headers.iter().all(|(k, _)| !k.starts_with(':')),
        "{:?}",
        req.headers
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odoo_logs_the_real_client_address_on_failed_login() {
    let dir = TempDir::new("odoo-log");
    let log = dir.path().join("odoo.log");
    let fixture = OdooFixture::start_with(FixtureOptions {
        log_file: Some(log.clone()),
        ..FixtureOptions::default()
    })
    .await;
    let r = Rampart::start(Setup::site(Site::new("erp.test", &fixture))).await;
    let (cookie, token) = r.login_form("erp.test").await;
    let res = r
        .client
        .request(
            "POST",
            &r.url("erp.test", "/web/login"),
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("x-forwarded-for", "203.0.113.9"),
                ("cookie", &cookie),
            ],
            format!("csrf_token={token}&login=admin&password=wrong&redirect=").into_bytes(),
        )
        .await;
    assert_eq!(res.status, 200);
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("Login failed"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.ends_with("from 127.0.0.1"), "{line}");
    assert!(!line.contains("203.0.113.9"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_cap_answers_503_with_retry_after() {
    let fixture = OdooFixture::start().await;
    let site = Site::new("erp.test", &fixture).extra("max_conns = 1\nqueue_timeout = \"300ms\"");
    let r = Rampart::start(Setup::site(site)).await;
    let client = rampart_testkit::TestClient::new(&r.ca_path());
    let url = r.url("erp.test", "/slow?secs=2");
    let slow = tokio::spawn(async move { client.get(&url).await });
    // Wait until the slow request holds the only slot.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while fixture.count("/slow") == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slow request never reached Odoo"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let res = r.get("erp.test", "/web/login").await;
    assert_eq!(res.status, 503, "{}", res.text());
    assert!(res.header("retry-after").is_some());
    assert_eq!(fixture.count("/web/login"), 0);
    assert_eq!(slow.await.unwrap().status, 200);
    // The slot is free again.
    assert_eq!(r.get("erp.test", "/web/login").await.status, 200);
}

fn assert_security_headers(res: &TestResponse, what: &str) {
    assert_eq!(
        res.header("strict-transport-security"),
        Some("max-age=31536000; includeSubDomains"),
        "{what}"
    );
    assert_eq!(
        res.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(res.header("x-frame-options"), Some("SAMEORIGIN"), "{what}");
    assert!(
        res.header("referrer-policy").is_some_and(|v| !v.is_empty()),
        "{what}"
    );
    assert!(
        res.header("permissions-policy")
            .is_some_and(|v| !v.is_empty()),
        "{what}"
    );
    assert!(
        res.header("content-security-policy")
            .is_some_and(|v| v.contains("frame-ancestors")),
        "{what}: {:?}",
        res.header("content-security-policy")
    );
    assert_eq!(res.header_all("server"), vec!["rampart"], "{what}");
    for (k, v) in &res.headers {
        let v = v.to_ascii_lowercase();
        assert!(
            !v.contains("werkzeug") && !v.contains("python"),
            "{what}: {k}: {v}"
        );
    }
    assert!(res.header("x-powered-by").is_none(), "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_hardened_and_security_headers_everywhere() {
    let fixture = OdooFixture::start().await;
    let r = Rampart::start(Setup::site(Site::new("erp.test", &fixture))).await;

    let res = r.get("erp.test", "/web/login").await;
    assert_eq!(res.status, 200);
    let cookie = res.header("set-cookie").expect("session cookie");
    assert!(cookie.starts_with("session_id="), "{cookie}");
    assert!(
        cookie.contains("; Secure") || cookie.contains(";Secure"),
        "{cookie}"
    );
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert_security_headers(&res, "/web/login");

    // Login rotates the session: the new cookie is hardened too.
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
    assert_eq!(res.status, 303);
    let cookie = res.header("set-cookie").expect("rotated session cookie");
    assert!(
        cookie.contains("Secure") && cookie.contains("SameSite=Lax") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    assert_eq!(res.header("location"), Some("/odoo"));

    let res = r.get("erp.test", "/web/health").await;
    assert_eq!(res.status, 200);
    assert_security_headers(&res, "/web/health");
    let res = r.get("erp.test", "/no/such/page").await;
    assert_eq!(res.status, 404);
    assert_security_headers(&res, "404 from Odoo");
    let res = r.get("erp.test", "/web/database/manager").await;
    assert_security_headers(&res, "rampart's own redirect");
    let res = r
        .client
        .request_h2("GET", &r.url("erp.test", "/web/login"), &[], vec![])
        .await;
    assert_security_headers(&res, "/web/login over h2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odoo_connection_close_keeps_the_client_connection() {
    let fixture = OdooFixture::start().await;
    let r = Rampart::start(Setup::site(Site::new("erp.test", &fixture))).await;
    let req = b"GET /echo/ka1 HTTP/1.1\r\nHost: erp.test\r\n\r\n\
GET /web/login HTTP/1.1\r\nHost: erp.test\r\n\r\n\
GET /echo/ka2 HTTP/1.1\r\nHost: erp.test\r\nConnection: close\r\n\r\n";
    let raw = raw_exchange(
        r.https,
        Some((&r.ca_path(), "erp.test")),
        req,
        Duration::from_secs(10),
    )
    .await;
    let text = String::from_utf8_lossy(&raw);
    assert_eq!(text.matches("HTTP/1.1 200").count(), 3, "{text}");
    // The first answers do not announce a close (Odoo's HTTP/1.0 Connection: close is its own).
    let first_head = text.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
    assert!(!first_head.contains("connection: close"), "{first_head}");
    assert_eq!(fixture.count("/echo/ka"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_by_accept_encoding_and_never_when_it_must_not() {
    let fixture = OdooFixture::start().await;
    let r = Rampart::start(Setup::site(Site::new("erp.test", &fixture))).await;
    let plain = r.get("erp.test", "/big.html").await;
    assert_eq!(plain.status, 200);
    assert!(plain.header("content-encoding").is_none());
    assert!(plain.body.len() >= 100_000);

    for enc in ["gzip", "br", "zstd"] {
        let res = r
            .client
            .request(
                "GET",
                &r.url("erp.test", "/big.html"),
                &[("accept-encoding", enc)],
                vec![],
            )
            .await;
        assert_eq!(res.status, 200);
        assert_eq!(res.header("content-encoding"), Some(enc));
        assert!(
            res.header("vary")
                .is_some_and(|v| v.to_ascii_lowercase().contains("accept-encoding"))
        );
        assert!(
            res.body.len() < plain.body.len() / 2,
            "{enc}: {} bytes",
            res.body.len()
        );
        assert!(
            decode(enc, &res.body) == plain.body,
            "{enc} body does not decode to the original"
        );
    }
    // A browser offering all (Chrome's header; Firefox's lacks zstd) gets
    // a page of known length gzipped in one go: the cheapest for Rampart.
    for accept in ["gzip, deflate, br, zstd", "gzip, deflate, br"] {
        let res = r
            .client
            .request(
                "GET",
                &r.url("erp.test", "/big.html"),
                &[("accept-encoding", accept)],
                vec![],
            )
            .await;
        assert_eq!(res.header("content-encoding"), Some("gzip"), "{accept}");
        assert!(decode("gzip", &res.body) == plain.body, "{accept}");
    }
    // A longer answer is streamed in the client's best encoding.
    let long = r.get("erp.test", "/big.html?bytes=400000").await;
    let res = r
        .client
        .request(
            "GET",
            &r.url("erp.test", "/big.html?bytes=400000"),
            &[("accept-encoding", "gzip, deflate, br, zstd")],
            vec![],
        )
        .await;
    assert_eq!(res.header("content-encoding"), Some("zstd"));
    assert!(decode("zstd", &res.body) == long.body);
    // q=0 is honoured.
    let res = r
        .client
        .request(
            "GET",
            &r.url("erp.test", "/big.html"),
            &[("accept-encoding", "gzip;q=0, identity")],
            vec![],
        )
        .await;
    assert!(
        res.header("content-encoding").is_none(),
        "{:?}",
        res.header("content-encoding")
    );

    // Already encoded: passed through untouched.
    let res = r
        .client
        .request(
            "GET",
            &r.url("erp.test", "/already-gzipped"),
            &[("accept-encoding", "gzip, br, zstd")],
            vec![],
        )
        .await;
    assert_eq!(res.header_all("content-encoding"), vec!["gzip"]);
    assert_eq!(decode("gzip", &res.body), ALREADY_GZIPPED_TEXT.as_bytes());
    // Tiny body: not worth it.
    let res = r
        .client
        .request(
            "GET",
            &r.url("erp.test", "/web/health"),
            &[("accept-encoding", "gzip")],
            vec![],
        )
        .await;
    assert!(res.header("content-encoding").is_none());
    // Binary: not compressed.
    let res = r
        .client
        .request(
            "GET",
            &r.url("erp.test", "/download?bytes=100000"),
            &[("accept-encoding", "gzip")],
            vec![],
        )
        .await;
    assert!(res.header("content-encoding").is_none());
    assert_eq!(res.body.len(), 100_000);

    // A 101 is never compressed.
    let req = b"GET /websocket HTTP/1.1\r\nHost: erp.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: https://erp.test\r\nAccept-Encoding: gzip, br\r\n\r\n";
    let raw = raw_exchange(
        r.https,
        Some((&r.ca_path(), "erp.test")),
        req,
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(raw_status(&raw), 101, "{}", String::from_utf8_lossy(&raw));
    let head = String::from_utf8_lossy(&raw)
        .split("\r\n\r\n")
        .next()
        .unwrap()
        .to_ascii_lowercase();
    assert!(!head.contains("content-encoding"), "{head}");
    // Odoo's websocket answer sets the session cookie too: hardened as well.
    let cookie = head
        .lines()
        .find(|l| l.starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("no cookie on the 101: {head}"));
    assert!(
        cookie.contains("secure") && cookie.contains("samesite=lax"),
        "{cookie}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_headers_are_configurable_per_site() {
    let fixture = OdooFixture::start().await;
    let custom = Site::new("erp.test", &fixture).extra(
        "[site.headers]\nframe_options = \"\"\ncontent_security_policy = \"default-src 'self'; frame-ancestors 'none'\"\nstrict_transport_security = \"max-age=600\"",
    );
    let default = Site::new("b.test", &fixture);
    let r = Rampart::start(Setup {
        sites: vec![custom, default],
        ..Setup::default()
    })
    .await;
    let res = r.get("erp.test", "/web/health").await;
    assert_eq!(res.status, 200);
    assert!(res.header("x-frame-options").is_none(), "{:?}", res.headers);
    assert_eq!(
        res.header("content-security-policy"),
        Some("default-src 'self'; frame-ancestors 'none'")
    );
    assert_eq!(res.header("strict-transport-security"), Some("max-age=600"));
    assert_eq!(res.header("x-content-type-options"), Some("nosniff"));
    let res = r.get("b.test", "/web/health").await;
    assert_eq!(res.header("x-frame-options"), Some("SAMEORIGIN"));
    assert_eq!(
        res.header("strict-transport-security"),
        Some("max-age=31536000; includeSubDomains")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_over_http2_and_websocket() {
    let fixture = OdooFixture::start().await;
    let r = Rampart::start(Setup::site(Site::new("erp.test", &fixture))).await;
    let res = r
        .client
        .request_h2(
            "POST",
            &r.url("erp.test", "/echo/h2post"),
            &[
                ("x-forwarded-for", "6.6.6.6"),
                ("content-type", "text/plain"),
            ],
            b"hello".to_vec(),
        )
        .await;
    assert_eq!(res.status, 200);
    let seen = fixture.requests();
    let req = seen.iter().find(|s| s.target == "/echo/h2post").unwrap();
    assert_eq!(req.header_all("x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(req.header("x-forwarded-proto"), Some("https"));
    assert_eq!(req.body_len, 5);
    let _ = rampart_testkit::websocket_echo(
        r.https,
        Some((&r.ca_path(), "erp.test")),
        "erp.test",
        "/websocket",
        Some("https://erp.test"),
        "x",
    )
    .await
    .unwrap();
    let seen = fixture.requests();
    let ws = seen.iter().find(|s| s.target == "/websocket").unwrap();
    assert_eq!(ws.header_all("x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(ws.header("x-forwarded-host"), Some("erp.test"));
    assert_eq!(ws.header("x-real-ip"), Some("127.0.0.1"));
}
