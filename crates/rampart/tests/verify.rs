//! `rampart verify` against real parts on loopback: the real `rampart
//! serve` in front of the Odoo fixture (every check must PASS), the
//! fixture directly (the FAILs verify exists to catch), rampart with the
//! database manager opened on purpose, and an `openssl s_server` that
//! still speaks TLS 1.0 (the hand-built ClientHello must see it accept).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Rampart, Setup, Site, TempDir, bin};
use rampart_testkit::{OdooFixture, free_port, wait_for_port};
use serde_json::Value;

/// Runs `rampart verify <args> --json` off the async runtime (the fixture
/// answers on it); returns the exit code, the checks by name, and stderr.
async fn verify(args: Vec<String>) -> (i32, BTreeMap<String, (String, String)>, String) {
    let out = tokio::task::spawn_blocking(move || {
        Command::new(bin())
            .arg("verify")
            .args(&args)
            .arg("--json")
            .env_remove("RAMPART_CONFIG")
            .stdin(Stdio::null())
            .output()
            .expect("cannot run the rampart binary")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let code = out.status.code().unwrap_or(-1);
    let mut checks = BTreeMap::new();
    if !stdout.trim().is_empty() {
        let list: Vec<Value> = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("--json output is not JSON ({e}):\n{stdout}\n{stderr}"));
        for c in list {
            let name = c["check"].as_str().unwrap().to_string();
            for key in ["status", "detail", "fix"] {
                assert!(c[key].is_string(), "{name}: {key} missing in {c}");
            }
            let prev = checks.insert(
                name.clone(),
                (
                    c["status"].as_str().unwrap().to_string(),
                    c["detail"].as_str().unwrap().to_string(),
                ),
            );
            assert!(prev.is_none(), "check {name} appears twice");
        }
    }
    (code, checks, stderr)
}

fn table(checks: &BTreeMap<String, (String, String)>) -> String {
    checks
        .iter()
        .map(|(k, (s, d))| format!("{s} {k}: {d}\n"))
        .collect()
}

fn status<'a>(checks: &'a BTreeMap<String, (String, String)>, name: &str) -> &'a (String, String) {
    checks
        .get(name)
        .unwrap_or_else(|| panic!("no check {name:?} in:\n{}", table(checks)))
}

/// Every check verify runs; a check that silently disappears is a bug.
const ALL_CHECKS: [&str; 33] = [
    "http-redirect",
    "tls1.0-refused",
    "tls1.1-refused",
    "tls1.2-accepted",
    "tls1.3-accepted",
    "cert-chain",
    "cert-names",
    "cert-expiry",
    "alpn-h2",
    "http2",
    "hsts /web/login",
    "nosniff /web/login",
    "frame-options /web/login",
    "referrer-policy /web/login",
    "csp /web/login",
    "hsts /web/health",
    "nosniff /web/health",
    "frame-options /web/health",
    "referrer-policy /web/health",
    "csp /web/health",
    "server-header",
    "session-cookie",
    "db-manager GET /web/database/manager",
    "db-manager GET /web/database/selector",
    "db-manager GET /web/%64atabase/manager",
    "db-manager GET /web//database/manager",
    "db-manager GET /WEB/DATABASE/MANAGER",
    "db-manager GET /web/database/manager;x",
    "db-manager POST /xmlrpc/2/db list",
    "db-manager POST /jsonrpc db.list",
    "websocket",
    "health",
    "compression",
];

