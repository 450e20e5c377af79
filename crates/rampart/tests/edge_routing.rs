//! Issue 2, behaviours 3 and 4: the database manager cannot be reached by
//! any spelling from outside the allow-list; websocket and long-polling go
//! to the evented port; several Odoo upstreams are balanced and health-checked.

mod common;

use std::time::Duration;

use common::{Rampart, Setup, Site, raw_status};
use rampart_testkit::{OdooFixture, Port, raw_exchange, websocket_echo};

/// Request targets that Odoo (werkzeug) or some parser could read as the
/// database manager.
const MANAGER_SPELLINGS: &[&str] = &[
    "/web/database/manager",
    "/web/database/selector",
    "/web/database/list",
    "/web/database/backup",
    "/web/database/drop",
    "/web/database/restore",
    "/web/database/create",
    "/web/database/",
    "/web/database",
    "/web/%64atabase/manager",
    "/web/%2564atabase/manager",
    "/web/%252564atabase/manager",
    "/%77eb/database/manager",
    "/web%2fdatabase/manager",
    "/web%2Fdatabase%2Fmanager",
    "/web%252fdatabase/manager",
    "//web/database/manager",
    "/web//database/manager",
    "/web/database//manager",
    "/./web/database/manager",
    "/web/./database/manager",
    "/web/static/../database/manager",
    "/foo/../web/database/manager",
    "/web/static/%2e%2e/database/manager",
    "/web/static/%252e%252e/database/manager",
    "/WEB/DATABASE/MANAGER",
    "/Web/Database/Manager",
    "/web/database;x=1/manager",
    "/web;a/database/manager",
    "/web/database/manager;jsessionid=1",
    "/web\\database\\manager",
    "/web/database%5cmanager",
    "/web%5cdatabase/manager",
    "/web/database/manager/",
    "/web/database/manager?x=/web/login",
    "/web/database/manager#frag",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_manager_is_unreachable_by_any_spelling() {
    let fixture = OdooFixture::start().await;
    let r = Rampart::start(Setup::site(Site::new("erp.test", &fixture))).await;
    let ca = r.ca_path();

    for target in MANAGER_SPELLINGS {
        // Raw, so the target reaches Rampart exactly as written.
        let req = format!("GET {target} HTTP/1.1\r\nHost: erp.test\r\nConnection: close\r\n\r\n");
        let raw = raw_exchange(
            r.https,
            Some((&ca, "erp.test")),
            req.as_bytes(),
            Duration::from_secs(10),
        )
        .await;
        let status = raw_status(&raw);
        let text = String::from_utf8_lossy(&raw);
        assert!(
            status == 302 || status == 400 || status == 404,
            "{target}: answered {status}:\n{text}"
        );
        if status == 302 {
            assert!(
                text.to_ascii_lowercase().contains("location: /web/login"),
                "{target}: 302 not to /web/login:\n{text}"
            );
        }
        assert!(!text.contains("UPSTREAM-REACHED"), "{target}: {text}");
        // The real property: nothing Odoo would route to the manager (werkzeug's decoded path).
        assert_eq!(
            fixture.count_path("/web/database"),
            0,
            "{target} reached Odoo: {:?}",
            fixture.requests().last()
        );
    }
    // The plain spelling is the redirect a user sees, over h1 and h2.
    let res = r.get("erp.test", "/web/database/manager").await;
    assert_eq!(res.status, 302);
    assert_eq!(res.header("location"), Some("/web/login"));
    let res = r
        .client
        .request_h2(
            "GET",
            &r.url("erp.test", "/web/%64atabase/manager"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(res.status, 302, "h2: {}", res.text());
    // A POST (database drop form) too.
    let res = r
        .client
        .request(
            "POST",
            &r.url("erp.test", "/web/database/drop"),
            &[("content-type", "application/x-www-form-urlencoded")],
            b"master_pwd=admin&name=demo1".to_vec(),
        )
        .await;
    assert_eq!(res.status, 302);

    // Absolute-form request target naming the manager.
    let raw = raw_exchange(
        r.https,
        Some((&ca, "erp.test")),
        b"GET https://erp.test/web/database/manager HTTP/1.1\r\nHost: erp.test\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    let status = raw_status(&raw);
    assert!(
        status == 302 || status == 400,
        "absolute-form: {}",
        String::from_utf8_lossy(&raw)
    );

    // The db service over XML-RPC.
    for path in [
        "/xmlrpc/2/db",
        "/xmlrpc/db",
        "/xmlrpc//2/db",
        "/XMLRPC/2/DB",
        "/xmlrpc/2/%64b",
    ] {
        let res = r
            .client
            .request(
                "POST",
                &r.url("erp.test", path),
                &[("content-type", "text/xml")],
                b"<?xml version='1.0'?><methodCall><methodName>list</methodName><params></params></methodCall>".to_vec(),
            )
            .await;
        assert!(
            res.status == 403 || res.status == 302,
            "{path}: {} {}",
            res.status,
            res.text()
        );
    }

    // The db service over JSON-RPC, however the body spells it.
    let bodies: &[&str] = &[
        r#"{"jsonrpc":"2.0","method":"call","params":{"service":"db","method":"list","args":[]},"id":1}"#,
        r#"{"jsonrpc":"2.0","method":"call","params":{"service":"\u0064b","method":"drop","args":["admin","demo1"]},"id":2}"#,
        r#"{"jsonrpc":"2.0","method":"call","params":{"service":"DB","method":"list","args":[]},"id":3}"#,
        r#"{"jsonrpc":"2.0","method":"call","params":{"method":"list","service":"db"},"id":4}"#,
        r#"{"params":{"service":"db","method":"list"},"params":{"service":"db"}}"#,
        r#"{"jsonrpc":"2.0","params":{"service":"db","method":"list","args":[]} "#,
        // Python's json (Odoo) accepts what serde_json rejects: NaN,
        // Infinity, out-of-range numbers; and takes the last duplicate key.
        r#"{"jsonrpc":"2.0","method":"call","params":{"service":"\u0064b","method":"list","args":[],"x":NaN},"id":5}"#,
        r#"{"jsonrpc":"2.0","method":"call","params":{"service":"\u0064b","method":"list","args":[],"x":-Infinity},"id":6}"#,
        r#"{"jsonrpc":"2.0","method":"call","params":{"service":"\u0064b","method":"list","args":[],"x":1e400},"id":7}"#,
        r#"{"jsonrpc":"2.0","method":"call","params":{"service":"common"},"params":{"service":"\u0064b","method":"list","args":[]},"id":8}"#,
        r#"{"jsonrpc":"2.0","method":"call","params":{"\u0073ervice":"\u0064b","method":"list","args":[],"x":NaN},"id":9}"#,
    ];
    for body in bodies {
        for path in ["/jsonrpc", "/JSONRPC", "//jsonrpc", "/jsonrpc/"] {
            let res = r
                .client
                .request(
                    "POST",
                    &r.url("erp.test", path),
                    &[("content-type", "application/json")],
                    body.as_bytes().to_vec(),
                )
                .await;
            assert!(
                res.status == 403 || res.status == 400 || res.status == 404,
                "{path} {body}: {} {}",
                res.status,
                res.text()
            );
            // Whatever the status, the db call must not have reached Odoo's /jsonrpc route
            // (werkzeug's decoded path; `/jsonrpc/` and `//jsonrpc` route there too).
            assert_eq!(
                fixture.count_path("/jsonrpc"),
                0,
                "{path} {body}: reached Odoo: {:?}",
                fixture.requests().last()
            );
        }
    }
    // Chunked, with the service name split across chunks.
    let raw = raw_exchange(
        r.https,
        Some((&ca, "erp.test")),
        b"POST /jsonrpc HTTP/1.1\r\nHost: erp.test\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
17\r\n{\"params\":{\"service\":\"d\r\n\
25\r\nb\",\"method\":\"list\",\"args\":[]},\"id\":1}\r\n0\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(raw_status(&raw), 403, "{}", String::from_utf8_lossy(&raw));
    // JSON-RPC over HTTP/2 too.
    let res = r
        .client
        .request_h2(
            "POST",
            &r.url("erp.test", "/jsonrpc"),
            &[("content-type", "application/json")],
            bodies[1].as_bytes().to_vec(),
        )
        .await;
    assert_eq!(res.status, 403);

    // Nothing database-related ever reached Odoo.
    let seen = fixture.requests();
    for req in &seen {
        let t = req.target.to_ascii_lowercase();
        assert!(
            !t.contains("database") && !t.contains("%64atabase") && !t.contains("db"),
            "reached the fixture: {req:?}"
        );
        assert!(
            !t.contains("jsonrpc"),
            "a db JSON-RPC call reached the fixture: {req:?}"
        );
    }
    assert_eq!(fixture.count_path("/web/database"), 0);

    // Ordinary JSON-RPC (common service, its args mention "db") still works.
    let res = r
        .client
        .request(
            "POST",
            &r.url("erp.test", "/jsonrpc"),
            &[("content-type", "application/json")],
            br#"{"jsonrpc":"2.0","method":"call","params":{"service":"common","method":"version","args":[]},"id":9}"#.to_vec(),
        )
        .await;
    assert_eq!(res.status, 200);
    assert!(res.text().contains("server_version"), "{}", res.text());
    assert_eq!(fixture.count("/jsonrpc"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_manager_is_proxied_for_allowed_clients() {
    let fixture = OdooFixture::start().await;
    let site = Site::new("erp.test", &fixture)
        .extra("[site.database_manager]\nallow = [\"127.0.0.1/32\"]");
    let r = Rampart::start(Setup::site(site)).await;
    let res = r.get("erp.test", "/web/database/manager").await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(fixture.count("/web/database/manager"), 1);
    let res = r
        .client
        .request(
            "POST",
            &r.url("erp.test", "/jsonrpc"),
            &[("content-type", "application/json")],
            br#"{"jsonrpc":"2.0","method":"call","params":{"service":"db","method":"list","args":[]},"id":1}"#.to_vec(),
        )
        .await;
    assert_eq!(res.status, 200);
    assert!(res.text().contains("demo1"), "{}", res.text());
    // The XML-RPC db service too (backup scripts call db.dump there).
    let xml_list = b"<?xml version='1.0'?><methodCall><methodName>list</methodName><params></params></methodCall>";
    for path in ["/xmlrpc/2/db", "/xmlrpc/db"] {
        let res = r
            .client
            .request(
                "POST",
                &r.url("erp.test", path),
                &[("content-type", "text/xml")],
                xml_list.to_vec(),
            )
            .await;
        assert_ne!(res.status, 403, "{path}: {}", res.text());
        assert_eq!(fixture.count(path), 1, "{path}: {:?}", fixture.requests());
    }
}

/// A non-empty allow list is a list, not a switch: a client outside it
/// (127.0.0.1, allowed is only 192.0.2.0/24) is refused on every db route
/// (the manager, XML-RPC `db`, JSON-RPC `db`), over HTTP/1.1 and HTTP/2,
/// and none of those requests reaches Odoo; the rest of /jsonrpc still does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_routes_are_refused_to_clients_outside_a_non_empty_allow_list() {
    let fixture = OdooFixture::start().await;
    let site = Site::new("erp.test", &fixture)
        .extra("[site.database_manager]\nallow = [\"192.0.2.0/24\", \"2001:db8::/32\"]");
    let r = Rampart::start(Setup::site(site)).await;
    let db_list = br#"{"jsonrpc":"2.0","method":"call","params":{"service":"db","method":"list","args":[]},"id":1}"#;
    let xml_list = b"<?xml version='1.0'?><methodCall><methodName>list</methodName><params></params></methodCall>";
    for h2 in [false, true] {
        let send = |method: &'static str, path: &'static str, ctype: &'static str, body: &[u8]| {
            let body = body.to_vec();
            let url = r.url("erp.test", path);
            let client = &r.client;
            async move {
                let headers = [("content-type", ctype)];
                if h2 {
                    client.request_h2(method, &url, &headers, body).await
                } else {
                    client.request(method, &url, &headers, body).await
                }
            }
        };
        let proto = if h2 { "h2" } else { "h1" };
        let res = send("GET", "/web/database/manager", "text/plain", b"").await;
        assert_eq!(res.status, 302, "{proto} manager: {}", res.text());
        assert_eq!(res.header("location"), Some("/web/login"), "{proto}");
        let res = send(
            "POST",
            "/web/database/drop",
            "application/x-www-form-urlencoded",
            b"master_pwd=admin&name=demo1",
        )
        .await;
        assert_eq!(res.status, 302, "{proto} drop: {}", res.text());
        let res = send("POST", "/xmlrpc/2/db", "text/xml", xml_list).await;
        assert_eq!(res.status, 403, "{proto} xmlrpc db: {}", res.text());
        let res = send("POST", "/xmlrpc/db", "text/xml", xml_list).await;
        assert_eq!(res.status, 403, "{proto} xmlrpc db: {}", res.text());
        // Refused by its path alone, not only when the body is an RPC
        // call the guard reads (a GET, a longer path).
        let res = send("GET", "/xmlrpc/2/db", "text/plain", b"").await;
        assert_eq!(res.status, 403, "{proto} GET xmlrpc db: {}", res.text());
        let res = send("POST", "/xmlrpc/2/db/list", "text/xml", xml_list).await;
        assert_eq!(res.status, 403, "{proto} xmlrpc db/list: {}", res.text());
        let res = send("POST", "/jsonrpc", "application/json", db_list).await;
        assert_eq!(res.status, 403, "{proto} jsonrpc db: {}", res.text());
        assert!(!res.text().contains("demo1"), "{proto}: {}", res.text());
    }
    assert_eq!(
        fixture.count("/web/database"),
        0,
        "{:?}",
        fixture.requests()
    );
    assert_eq!(fixture.count("/xmlrpc"), 0, "{:?}", fixture.requests());
    assert_eq!(fixture.count("/jsonrpc"), 0, "{:?}", fixture.requests());
    // Not a blanket block: other services on /jsonrpc still reach Odoo.
    let res = r
        .client
        .request(
            "POST",
            &r.url("erp.test", "/jsonrpc"),
            &[("content-type", "application/json")],
            br#"{"jsonrpc":"2.0","method":"call","params":{"service":"common","method":"version","args":[]},"id":1}"#.to_vec(),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(fixture.count("/jsonrpc"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_and_longpolling_go_to_the_evented_port() {
    let fixture = OdooFixture::start().await;
    let r = Rampart::start(Setup::site(Site::new("erp.test", &fixture))).await;
    let ca = r.ca_path();

    let echoed = websocket_echo(
        r.https,
        Some((&ca, "erp.test")),
        "erp.test",
        "/websocket?version=18.0-1",
        Some("https://erp.test"),
        "hello through the tunnel",
    )
    .await
    .expect("websocket through rampart");
    assert_eq!(echoed, "hello through the tunnel");

    // Without Origin, Odoo's own 400 is passed on.
    let err = websocket_echo(
        r.https,
        Some((&ca, "erp.test")),
        "erp.test",
        "/websocket",
        None,
        "x",
    )
    .await
    .unwrap_err();
    assert!(err.contains(" 400"), "{err}");

    let res = r
        .client
        .request(
            "POST",
            &r.url("erp.test", "/longpolling/poll"),
            &[("content-type", "application/json")],
            br#"{"params":{"channels":[],"last":0}}"#.to_vec(),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text());

    for path in ["/web/login", "/odoo", "/web/health"] {
        let _ = r.get("erp.test", path).await;
    }
    let seen = fixture.requests();
    let ws: Vec<_> = seen.iter().filter(|s| s.port == Port::Websocket).collect();
    let http: Vec<_> = seen.iter().filter(|s| s.port == Port::Http).collect();
    assert!(
        ws.iter().all(|s| s.target.starts_with("/websocket")
            || s.target.starts_with("/longpolling/")
            || s.target == "/web/health"),
        "ws port got: {ws:?}"
    );
    assert!(ws.iter().any(|s| s.target.starts_with("/longpolling/poll")));
    assert_eq!(
        ws.iter()
            .filter(|s| s.target.starts_with("/websocket"))
            .count(),
        2
    );
    assert!(
        http.iter()
            .all(|s| !s.target.starts_with("/websocket") && !s.target.starts_with("/longpolling")),
        "http port got: {http:?}"
    );
    // The upgrade reached Odoo with the headers it checks.
    let up = ws
        .iter()
        .find(|s| s.target.starts_with("/websocket?"))
        .unwrap();
    assert_eq!(
        up.header("upgrade").map(str::to_ascii_lowercase).as_deref(),
        Some("websocket")
    );
    assert_eq!(up.header("origin"), Some("https://erp.test"));
    assert_eq!(up.header("x-forwarded-proto"), Some("https"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_upstreams_balanced_and_health_checked() {
    let one = OdooFixture::start().await;
    let two = OdooFixture::start().await;
    let mut site = Site::new("erp.test", &one);
    site.odoo.push(two.http_addr.to_string());
    let site = site
        .extra("[site.health_check]\ninterval = \"200ms\"\ntimeout = \"1s\"\nfall = 2\nrise = 1");
    let r = Rampart::start(Setup::site(site)).await;

    // Concurrent slow requests spread over both (least connections).
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let client = rampart_testkit::TestClient::new(&r.ca_path());
        let url = r.url("erp.test", "/slow?secs=0.5");
        tasks.push(tokio::spawn(async move { client.get(&url).await.status }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert!(
        one.count("/slow") >= 1 && two.count("/slow") >= 1,
        "one={} two={}",
        one.count("/slow"),
        two.count("/slow")
    );

    // Take `two` out: after the health check notices, everything goes to `one`.
    two.set_healthy(false);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = two.count("/web/login");
    for _ in 0..6 {
        assert_eq!(r.get("erp.test", "/web/login").await.status, 200);
    }
    assert_eq!(
        two.count("/web/login"),
        before,
        "an unhealthy upstream still got requests"
    );
    let m = r.metrics().await;
    let line = m
        .lines()
        .find(|l| {
            l.starts_with("rampart_upstream_healthy") && l.contains(&two.http_addr.to_string())
        })
        .unwrap_or_else(|| panic!("no health gauge for {}:\n{m}", two.http_addr));
    assert!(line.trim_end().ends_with(" 0"), "{line}");

    // Put it back.
    two.set_healthy(true);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let client = rampart_testkit::TestClient::new(&r.ca_path());
        let url = r.url("erp.test", "/slow?secs=0.5");
        tasks.push(tokio::spawn(async move { client.get(&url).await.status }));
    }
    let before = two.count("/slow");
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert!(
        two.count("/slow") > before,
        "the recovered upstream got no requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_upstream_is_taken_out() {
    let one = OdooFixture::start().await;
    let two = OdooFixture::start().await;
    let mut site = Site::new("erp.test", &one);
    site.odoo.push(two.http_addr.to_string());
    let site = site.extra("[site.health_check]\ninterval = \"200ms\"\ntimeout = \"1s\"");
    let r = Rampart::start(Setup::site(site)).await;
    drop(two);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for _ in 0..6 {
        let res = r.get("erp.test", "/web/login").await;
        assert_eq!(
            res.status,
            200,
            "a request went to the dropped upstream: {}",
            res.text()
        );
    }
    assert_eq!(one.count("/web/login"), 6);
}

/// `(addr, healthy)` of every upstream of the first site, from /healthz.
async fn healthz_upstreams(r: &Rampart) -> Vec<(String, bool)> {
    let h = r.admin_get("/healthz").await;
    assert_eq!(h.status, 200, "{}", h.text());
    let v: serde_json::Value = serde_json::from_slice(&h.body).unwrap();
    assert_eq!(v["status"], "ok", "{v}");
    assert_eq!(v["sites"][0]["site"], "erp.test", "{v}");
    v["sites"][0]["upstreams"]
        .as_array()
        .unwrap_or_else(|| panic!("no upstreams in /healthz: {v}"))
        .iter()
        .map(|u| {
            (
                u["addr"].as_str().unwrap().to_string(),
                u["healthy"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// Waits (up to 15 s) until /healthz shows exactly `want`; panics with what it shows.
async fn wait_health(r: &Rampart, want: &[(String, bool)]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let got = healthz_upstreams(r).await;
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/healthz shows {got:?}, expected {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The active check alone (no request is sent, so no retry or passive
/// failure can stand in for it) takes out a closed HTTP port and a closed
/// websocket port, and takes out and puts back an upstream whose
/// /web/health fails; /healthz and `rampart_upstream_healthy` show each
/// upstream's state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_check_alone_takes_out_a_closed_port_and_a_failing_upstream() {
    let good = OdooFixture::start().await;
    let sick = OdooFixture::start().await;
    let closed = format!("127.0.0.1:{}", rampart_testkit::free_port());
    let closed_ws = format!("127.0.0.1:{}", rampart_testkit::free_port());
    let mut site = Site::new("erp.test", &good);
    site.odoo = vec![
        good.http_addr.to_string(),
        closed.clone(),
        sick.http_addr.to_string(),
    ];
    site.websocket = vec![good.ws_addr.to_string(), closed_ws.clone()];
    let site = site
        .extra("[site.health_check]\ninterval = \"200ms\"\ntimeout = \"1s\"\nfall = 2\nrise = 2");
    let r = Rampart::start(Setup::site(site)).await;
    let (g, s, gw) = (
        good.http_addr.to_string(),
        sick.http_addr.to_string(),
        good.ws_addr.to_string(),
    );
    wait_health(
        &r,
        &[
            (g.clone(), true),
            (closed.clone(), false),
            (s.clone(), true),
            (gw.clone(), true),
            (closed_ws.clone(), false),
        ],
    )
    .await;
    let m = r.metrics().await;
    for (up, want) in [(&g, 1.0), (&closed, 0.0), (&closed_ws, 0.0)] {
        let line = m
            .lines()
            .find(|l| {
                l.starts_with("rampart_upstream_healthy{")
                    && l.contains(&format!("upstream=\"{up}\""))
            })
            .unwrap_or_else(|| panic!("no rampart_upstream_healthy for {up}:\n{m}"));
        assert!(line.contains("site=\"erp.test\""), "{line}");
        assert_eq!(
            line.rsplit(' ').next(),
            Some(if want == 1.0 { "1" } else { "0" }),
            "{line}"
        );
    }

    // /web/health failing: out after `fall` checks, back after `rise`.
    sick.set_healthy(false);
    let mut want = vec![
        (g.clone(), true),
        (closed.clone(), false),
        (s.clone(), false),
        (gw.clone(), true),
        (closed_ws.clone(), false),
    ];
    wait_health(&r, &want).await;
    sick.set_healthy(true);
    want[2].1 = true;
    wait_health(&r, &want).await;
    assert_eq!(good.count("/web/login") + sick.count("/web/login"), 0);
    assert!(good.count("/web/health") > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_websocket_tunnel_is_closed() {
    let fixture = OdooFixture::start().await;
    let site = Site::new("erp.test", &fixture).extra("websocket_idle = \"1s\"");
    let r = Rampart::start(Setup::site(site)).await;
    let started = std::time::Instant::now();
    // Upgrade, then silence; raw_exchange returns at EOF or after 20 s.
    let raw = raw_exchange(
        r.https,
        Some((&r.ca_path(), "erp.test")),
        b"GET /websocket HTTP/1.1\r\nHost: erp.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: https://erp.test\r\n\r\n",
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(raw_status(&raw), 101, "{}", String::from_utf8_lossy(&raw));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "an idle tunnel (websocket_idle = 1s) was still open after 20 s"
    );
}

/// Between an upstream dying and the health check noticing, a request
/// whose connection is refused (nothing was sent) can safely go to the
/// other upstream instead of answering 502, as nginx's proxy_next_upstream does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_upstream_is_retried_on_the_other_before_the_check_notices() {
    let one = OdooFixture::start().await;
    let two = OdooFixture::start().await;
    let mut site = Site::new("erp.test", &one);
    site.odoo.push(two.http_addr.to_string());
    let site = site.extra("[site.health_check]\ninterval = \"60s\"");
    let r = Rampart::start(Setup::site(site)).await;
    drop(two);
    for _ in 0..6 {
        let res = r.get("erp.test", "/web/login").await;
        assert_eq!(res.status, 200, "{}", res.text());
    }
}
