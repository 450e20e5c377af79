//! The red team's attacks on the guard in front of a real Odoo 18, each
//! replayed through the binary against the fixture: every one of them was
//! an unlimited, uncounted password guess (or a `db` call from outside the
//! allow list) before its fix.

mod common;

use common::{Rampart, Setup, Site, metric, start_guarded};
use rampart_testkit::OdooFixture;

const HOST: &str = "erp.redteam.test";

async fn start(fixture: &OdooFixture, max: u32) -> Rampart {
    start_guarded(fixture, HOST, max, "").await
}

async fn failures(r: &Rampart) -> f64 {
    metric(&r.metrics().await, "rampart_guard_login_failures_total")
}

async fn send(r: &Rampart, method: &str, path: &str, ct: &str, body: &[u8]) -> (u16, String) {
    let res = r
        .client
        .request(
            method,
            &r.url(HOST, path),
            &[("content-type", ct)],
            body.to_vec(),
        )
        .await;
    (res.status, res.text())
}

const DB_LIST: &[u8] = br#"{"jsonrpc":"2.0","method":"call","id":1,"params":{"service":"db","method":"list","args":[]}}"#;

fn session_auth(id: &str, password: &str) -> Vec<u8> {
    format!(
        r#"{{"jsonrpc":"2.0","method":"call","id":{id},"params":{{"db":"demo1","login":"admin","password":"{password}"}}}}"#
    )
    .into_bytes()
}

fn json_execute_kw(id: &str, password: &str) -> Vec<u8> {
    format!(
        r#"{{"jsonrpc":"2.0","method":"call","id":{id},"params":{{"service":"object","method":"execute_kw","args":["demo1",2,"{password}","res.partner","search",[[]]]}}}}"#
    )
    .into_bytes()
}

/// Red team 1: werkzeug upper-cases the method and `type='json'` routes
/// take any: `post /jsonrpc` reached the db service from outside the allow
/// list, and lower-case or GET logins were never counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_in_any_spelling_are_judged_or_refused() {
    let fixture = OdooFixture::start().await;
    let r = start(&fixture, 3).await;
    for m in ["post", "Post", "get", "pOsT"] {
        let (status, text) = send(&r, m, "/jsonrpc", "application/json", DB_LIST).await;
        assert_eq!(status, 400, "{m} /jsonrpc: {text}");
    }
    for m in ["GET", "PUT", "PATCH", "DELETE", "OPTIONS", "FOO"] {
        let (status, text) = send(&r, m, "/jsonrpc", "application/json", DB_LIST).await;
        assert_eq!(status, 403, "{m} /jsonrpc reached the db service: {text}");
    }
    assert_eq!(fixture.count("/jsonrpc"), 0, "no db call reached Odoo");
    let (status, _) = send(&r, "post", "/xmlrpc/2/common", "text/xml", b"<x/>").await;
    assert_eq!(status, 400);
    let (status, _) = send(
        &r,
        "post",
        "/web/login",
        "application/x-www-form-urlencoded",
        b"login=admin&password=x",
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(fixture.count("/xmlrpc") + fixture.count("/web/login"), 0);
    // GET /web/session/authenticate with a JSON body is a login for Odoo.
    for (i, m) in ["GET", "PUT", "DELETE"].into_iter().enumerate() {
        let (status, text) = send(
            &r,
            m,
            "/web/session/authenticate",
            "application/json",
            &session_auth("1", "guess"),
        )
        .await;
        assert_eq!(status, 200, "{m}: {text}");
        assert_eq!(
            failures(&r).await,
            (i + 1) as f64,
            "{m} /web/session/authenticate not counted"
        );
    }
    let (status, _) = send(
        &r,
        "GET",
        "/web/session/authenticate",
        "application/json",
        &session_auth("1", "guess"),
    )
    .await;
    assert_eq!(status, 403, "banned after three guesses");
}

