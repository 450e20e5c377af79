//! The admin listener against what a web page in the administrator's
//! browser can do (cross-origin simple POSTs, DNS rebinding), with an
//! admin token, and on a Unix socket. Through the real binary.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;

use common::{Rampart, Setup, Site, run_cli};
use rampart_testkit::OdooFixture;

const TOKEN: &str = "f3a9c2e71b8d4056aa19c0de5e7b3f21";

/// One raw HTTP/1.1 request; (status, head, body).
fn raw(addr: SocketAddr, req: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the admin listener");
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    exchange(&mut s, req)
}

fn exchange(s: &mut (impl Read + Write), req: &str) -> (u16, String, String) {
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (common::raw_status(&out), head.to_string(), body.to_string())
}

fn request(method: &str, path: &str, host: &str, headers: &[&str], body: &str) -> String {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    r
}

const BAN: &str = r#"{"addr":"203.0.113.77","for":"1h","reason":"csrf"}"#;

fn bans(r: &Rampart) -> String {
    let host = r.admin.to_string();
    let auth = format!("Authorization: Bearer {TOKEN}");
    let (status, _, body) = raw(r.admin, &request("GET", "/v1/bans", &host, &[&auth], ""));
    assert_eq!(status, 200, "GET /v1/bans: {body}");
    body
}

#[tokio::test]
async fn cross_origin_simple_post_cannot_ban() {
    let fixture = OdooFixture::start().await;
    let r = Rampart::start(Setup::site(Site::new("erp.test", &fixture))).await;
    let host = r.admin.to_string();
    // What <form enctype="text/plain"> or fetch(..., {mode: "no-cors"})
    // sends from https://evil.example: no preflight for text/plain.
    let (status, _, body) = raw(
        r.admin,
        &request(
            "POST",
            "/v1/bans",
            &host,
            &["Content-Type: text/plain", "Origin: https://evil.example"],
            BAN,
        ),
    );
    assert_eq!(status, 403, "cross-origin POST: {body}");
    // Without an Origin (an older browser), text/plain is still refused.
    let (status, _, body) = raw(
        r.admin,
        &request(
            "POST",
            "/v1/bans",
            &host,
            &["Content-Type: text/plain"],
            BAN,
        ),
    );
    assert_eq!(status, 415, "text/plain POST: {body}");
    let (status, _, body) = raw(
        r.admin,
        &request(
            "DELETE",
            "/v1/bans/203.0.113.77",
            &host,
            &[
                "Sec-Fetch-Site: cross-site",
                "Content-Type: application/json",
            ],
            "",
        ),
    );
    assert_eq!(status, 403, "cross-site DELETE: {body}");
    assert!(!bans(&r).contains("203.0.113.77"), "a refused POST banned");
    // The same change, as the CLI sends it, works.
    let (status, _, body) = raw(
        r.admin,
        &request(
            "POST",
            "/v1/bans",
            &host,
            &["Content-Type: application/json"],
            BAN,
        ),
    );
    assert_eq!(status, 200, "JSON POST: {body}");
    assert!(bans(&r).contains("203.0.113.77"));
}

#[tokio::test]
async fn rebound_host_names_are_refused() {
    let fixture = OdooFixture::start().await;
    let r = Rampart::start(Setup::site(Site::new("erp.test", &fixture))).await;
    let port = r.admin.port();
    // A page on rebind.example whose DNS now answers 127.0.0.1.
    for path in ["/v1/bans", "/metrics", "/v1/status", "/", "/v1/certs"] {
        let (status, _, body) = raw(
            r.admin,
            &request("GET", path, &format!("rebind.example:{port}"), &[], ""),
        );
        assert_eq!(status, 421, "GET {path} with a foreign Host: {body}");
    }
    for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}")] {
        let (status, _, body) = raw(r.admin, &request("GET", "/metrics", &host, &[], ""));
        assert_eq!(status, 200, "Host {host}: {body}");
    }
}

fn token_setup(fixture: &OdooFixture, token_file: &Path) -> Setup {
    let mut setup = Setup::site(Site::new("erp.test", fixture));
    setup.listen = format!("admin_token_file = {:?}", token_file.display().to_string());
    setup
}

