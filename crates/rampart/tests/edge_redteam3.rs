//! Red team 3: attacks on Odoo's few workers found against a real Odoo 18
//! (workers = 2) through `rampart serve`. Each test fails on today's main
//! and is ignored until fixed (reproductions in /work/redteam3).

mod common;
mod slots_common;

use std::time::Duration;

use bytes::Bytes;
use common::{Rampart, Setup, Site};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rampart_testkit::{FixtureOptions, OdooFixture};
use slots_common::{Client, HOST, ip};
use tokio::io::AsyncWriteExt;

/// Requests the attacker sends and abandons once Rampart has forwarded them.
const ABANDONED: usize = 10;
/// What each abandoned request costs an Odoo worker (the fixture sleeps).
const COST: &str = "/slow?secs=2";

async fn two_workers() -> (OdooFixture, Rampart, Client) {
    let fixture = OdooFixture::start_with(FixtureOptions {
        workers: Some(2),
        ..FixtureOptions::default()
    })
    .await;
    // Rampart told the pool's size, as `rampart init` does from odoo.conf.
    let r = Rampart::start(Setup::site(Site::new(HOST, &fixture).extra("workers = 2"))).await;
    let c = Client::new(&r);
    (fixture, r, c)
}

/// The victim's request, then how many of the attacker's requests Odoo
/// took after the victim had arrived and before it. With `workers = 2`,
/// Rampart keeps at most two requests at Odoo; an abandoned one is still
/// running there (a prefork worker does not notice that its client left
/// until it writes), so its slot must stay taken until Odoo is done, or the
/// victim queues inside Odoo behind every abandoned request instead of in
/// Rampart's fair queue. (Those Odoo took before the victim came are fair.)
async fn victim_after_abandoned(fixture: &OdooFixture, c: &Client) -> usize {
    let slow = |seen: &[rampart_testkit::SeenRequest]| {
        seen.iter()
            .filter(|s| s.target.starts_with("/slow") && !s.target.contains("victim=1"))
            .count()
    };
    let already = slow(&fixture.requests());
    let victim = c
        .send(ip("127.0.0.3"), "GET", "/slow?secs=0&victim=1", vec![])
        .await;
    assert_eq!(victim.status, 200, "{}", victim.text());
    let seen = fixture.requests();
    let at = seen
        .iter()
        .position(|s| s.target.contains("victim=1"))
        .expect("the victim's request reached Odoo");
    slow(&seen[..at]) - already
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn abandoned_http1_requests_keep_their_slot_until_odoo_is_done() {
    let (fixture, _r, c) = two_workers().await;
    // One address: send, wait until Rampart has forwarded, hang up.
    for _ in 0..ABANDONED {
        let mut s = c.tls(ip("127.0.0.2"), false).await;
        let head = format!(
            "GET {COST} HTTP/1.1\r\nHost: {HOST}:{}\r\n\r\n",
            c.https.port()
        );
        s.write_all(head.as_bytes()).await.unwrap();
        s.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        drop(s);
    }
    let before = victim_after_abandoned(&fixture, &c).await;
    assert!(
        before <= 1,
        "Odoo ran {before} abandoned requests after another client's had arrived and \
         before it (workers = 2): Rampart released their slots when the client left, \
         not when Odoo finished"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reset_http2_streams_keep_their_slot_until_odoo_is_done() {
    let (fixture, _r, c) = two_workers().await;
    let tls = c.tls(ip("127.0.0.2"), true).await;
    let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(tls))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let uri = format!("https://{HOST}:{}{COST}", c.https.port());
    // One connection: each stream is reset (CANCEL) once Rampart has
    // forwarded it — the "rapid reset" pattern, slowed down.
    for _ in 0..ABANDONED {
        let mut s = sender.clone();
        let req = http::Request::get(uri.as_str())
            .body(Full::new(Bytes::new()))
            .unwrap();
        let call = tokio::spawn(async move { s.send_request(req).await });
        tokio::time::sleep(Duration::from_millis(500)).await;
        call.abort();
    }
    let before = victim_after_abandoned(&fixture, &c).await;
    drop(sender);
    conn.abort();
    assert!(
        before <= 1,
        "Odoo ran {before} reset requests after another client's had arrived and \
         before it (workers = 2): Rampart released their slots on RST_STREAM, not when \
         Odoo finished"
    );
}

/// Declared length of each held request: the inspection limit (8 MiB).
const INSPECT_LEN: usize = 8 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_few_addresses_cannot_take_the_whole_inspection_budget() {
    let fixture = OdooFixture::start().await;
    let r = Rampart::start(Setup::site(Site::new(HOST, &fixture))).await;
    let c = Client::new(&r);
    // Eight addresses, four requests each, declaring 8 MiB of model-call
    // body and sending one byte: the reservation is taken on the declared
    // length, before any byte.
    let mut held = Vec::new();
    for a in 10..18 {
        for _ in 0..4 {
            let src = ip(&format!("127.0.0.{a}"));
            held.push(
                slots_common::Upload::start(&c, src, "/web/dataset/call_kw", INSPECT_LEN, b"{")
                    .await,
            );
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let body = br#"{"jsonrpc":"2.0","method":"call","params":{"model":"res.partner","method":"search_read","args":[[]],"kwargs":{}}}"#;
    let victim = c
        .send(
            ip("127.0.0.3"),
            "POST",
            "/web/dataset/call_kw",
            body.to_vec(),
        )
        .await;
    assert_ne!(
        victim.status,
        503,
        "another user's model call was refused while 8 addresses held the inspection budget \
         without sending their bodies: {}",
        victim.text()
    );
    assert!(fixture.count("/web/dataset/call_kw") >= 1);
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crawling_rpc_body_gets_408_like_any_other_upload() {
    let fixture = OdooFixture::start().await;
    let mut setup = Setup::site(Site::new(HOST, &fixture));
    setup.listen = "client_body_min_rate = \"1KiB\"\nclient_body_grace = \"1s\"".into();
    let r = Rampart::start(setup).await;
    let c = Client::new(&r);
    let mut u =
        slots_common::Upload::start(&c, ip("127.0.0.2"), "/web/dataset/call_kw", 4096, b"{").await;
    let crawl = async {
        for _ in 0..100 {
            if u.send(&[b' '; 10]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(8), crawl)
        .await
        .ok();
    let (status, text) = u.answer().await;
    assert_eq!(status, 408, "{text}");
    assert_eq!(fixture.count("/web/dataset/call_kw"), 0);
}

fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn abandoned_password_checks_are_counted() {
    let fixture = OdooFixture::start().await;
    let mut setup = Setup::site(Site::new(HOST, &fixture));
    setup.listen = "\n[guard]\nrate = { per_second = 5000, burst = 5000 }\n\
        login_rate = { per_minute = 60000, burst = 5000 }\n\
        login_failures = { max = 10, within = \"60s\", ban = \"15m\" }\n"
        .into();
    let r = Rampart::start(setup).await;
    let c = Client::new(&r);
    let guess = |i: usize| {
        format!(
            "<?xml version='1.0'?><methodCall><methodName>execute_kw</methodName><params>\
             <param><value><string>demo1</string></value></param>\
             <param><value><int>2</int></value></param>\
             <param><value><string>wrong{i}</string></value></param>\
             <param><value><string>res.partner</string></value></param>\
             <param><value><string>search</string></value></param>\
             <param><value><array><data/></array></value></param>\
             </params></methodCall>"
        )
    };
    // Each guess is sent whole; the client hangs up once Rampart has
    // forwarded it, before Odoo's (300 ms) wrong-password answer.
    for i in 0..6 {
        let body = guess(i);
        let mut s = c.tls(ip("127.0.0.2"), false).await;
        let head = format!(
            "POST /xmlrpc/2/object HTTP/1.1\r\nHost: {HOST}:{}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n",
            c.https.port(),
            body.len()
        );
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(body.as_bytes()).await.unwrap();
        s.flush().await.unwrap();
        // Hang up as soon as Odoo has the guess (it answers 300 ms later).
        let reached = async {
            while fixture.count("/xmlrpc/2/object") <= i {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(slots_common::CALL_LIMIT, reached)
            .await
            .expect("the guess reached Odoo");
        drop(s);
    }
    // Odoo answers each guess in its own time: wait until it has checked
    // them all and the guard has had their answers.
    let checked = fixture.count("/xmlrpc/2/object");
    let deadline = tokio::time::Instant::now() + slots_common::CALL_LIMIT;
    let mut counted;
    loop {
        counted = metric_value(&r.metrics().await, "rampart_guard_login_failures_total");
        if counted >= checked as f64 || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        counted >= checked as f64,
        "Odoo checked {checked} wrong passwords, the guard counted {counted} \
         (the clients hung up before the answer)\n{}",
        r.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn front_loaded_uploads_cannot_hold_the_whole_spool() {
    let fixture = OdooFixture::start().await;
    let mut setup = Setup::site(Site::new(HOST, &fixture).extra("max_body = \"1MiB\""));
    // The defaults scaled down: spool_max 4 GiB with max_body 256 MiB.
    setup.listen =
        "spool_max = \"2MiB\"\nclient_body_min_rate = \"1KiB\"\nclient_body_grace = \"1s\"".into();
    let r = Rampart::start(setup).await;
    let c = Client::new(&r);
    const LEN: usize = 1024 * 1024;
    let mut held = Vec::new();
    for src in ["127.0.0.10", "127.0.0.11"] {
        held.push(
            slots_common::Upload::start(&c, ip(src), "/upload", LEN, &vec![b'u'; LEN - 1024]).await,
        );
    }
    // One byte a second: far below 1 KiB/s, but the average over the
    // whole upload stays above it for hours.
    for _ in 0..8 {
        for u in held.iter_mut() {
            let _sent = u.send(b"u").await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let victim = c
        .send(ip("127.0.0.3"), "POST", "/upload", vec![b'v'; 200 * 1024])
        .await;
    assert_ne!(
        victim.status,
        507,
        "another user's upload was refused: two addresses trickling 1 byte/s held the spool: {}",
        victim.text()
    );
    assert_eq!(victim.status, 200, "{}", victim.text());
}