/// Red team 2: a 5000-byte JSON-RPC id pushed Odoo's AccessDenied past
/// the 4 KiB the edge reads: every guess came back unknown, uncounted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_json_rpc_ids_are_refused() {
    let fixture = OdooFixture::start().await;
    let r = start(&fixture, 3).await;
    let long = format!("\"{}\"", "x".repeat(5000));
    for i in 0..6 {
        let (status, text) = send(
            &r,
            "POST",
            "/jsonrpc",
            "application/json",
            &json_execute_kw(&long, &format!("g{i}")),
        )
        .await;
        assert_eq!(status, 400, "guess {i} with a long id: {text}");
    }
    assert_eq!(fixture.count("/jsonrpc"), 0, "none reached Odoo");
    let (status, _) = send(
        &r,
        "POST",
        "/web/session/authenticate",
        "application/json",
        &session_auth(&long, "g"),
    )
    .await;
    assert_eq!(status, 400);
    // A short id still works, and its refusal counts.
    let (status, _) = send(
        &r,
        "POST",
        "/jsonrpc",
        "application/json",
        &json_execute_kw("\"abc\"", "admin"),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = send(
        &r,
        "POST",
        "/jsonrpc",
        "application/json",
        &json_execute_kw("7", "wrong"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(failures(&r).await, 1.0);
}

/// Red team 3: `"id": NaN` is echoed by Odoo, and serde_json cannot read
/// the answer: refused on /web/session/authenticate, and on /jsonrpc (where
/// the body is uncertain, forwarded to allow-listed clients only) the
/// unreadable answer is a failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nan_ids_cannot_hide_the_verdict() {
    let fixture = OdooFixture::start().await;
    let r = start_guarded(
        &fixture,
        HOST,
        3,
        "[site.database_manager]\nallow = [\"127.0.0.1/32\"]",
    )
    .await;
    for _ in 0..5 {
        let (status, text) = send(
            &r,
            "POST",
            "/web/session/authenticate",
            "application/json",
            &session_auth("NaN", "guess"),
        )
        .await;
        assert_eq!(status, 400, "{text}");
    }
    assert_eq!(fixture.count("/web/session"), 0);
    for i in 0..3 {
        let (status, text) = send(
            &r,
            "POST",
            "/jsonrpc",
            "application/json",
            &json_execute_kw("NaN", &format!("g{i}")),
        )
        .await;
        assert_eq!(status, 200, "{text}");
        assert!(
            text.contains("NaN"),
            "the fixture echoes NaN as Odoo does: {text}"
        );
        assert_eq!(failures(&r).await, (i + 1) as f64, "guess {i} not counted");
    }
    let (status, _) = send(
        &r,
        "POST",
        "/jsonrpc",
        "application/json",
        &json_execute_kw("1", "g4"),
    )
    .await;
    assert_eq!(status, 403, "banned");
}

/// Red team 4: one right login cleared every failure of the address, so
/// guesses interleaved with a working account's login never added up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_working_login_between_guesses_does_not_reset_the_count() {
    let fixture = OdooFixture::start().await;
    let r = start(&fixture, 5).await;
    for round in 0..2 {
        for g in 0..2 {
            let (status, text) = send(
                &r,
                "POST",
                "/web/session/authenticate",
                "application/json",
                &session_auth("1", &format!("g{round}{g}")),
            )
            .await;
            assert_eq!(status, 200, "{text}");
        }
        let (status, text) = send(
            &r,
            "POST",
            "/web/session/authenticate",
            "application/json",
            &session_auth("1", "admin"),
        )
        .await;
        assert_eq!(status, 200, "the right password, round {round}: {text}");
        assert!(text.contains("\"result\""), "{text}");
    }
    assert_eq!(failures(&r).await, 4.0);
    let (status, _) = send(
        &r,
        "POST",
        "/web/session/authenticate",
        "application/json",
        &session_auth("1", "g5"),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = send(
        &r,
        "POST",
        "/web/session/authenticate",
        "application/json",
        &session_auth("1", "admin"),
    )
    .await;
    assert_eq!(status, 403, "five failures within the window: banned");
}

/// Red team 5: `POST /base_import_module/login_upload` and Odoo 18's
/// `/json/1/<path>` (`auth='bearer'`) check a password / an API key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_upload_and_json1_guesses_are_counted() {
    let fixture = OdooFixture::start().await;
    let r = start(&fixture, 3).await;
    let form = "application/x-www-form-urlencoded";
    let (status, text) = send(
        &r,
        "POST",
        "/base_import_module/login_upload",
        form,
        b"login=admin&password=g1",
    )
    .await;
    assert_eq!(status, 500, "{text}");
    assert_eq!(failures(&r).await, 1.0);
    let res = r
        .client
        .request(
            "GET",
            &r.url(HOST, "/json/1/action-base.action_res_users"),
            &[("authorization", "bearer g2")],
            Vec::new(),
        )
        .await;
    assert_eq!(res.status, 401, "{}", res.text());
    assert_eq!(failures(&r).await, 2.0);
    let (status, _) = send(
        &r,
        "POST",
        "/base_import_module/login_upload",
        form,
        b"login=admin&password=admin",
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = send(
        &r,
        "POST",
        "/base_import_module/login_upload",
        form,
        b"login=admin&password=g3",
    )
    .await;
    assert_eq!(status, 500);
    let (status, _) = send(
        &r,
        "POST",
        "/base_import_module/login_upload",
        form,
        b"login=admin&password=admin",
    )
    .await;
    assert_eq!(status, 403, "banned after three guesses");
}

async fn mail_plugin_call(r: &Rampart, key: &str) -> (u16, String) {
    let auth = format!("Bearer {key}");
    let res = r
        .client
        .request(
            "POST",
            &r.url(HOST, "/mail_plugin/partner/get"),
            &[
                ("content-type", "application/json"),
                ("authorization", &auth),
            ],
            br#"{"jsonrpc":"2.0","id":1,"params":{"email":"a@b.c"}}"#.to_vec(),
        )
        .await;
    (res.status, res.text())
}

/// Red team 5 (the grep for other key checks): the mail plugin's
/// `auth='outlook'` routes check an API key on every call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_plugin_key_guesses_are_counted() {
    let fixture = OdooFixture::start().await;
    let r = start(&fixture, 3).await;
    let (status, text) = mail_plugin_call(&r, fixture.api_key()).await;
    assert_eq!(status, 200);
    assert!(text.contains("\"result\""), "{text}");
    for i in 0..3 {
        let (status, text) = mail_plugin_call(&r, &format!("guess{i}")).await;
        assert_eq!(status, 200);
        assert!(text.contains("Access token invalid"), "{text}");
        assert_eq!(failures(&r).await, (i + 1) as f64, "guess {i} not counted");
    }
    let (status, _) = mail_plugin_call(&r, fixture.api_key()).await;
    assert_eq!(status, 403, "banned after three guesses");
}