fn write_token(path: &Path, mode: u32) {
    std::fs::write(path, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[tokio::test]
async fn token_is_required_when_set() {
    let fixture = OdooFixture::start().await;
    let dir = common::TempDir::new("admin-token");
    let token_file = dir.path().join("admin.token");
    write_token(&token_file, 0o600);
    let r = Rampart::start(token_setup(&fixture, &token_file)).await;
    let host = r.admin.to_string();
    for path in ["/v1/bans", "/metrics", "/v1/status", "/v1/certs"] {
        let (status, head, _) = raw(r.admin, &request("GET", path, &host, &[], ""));
        assert_eq!(status, 401, "GET {path} without the token");
        assert!(
            head.to_ascii_lowercase()
                .contains("www-authenticate: bearer")
        );
        let wrong = format!("Authorization: Bearer {}x", &TOKEN[..TOKEN.len() - 1]);
        let (status, _, _) = raw(r.admin, &request("GET", path, &host, &[&wrong], ""));
        assert_eq!(status, 401, "GET {path} with a wrong token");
    }
    let (status, _, body) = raw(
        r.admin,
        &request(
            "POST",
            "/v1/bans",
            &host,
            &["Content-Type: application/json"],
            BAN,
        ),
    );
    assert_eq!(status, 401, "POST without the token: {body}");
    // Liveness stays open, without details.
    let (status, _, body) = raw(r.admin, &request("GET", "/healthz", &host, &[], ""));
    assert_eq!((status, body.trim()), (200, r#"{"status":"ok"}"#));
    // The CLI reads admin_token_file from the same config.
    let cfg = r.config_path.to_str().unwrap();
    let (code, out, err) = run_cli(&[
        "bans",
        "--config",
        cfg,
        "ban",
        "203.0.113.78",
        "--for",
        "1h",
    ]);
    assert_eq!(code, 0, "rampart bans ban: {out}{err}");
    assert!(bans(&r).contains("203.0.113.78"));
    let (code, out, err) = run_cli(&["bans", "--config", cfg, "list"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("203.0.113.78"), "{out}");

    // The status page asks once, then a cookie (not the token) lets it read.
    let (status, _, body) = raw(r.admin, &request("GET", "/", &host, &[], ""));
    assert_eq!(status, 401);
    assert!(
        body.contains("<form") && body.contains("name=\"token\""),
        "{body}"
    );
    let (status, head, _) = raw(
        r.admin,
        &request(
            "POST",
            "/login",
            &host,
            &[
                "Content-Type: application/x-www-form-urlencoded",
                "Origin: https://evil.example",
            ],
            &format!("token={TOKEN}"),
        ),
    );
    assert_eq!(status, 403, "cross-origin login form");
    assert!(!head.to_ascii_lowercase().contains("set-cookie"));
    let (status, head, _) = raw(
        r.admin,
        &request(
            "POST",
            "/login",
            &host,
            &[
                "Content-Type: application/x-www-form-urlencoded",
                &format!("Origin: http://{host}"),
            ],
            &format!("token={TOKEN}"),
        ),
    );
    assert_eq!(status, 303);
    let cookie_line = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .expect("a Set-Cookie after the right token")
        .to_string();
    assert!(cookie_line.contains("HttpOnly") && cookie_line.contains("SameSite=Strict"));
    assert!(
        !cookie_line.contains(TOKEN),
        "the cookie holds the token itself"
    );
    let cookie = cookie_line
        .split_once(':')
        .unwrap()
        .1
        .split(';')
        .next()
        .unwrap()
        .trim()
        .to_string();
    let with_cookie = format!("Cookie: {cookie}");
    let (status, _, body) = raw(r.admin, &request("GET", "/", &host, &[&with_cookie], ""));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("203.0.113.78"), "the ban on the page: {body}");
    // The cookie reads; it never changes anything.
    let (status, _, body) = raw(
        r.admin,
        &request(
            "POST",
            "/v1/bans",
            &host,
            &["Content-Type: application/json", &with_cookie],
            BAN,
        ),
    );
    assert_eq!(status, 403, "a change with the page cookie: {body}");
    assert!(!bans(&r).contains("203.0.113.77"));
}

#[tokio::test]
async fn token_file_readable_by_all_is_refused() {
    let fixture = OdooFixture::start().await;
    let dir = common::TempDir::new("admin-token-open");
    let token_file = dir.path().join("admin.token");
    write_token(&token_file, 0o644);
    let setup = token_setup(&fixture, &token_file);
    let cfg = dir.path().join("rampart.toml");
    // Written as the harness would, but serve must refuse before listening.
    let text = format!(
        "state_dir = {:?}\n[listen]\nhttps = \"127.0.0.1:{}\"\nhttp = \"127.0.0.1:{}\"\nadmin = \"127.0.0.1:{}\"\n{}\n{}",
        dir.path().join("state").display().to_string(),
        rampart_testkit::free_port(),
        rampart_testkit::free_port(),
        rampart_testkit::free_port(),
        setup.listen,
        "[[site]]\nhosts = [\"erp.test\"]\ntls = \"local\"\n",
    );
    std::fs::write(&cfg, text).unwrap();
    let (code, out, err) = run_cli(&["serve", "--config", cfg.to_str().unwrap()]);
    assert_ne!(code, 0, "serve started with a world-readable token: {out}");
    assert!(
        err.contains("admin_token_file") && err.contains("chmod 600"),
        "{err}"
    );
}

#[tokio::test]
async fn unix_socket_serves_the_cli_and_is_private() {
    let fixture = OdooFixture::start().await;
    let dir = common::TempDir::new("admin-unix");
    let sock = dir.path().join("admin.sock");
    // A stale socket, as a crash leaves it: replaced on start.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    let mut setup = Setup::site(Site::new("erp.test", &fixture));
    setup.admin = Some(format!("unix:{}", sock.display()));
    let r = Rampart::start(setup).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while UnixStream::connect(&sock).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "no admin socket at {}:\n{}",
            sock.display(),
            r.stderr()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode {mode:o}");
    let cfg = r.config_path.to_str().unwrap();
    let (code, out, err) = run_cli(&[
        "bans",
        "--config",
        cfg,
        "ban",
        "203.0.113.79",
        "--for",
        "1h",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = run_cli(&["bans", "--config", cfg, "list"]);
    assert_eq!(code, 0, "rampart bans list over the socket: {out}{err}");
    assert!(out.contains("203.0.113.79"), "{out}");
    let mut s = UnixStream::connect(&sock).unwrap();
    let (status, _, body) = exchange(&mut s, &request("GET", "/v1/status", "localhost", &[], ""));
    assert_eq!(status, 200, "{body}");
    // A second server (other ports) on the same live socket is refused,
    // not let to steal it.
    let second = dir.path().join("second.toml");
    std::fs::write(
        &second,
        format!(
            "state_dir = {:?}\n[listen]\nhttps = \"127.0.0.1:{}\"\nhttp = \"127.0.0.1:{}\"\nadmin = \"unix:{}\"\n[[site]]\nhosts = [\"erp.test\"]\ntls = \"local\"\n",
            dir.path().join("state2").display().to_string(),
            rampart_testkit::free_port(),
            rampart_testkit::free_port(),
            sock.display()
        ),
    )
    .unwrap();
    let (code, _, err) = run_cli(&["serve", "--config", second.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("another process answers"), "{err}");
    assert!(
        UnixStream::connect(&sock).is_ok(),
        "the live socket was taken"
    );
}

#[tokio::test]
async fn unix_socket_never_replaces_a_regular_file() {
    let dir = common::TempDir::new("admin-unix-file");
    let path = dir.path().join("admin.sock");
    std::fs::write(&path, "precious").unwrap();
    let cfg = dir.path().join("rampart.toml");
    std::fs::write(
        &cfg,
        format!(
            "state_dir = {:?}\n[listen]\nhttps = \"127.0.0.1:{}\"\nhttp = \"127.0.0.1:{}\"\nadmin = \"unix:{}\"\n[[site]]\nhosts = [\"erp.test\"]\ntls = \"local\"\n",
            dir.path().join("state").display().to_string(),
            rampart_testkit::free_port(),
            rampart_testkit::free_port(),
            path.display()
        ),
    )
    .unwrap();
    let (code, _, err) = run_cli(&["serve", "--config", cfg.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("not a socket"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
}
