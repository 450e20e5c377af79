//! Issue 2, behaviours 10 and 11: access log, reload (SIGHUP and
//! `rampart reload`), log reopening, graceful SIGTERM, `rampart check`,
//! and the admin listener's /metrics and /healthz.

mod common;

use std::time::Duration;

use common::{Rampart, Setup, Site, TempDir, run_cli};
use rampart_testkit::{OdooFixture, TestClient, raw_exchange};

/// The 1-based line of `needle` in `text`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .expect("needle in config")
        + 1
}

/// A config text for `setup` with a bad `max_body` inside the first site; (text, its line).
fn with_bad_value(r: &Rampart, setup: &Setup) -> (String, usize) {
    let mut bad = setup.clone();
    bad.sites[0].extra.push_str("max_body = \"lots\"\n");
    let text = r.config_text(&bad);
    let line = line_of(&text, "max_body = \"lots\"");
    (text, line)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_combined_names_client_site_upstream_status_bytes() {
    let fixture = OdooFixture::start().await;
    let r = Rampart::start(Setup::site(Site::new("erp.test", &fixture))).await;
    let res = r
        .client
        .request(
            "GET",
            &r.url("erp.test", "/web/login?redirect=%2Fodoo"),
            &[
                ("user-agent", "edge-test/1.0"),
                ("x-forwarded-for", "6.6.6.6"),
            ],
            vec![],
        )
        .await;
    assert_eq!(res.status, 200);
    let line = r.wait_access_line(&["/web/login?redirect=%2Fodoo"]).await;
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
    assert!(
        line.contains(&format!(
            "\"GET /web/login?redirect=%2Fodoo HTTP/1.1\" 200 {} ",
            res.body.len()
        )),
        "{line}"
    );
    assert!(line.contains("\"edge-test/1.0\""), "{line}");
    assert!(line.contains("site=erp.test"), "{line}");
    assert!(
        line.contains(&format!("upstream={}", fixture.http_addr)),
        "{line}"
    );
    assert!(!line.contains("6.6.6.6"), "{line}");
    // Rampart's own answers are logged too, without an upstream.
    let res = r.get("erp.test", "/web/database/manager").await;
    assert_eq!(res.status, 302);
    let line = r.wait_access_line(&["/web/database/manager"]).await;
    assert!(line.contains("\" 302 "), "{line}");
    assert!(line.contains("upstream=-"), "{line}");
    // Quotes and backslashes in the target, Referer and User-Agent cannot
    // forge fields: the line still splits into exactly what was sent.
    let raw = raw_exchange(
        r.https,
        Some((&r.ca_path(), "erp.test")),
        b"GET /x%22y\"\\z HTTP/1.1\r\nHost: erp.test\r\nReferer: ref\"erer\r\n\
          User-Agent: ua\" 200 1 \"-\" \"forged\\\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    let status = common::raw_status(&raw);
    assert_ne!(status, 0, "{}", String::from_utf8_lossy(&raw));
    let line = r.wait_access_line(&["/x%22y"]).await;
    let f = CombinedLine::parse(&line);
    assert_eq!(f.client, "127.0.0.1", "{line}");
    assert_eq!(f.request, "GET /x%22y\"\\z HTTP/1.1", "{line}");
    assert_eq!(f.status, status.to_string(), "{line}");
    assert_eq!(f.referer, "ref\"erer", "{line}");
    assert_eq!(f.user_agent, "ua\" 200 1 \"-\" \"forged\\", "{line}");
    let keys: Vec<&str> = f
        .rest
        .split(' ')
        .map(|kv| kv.split_once('=').map_or(kv, |(k, _)| k))
        .collect();
    // Rampart's own answer (400) adds its reason, the last field.
    let mut want = vec!["site", "upstream", "rt", "urt", "rid"];
    if status == 400 {
        want.push("reason");
    }
    assert_eq!(keys, want, "{line}");
    // Refused as ambiguous (400, before any site is chosen) or served.
    let site = if status == 400 {
        "site=- "
    } else {
        "site=erp.test "
    };
    assert!(f.rest.starts_with(site), "{line}");
    let lines = r.access_log_text();
    assert_eq!(
        lines.lines().filter(|l| l.contains("/x%22y")).count(),
        1,
        "{lines}"
    );
}

/// A `combined` access-log line split the way log tools read it:
/// backslash-escaped quoted fields, the rest as written.
#[derive(Debug)]
struct CombinedLine {
    client: String,
    request: String,
    status: String,
    referer: String,
    user_agent: String,
    rest: String,
}

impl CombinedLine {
    fn parse(line: &str) -> CombinedLine {
        fn quoted(s: &str, line: &str) -> (String, String) {
            let mut chars = s
                .strip_prefix('"')
                .unwrap_or_else(|| panic!("no quoted field at {s:?} in {line}"))
                .chars();
            let mut out = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => out.push(chars.next().expect("escape at the end")),
                    '"' => return (out, chars.as_str().to_string()),
                    c => out.push(c),
                }
            }
            panic!("unterminated quoted field in {line}");
        }
        let (client, s) = line.split_once(" - - [").expect("client - - [");
        let (_, s) = s.split_once("] ").expect("time ]");
        let (request, s) = quoted(s, line);
        let mut it = s.trim_start().splitn(3, ' ');
        let status = it.next().unwrap().to_string();
        let _bytes = it.next().unwrap();
        let s = it.next().unwrap();
        let (referer, s) = quoted(s, line);
        let (user_agent, s) = quoted(s.trim_start(), line);
        CombinedLine {
            client: client.to_string(),
            request,
            status,
            referer,
            user_agent,
            rest: s.trim().to_string(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_json() {
    let fixture = OdooFixture::start().await;
    let mut setup = Setup::site(Site::new("erp.test", &fixture));
    setup.log_format = Some("json".into());
    let r = Rampart::start(setup).await;
    let res = r
        .client
        .request_h2("GET", &r.url("erp.test", "/web/login"), &[], vec![])
        .await;
    assert_eq!(res.status, 200);
    let line = r.wait_access_line(&["/web/login"]).await;
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(v["client"], "127.0.0.1");
    assert_eq!(v["site"], "erp.test");
    assert_eq!(v["upstream"], fixture.http_addr.to_string());
    assert_eq!(v["status"], 200);
    assert_eq!(v["bytes"], res.body.len() as u64);
    assert_eq!(v["method"], "GET");
    assert_eq!(v["version"], "HTTP/2.0");
    assert!(v["duration_ms"].as_f64().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_a_new_config_and_keeps_in_flight_requests() {
    let old = OdooFixture::start().await;
    let new = OdooFixture::start().await;
    let setup = Setup::site(Site::new("erp.test", &old));
    let r = Rampart::start(setup.clone()).await;
    // Not served yet: no certificate for that name.
    let before = r
        .client
        .try_request("GET", &r.url("new.test", "/web/login"), &[], vec![], false)
        .await;
    assert!(before.is_err(), "{before:?}");

    let client = TestClient::new(&r.ca_path());
    let url = r.url("erp.test", "/slow?secs=2");
    let slow = tokio::spawn(async move { client.get(&url).await });
    while old.count("/slow") == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // An invalid config first: refused, reported with file:line, old one kept.
    let (bad, line) = with_bad_value(&r, &setup);
    r.write_config_text(&bad);
    r.signal("HUP");
    let err = r.wait_stderr_line(&["reload refused"]).await;
    assert!(
        err.contains(&format!("{}:{line}", r.config_path.display())),
        "{err}"
    );
    assert!(err.contains("max_body"), "{err}");
    assert_eq!(r.get("erp.test", "/web/login").await.status, 200);
    assert_eq!(old.count("/web/login"), 1);

    // Then a good one: another upstream and a new host name.
    let mut changed = Setup::site(Site::new("erp.test", &new));
    changed.sites[0].hosts.push("new.test".into());
    r.write_config(&changed);
    r.signal("HUP");
    r.wait_stderr_line(&["config reloaded"]).await;
    assert_eq!(r.get("erp.test", "/web/login").await.status, 200);
    assert_eq!(
        new.count("/web/login"),
        1,
        "the new upstream got no request"
    );
    assert_eq!(old.count("/web/login"), 1);
    assert_eq!(r.get("new.test", "/web/login").await.status, 200);

    let res = slow.await.unwrap();
    assert_eq!(
        res.status, 200,
        "the in-flight request did not survive the reload"
    );
    assert!(res.text().contains("slept 2"), "{}", res.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rampart_reload_command_goes_through_the_admin_api() {
    let old = OdooFixture::start().await;
    let new = OdooFixture::start().await;
    let setup = Setup::site(Site::new("erp.test", &old));
    let r = Rampart::start(setup.clone()).await;
    let config = r.config_path.to_str().unwrap().to_string();

    let (bad, line) = with_bad_value(&r, &setup);
    r.write_config_text(&bad);
    let (code, _, err) = tokio::task::block_in_place(|| run_cli(&["reload", "--config", &config]));
    assert_ne!(code, 0, "an invalid config was reported as reloaded");
    assert!(err.contains(&format!("{config}:{line}")), "{err}");
    assert!(err.contains("max_body"), "{err}");
    assert_eq!(r.get("erp.test", "/web/login").await.status, 200);
    assert_eq!(old.count("/web/login"), 1);

    r.write_config(&Setup::site(Site::new("erp.test", &new)));
    let (code, out, err) =
        tokio::task::block_in_place(|| run_cli(&["reload", "--config", &config]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("reloaded"), "{out}");
    assert_eq!(r.get("erp.test", "/web/login").await.status, 200);
    assert_eq!(new.count("/web/login"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr1_reopens_the_access_log() {
    let fixture = OdooFixture::start().await;
    let r = Rampart::start(Setup::site(Site::new("erp.test", &fixture))).await;
    r.get("erp.test", "/web/login?before=1").await;
    r.wait_access_line(&["before=1"]).await;
    let rotated = r.access_log.with_extension("log.1");
    std::fs::rename(&r.access_log, &rotated).unwrap();
    r.signal("USR1");
    r.wait_stderr_line(&["reopening log files"]).await;
    // The reopen is queued behind lines; a request after it lands in the new file.
    let mut found = false;
    for i in 0..50 {
        r.get("erp.test", &format!("/web/login?after={i}")).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        if r.access_log.exists() {
            found = true;
            break;
        }
    }
    assert!(found, "no new access log after SIGUSR1");
    let new_text = common::wait_line(&r.access_log, &["after="]).await;
    assert!(new_text.contains("after="));
    let old_text = std::fs::read_to_string(&rotated).unwrap();
    assert!(old_text.contains("before=1"));
    assert!(
        !std::fs::read_to_string(&r.access_log)
            .unwrap()
            .contains("before=1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_requests_and_tunnels_then_exits() {
    let fixture = OdooFixture::start().await;
    let mut setup = Setup::site(Site::new("erp.test", &fixture));
    setup.listen = "shutdown_grace = \"5s\"".into();
    let mut r = Rampart::start(setup).await;

    let client = TestClient::new(&r.ca_path());
    let url = r.url("erp.test", "/slow?secs=2");
    let slow = tokio::spawn(async move { client.get(&url).await });
    // A websocket that stays open (the raw exchange reads for 30 s).
    let (https, ca) = (r.https, r.ca_path());
    let ws = tokio::spawn(async move {
        raw_exchange(
            https,
            Some((&ca, "erp.test")),
            b"GET /websocket HTTP/1.1\r\nHost: erp.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: https://erp.test\r\n\r\n",
            Duration::from_secs(30),
        )
        .await
    });
    while fixture.count("/slow") == 0 || fixture.count("/websocket") == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    r.signal("TERM");

    let res = slow.await.unwrap();
    assert_eq!(
        res.status,
        200,
        "the in-flight request was cut by SIGTERM: {}",
        res.text()
    );
    // Grace 5 s, then open tunnels are closed: the process ends well within 20 s.
    exits_cleanly_after_sigterm(&mut r);
    let raw = ws.await.unwrap();
    assert!(
        String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    assert!(r.stderr().contains("shutting down"), "{}", r.stderr());
}

/// A browser sends its requests as streams of one HTTP/2 connection: one
/// that waits on Odoo must not hold up the others on its connection, and
/// a SIGTERM's drain must still carry it to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_of_one_connection_run_side_by_side_and_drain_on_sigterm() {
    let fixture = OdooFixture::start().await;
    let mut setup = Setup::site(Site::new("erp.test", &fixture));
    setup.listen = "shutdown_grace = \"10s\"".into();
    let mut r = Rampart::start(setup).await;
    let client = TestClient::new(&r.ca_path());
    let conn = client
        .h2_connection(&r.url("erp.test", "/"))
        .await
        .expect("an HTTP/2 connection");
    let slow = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.get("/slow?secs=3").await })
    };
    while fixture.count("/slow") == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut fast = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let conn = conn.clone();
        fast.spawn(async move { conn.get("/web/login").await });
    }
    while let Some(res) = fast.join_next().await {
        let res = res.unwrap().expect("a login page on the same connection");
        assert_eq!(res.status, 200, "{}", res.text());
        assert_eq!(res.version, "HTTP/2.0");
    }
    assert!(
        !slow.is_finished(),
        "the slow stream ended before the others were answered"
    );
    r.signal("TERM");
    let res = slow.await.unwrap().expect("the slow stream's answer");
    assert_eq!(res.status, 200, "cut by SIGTERM: {}", res.text());
    exits_cleanly_after_sigterm(&mut r);
}

/// The process ends within 20 s of a SIGTERM, with status 0.
fn exits_cleanly_after_sigterm(r: &mut Rampart) {
    let status = tokio::task::block_in_place(|| r.wait_exit(Duration::from_secs(20)));
    let status = status
        .unwrap_or_else(|| panic!("rampart still running 20 s after SIGTERM:\n{}", r.stderr()));
    assert!(status.success(), "{status}: {}", r.stderr());
}

#[test]
fn check_names_file_line_and_key_and_exits_2() {
    let dir = TempDir::new("check");
    let path = dir.path().join("rampart.toml");
    let text = "state_dir = \"/tmp/x\"\n\n[listen]\nhttps = \"127.0.0.1:8443\"\n\n[[site]]\nhosts = [\"erp.test\"]\nmax_body = \"lots\"\n";
    std::fs::write(&path, text).unwrap();
    let p = path.to_str().unwrap();
    let (code, out, err) = run_cli(&["check", "--config", p]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains(&format!("{p}:8")), "{err}");
    assert!(err.contains("max_body"), "{err}");

    // A semantic error found after parsing also names the key's line.
    let text = "[[site]]\nhosts = [\"erp.test\"]\nodoo = [\"http://127.0.0.1:8069/\"]\n";
    std::fs::write(&path, text).unwrap();
    let (code, _, err) = run_cli(&["check", "--config", p]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&format!("{p}:3")), "{err}");
    assert!(err.contains("odoo"), "{err}");

    // Unknown key: a typo is an error, not silently ignored.
    std::fs::write(
        &path,
        "[[site]]\nhosts = [\"erp.test\"]\nmax_bdy = \"1MiB\"\n",
    )
    .unwrap();
    let (code, _, err) = run_cli(&["check", "--config", p]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!("{p}:3")) && err.contains("max_bdy"),
        "{err}"
    );

    // A good file passes.
    std::fs::write(&path, "[[site]]\nhosts = [\"erp.test\"]\n").unwrap();
    let (code, out, err) = run_cli(&["check", "--config", p]);
    assert_eq!(code, 0, "{out}{err}");
}

/// Issue 9: an overflowing duration made `rampart check` panic, and a
/// huge number of days wrapped to a short time; both are errors naming
/// the key and the value.
#[test]
fn check_refuses_overflowing_durations() {
    let dir = TempDir::new("check-overflow");
    let path = dir.path().join("rampart.toml");
    let p = path.to_str().unwrap();
    for value in [
        "18446744073709551615s18446744073709551615s",
        "999999999999999999d",
    ] {
        let text = format!("[[site]]\nhosts = [\"erp.test\"]\ntimeout = \"{value}\"\n");
        std::fs::write(&path, text).unwrap();
        let (code, out, err) = run_cli(&["check", "--config", p]);
        assert_eq!(code, 2, "{value}: {out}{err}");
        assert!(!err.contains("panicked"), "{value}: {err}");
        assert!(
            err.contains(&format!("{p}:3")) && err.contains("too large"),
            "{value}: {err}"
        );
    }
}

fn metric_value(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(name) && labels.iter().all(|x| l.contains(x)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_healthz() {
    let fixture = OdooFixture::start().await;
    let r = Rampart::start(Setup::site(Site::new("erp.test", &fixture))).await;
    for _ in 0..3 {
        assert_eq!(r.get("erp.test", "/web/login").await.status, 200);
    }
    assert_eq!(r.get("erp.test", "/nope").await.status, 404);

    // A websocket held open while /metrics is read.
    let (https, ca) = (r.https, r.ca_path());
    let ws = tokio::spawn(async move {
        raw_exchange(
            https,
            Some((&ca, "erp.test")),
            b"GET /websocket HTTP/1.1\r\nHost: erp.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: https://erp.test\r\n\r\n",
            Duration::from_secs(3),
        )
        .await
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m = r.metrics().await;
        if metric_value(&m, "rampart_websocket_tunnels_open", &[]) == Some(1.0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "tunnel gauge never 1:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ws.await.unwrap();

    let m = r.metrics().await;
    let ok = metric_value(
        &m,
        "rampart_requests_total",
        &["site=\"erp.test\"", "status=\"200\""],
    );
    assert!(ok.is_some_and(|v| v >= 3.0), "requests_total 200:\n{m}");
    let nf = metric_value(
        &m,
        "rampart_requests_total",
        &["site=\"erp.test\"", "status=\"404\""],
    );
    assert_eq!(nf, Some(1.0), "{m}");
    let count = metric_value(&m, "rampart_upstream_response_seconds_count", &["erp.test"]);
    assert!(count.is_some_and(|c| c >= 4.0), "latency histogram:\n{m}");
    assert!(
        m.contains("rampart_upstream_response_seconds_bucket"),
        "{m}"
    );
    let healthy = metric_value(
        &m,
        "rampart_upstream_healthy",
        &[&fixture.http_addr.to_string()],
    );
    assert_eq!(healthy, Some(1.0), "{m}");
    // After the tunnel closed the gauge goes back down.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m = r.metrics().await;
        if metric_value(&m, "rampart_websocket_tunnels_open", &[]) == Some(0.0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "tunnel gauge never back to 0:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let h = r.admin_get("/healthz").await;
    assert_eq!(h.status, 200);
    assert!(
        h.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    let v: serde_json::Value = serde_json::from_slice(&h.body).unwrap();
    assert_eq!(v["status"], "ok");
    // The admin port is not the site: it does not proxy.
    let res = r.admin_get("/web/login").await;
    assert_eq!(res.status, 404);
}
