//! The fixture must look like Odoo 18 where Rampart depends on it; these tests pin that behaviour.

use std::net::SocketAddr;
use std::time::Duration;

use rampart_testkit::{
    FixtureOptions, OdooFixture, Port, TestClient, raw_exchange, websocket_echo,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A parsed raw HTTP/1.x answer.
struct Answer {
    status_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn status(&self) -> u16 {
        self.status_line.split(' ').nth(1).unwrap().parse().unwrap()
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn parse(raw: &[u8]) -> Answer {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap().to_string();
    let headers = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.to_string(), v.trim().to_string())
        })
        .collect();
    Answer {
        status_line,
        headers,
        body: raw[end + 4..].to_vec(),
    }
}

async fn send(addr: SocketAddr, request: &str) -> Answer {
    parse(&raw_exchange(addr, None, request.as_bytes(), Duration::from_secs(20)).await)
}

fn form_post(path: &str, form: &str, extra: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: erp.test\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n{extra}\r\n{form}",
        form.len()
    )
}

/// What a browser holds after loading the login form: the session cookie the page set and the
/// CSRF token rendered into it.
async fn login_form(addr: SocketAddr) -> (String, String) {
    let page = send(addr, "GET /web/login HTTP/1.1\r\n\r\n").await;
    assert_eq!(page.status(), 200, "{}", page.text());
    let sid = cookie_value(
        page.header("Set-Cookie")
            .expect("the login page sets a session"),
    );
    (sid, csrf_token_in(&page.text()))
}

