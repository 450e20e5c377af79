//! Differential property test: the framing follower against hyper itself.
//!
//! Generated keep-alive byte streams (every framing hyper accepts or
//! refuses: Content-Length and Transfer-Encoding in either order, lists,
//! repeats, HTTP/1.0, bare-LF heads, chunk extensions and trailers,
//! `Upgrade`, leading empty lines) go through a real hyper 1.x HTTP/1 server
//! configured as Rampart's, reading through `Watched` exactly as a Rampart
//! connection does. Every request hyper hands to the service that was sent
//! with both Content-Length and Transfer-Encoding must be refused by the
//! follower's marks, and no request before the stream is lost may be
//! refused otherwise. `PROPTEST_CASES` sets the number of streams.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use proptest::prelude::*;
use rampart_edge::framing::{Marks, Watched};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length,
    Chunked,
    LengthThenChunked,
    ChunkedThenLength,
    LengthList,
    LengthTwice,
    LengthsDiffer,
    GzipThenChunked,
    ChunkedThenGzip,
}

#[derive(Debug, Clone)]
struct Req {
    framing: Framing,
    http10: bool,
    lf: bool,
    upgrade: bool,
    blank_lines: u8,
    chunks: Vec<Vec<u8>>,
    ext: bool,
    upper_hex: bool,
    trailer: bool,
}

impl Req {
    /// Sent with both Content-Length and Transfer-Encoding.
    fn both(&self) -> bool {
        matches!(
            self.framing,
            Framing::LengthThenChunked | Framing::ChunkedThenLength
        )
    }

    fn bytes(&self, i: usize) -> Vec<u8> {
        let eol: &str = if self.lf { "\n" } else { "\r\n" };
        let mut out = Vec::new();
        for _ in 0..self.blank_lines {
            out.extend_from_slice(b"\r\n");
        }
        let version = if self.http10 { "1.0" } else { "1.1" };
        let both = if self.both() { "both" } else { "one" };
        let mut head = vec![
            format!("POST /r{i}-{both} HTTP/{version}"),
            "Host: a".into(),
        ];
        if self.upgrade {
            head.push("Upgrade: websocket".into());
            head.push("Connection: upgrade".into());
        }
        if self.http10 {
            head.push("Connection: keep-alive".into());
        }
        let body: Vec<u8> = self.chunks.concat();
        let mut chunked = Vec::new();
        for c in &self.chunks {
            let size = if self.upper_hex {
                format!("{:X}", c.len())
            } else {
                format!("0{:x}", c.len())
            };
            chunked.extend_from_slice(size.as_bytes());
            if self.ext {
                chunked.extend_from_slice(b" ;x=\"y\"");
            }
            chunked.extend_from_slice(b"\r\n");
            chunked.extend_from_slice(c);
            chunked.extend_from_slice(b"\r\n");
        }
        chunked.extend_from_slice(b"0\r\n");
        if self.trailer {
            chunked.extend_from_slice(b"X-T: 1\r\n");
        }
        chunked.extend_from_slice(b"\r\n");
        let len = body.len();
        let (fields, tail): (Vec<String>, Vec<u8>) = match self.framing {
            Framing::None => (vec![], vec![]),
            Framing::Length => (vec![format!("Content-Length: {len}")], body),
            Framing::Chunked => (vec!["Transfer-Encoding: chunked".into()], chunked),
            Framing::LengthThenChunked => (
                vec![
                    format!("Content-Length: {}", len + 3),
                    "Transfer-Encoding: chunked".into(),
                ],
                chunked,
            ),
            Framing::ChunkedThenLength => (
                vec![
                    "Transfer-Encoding: chunked".into(),
                    format!("Content-Length: {}", len + 3),
                ],
                chunked,
            ),
            Framing::LengthList => (vec![format!("Content-Length: {len}, {len}")], body),
            Framing::LengthTwice => (
                vec![
                    format!("Content-Length: {len}"),
                    format!("Content-Length: {len}"),
                ],
                body,
            ),
            Framing::LengthsDiffer => (
                vec![
                    format!("Content-Length: {len}"),
                    format!("Content-Length: {}", len + 1),
                ],
                body,
            ),
            Framing::GzipThenChunked => (vec!["Transfer-Encoding: gzip, chunked".into()], chunked),
            Framing::ChunkedThenGzip => (vec!["Transfer-Encoding: chunked, gzip".into()], chunked),
        };
        head.extend(fields);
        for line in head {
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(eol.as_bytes());
        }
        out.extend_from_slice(eol.as_bytes());
        out.extend_from_slice(&tail);
        out
    }
}

