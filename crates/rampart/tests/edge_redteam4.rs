//! Red team 4: holes found against a real Odoo 18 (workers = 2, x_sendfile)
//! through `rampart serve`, each written as a test that fails on the main it
//! was found on and passes once fixed (reproductions in /work/redteam4).
//! Tests of holes not fixed yet are `#[ignore]`d naming the finding.

mod common;
mod slots_common;

use bytes::Bytes;
use common::{Rampart, Setup, Site};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rampart_testkit::OdooFixture;
use slots_common::{CALL_LIMIT, Client, HOST, Upload, ip};
use std::net::IpAddr;
use tokio::io::AsyncWriteExt;

const BUNDLE: &str = "/web/assets/4f0358a/web.assets_web.min.js";

async fn start(fixture: &OdooFixture) -> (Rampart, Client) {
    let setup = Setup {
        sites: vec![Site::new(HOST, fixture)],
        listen: "\n[guard]\nrate = { per_second = 100000, burst = 100000 }\n".into(),
        ..Setup::default()
    };
    let r = Rampart::start(setup).await;
    let c = Client::new(&r);
    (r, c)
}

/// F1. werkzeug parses a form body on a GET too, and Odoo's `request.params`
/// is the query overridden by that form: `width=1&height=1`, `mimetype=`,
/// `download=1` in a GET body change Odoo's answer to a `/web/image` or
/// `/web/content` URL (seen on the real Odoo: the company logo 11445 B →
/// 70 B, a bundle served as `text/html` + `attachment`). The edge cache keyed
/// that answer by the URL alone, so one anonymous request replaced the image
/// every visitor got for a year. A request with a body is not Odoo's plain
/// answer to the URL: it neither fills nor reads the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f1_a_get_body_does_not_poison_the_cached_answer() {
    let fixture = OdooFixture::start().await;
    let (r, _c) = start(&fixture).await;
    let (anon, _) = fixture.login_form_session();
    let cookie = format!("session_id={anon}");
    for (n, h2) in [(71, false), (72, true)] {
        let logo = format!("/web/image/res.company/1/logo?unique={n}");
        let url = r.url(HOST, &logo);
        let h = [
            ("cookie", cookie.as_str()),
            ("content-type", "application/x-www-form-urlencoded"),
        ];
        let body = b"width=1&height=1".to_vec();
        let attacker = if h2 {
            r.client.request_h2("GET", &url, &h, body).await
        } else {
            r.client.request("GET", &url, &h, body).await
        };
        assert_eq!(attacker.status, 200, "{}", attacker.text());
        assert!(
            String::from_utf8_lossy(&attacker.body).contains("resized:1x1"),
            "the fixture answers the GET body as Odoo does"
        );
        // Another visitor, no cookie, no body: Odoo's own answer to the URL.
        let victim = r.client.request("GET", &url, &[], Vec::new()).await;
        assert_eq!(victim.status, 200);
        assert!(
            !String::from_utf8_lossy(&victim.body).contains("resized"),
            "h2={h2}: a visitor got the image another request's GET body asked Odoo for"
        );
    }
}

/// F1b. The request that fills an entry held it from the lookup on, also
/// while its (GET) body arrived: one slow body made every other request for
/// that bundle wait `COALESCE_WAIT` (10 s) and then go to Odoo without
/// filling, so the cache stayed empty while the body trickled. With the
/// request out of the cache, the first visitor fills and the next one hits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f1b_a_slow_get_body_does_not_hold_a_cache_fill() {
    let fixture = OdooFixture::start().await;
    let (r, c) = start(&fixture).await;
    let mut slow = c.tls(ip("127.0.0.41"), false).await;
    let head = format!(
        "GET {BUNDLE} HTTP/1.1\r\nHost: {HOST}:{}\r\nContent-Length: 1000\r\n\r\nx",
        c.https.port()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.flush().await.unwrap();
    // Let Rampart take the request in before the visitors come.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // Visitors with a session cookie (else Odoo's answer sets one: not kept).
    let (anon, _) = fixture.login_form_session();
    let cookie = format!("session_id={anon}");
    for _ in 0..2 {
        let h = [("cookie", cookie.as_str())];
        let res = r
            .client
            .request("GET", &r.url(HOST, BUNDLE), &h, Vec::new())
            .await;
        assert_eq!(res.status, 200);
    }
    assert_eq!(
        fixture.count(BUNDLE),
        1,
        "the bundle was not kept while a slow GET body was arriving"
    );
    drop(slow);
}

