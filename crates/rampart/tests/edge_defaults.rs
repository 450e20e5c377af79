//! The README's quick start: `rampart serve` with no config file runs on
//! the embedded defaults (HTTPS 127.0.0.1:8443 with a local-CA
//! certificate, HTTP 8080 redirecting, admin 9180, Odoo at 8069/8072),
//! shows a clear 502 page while Odoo is absent and proxies once it is up.
//!
//! Those ports are fixed, so the test re-runs itself in a network namespace
//! of its own (`unshare --net`, loopback brought up with `ip`): there the
//! ports are free by construction, whatever else runs on the machine, and
//! it never skips.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{TempDir, require_program};
use rampart_testkit::{FixtureOptions, OdooFixture, TestClient, wait_for_port};

/// Set in the re-run inside the private network namespace.
const IN_NETNS: &str = "RAMPART_TEST_IN_NETNS";

/// Kills the child on drop, whatever the test's outcome.
struct Proc(std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        for _ in 0..100 {
            if self.0.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_without_config_uses_the_embedded_defaults() {
    if std::env::var_os(IN_NETNS).is_none() {
        let unshare = require_program("unshare", "util-linux");
        let ip = require_program("ip", "iproute2");
        let test = std::env::current_exe().expect("the test binary's path");
        let out = Command::new(unshare)
            .args([
                "--net",
                "--",
                "sh",
                "-c",
                "\"$0\" link set lo up && exec \"$@\"",
            ])
            .arg(ip)
            .arg(test)
            .args([
                "serve_without_config_uses_the_embedded_defaults",
                "--exact",
                "--nocapture",
            ])
            .env(IN_NETNS, "1")
            .stdin(Stdio::null())
            .output()
            .expect("run the test again in a private network namespace");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // Passed, and really ran (a renamed test would match nothing).
        assert!(
            out.status.success() && text.contains("test result: ok. 1 passed"),
            "the test failed in its network namespace ({}):\n{text}",
            out.status
        );
        return;
    }
    let dir = TempDir::new("defaults");
    let state = dir.path().join("state");
    let stderr = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
    let stdout = std::fs::File::create(dir.path().join("stdout.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_rampart"))
        .arg("serve")
        .env_remove("RAMPART_CONFIG")
        // Tests run as root, whose default state dir is /var/lib/rampart.
        .env("RAMPART_STATE_DIR", &state)
        .env("RAMPART_LOG", "info")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("start rampart");
    let mut proc = Proc(child);
    let read_stderr = || std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
    for port in [8443, 8080, 9180] {
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        if wait_for_port(addr, Duration::from_secs(30)).await.is_err() {
            let exited = proc.0.try_wait().ok().flatten();
            panic!(
                "rampart did not listen on {addr} (exited: {exited:?}):\n{}",
                read_stderr()
            );
        }
    }
    let ca = state.join("ca").join("root.pem");
    assert!(ca.is_file(), "no local CA at {}", ca.display());
    let client = TestClient::new(&ca);

    // Odoo absent: a clear 502 page at once.
    let res = client.get("https://localhost:8443/web/login").await;
    assert_eq!(res.status, 502, "{}", res.text());
    assert!(
        res.text().contains("Odoo is not answering"),
        "{}",
        res.text()
    );
    assert!(res.header("content-type").unwrap().starts_with("text/html"));

    // Plain HTTP on 8080 redirects to 8443.
    let res = TestClient::new_plain()
        .get("http://localhost:8080/web/login?x=1")
        .await;
    assert_eq!(res.status, 308);
    assert_eq!(
        res.header("location"),
        Some("https://localhost:8443/web/login?x=1")
    );

    // The admin listener.
    let res = TestClient::new_plain()
        .get("http://127.0.0.1:9180/healthz")
        .await;
    assert_eq!(res.status, 200);

    // Odoo comes up on its default ports: proxied, no restart needed.
    let fixture = OdooFixture::start_with(FixtureOptions {
        http_bind: Some(([127, 0, 0, 1], 8069).into()),
        ws_bind: Some(([127, 0, 0, 1], 8072).into()),
        ..FixtureOptions::default()
    })
    .await;
    let res = client.get("https://localhost:8443/web/login").await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert!(
        res.header("set-cookie")
            .is_some_and(|c| c.contains("Secure"))
    );
    assert_eq!(fixture.count("/web/login"), 1);
    let echoed = rampart_testkit::websocket_echo(
        ([127, 0, 0, 1], 8443).into(),
        Some((&ca, "localhost")),
        "localhost:8443",
        "/websocket",
        Some("https://localhost:8443"),
        "defaults",
    )
    .await
    .expect("websocket on the default ports");
    assert_eq!(echoed, "defaults");
    // The default access log goes to standard output.
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(proc);
    let out = std::fs::read_to_string(dir.path().join("stdout.log")).unwrap();
    assert!(
        out.contains("\"GET /web/login HTTP/1.1\" 200"),
        "stdout: {out}"
    );
}
