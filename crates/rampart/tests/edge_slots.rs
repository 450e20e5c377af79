//! Issue 9 ("every slot has a deadline", finding 6's websocket pool) and
//! issue 10 §3: one client address holds at most its share of Odoo's
//! slots and of the websocket tunnels, and waiting requests are served
//! round-robin between clients, so one client's sixty requests cannot put
//! another's single request behind all of them.

mod common;
mod slots_common;

use std::time::Duration;

use common::{Rampart, Setup, Site};
use rampart_testkit::{FixtureOptions, OdooFixture};
use slots_common::{CALL_LIMIT, Client, HOST, ip, metric};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn site(fixture: &OdooFixture, extra: &str) -> Setup {
    Setup::site(Site::new(HOST, fixture).extra(extra))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn over_its_share_an_address_waits_while_others_get_the_freed_slots() {
    let fixture = OdooFixture::start().await;
    let r = Rampart::start(site(&fixture, "workers = 2\nmax_conns_per_client = 1")).await;
    let c = Client::new(&r);
    let (a, b) = (ip("127.0.0.2"), ip("127.0.0.3"));
    let call = |src, path: &str| {
        let (c, path) = (c.clone(), path.to_string());
        tokio::spawn(async move { c.send(src, "GET", &path, vec![]).await })
    };
    // An idle pool is A's to use in full.
    let first = [call(a, "/slow?secs=1.5&a=1"), call(a, "/slow?secs=4&a=2")];
    let deadline = tokio::time::Instant::now() + CALL_LIMIT;
    while fixture.count("/slow") < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "A's two requests never ran together"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Both slots taken: A's third queues first, then B's.
    let third = call(a, "/slow?secs=0.1&a=3");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // B's request holds the slot freed at 1.5 s for a second, so A's third
    // cannot reach Odoo in the same instant.
    let other = call(b, "/slow?secs=1&b=1");
    for t in first.into_iter().chain([third, other]) {
        assert_eq!(t.await.unwrap().status, 200);
    }
    let order: Vec<String> = fixture.requests().into_iter().map(|s| s.target).collect();
    let pos = |needle: &str| order.iter().position(|t| t.contains(needle)).unwrap();
    assert!(
        pos("b=1") < pos("a=3"),
        "A holds its share, so B gets the first freed slot although A queued first: {order:?}"
    );
}

/// An upgrade request on its own connection from `src`; the status, with
/// the connection kept open (an open tunnel) when it is 101.
async fn open_tunnel(
    c: &Client,
    src: std::net::IpAddr,
) -> (u16, tokio_rustls::client::TlsStream<tokio::net::TcpStream>) {
    let mut s = c.tls(src, false).await;
    let req = format!(
        "GET /websocket HTTP/1.1\r\nHost: {HOST}:{}\r\nOrigin: https://{HOST}:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        c.https.port(),
        c.https.port()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    tokio::time::timeout(CALL_LIMIT, async {
        while !head.ends_with(b"\r\n\r\n") {
            if s.read(&mut byte).await.unwrap_or(0) == 0 {
                break;
            }
            head.push(byte[0]);
        }
    })
    .await
    .expect("an answer to the upgrade");
    let status = String::from_utf8_lossy(&head)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn websocket_tunnels_are_capped_per_address() {
    let fixture = OdooFixture::start().await;
    // Odoo's HTTP worker count does not bound tunnels: they go to the
    // evented worker.
    let r = Rampart::start(site(&fixture, "workers = 1\nmax_websockets_per_client = 2")).await;
    let c = Client::new(&r);
    let a = ip("127.0.0.2");
    let (s1, t1) = open_tunnel(&c, a).await;
    let (s2, t2) = open_tunnel(&c, a).await;
    assert_eq!((s1, s2), (101, 101));
    let (s3, _t3) = open_tunnel(&c, a).await;
    assert_eq!(s3, 503, "a third tunnel from one address over the cap");
    let (s4, _t4) = open_tunnel(&c, ip("127.0.0.3")).await;
    assert_eq!(s4, 101, "another address still gets a tunnel");
    // Closing one gives the address its share back.
    drop(t1);
    let deadline = tokio::time::Instant::now() + CALL_LIMIT;
    loop {
        let (s, t) = open_tunnel(&c, a).await;
        if s == 101 {
            drop(t);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the tunnel was never given back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(t2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_heavy_client_cannot_push_a_light_one_behind_its_queue() {
    // One Odoo worker, and rampart's cap at one: every request queues.
    let fixture = OdooFixture::start_with(FixtureOptions {
        workers: Some(1),
        ..FixtureOptions::default()
    })
    .await;
    let r = Rampart::start(site(
        &fixture,
        "workers = 1\nmax_conns_per_client = 100\nqueue_timeout = \"60s\"",
    ))
    .await;
    let c = Client::new(&r);
    let heavy = ip("127.0.0.2");
    let mut calls = Vec::new();
    for i in 0..20 {
        let c = c.clone();
        calls.push(tokio::spawn(async move {
            c.send(heavy, "GET", &format!("/slow?secs=0.2&n={i}"), vec![])
                .await
        }));
    }
    // Let the heavy client's requests queue up first.
    let deadline = tokio::time::Instant::now() + CALL_LIMIT;
    while fixture.count("/slow") == 0 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let served_before = fixture.count("/slow");
    let light = c
        .send(ip("127.0.0.3"), "GET", "/slow?secs=0.2&light=1", vec![])
        .await;
    assert_eq!(light.status, 200);
    let order: Vec<String> = fixture
        .requests()
        .into_iter()
        .filter(|s| s.target.starts_with("/slow"))
        .map(|s| s.target)
        .collect();
    let at = order
        .iter()
        .position(|t| t.contains("light"))
        .expect("the light request reached Odoo");
    // Round-robin: after the heavy requests Odoo had seen when the light
    // one was sent, at most the one rampart had in flight and the one
    // whose turn came first go before it (FIFO would put it last).
    assert!(
        at <= served_before + 2,
        "the light client's one request waited behind {at} of the heavy client's ({served_before} seen when it was sent): {order:?}"
    );
    for t in calls {
        assert_eq!(t.await.unwrap().status, 200);
    }
    let m = r.metrics().await;
    assert!(
        metric(&m, "rampart_upstream_queue_seconds_count") >= 21.0,
        "{m}"
    );
}

#[test]
fn slot_and_buffering_keys_are_checked_with_file_and_line() {
    let dir = common::TempDir::new("slots-check");
    let path = dir.path().join("rampart.toml");
    let p = path.to_str().unwrap();
    let cases = [
        (
            "[[site]]\nhosts = [\"erp.test\"]\nmax_conns_per_client = 0\n",
            3,
            "max_conns_per_client",
        ),
        (
            "[[site]]\nhosts = [\"erp.test\"]\n\nmax_websockets_per_client = 0\n",
            4,
            "max_websockets_per_client",
        ),
        (
            "[[site]]\nhosts = [\"erp.test\"]\nrequest_streaming = [\"upload\"]\n",
            3,
            "request_streaming",
        ),
        (
            // `workers` is another name for max_conns: both is a duplicate
            // (serde reports it at the table's line).
            "[[site]]\nhosts = [\"erp.test\"]\nworkers = 2\nmax_conns = 4\n",
            1,
            "duplicate field `max_conns`",
        ),
        (
            "[listen]\nclient_body_min_rate = \"fast\"\n[[site]]\nhosts = [\"erp.test\"]\n",
            2,
            "client_body_min_rate",
        ),
        (
            "[listen]\nsend_timeout = \"soon\"\n[[site]]\nhosts = [\"erp.test\"]\n",
            2,
            "send_timeout",
        ),
    ];
    for (text, line, key) in cases {
        std::fs::write(&path, text).unwrap();
        let (code, out, err) = common::run_cli(&["check", "--config", p]);
        assert_eq!(code, 2, "{text}: {out}{err}");
        assert!(
            err.contains(&format!("{p}:{line}")) && err.contains(key),
            "{text}: {err}"
        );
    }
    let good = "[listen]\nclient_body_min_rate = \"512\"\nclient_body_grace = \"5s\"\nsend_timeout = \"30s\"\nspool_max = \"1GiB\"\n\n[[site]]\nhosts = [\"erp.test\"]\nworkers = 4\nmax_conns_per_client = 2\nmax_websockets_per_client = 8\nrequest_buffering = true\nrequest_streaming = [\"/web/binary/upload\"]\n";
    std::fs::write(&path, good).unwrap();
    let (code, out, err) = common::run_cli(&["check", "--config", p]);
    assert_eq!(code, 0, "{out}{err}");
}