/// An XML-RPC `execute_kw` as uid 2 (the administrator on every Odoo) with
/// `password`: a password check for that user.
fn execute_kw_as_admin(password: &str) -> Vec<u8> {
    format!(
        "<?xml version='1.0'?><methodCall><methodName>execute_kw</methodName><params>\
         <param><value><string>demo1</string></value></param>\
         <param><value><int>2</int></value></param>\
         <param><value><string>{password}</string></value></param>\
         <param><value><string>res.partner</string></value></param>\
         <param><value><string>search</string></value></param>\
         <param><value><array><data/></array></value></param>\
         </params></methodCall>"
    )
    .into_bytes()
}

/// F2. The per-login budget (issue 13 §4) counts failures per login name,
/// but a password check by uid (`execute_kw(db, 2, guess, ...)`, admin is
/// uid 2 on every Odoo) has no name and was never counted: against the real
/// Odoo, 30 addresses × 2 guesses by `common.login 'admin'` → 20 reached
/// Odoo and 40 were refused; the same 60 guesses by uid 2 → all 60 reached
/// Odoo. Default limits: thirty addresses, one guess each, must stay within
/// the budget of 20, while the integration that already used uid 2 from its
/// own address keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn f2_guesses_by_uid_are_bounded_per_login_too() {
    let fixture = OdooFixture::start().await;
    let r = Rampart::start(Setup::site(Site::new(HOST, &fixture))).await;
    let c = Client::new(&r);
    let home = ip("127.0.0.20");
    let ok = c
        .send(
            home,
            "POST",
            "/xmlrpc/2/object",
            execute_kw_as_admin("admin"),
        )
        .await;
    assert_eq!(ok.status, 200);
    assert!(!ok.text().contains("<fault>"), "{}", ok.text());
    let before = fixture.count("/xmlrpc/2/object");
    let mut bots = Vec::new();
    for n in 1..=30 {
        let c = c.clone();
        bots.push(tokio::spawn(async move {
            let src = ip(&format!("127.0.1.{n}"));
            c.send(
                src,
                "POST",
                "/xmlrpc/2/object",
                execute_kw_as_admin("guess"),
            )
            .await
            .status
        }));
    }
    let mut statuses = Vec::new();
    for t in bots {
        statuses.push(t.await.unwrap());
    }
    let reached = fixture.count("/xmlrpc/2/object") - before;
    assert!(
        reached <= 20,
        "{reached} guesses of uid 2's password reached Odoo: {statuses:?}"
    );
    let again = c
        .send(
            home,
            "POST",
            "/xmlrpc/2/object",
            execute_kw_as_admin("admin"),
        )
        .await;
    assert_eq!(again.status, 200, "{}", again.text());
    assert!(!again.text().contains("<fault>"), "{}", again.text());
}

/// A raw HTTP/1.1 POST from `src` with extra header lines; the status.
async fn post_from(c: &Client, src: IpAddr, path: &str, headers: &str, body: &[u8]) -> u16 {
    let mut stream = c.tls(src, false).await;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {HOST}:{}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        c.https.port(),
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    stream.flush().await.unwrap();
    Upload { stream }.answer().await.0
}

/// Thirty addresses, one guess of admin's password each, by `send`; how
/// many of them reached Odoo's `path`.
async fn spread_guesses<F, Fut>(fixture: &OdooFixture, path: &str, send: F) -> (usize, Vec<u16>)
where
    F: Fn(IpAddr) -> Fut,
    Fut: std::future::Future<Output = u16> + Send + 'static,
{
    let before = fixture.count(path);
    let mut bots = Vec::new();
    for n in 1..=30 {
        bots.push(tokio::spawn(send(ip(&format!("127.0.2.{n}")))));
    }
    let mut statuses = Vec::new();
    for t in bots {
        statuses.push(t.await.unwrap());
    }
    (fixture.count(path) - before, statuses)
}

/// F2b. The same budget, by the login form sent as multipart/form-data
/// (werkzeug parses it into `request.params` like the urlencoded one; the
/// guard does not read the name from it, so it was bounded per address
/// only): real Odoo, 30 addresses × 1 multipart guess for `admin` → 28
/// reached Odoo (2 got 503), none refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn f2b_multipart_login_guesses_are_bounded_per_login() {
    let fixture = std::sync::Arc::new(OdooFixture::start().await);
    let r = Rampart::start(Setup::site(Site::new(HOST, &fixture))).await;
    let c = Client::new(&r);
    let (reached, statuses) = spread_guesses(&fixture, "/web/login", |src| {
        let (c, fixture) = (c.clone(), fixture.clone());
        async move {
            let (sid, csrf) = fixture.login_form_session();
            let b = "rt4b";
            let mut body = String::new();
            for (k, v) in [
                ("csrf_token", csrf.as_str()),
                ("login", "admin"),
                ("password", "guess"),
            ] {
                body.push_str(&format!(
                    "--{b}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
                ));
            }
            body.push_str(&format!("--{b}--\r\n"));
            let h = format!(
                "Cookie: session_id={sid}\r\nContent-Type: multipart/form-data; boundary={b}\r\n"
            );
            post_from(&c, src, "/web/login", &h, body.as_bytes()).await
        }
    })
    .await;
    assert!(
        reached <= 20,
        "{reached} multipart guesses reached Odoo: {statuses:?}"
    );
}