fn req() -> impl Strategy<Value = Req> {
    let framing = prop_oneof![
        4 => Just(Framing::None),
        4 => Just(Framing::Length),
        4 => Just(Framing::Chunked),
        2 => Just(Framing::LengthThenChunked),
        2 => Just(Framing::ChunkedThenLength),
        1 => Just(Framing::LengthList),
        1 => Just(Framing::LengthTwice),
        1 => Just(Framing::LengthsDiffer),
        1 => Just(Framing::GzipThenChunked),
        1 => Just(Framing::ChunkedThenGzip),
    ];
    (
        framing,
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.2),
        0..3u8,
        proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..24), 0..3),
        any::<bool>(),
        any::<bool>(),
        prop::bool::weighted(0.2),
    )
        .prop_map(
            |(framing, http10, lf, upgrade, blank_lines, chunks, ext, upper_hex, trailer)| Req {
                framing,
                http10,
                lf,
                upgrade,
                blank_lines,
                chunks,
                ext,
                upper_hex,
                trailer,
            },
        )
}

/// What the service saw: (request number, path, refused by the marks).
type Seen = Arc<Mutex<Vec<(u64, String, bool)>>>;

/// Runs `bytes` through hyper (configured as `server.rs` does, but for
/// half-close) over a
/// `Watched` stream, cut into writes at `cuts`.
async fn through_hyper(bytes: Vec<u8>, cuts: Vec<usize>) -> Vec<(u64, String, bool)> {
    let (client, server) = tokio::io::duplex(1 << 20);
    let marks = Arc::new(Marks::default());
    let seen: Seen = Arc::default();
    let count = Arc::new(AtomicU64::new(0));
    let svc = {
        let (marks, seen, count) = (marks.clone(), seen.clone(), count.clone());
        service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let (marks, seen, count) = (marks.clone(), seen.clone(), count.clone());
            async move {
                let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                seen.lock()
                    .unwrap()
                    .push((n, req.uri().path().to_string(), marks.refuses(n)));
                let _ = req.into_body().collect().await;
                Ok::<_, Infallible>(hyper::Response::new(Empty::<Bytes>::new()))
            }
        })
    };
    let io = TokioIo::new(Watched::new(server, marks));
    let serve = tokio::spawn(async move {
        let mut b = hyper::server::conn::http1::Builder::new();
        b.timer(TokioTimer::new())
            .max_buf_size(64 * 1024)
            .max_header_size(64 * 1024)
            .keep_alive(true)
            // The test ends its stream with EOF; without half-close hyper
            // may drop the last requests instead of serving them. Framing
            // is the same either way.
            .half_close(true);
        let _ = b.serve_connection(io, svc).with_upgrades().await;
    });
    let (mut rd, mut wr) = tokio::io::split(client);
    let reader = tokio::spawn(async move {
        let mut sink = Vec::new();
        let _ = rd.read_to_end(&mut sink).await;
    });
    let mut at = 0;
    let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    for c in cuts.into_iter().chain([bytes.len()]) {
        if c > at {
            if wr.write_all(&bytes[at..c]).await.is_err() {
                break;
            }
            at = c;
        }
    }
    let _ = wr.shutdown().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), serve).await;
    reader.abort();
    seen.lock().unwrap().clone()
}

#[test]
fn every_request_hyper_serves_with_both_lengths_is_refused() {
    let config = ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let cases = config.cases;
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let served = AtomicU64::new(0);
    let served_both = AtomicU64::new(0);
    let strategy = (
        proptest::collection::vec(req(), 1..6),
        proptest::collection::vec(any::<usize>(), 0..6),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let result = runner.run(&strategy, |(reqs, cuts)| {
        let bytes: Vec<u8> = reqs
            .iter()
            .enumerate()
            .flat_map(|(i, r)| r.bytes(i))
            .collect();
        let seen = rt.block_on(through_hyper(bytes, cuts));
        let first = &reqs[0];
        let plainly_valid = matches!(
            first.framing,
            Framing::None | Framing::Length | Framing::LengthTwice
        ) || (first.framing == Framing::Chunked && !first.http10);
        if plainly_valid {
            prop_assert!(!seen.is_empty(), "hyper served nothing of {:?}", reqs);
        }
        // The follower mirrors hyper: it refuses exactly those. (Where
        // hyper refuses a stream it closes the connection, so a lost
        // follower never refuses a request hyper serves.)
        for (n, path, refused) in &seen {
            served.fetch_add(1, Ordering::Relaxed);
            if path.ends_with("-both") {
                served_both.fetch_add(1, Ordering::Relaxed);
            }
            prop_assert_eq!(
                *refused,
                path.ends_with("-both"),
                "request {} {}; served: {:?}",
                n,
                path,
                seen
            );
        }
        Ok(())
    });
    let (served, both) = (
        served.load(Ordering::Relaxed),
        served_both.load(Ordering::Relaxed),
    );
    eprintln!(
        "{cases} streams: hyper served {served} requests, {both} of them sent with both lengths"
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(
        served > u64::from(cases) && both > 0,
        "the streams reach hyper's service"
    );
}