/// Red team 6a: a start tag with 100,000 attributes cost minutes of CPU
/// in the XML reader; now it is uncertain at once (counted, fails closed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xml_with_many_attributes_is_uncertain() {
    let fixture = OdooFixture::start().await;
    let r = start(&fixture, 3).await;
    let many: String = (0..100_000).map(|i| format!(" a{i}=\"x\"")).collect();
    let body = format!(
        "<?xml version='1.0'?><methodCall{many}><methodName>authenticate</methodName><params>\
         <param><value><string>demo1</string></value></param>\
         <param><value><string>admin</string></value></param>\
         <param><value><string>g</string></value></param></params></methodCall>"
    );
    // The old reader took ~100 s, past the test client's timeout.
    let (status, text) = send(&r, "POST", "/xmlrpc/2/common", "text/xml", body.as_bytes()).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        failures(&r).await,
        1.0,
        "uncertain: counted when Odoo's answer is not a success"
    );
}

/// Red team 6c: RPC bodies held for inspection had no per-client budget
/// (40 connections × 7 MiB from one address held 300 MB). They are
/// received like any upload (red team 3: a budget reserved on the
/// declared length let addresses sending nothing hold it), so one
/// address's bodies are bounded by its spool share: with 16 MiB, two
/// 7 MiB bodies held one byte short fit, a third is refused (507).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_hold_unbounded_bodies_for_inspection() {
    use std::time::Duration;
    let fixture = OdooFixture::start().await;
    let r = Rampart::start(Setup {
        sites: vec![Site::new(HOST, &fixture)],
        listen:
            "spool_per_client = \"16MiB\"\n[guard]\nrate = { per_second = 5000, burst = 5000 }\n"
                .into(),
        ..Setup::default()
    })
    .await;
    let ca = r.ca_path();
    let len = 7 * 1024 * 1024;
    let mut held = format!(
        "POST /jsonrpc HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n{{"
    )
    .into_bytes();
    held.extend(std::iter::repeat_n(b' ', len - 2));
    let mut holders = Vec::new();
    for _ in 0..2 {
        let (addr, ca, held) = (r.https, ca.clone(), held.clone());
        holders.push(tokio::spawn(async move {
            rampart_testkit::raw_exchange(addr, Some((&ca, HOST)), &held, Duration::from_secs(8))
                .await
        }));
    }
    // Wait until both are spooled (not a speed assertion).
    for _ in 0..60 {
        if metric(&r.metrics().await, "rampart_spooled_bytes_total") >= 2.0 * (len - 70_000) as f64
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let answer =
        rampart_testkit::raw_exchange(r.https, Some((&ca, HOST)), &held, Duration::from_secs(5))
            .await;
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.starts_with("HTTP/1.1 507"),
        "the third body was accepted: {:?}",
        text.lines().next()
    );
    for h in holders {
        let raw = h.await.unwrap();
        assert!(
            !raw.starts_with(b"HTTP/1.1 5"),
            "one of the first two was refused: {:?}",
            String::from_utf8_lossy(&raw).lines().next()
        );
    }
    assert_eq!(fixture.count("/jsonrpc"), 0, "Odoo saw no partial body");
    // Released when the connections are gone: a small call goes through.
    let (status, _) = send(
        &r,
        "POST",
        "/jsonrpc",
        "application/json",
        &json_execute_kw("1", "admin"),
    )
    .await;
    assert_eq!(status, 200);
}

