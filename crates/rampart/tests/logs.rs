//! Issue 15 §7: the request id (made here, or a trusted proxy's when it is
//! well-formed) reaches Odoo as X-Request-ID, comes back to the client on
//! every answer (Rampart's own pages too) and is in the access log, which
//! fail2ban's stock filters still read; `[log] process = "json"` with
//! RAMPART_LOG's per-module filter. Through the real binary.

mod common;

use common::{Rampart, Setup, Site, require_program};
use rampart_testkit::OdooFixture;

const HOST: &str = "erp.test";

fn fresh_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The X-Request-ID Odoo saw on the request to `target` (exactly one).
fn odoo_saw(fixture: &OdooFixture, target: &str) -> String {
    let seen = fixture.requests();
    let req = seen
        .iter()
        .rev()
        .find(|s| s.target == target)
        .unwrap_or_else(|| panic!("Odoo never saw {target}"));
    let ids = req.header_all("x-request-id");
    assert_eq!(ids.len(), 1, "{target}: {ids:?}");
    ids[0].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_request_id_is_replaced_and_the_id_is_everywhere() {
    let fixture = OdooFixture::start().await;
    let r = Rampart::start(Setup::site(Site::new(HOST, &fixture))).await;
    let res = r
        .client
        .request(
            "GET",
            &r.url(HOST, "/echo/rid-1"),
            &[("x-request-id", "attacker-chosen-id")],
            vec![],
        )
        .await;
    let to_odoo = odoo_saw(&fixture, "/echo/rid-1");
    assert_ne!(to_odoo, "attacker-chosen-id");
    assert!(fresh_id(&to_odoo), "{to_odoo}");
    assert_eq!(res.header("x-request-id"), Some(to_odoo.as_str()));
    let line = r
        .wait_access_line(&["/echo/rid-1", &format!("rid={to_odoo}")])
        .await;
    assert!(!line.contains("attacker-chosen-id"), "{line}");

    // Two requests, two ids.
    r.client.get(&r.url(HOST, "/echo/rid-2")).await;
    assert_ne!(odoo_saw(&fixture, "/echo/rid-2"), to_odoo);

    // Rampart's own answer (unknown host: 421) carries one too, logged.
    let res = r.client.get(&r.http_url("other.test", "/web/login")).await;
    assert_eq!(res.status, 421);
    let id = res.header("x-request-id").expect("an id on the 421 page");
    assert!(fresh_id(id), "{id}");
    r.wait_access_line(&[" 421 ", &format!("rid={id}")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxys_well_formed_id_is_kept_others_replaced() {
    let fixture = OdooFixture::start().await;
    let mut setup = Setup::site(Site::new(HOST, &fixture));
    setup.listen = "\n[guard]\ntrusted_proxies = [\"127.0.0.1/32\"]\n".into();
    let r = Rampart::start(setup).await;
    let uuid = "0f8fad5b-d9cb-469f-a165-70867728950e";
    let res = r
        .client
        .request(
            "GET",
            &r.url(HOST, "/echo/trusted"),
            &[("x-request-id", uuid)],
            vec![],
        )
        .await;
    assert_eq!(odoo_saw(&fixture, "/echo/trusted"), uuid);
    assert_eq!(res.header("x-request-id"), Some(uuid));
    r.wait_access_line(&["/echo/trusted", &format!("rid={uuid}")])
        .await;

    let long = "a".repeat(129);
    for (i, bad) in [
        "has space",
        "quote\"d",
        "semi;colon",
        "slash/../x",
        long.as_str(),
    ]
    .into_iter()
    .enumerate()
    {
        let target = format!("/echo/bad-{i}");
        let res = r
            .client
            .request(
                "GET",
                &r.url(HOST, &target),
                &[("x-request-id", bad)],
                vec![],
            )
            .await;
        let got = odoo_saw(&fixture, &target);
        assert!(fresh_id(&got), "{bad:?} → {got}");
        assert_eq!(res.header("x-request-id"), Some(got.as_str()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_stays_readable_by_fail2bans_stock_filters() {
    let fail2ban_regex = require_program("fail2ban-regex", "fail2ban");
    let filter = std::path::Path::new("/etc/fail2ban/filter.d/nginx-botsearch.conf");
    assert!(
        filter.exists(),
        "{} is missing (Debian's fail2ban package)",
        filter.display()
    );
    let fixture = OdooFixture::start().await;
    let r = Rampart::start(Setup::site(Site::new(HOST, &fixture))).await;
    let res = r.get(HOST, "/wp-login.php").await;
    assert_eq!(res.status, 404, "the fixture's answer to an unknown path");
    let line = r.wait_access_line(&["/wp-login.php", "rid="]).await;
    let out = std::process::Command::new(fail2ban_regex)
        .arg(&r.access_log)
        .arg(filter)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Failregex: 1 total"),
        "fail2ban did not match the line:\n{line}\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_log_as_json_with_a_per_module_filter() {
    let fixture = OdooFixture::start().await;
    let mut setup = Setup::site(Site::new(HOST, &fixture));
    setup.log = "process = \"json\"".into();
    setup.env = vec![(
        "RAMPART_LOG".into(),
        "warn,rampart_edge::pipeline=info".into(),
    )];
    let r = Rampart::start(setup).await;
    let res = r.get(HOST, "/web/database/manager").await;
    assert_eq!(res.status, 302);
    r.wait_stderr_line(&["database manager blocked"]).await;
    let stderr = r.stderr();
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let blocked = events
        .iter()
        .find(|e| e["fields"]["message"] == "database manager blocked")
        .unwrap_or_else(|| panic!("{stderr}"));
    assert_eq!(blocked["target"], "rampart_edge::pipeline", "{blocked}");
    assert_eq!(blocked["level"], "INFO");
    assert_eq!(blocked["fields"]["client"], "127.0.0.1");
    assert!(blocked["timestamp"].is_string(), "{blocked}");
    // Other modules' info events are filtered out (`rampart serving` is
    // rampart::cmd::serve's, at info).
    assert!(
        !events
            .iter()
            .any(|e| e["level"] == "INFO" && e["target"] != "rampart_edge::pipeline"),
        "{stderr}"
    );
}