fn csrf_token_in(html: &str) -> String {
    html.split(r#"name="csrf_token" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no csrf_token field in the page:\n{html}"))
        .to_string()
}

/// A login POST carrying the session cookie and the token, as a browser sends the form.
async fn browser_login_post(addr: SocketAddr, form: &str, extra: &str) -> Answer {
    let (sid, token) = login_form(addr).await;
    send(
        addr,
        &form_post(
            "/web/login",
            &format!("csrf_token={token}&{form}"),
            &format!("Cookie: session_id={sid}\r\n{extra}"),
        ),
    )
    .await
}

fn cookie_value(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .unwrap()
        .strip_prefix("session_id=")
        .unwrap()
        .to_string()
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "rampart-testkit-test-{tag}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn http_port_answers_http10_with_connection_close_and_closes_the_socket() {
    let odoo = OdooFixture::start().await;
    let mut stream = TcpStream::connect(odoo.http_addr).await.unwrap();
    stream
        .write_all(b"GET /web/health HTTP/1.1\r\nHost: erp.test\r\nConnection: keep-alive\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    // A keep-alive server would leave this read hanging; the bound only keeps a failure from blocking CI.
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
        .await
        .expect("the fixture must close the connection after one answer, like werkzeug")
        .unwrap();
    let answer = parse(&raw);
    assert_eq!(answer.status_line, "HTTP/1.0 200 OK");
    assert_eq!(answer.header("Connection"), Some("close"));
    assert_eq!(
        answer.header("Server"),
        Some("Werkzeug/2.2.2 Python/3.11.2")
    );
    assert_eq!(answer.header("Content-Type"), Some("application/json"));
    assert_eq!(answer.header("Cache-Control"), Some("no-store"));
    assert_eq!(answer.text(), r#"{"status": "pass"}"#);
    assert_eq!(
        answer.header("X-Frame-Options"),
        None,
        "Odoo sends no security headers on /web/health"
    );
}

#[tokio::test]
async fn health_follows_set_healthy() {
    let odoo = OdooFixture::start().await;
    odoo.set_healthy(false);
    assert_eq!(
        send(odoo.http_addr, "GET /web/health HTTP/1.1\r\n\r\n")
            .await
            .status(),
        503
    );
    odoo.set_healthy(true);
    assert_eq!(
        send(odoo.http_addr, "GET /web/health HTTP/1.1\r\n\r\n")
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn root_and_backend_redirect_to_login_without_session() {
    let odoo = OdooFixture::start().await;
    let root = send(odoo.http_addr, "GET / HTTP/1.1\r\n\r\n").await;
    assert_eq!(root.status_line, "HTTP/1.0 303 SEE OTHER");
    assert_eq!(root.header("Location"), Some("/odoo"));
    let odoo_page = send(
        odoo.http_addr,
        "GET /odoo HTTP/1.1\r\nCookie: session_id=unknown\r\n\r\n",
    )
    .await;
    assert_eq!(odoo_page.status(), 303);
    assert_eq!(
        odoo_page.header("Location"),
        Some("/web/login?redirect=%2Fodoo%3F")
    );
}

#[tokio::test]
async fn login_page_sets_session_cookie_and_html_security_headers() {
    let odoo = OdooFixture::start().await;
    let page = send(
        odoo.http_addr,
        "GET /web/login HTTP/1.1\r\nHost: erp.test\r\n\r\n",
    )
    .await;
    assert_eq!(page.status(), 200);
    let cookie = page
        .header("Set-Cookie")
        .expect("login page sets a session cookie");
    assert!(cookie_value(cookie).len() >= 40, "{cookie}");
    assert!(
        cookie.contains("Max-Age=604800; HttpOnly; Path=/"),
        "{cookie}"
    );
    assert!(cookie.contains("Expires="), "{cookie}");
    assert!(
        !cookie.contains("Secure") && !cookie.contains("SameSite"),
        "{cookie}"
    );
    assert_eq!(page.header("X-Frame-Options"), Some("SAMEORIGIN"));
    assert_eq!(
        page.header("Content-Security-Policy"),
        Some("frame-ancestors 'self'")
    );
    assert_eq!(page.header("X-Content-Type-Options"), Some("nosniff"));
    let html = page.text();
    for needle in [
        r#"action="/web/login""#,
        r#"name="csrf_token""#,
        r#"name="login""#,
        r#"name="password""#,
        r#"name="redirect""#,
    ] {
        assert!(html.contains(needle), "login page lacks {needle}");
    }
    assert!(
        html.len() > 8_000,
        "login page should be realistic in size, got {}",
        html.len()
    );
}

#[tokio::test]
async fn successful_login_rotates_session_and_opens_backend() {
    let odoo = OdooFixture::start().await;
    let (anonymous, token) = login_form(odoo.http_addr).await;
    let login = send(
        odoo.http_addr,
        &form_post(
            "/web/login",
            &format!("csrf_token={token}&login=admin&password=admin&redirect="),
            &format!("Cookie: session_id={anonymous}\r\n"),
        ),
    )
    .await;
    assert_eq!(login.status_line, "HTTP/1.0 303 SEE OTHER");
    assert_eq!(login.header("Location"), Some("/odoo"));
    let logged_in = cookie_value(login.header("Set-Cookie").expect("login sets a new cookie"));
    assert_ne!(logged_in, anonymous, "the session id must rotate at login");

    let backend = send(
        odoo.http_addr,
        &format!("GET /odoo HTTP/1.1\r\nCookie: session_id={logged_in}\r\n\r\n"),
    )
    .await;
    assert_eq!(backend.status(), 200);
    let old = send(
        odoo.http_addr,
        &format!("GET /odoo HTTP/1.1\r\nCookie: session_id={anonymous}\r\n\r\n"),
    )
    .await;
    assert_eq!(
        old.status(),
        303,
        "the pre-login session id must not be logged in"
    );
}

#[tokio::test]
async fn failed_login_shows_alert_without_cookie() {
    let odoo = OdooFixture::start().await;
    let answer = browser_login_post(odoo.http_addr, "login=admin&password=wrong", "").await;
    assert_eq!(answer.status(), 200);
    assert!(answer.header("Set-Cookie").is_none());
    assert!(
        answer
            .text()
            .contains(r#"<p class="alert alert-danger" role="alert">Wrong login/password</p>"#)
    );
}

#[tokio::test]
async fn login_log_lines_follow_proxyfix_address_rule() {
    let dir = temp_dir("log");
    let log = dir.join("odoo.log");
    let odoo = OdooFixture::start_with(FixtureOptions {
        log_file: Some(log.clone()),
        ..Default::default()
    })
    .await;
    // X-Forwarded-For without X-Forwarded-Host is ignored: the socket peer is logged.
    browser_login_post(
        odoo.http_addr,
        "login=admin&password=bad",
        "X-Forwarded-For: 203.0.113.9\r\n",
    )
    .await;
    // With X-Forwarded-Host, the last X-Forwarded-For entry is the client (one trusted hop).
    browser_login_post(
        odoo.http_addr,
        "login=admin&password=bad",
        "X-Forwarded-Host: erp.test\r\nX-Forwarded-For: 198.51.100.1, 203.0.113.7\r\n",
    )
    .await;
    browser_login_post(
        odoo.http_addr,
        "login=admin&password=admin",
        "X-Forwarded-Host: erp.test\r\nX-Forwarded-For: 203.0.113.8\r\n",
    )
    .await;
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let suffixes = [
        "INFO demo1 odoo.addons.base.models.res_users: Login failed for db:demo1 login:admin from 127.0.0.1",
        "INFO demo1 odoo.addons.base.models.res_users: Login failed for db:demo1 login:admin from 203.0.113.7",
        "INFO demo1 odoo.addons.base.models.res_users: Login successful for db:demo1 login:admin from 203.0.113.8",
    ];
    for (line, suffix) in lines.iter().zip(suffixes) {
        assert!(
            line.ends_with(suffix),
            "{line:?} should end with {suffix:?}"
        );
        // `2026-11-23 14:56:31,506 24849 INFO ...`
        let b = line.as_bytes();
        assert!(
            b[4] == b'-' && b[10] == b' ' && b[19] == b',' && b[23] == b' ',
            "{line}"
        );
        let pid = line[24..].split(' ').next().unwrap();
        assert!(pid.parse::<u32>().is_ok(), "{line}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn rpc_authentication_answers_like_odoo() {
    let dir = temp_dir("rpc");
    let log = dir.join("odoo.log");
    let odoo = OdooFixture::start_with(FixtureOptions {
        log_file: Some(log.clone()),
        password: "s3cret".into(),
        ..Default::default()
    })
    .await;
    let xml = |pw: &str| {
        format!(
            "<?xml version='1.0'?><methodCall><methodName>authenticate</methodName><params><param><value><string>demo1</string></value></param><param><value><string>admin</string></value></param><param><value><string>{pw}</string></value></param><param><value><struct></struct></value></param></params></methodCall>"
        )
    };
    let post = |path: &str, ct: &str, body: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let bad = send(
        odoo.http_addr,
        &post("/xmlrpc/2/common", "text/xml", &xml("admin")),
    )
    .await;
    assert_eq!(bad.status(), 200);
    assert!(
        bad.text().contains("<boolean>0</boolean>"),
        "{}",
        bad.text()
    );
    let good = send(
        odoo.http_addr,
        &post("/xmlrpc/2/common", "text/xml", &xml("s3cret")),
    )
    .await;
    assert!(good.text().contains("<int>2</int>"), "{}", good.text());

    let json = |pw: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","method":"call","id":7,"params":{{"service":"common","method":"login","args":["demo1","admin","{pw}"]}}}}"#
        )
    };
    let bad = send(
        odoo.http_addr,
        &post("/jsonrpc", "application/json", &json("x")),
    )
    .await;
    assert!(bad.text().contains(r#""result":false"#), "{}", bad.text());
    let good = send(
        odoo.http_addr,
        &post("/jsonrpc", "application/json", &json("s3cret")),
    )
    .await;
    assert!(good.text().contains(r#""result":2"#), "{}", good.text());

    let auth = |pw: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","params":{{"db":"demo1","login":"admin","password":"{pw}"}}}}"#
        )
    };
    let bad = send(
        odoo.http_addr,
        &post("/web/session/authenticate", "application/json", &auth("x")),
    )
    .await;
    assert_eq!(bad.status(), 200);
    assert!(
        bad.text().contains("odoo.exceptions.AccessDenied"),
        "{}",
        bad.text()
    );
    assert!(bad.header("Set-Cookie").is_none());
    let good = send(
        odoo.http_addr,
        &post(
            "/web/session/authenticate",
            "application/json",
            &auth("s3cret"),
        ),
    )
    .await;
    assert!(good.text().contains(r#""uid":2"#), "{}", good.text());
    assert!(good.header("Set-Cookie").is_some());

    let text = std::fs::read_to_string(&log).unwrap();
    let from: Vec<&str> = text
        .lines()
        .map(|l| l.rsplit(' ').next().unwrap())
        .collect();
    assert_eq!(
        from,
        ["n/a", "n/a", "n/a", "n/a", "127.0.0.1", "127.0.0.1"],
        "{text}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn websocket_port_rejects_bad_upgrades_and_echoes_with_origin() {
    let odoo = OdooFixture::start().await;
    let plain = send(
        odoo.ws_addr,
        "GET /websocket HTTP/1.1\r\nHost: erp.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(plain.status_line, "HTTP/1.1 400 BAD REQUEST");

    let no_origin = websocket_echo(odoo.ws_addr, None, "erp.test", "/websocket", None, "hi").await;
    assert_eq!(no_origin.unwrap_err(), "HTTP/1.1 400 BAD REQUEST");
    let no_origin = send(
        odoo.ws_addr,
        "GET /websocket HTTP/1.1\r\nHost: erp.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(no_origin.text(), "Empty or missing header(s): origin");

    for message in ["hello odoo", &"x".repeat(300), &"y".repeat(70_000)] {
        let echoed = websocket_echo(
            odoo.ws_addr,
            None,
            "erp.test",
            "/websocket",
            Some("https://erp.test"),
            message,
        )
        .await
        .unwrap();
        assert_eq!(echoed, message);
    }
    let seen = odoo.requests();
    assert!(seen.iter().all(|r| r.port == Port::Websocket));
    assert_eq!(odoo.count("/websocket"), 6);
}

#[tokio::test]
async fn websocket_101_carries_odoo_headers_and_answers_ping() {
    let odoo = OdooFixture::start().await;
    let mut stream = TcpStream::connect(odoo.ws_addr).await.unwrap();
    stream
        .write_all(b"GET /websocket HTTP/1.1\r\nHost: erp.test\r\nOrigin: https://erp.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        .await
        .unwrap();
    // Masked ping "ab", then masked close 1000.
    let mask = [1u8, 2, 3, 4];
    let mut frames = vec![0x89, 0x82];
    frames.extend_from_slice(&mask);
    frames.extend([b'a' ^ 1, b'b' ^ 2]);
    frames.extend([0x88, 0x82]);
    frames.extend_from_slice(&mask);
    frames.extend([0x03 ^ 1, 0xe8 ^ 2]);
    stream.write_all(&frames).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
        .await
        .expect("the fixture closes after the close handshake")
        .unwrap();
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let answer = parse(&raw[..end]);
    assert_eq!(answer.status_line, "HTTP/1.1 101 Switching Protocols");
    assert_eq!(
        answer.header("Sec-WebSocket-Accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    assert_eq!(answer.header("Access-Control-Allow-Origin"), Some("*"));
    assert!(
        answer
            .header("Set-Cookie")
            .unwrap()
            .starts_with("session_id=")
    );
    assert_eq!(
        &raw[end..],
        &[0x8a, 0x02, b'a', b'b', 0x88, 0x02, 0x03, 0xe8]
    );
}

#[tokio::test]
async fn websocket_upgrade_on_http_port_is_a_500_with_odoo_log_line() {
    let dir = temp_dir("ws500");
    let log = dir.join("odoo.log");
    let odoo = OdooFixture::start_with(FixtureOptions {
        log_file: Some(log.clone()),
        ..Default::default()
    })
    .await;
    let result = websocket_echo(
        odoo.http_addr,
        None,
        "erp.test",
        "/websocket",
        Some("https://erp.test"),
        "hi",
    )
    .await;
    assert_eq!(result.unwrap_err(), "HTTP/1.0 500 INTERNAL SERVER ERROR");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains(
        "Couldn't bind the websocket. Is the connection opened on the evented port (8072)?"
    ));
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn longpolling_and_keep_alive_on_evented_port() {
    let odoo = OdooFixture::start().await;
    let two = "POST /longpolling/poll HTTP/1.1\r\nHost: erp.test\r\nContent-Length: 2\r\n\r\n{}GET /longpolling/poll HTTP/1.1\r\nHost: erp.test\r\nConnection: close\r\n\r\n";
    let raw = raw_exchange(odoo.ws_addr, None, two.as_bytes(), Duration::from_secs(20)).await;
    let text = String::from_utf8_lossy(&raw);
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
    assert_eq!(odoo.count("/longpolling/poll"), 2);
}

#[tokio::test]
async fn attachment_download_answers_with_x_accel_redirect() {
    let dir = temp_dir("filestore");
    let odoo = OdooFixture::start_with(FixtureOptions {
        filestore_dir: Some(dir.clone()),
        ..Default::default()
    })
    .await;
    let (id, sha1) = odoo.add_attachment(b"hello filestore");
    assert_eq!(sha1, "390ed2ae9e4555f043406d67a812f2bc4e064470");
    let path = dir.join("demo1").join(&sha1[..2]).join(&sha1);
    assert_eq!(std::fs::read(&path).unwrap(), b"hello filestore");
    let answer = send(
        odoo.http_addr,
        &format!("GET /web/content/{id}?download=true HTTP/1.1\r\n\r\n"),
    )
    .await;
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.header("X-Accel-Redirect").unwrap(),
        format!("/web/filestore/demo1/{}/{sha1}", &sha1[..2])
    );
    assert!(
        answer
            .header("Content-Disposition")
            .unwrap()
            .starts_with("attachment")
    );
    assert!(answer.body.is_empty());
    assert_eq!(
        send(odoo.http_addr, "GET /web/content/999 HTTP/1.1\r\n\r\n")
            .await
            .status(),
        404
    );
    drop(odoo);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn chunked_upload_is_counted() {
    let odoo = OdooFixture::start().await;
    let mut request =
        b"POST /upload HTTP/1.1\r\nHost: erp.test\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let mut total = 0;
    for size in [1usize, 100, 70_000, 5] {
        request.extend_from_slice(format!("{size:x}\r\n").as_bytes());
        request.extend(std::iter::repeat_n(b'z', size));
        request.extend_from_slice(b"\r\n");
        total += size;
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let answer =
        parse(&raw_exchange(odoo.http_addr, None, &request, Duration::from_secs(20)).await);
    assert_eq!(answer.text(), format!(r#"{{"received":{total}}}"#));
    assert_eq!(odoo.requests()[0].body_len, total as u64);
}

#[tokio::test]
async fn download_streams_the_announced_length() {
    let odoo = OdooFixture::start().await;
    let n: u64 = 300 * 1024 * 1024;
    let mut stream = TcpStream::connect(odoo.http_addr).await.unwrap();
    stream
        .write_all(format!("GET /download?bytes={n} HTTP/1.1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 256 * 1024];
    let mut head = Vec::new();
    let mut body_len = 0u64;
    loop {
        let read = tokio::time::timeout(Duration::from_secs(60), stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        if read == 0 {
            break;
        }
        if body_len == 0 && !head.ends_with(b"\r\n\r\n") {
            head.extend_from_slice(&buf[..read]);
            if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                body_len = (head.len() - end - 4) as u64;
                head.truncate(end + 4);
            }
        } else {
            body_len += read as u64;
        }
    }
    let answer = parse(&head);
    assert_eq!(
        answer.header("Content-Length"),
        Some(n.to_string().as_str())
    );
    assert_eq!(body_len, n);
}

#[tokio::test]
async fn requests_are_recorded_in_order_with_raw_headers() {
    let odoo = OdooFixture::start().await;
    send(
        odoo.http_addr,
        "GET /echo/a?x=%2F HTTP/1.1\r\nHost: erp.test\r\nX-Forwarded-For: 1.1.1.1\r\nx-forwarded-for: 2.2.2.2\r\n\r\n",
    )
    .await;
    send(odoo.http_addr, "GET /nowhere HTTP/1.0\r\n\r\n").await;
    let seen = odoo.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].port, Port::Http);
    assert_eq!(seen[0].target, "/echo/a?x=%2F");
    assert_eq!(seen[0].version, "HTTP/1.1");
    assert_eq!(seen[0].header("X-FORWARDED-FOR"), Some("1.1.1.1"));
    assert_eq!(
        seen[0].header_all("x-forwarded-for"),
        ["1.1.1.1", "2.2.2.2"]
    );
    assert_eq!(
        seen[0].headers[2].0, "x-forwarded-for",
        "header names stay as sent"
    );
    assert_eq!(seen[1].version, "HTTP/1.0");
    assert_eq!(odoo.count("/echo/"), 1);
    odoo.clear();
    assert!(odoo.requests().is_empty());
}

#[tokio::test]
async fn echo_static_database_manager_and_not_found() {
    let odoo = OdooFixture::start().await;
    let client = TestClient::new_plain();
    let base = format!("http://erp.test:{}", odoo.http_addr.port());

    let echo = client
        .request(
            "PUT",
            &format!("{base}/echo/x"),
            &[("x-test", "1")],
            b"abc".to_vec(),
        )
        .await;
    assert_eq!(echo.version, "HTTP/1.0");
    let json: serde_json::Value = serde_json::from_slice(&echo.body).unwrap();
    assert_eq!(json["method"], "PUT");
    assert_eq!(json["body_len"], 3);
    assert_eq!(
        json["headers"][0],
        serde_json::json!(["host", format!("erp.test:{}", odoo.http_addr.port())])
    );

    let js = client
        .get(&format!("{base}/web/static/upstream-only.js"))
        .await;
    assert_eq!(js.status, 200);
    assert_eq!(js.header("cache-control"), Some("public, max-age=604800"));
    assert!(js.header("etag").is_some() && js.header("last-modified").is_some());
    assert_eq!(
        client
            .get(&format!("{base}/web/static/missing.js"))
            .await
            .status,
        404
    );

    let manager = client.get(&format!("{base}/web/database/manager")).await;
    assert_eq!(manager.status, 200);
    let html = manager.text();
    assert!(html.contains("UPSTREAM-REACHED database manager"));
    for action in ["create", "drop", "backup", "restore", "change_password"] {
        assert!(
            html.contains(&format!("action=\"/web/database/{action}\"")),
            "{action}"
        );
    }
    assert!(html.contains("name=\"master_pwd\""));
    let list = client
        .request(
            "POST",
            &format!("{base}/web/database/list"),
            &[("content-type", "application/json")],
            b"{}".to_vec(),
        )
        .await;
    assert!(list.text().contains("\"demo1\""));

    let gz = client.get(&format!("{base}/already-gzipped")).await;
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(&gz.body[..2], &[0x1f, 0x8b]);
    let big = client.get(&format!("{base}/big.html?bytes=12345")).await;
    assert_eq!(big.body.len(), 12345);
    assert_eq!(
        client.get(&format!("{base}/no/such/page")).await.status,
        404
    );
}

#[tokio::test]
async fn cut_off_upload_is_recorded_with_its_partial_length() {
    let odoo = OdooFixture::start().await;
    let mut stream = TcpStream::connect(odoo.http_addr).await.unwrap();
    stream
        .write_all(
            b"POST /upload HTTP/1.1\r\nHost: erp.test\r\nContent-Length: 1000\r\n\r\n0123456789",
        )
        .await
        .unwrap();
    stream.shutdown().await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut rest)).await;
    let seen = odoo.requests();
    assert_eq!(
        seen.len(),
        1,
        "the head reached the upstream even though the body was cut"
    );
    assert_eq!(seen[0].body_len, 10);
}

#[tokio::test]
async fn malformed_request_gets_werkzeug_400() {
    let odoo = OdooFixture::start().await;
    let answer = send(
        odoo.http_addr,
        "GET /web/health HTTP/1.1\r\nBroken header line\r\n\r\n",
    )
    .await;
    assert_eq!(answer.status_line, "HTTP/1.0 400 BAD REQUEST");
    assert_eq!(answer.header("Connection"), Some("close"));
}

#[tokio::test]
async fn asset_bundles_are_immutable() {
    let odoo = OdooFixture::start().await;
    let answer = send(
        odoo.http_addr,
        "GET /web/assets/1a2b3c4/web.assets_web.min.js HTTP/1.1\r\n\r\n",
    )
    .await;
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.header("Cache-Control"),
        Some("public, max-age=31536000, immutable")
    );
}
