//! Red team 2: one address opened connections and kept them alive with
//! HTTP/2 PINGs (which count as activity), took every `max_connections`
//! slot, and the next client waited in the backlog for good. Each address
//! now holds at most its share.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Rampart, Setup, Site};
use rampart_testkit::OdooFixture;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const HOST: &str = "erp.conncap.test";

fn http_addr(r: &Rampart) -> SocketAddr {
    let url = r.http_url(HOST, "/");
    let hostport = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let port: u16 = hostport.rsplit(':').next().unwrap().parse().unwrap();
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Sends a request from `from` and returns the status line, or "" when the
/// connection is closed without an answer.
async fn status_line(from: [u8; 4], to: SocketAddr) -> String {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::from((from, 0))).unwrap();
    let mut s = sock.connect(to).await.unwrap();
    let req = format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
    let _ = s.write_all(req.as_bytes()).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

async fn open_connections(r: &Rampart) -> f64 {
    let m = r.metrics().await;
    m.lines()
        .find(|l| l.starts_with("rampart_connections_open "))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no rampart_connections_open in\n{m}"))
}

#[tokio::test]
async fn one_address_holds_only_its_share_of_connections() {
    let fixture = OdooFixture::start().await;
    let r = Rampart::start(Setup {
        sites: vec![Site::new(HOST, &fixture)],
        listen: "max_connections_per_client = 3\n".into(),
        ..Setup::default()
    })
    .await;
    let to = http_addr(&r);
    assert!(
        status_line([127, 0, 0, 1], to).await.contains("308"),
        "served while under its share"
    );
    // The connections before this one (the harness's readiness probes, the
    // request above) are closed: wait until Rampart has seen them go, or a
    // late one would take a place of the three below.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while open_connections(&r).await > 0.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "connections never closed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Three idle connections from 127.0.0.1 (each would keep itself alive).
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(to).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        status_line([127, 0, 0, 1], to).await,
        "",
        "a fourth connection from the same address is closed unanswered"
    );
    assert!(
        status_line([127, 0, 0, 2], to).await.contains("308"),
        "another address is still served"
    );
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        status_line([127, 0, 0, 1], to).await.contains("308"),
        "closed connections give the address its share back"
    );
}