/// F2c. The same budget, by `/base_import_module/login_upload` (a login and
/// password in a form, `session.authenticate`; `base_import_module` is
/// installed by default): the guard counts it as a login but never reads its
/// name. Real Odoo: 30 addresses × 1 guess → 28 reached Odoo, none refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn f2c_login_upload_guesses_are_bounded_per_login() {
    let fixture = OdooFixture::start().await;
    let r = Rampart::start(Setup::site(Site::new(HOST, &fixture))).await;
    let c = Client::new(&r);
    let path = "/base_import_module/login_upload";
    let (reached, statuses) = spread_guesses(&fixture, path, |src| {
        let c = c.clone();
        async move {
            let h = "Content-Type: application/x-www-form-urlencoded\r\n";
            post_from(&c, src, path, h, b"login=admin&password=guess").await
        }
    })
    .await;
    assert!(
        reached <= 20,
        "{reached} login_upload guesses reached Odoo: {statuses:?}"
    );
}

/// F3. An answer made from the cache is the entry's bytes: a client that
/// never reads holds them, also after the entry is evicted, and nothing
/// counts them (`max_memory`, `buffer_memory_per_client` and
/// `buffer_memory_max` all miss them). Real Odoo: 200 zero-window HTTP/2
/// streams from one address, each `GET /web/content/204?unique=<n>` (a
/// distinct key; Odoo answers the 4.8 MB bundle attachment public and
/// immutable with X-Accel-Redirect, which the fill reads whole into memory)
/// took Rampart from 25 MB to 946 MB resident; the same 200 streams
/// without `unique` (not cacheable: the file is streamed at the client's
/// pace) added 25 MB. Here: 4 MiB of cache, 1 MiB of buffered answers per
/// client, 100 unread answers for distinct ~1 MiB bundles (100 MiB if each
/// is pinned; the same with the cache off passes): Rampart's peak memory may
/// grow by less than 32 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn f3_unread_cache_answers_do_not_pin_uncounted_memory() {
    let fixture = OdooFixture::start().await;
    let setup = Setup {
        sites: vec![Site::new(HOST, &fixture).extra("[site.cache]\nmax_memory = \"4MiB\"\nmax_entry = \"2MiB\"\n")],
        listen: "buffer_memory_per_client = \"1MiB\"\n\n[guard]\nrate = { per_second = 100000, burst = 100000 }\n".into(),
        ..Setup::default()
    };
    let r = Rampart::start(setup).await;
    let c = Client::new(&r);
    let (anon, _) = fixture.login_form_session();
    let cookie = format!("session_id={anon}");
    // Warm up (TLS, HTTP/2, the cache's first entries) before the baseline.
    for n in 0..20 {
        let res = r
            .client
            .request(
                "GET",
                &r.url(HOST, &format!("/web/assets/w{n:06}/web.assets_web.min.js")),
                &[("cookie", cookie.as_str())],
                Vec::new(),
            )
            .await;
        assert_eq!(res.status, 200);
    }
    let before = r.vm_hwm_kib();
    let (mut held, mut conns) = (Vec::new(), Vec::new());
    for conn in 0..4 {
        let tls = c.tls(ip("127.0.0.61"), true).await;
        let mut b = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
        b.initial_stream_window_size(0).adaptive_window(false);
        let (sender, task) = b.handshake(TokioIo::new(tls)).await.unwrap();
        let task = tokio::spawn(async move {
            let _ = task.await;
        });
        let mut calls = Vec::new();
        for i in 0..25 {
            let uri = format!(
                "https://{HOST}:{}/web/assets/p{conn}{i:05}/web.assets_big.min.js",
                c.https.port()
            );
            let req = http::Request::get(uri)
                .header("cookie", cookie.as_str())
                .body(Full::new(Bytes::new()))
                .unwrap();
            let mut sender = sender.clone();
            calls.push(tokio::spawn(async move {
                tokio::time::timeout(CALL_LIMIT * 3, sender.send_request(req))
                    .await
                    .expect("response heads in time")
                    .expect("a response head")
            }));
        }
        for call in calls {
            let res = call.await.unwrap();
            assert_eq!(res.status(), 200);
            held.push(res);
        }
        conns.push((sender, task));
    }
    let grown = r.vm_hwm_kib().saturating_sub(before);
    assert!(
        grown < 32 * 1024,
        "{} unread answers grew Rampart's peak memory by {grown} KiB",
        held.len()
    );
    drop((held, conns));
}