/// The URL carries the port (`--resolve HOST:ADDR`), or the URL is the
/// bare name and the port comes from `--resolve HOST:ADDR:PORT`.
fn rampart_args(r: &Rampart, port_in_resolve: bool) -> Vec<String> {
    let (url, resolve) = if port_in_resolve {
        (
            "https://erp.test".to_string(),
            format!("erp.test:127.0.0.1:{}", r.https.port()),
        )
    } else {
        (
            format!("https://erp.test:{}", r.https.port()),
            "erp.test:127.0.0.1".to_string(),
        )
    };
    vec![
        url,
        "--resolve".into(),
        resolve,
        "--ca".into(),
        r.ca_path().display().to_string(),
        "--http-port".into(),
        r.http.port().to_string(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_through_rampart_passes_every_check() {
    let fixture = OdooFixture::start().await;
    let rampart = Rampart::start(Setup::site(Site::new("erp.test", &fixture))).await;
    let (code, checks, stderr) = verify(rampart_args(&rampart, false)).await;
    let names: Vec<&str> = checks.keys().map(String::as_str).collect();
    let mut expected = ALL_CHECKS.to_vec();
    expected.sort();
    assert_eq!(names, expected, "stderr: {stderr}");
    let not_pass: Vec<String> = checks
        .iter()
        .filter(|(_, (s, _))| s != "PASS")
        .map(|(k, (s, d))| format!("{s} {k}: {d}"))
        .collect();
    assert!(
        not_pass.is_empty(),
        "not PASS:\n{}\nstderr: {stderr}",
        not_pass.join("\n")
    );
    assert_eq!(code, 0, "stderr: {stderr}");

    // What was seen is what rampart does, not a guess.
    // rustls answers an old ClientHello with a fatal alert (handshake_failure).
    assert!(
        status(&checks, "tls1.0-refused")
            .1
            .starts_with("refused: fatal alert"),
        "{}",
        table(&checks)
    );
    assert!(
        status(&checks, "http-redirect").1.contains("308"),
        "{}",
        table(&checks)
    );
    assert!(
        status(&checks, "server-header").1.contains("rampart"),
        "{}",
        table(&checks)
    );
    // The database-manager probes were answered by rampart; none reached
    // the fixture, in any spelling. The websocket and health did reach it.
    let reached: Vec<String> = fixture
        .requests()
        .iter()
        .map(|r| r.target.clone())
        .filter(|t| {
            let l = t.to_ascii_lowercase();
            l.contains("database") || l.contains("%64atabase") || l.contains("/db")
        })
        .collect();
    assert!(reached.is_empty(), "reached the fixture: {reached:?}");
    assert!(
        fixture
            .requests()
            .iter()
            .any(|r| r.port == rampart_testkit::Port::Websocket
                && r.target.starts_with("/websocket")),
        "the websocket upgrade did not reach the evented port"
    );
    // (rampart polls /web/health itself; these are verify's, forwarded.)
    let forwarded_health = fixture
        .requests()
        .iter()
        .filter(|r| {
            r.target == "/web/health"
                && r.header("user-agent")
                    .is_some_and(|ua| ua.starts_with("rampart-verify/"))
        })
        .count();
    assert_eq!(
        forwarded_health, 2,
        "GET /web/health for the headers and the health check"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_of_the_bare_upstream_fails_what_it_must() {
    let fixture = OdooFixture::start().await;
    let url = format!("http://127.0.0.1:{}", fixture.http_addr.port());
    let (code, checks, stderr) = verify(vec![url]).await;
    assert_eq!(code, 1, "{}\nstderr: {stderr}", table(&checks));
    let fails = |name: &str, needle: &str| {
        let (s, d) = status(&checks, name);
        assert_eq!(s, "FAIL", "{name}: {d}\n{}", table(&checks));
        assert!(d.contains(needle), "{name}: {d:?} lacks {needle:?}");
    };
    // No TLS at all.
    for name in [
        "tls1.0-refused",
        "tls1.2-accepted",
        "tls1.3-accepted",
        "cert-chain",
        "cert-expiry",
    ] {
        fails(name, "no TLS");
    }
    // Werkzeug answers itself; plain HTTP is served, not redirected.
    fails("server-header", "Werkzeug");
    fails("http-redirect", "→ 200");
    // Odoo's page headers alone: no HSTS, no Referrer-Policy; /web/health bare.
    fails("hsts /web/login", "no Strict-Transport-Security");
    fails("referrer-policy /web/login", "no Referrer-Policy");
    assert_eq!(status(&checks, "frame-options /web/login").0, "PASS");
    for name in ["nosniff", "frame-options", "csp", "hsts", "referrer-policy"] {
        let (s, _) = status(&checks, &format!("{name} /web/health"));
        assert_eq!(s, "FAIL", "{name} /web/health\n{}", table(&checks));
    }
    fails("session-cookie", "missing Secure, SameSite");
    // The database manager and the db service answer.
    fails("db-manager GET /web/database/manager", "master_pwd");
    fails("db-manager GET /web/database/selector", "master_pwd");
    fails("db-manager POST /jsonrpc db.list", "[\"demo1\"]");
    // Odoo's HTTP port cannot upgrade websockets (that is the gevent port).
    fails("websocket", "500");
    // Health itself is fine when it comes from Odoo.
    assert_eq!(status(&checks, "health").0, "PASS", "{}", table(&checks));
    assert!(fixture.count("/web/database/manager") >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_catches_a_database_manager_opened_for_everyone() {
    let fixture = OdooFixture::start().await;
    let site =
        Site::new("erp.test", &fixture).extra("[site.database_manager]\nallow = [\"127.0.0.0/8\"]");
    let rampart = Rampart::start(Setup::site(site)).await;
    let (code, checks, stderr) = verify(rampart_args(&rampart, true)).await;
    assert_eq!(code, 1, "{}\nstderr: {stderr}", table(&checks));
    for name in [
        "db-manager GET /web/database/manager",
        "db-manager GET /web/database/selector",
        "db-manager POST /jsonrpc db.list",
    ] {
        assert_eq!(
            status(&checks, name).0,
            "FAIL",
            "{name}\n{}",
            table(&checks)
        );
    }
    // Everything else is still rampart's doing and passes.
    for name in [
        "cert-chain",
        "hsts /web/health",
        "session-cookie",
        "tls1.1-refused",
        "http-redirect",
        "websocket",
        "http2",
    ] {
        assert_eq!(
            status(&checks, name).0,
            "PASS",
            "{name}\n{}",
            table(&checks)
        );
    }
}

/// `openssl s_server` limited to TLS 1.0, with a self-signed certificate
/// for erp.test; killed on drop.
struct OldTlsServer {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl OldTlsServer {
    async fn start() -> OldTlsServer {
        let dir = TempDir::new("verify-oldtls");
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let made = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=erp.test",
            ])
            .args(["-addext", "subjectAltName=DNS:erp.test", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl must be installed (scripts/test.sh installs it)");
        assert!(made.success(), "openssl req failed");
        let port = free_port();
        let child = Command::new("openssl")
            .args([
                "s_server",
                "-quiet",
                "-www",
                "-tls1",
                "-cipher",
                "ALL:@SECLEVEL=0",
            ])
            .args(["-accept", &format!("127.0.0.1:{port}"), "-cert"])
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start openssl s_server");
        wait_for_port(
            format!("127.0.0.1:{port}").parse().unwrap(),
            Duration::from_secs(10),
        )
        .await
        .expect("openssl s_server did not listen");
        OldTlsServer {
            child,
            port,
            _dir: dir,
        }
    }

    fn dir(&self) -> &Path {
        self._dir.path()
    }
}

impl Drop for OldTlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_sees_a_server_that_still_accepts_tls_1_0() {
    let server = OldTlsServer::start().await;
    let (code, checks, stderr) = verify(vec![
        format!("https://erp.test:{}", server.port),
        "--resolve".into(),
        "erp.test:127.0.0.1".into(),
        "--ca".into(),
        server.dir().join("cert.pem").display().to_string(),
        "--http-port".into(),
        free_port().to_string(),
    ])
    .await;
    assert_eq!(code, 1, "{}\nstderr: {stderr}", table(&checks));
    let (s, d) = status(&checks, "tls1.0-refused");
    assert_eq!(
        (s.as_str(), d.as_str()),
        ("FAIL", "accepted: ServerHello choosing TLS 1.0")
    );
    // Limited to 1.0, it must refuse 1.1 and everything rustls speaks.
    assert_eq!(
        status(&checks, "tls1.1-refused").0,
        "PASS",
        "{}",
        table(&checks)
    );
    assert_eq!(
        status(&checks, "tls1.2-accepted").0,
        "FAIL",
        "{}",
        table(&checks)
    );
    // Nothing listens on the plain port.
    assert_eq!(
        status(&checks, "http-redirect").0,
        "FAIL",
        "{}",
        table(&checks)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_bad_usage_and_unreachable_targets() {
    let missing_ca = TempDir::new("verify-usage");
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (vec!["erp.test".into()], 2, "must start with https://"),
        (
            vec![
                "https://erp.test".into(),
                "--resolve".into(),
                "other.test:127.0.0.1".into(),
            ],
            2,
            "not the URL's host",
        ),
        (
            vec![
                format!("https://127.0.0.1:{}", free_port()),
                "--ca".into(),
                missing_ca.path().join("nope.pem").display().to_string(),
            ],
            2,
            "nope.pem",
        ),
        (
            vec![format!("https://127.0.0.1:{}", free_port())],
            3,
            "cannot connect to 127.0.0.1",
        ),
    ];
    for (args, want, needle) in cases {
        let (code, checks, stderr) = verify(args.clone()).await;
        assert_eq!(code, want, "{args:?}: {stderr}");
        assert!(
            stderr.contains(needle),
            "{args:?}: stderr {stderr:?} lacks {needle:?}"
        );
        assert!(checks.is_empty(), "{args:?} printed checks");
    }
}