/// Red team 2: a logged-in user (a portal signup is enough) called
/// `res.users.authenticate` through the web client's `call_kw`, an
/// uncounted password check Odoo's own cooldown does not stop either.
#[tokio::test]
async fn password_checks_through_the_web_clients_model_calls_never_reach_odoo() {
    let fixture = OdooFixture::start().await;
    let r = start(&fixture, 3).await;
    let auth = br#"{"jsonrpc":"2.0","method":"call","id":1,"params":{"model":"res.users","method":"authenticate","args":[[],"demo1",{"type":"password","login":"demo","password":"guess"},{}],"kwargs":{}}}"#;
    let pairs = br#"{"jsonrpc":"2.0","method":"call","id":2,"params":[["model","res.users"],["method","check"],["args",["demo1",2,"guess"]],["kwargs",{}]]}"#;
    for (method, path, body) in [
        ("POST", "/web/dataset/call_kw", &auth[..]),
        (
            "POST",
            "/web/dataset/call_kw/res.users/authenticate",
            &auth[..],
        ),
        ("GET", "/web/dataset/call_kw", &auth[..]),
        ("POST", "/web/dataset/call_button", &auth[..]),
        ("POST", "/web/dataset/call_kw", &pairs[..]),
    ] {
        let (status, text) = send(&r, method, path, "application/json", body).await;
        assert_eq!(status, 400, "{method} {path}: {text}");
    }
    assert_eq!(
        fixture.count("/web/dataset"),
        0,
        "no password check reached Odoo"
    );
    // The web client's ordinary calls still go through.
    let search = br#"{"jsonrpc":"2.0","method":"call","id":3,"params":{"model":"res.partner","method":"web_search_read","args":[],"kwargs":{}}}"#;
    let (status, text) = send(
        &r,
        "POST",
        "/web/dataset/call_kw/res.partner/web_search_read",
        "application/json",
        search,
    )
    .await;
    assert_ne!(status, 400, "{text}");
    assert_eq!(
        fixture.count("/web/dataset"),
        1,
        "the ordinary call reached Odoo"
    );
}
