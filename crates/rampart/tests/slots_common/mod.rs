//! A client for the slot tests (edge_buffering, edge_slots) and the
//! guard's (guard_edge): connections from a chosen 127.0.0.x source
//! address (per-client caps count by address), raw HTTP/1.1 over TLS for
//! uploads sent at a chosen pace, and HTTP/2 connections that never open
//! their receive window.

#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::common::Rampart;

pub const HOST: &str = "erp.slots.test";
/// One client call may take this long before the test fails saying so.
pub const CALL_LIMIT: Duration = Duration::from_secs(20);

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

#[derive(Clone)]
pub struct Client {
    pub https: SocketAddr,
    /// The site's name: SNI and Host.
    pub host: &'static str,
    /// How long a TLS handshake may take before the test fails.
    handshake_limit: Duration,
    h1: Arc<ClientConfig>,
    h2: Arc<ClientConfig>,
}

impl Client {
    /// A client of the site [`HOST`].
    pub fn new(r: &Rampart) -> Client {
        Client::for_host(r, HOST, CALL_LIMIT)
    }

    /// A client of the site `host` whose TLS handshakes may take
    /// `handshake_limit`.
    pub fn for_host(r: &Rampart, host: &'static str, handshake_limit: Duration) -> Client {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(r.ca_path()).expect("the local CA file") {
            roots.add(cert.expect("a PEM certificate")).unwrap();
        }
        let config = |alpn: &[u8]| {
            let mut c = ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
            c.alpn_protocols = vec![alpn.to_vec()];
            Arc::new(c)
        };
        Client {
            https: r.https,
            host,
            handshake_limit,
            h1: config(b"http/1.1"),
            h2: config(b"h2"),
        }
    }

    /// A TCP connection to the HTTPS port from `src` (any 127.0.0.x).
    pub async fn tcp(&self, src: IpAddr) -> TcpStream {
        let socket = TcpSocket::new_v4().unwrap();
        socket
            .bind(SocketAddr::new(src, 0))
            .unwrap_or_else(|e| panic!("cannot bind a client socket to {src}: {e}"));
        let tcp = socket
            .connect(self.https)
            .await
            .unwrap_or_else(|e| panic!("cannot connect from {src} to {}: {e}", self.https));
        tcp.set_nodelay(true).unwrap();
        tcp
    }

    /// TLS (ALPN h2 or http/1.1) on a connected socket; Err when the
    /// handshake fails or takes longer than the client's limit.
    pub async fn tls_on(&self, tcp: TcpStream, h2: bool) -> Result<TlsStream<TcpStream>, String> {
        let config = if h2 { &self.h2 } else { &self.h1 };
        let name = ServerName::try_from(self.host.to_string()).unwrap();
        tokio::time::timeout(
            self.handshake_limit,
            TlsConnector::from(config.clone()).connect(name, tcp),
        )
        .await
        .map_err(|_| "TLS handshake timed out".to_string())?
        .map_err(|e| format!("TLS handshake failed: {e}"))
    }

    pub async fn tls(&self, src: IpAddr, h2: bool) -> TlsStream<TcpStream> {
        let tcp = self.tcp(src).await;
        self.tls_on(tcp, h2)
            .await
            .unwrap_or_else(|e| panic!("from {src}: {e}"))
    }

    /// One HTTP/1.1 request from `src`; Err when no answer within CALL_LIMIT.
    pub async fn try_send(
        &self,
        src: IpAddr,
        method: &str,
        path: &str,
        body: Vec<u8>,
    ) -> Result<Resp, String> {
        let tls = self.tls(src, false).await;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", format!("{}:{}", self.host, self.https.port()))
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let call = async {
            let res = sender.send_request(req).await.map_err(|e| e.to_string())?;
            let (parts, body) = res.into_parts();
            let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
            Ok(Resp {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(CALL_LIMIT, call)
            .await
            .map_err(|_| format!("no answer to {method} {path} from {src} within {CALL_LIMIT:?}"))?
    }

    pub async fn send(&self, src: IpAddr, method: &str, path: &str, body: Vec<u8>) -> Resp {
        self.try_send(src, method, path, body)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// An HTTP/2 connection from `src` that never opens its receive
    /// window: `n` GETs of `path` get their heads, never a body byte.
    /// The responses are returned unread (keep them to keep the streams),
    /// with the connection's sender (keep it, or hyper closes the
    /// connection itself) and its task, which ends when the connection does.
    pub async fn zero_window_h2(&self, src: IpAddr, path: &str, n: usize) -> ZeroWindow {
        self.zero_window_h2_with(src, path, n, &[]).await
    }

    /// `zero_window_h2` with these request headers.
    pub async fn zero_window_h2_with(
        &self,
        src: IpAddr,
        path: &str,
        n: usize,
        headers: &[(&str, &str)],
    ) -> ZeroWindow {
        self.small_window_h2(src, path, n, headers, 0).await
    }

    /// `n` HTTP/2 streams whose windows open `window` bytes and no more
    /// (the answers' bodies are never read).
    pub async fn small_window_h2(
        &self,
        src: IpAddr,
        path: &str,
        n: usize,
        headers: &[(&str, &str)],
        window: u32,
    ) -> ZeroWindow {
        let tls = self.tls(src, true).await;
        let mut b = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
        b.initial_stream_window_size(window).adaptive_window(false);
        let (sender, conn) = b.handshake(TokioIo::new(tls)).await.unwrap();
        let task = tokio::spawn(async move {
            let _ = conn.await;
        });
        let uri = format!("https://{}:{}{path}", self.host, self.https.port());
        let calls = (0..n).map(|_| {
            let mut sender = sender.clone();
            let mut req = http::Request::get(uri.as_str());
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let req = req.body(Full::new(Bytes::new())).unwrap();
            tokio::spawn(async move {
                tokio::time::timeout(CALL_LIMIT * 3, sender.send_request(req))
                    .await
                    .expect("response heads in time")
                    .expect("a response head")
            })
        });
        let mut out = Vec::new();
        for c in calls.collect::<Vec<_>>() {
            out.push(c.await.unwrap());
        }
        ZeroWindow {
            responses: out,
            sender,
            conn: task,
        }
    }
}

pub struct ZeroWindow {
    pub responses: Vec<http::Response<hyper::body::Incoming>>,
    pub sender: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    pub conn: tokio::task::JoinHandle<()>,
}

/// A raw HTTP/1.1 upload on its own TLS connection, sent at the test's pace.
pub struct Upload {
    pub stream: TlsStream<TcpStream>,
}

impl Upload {
    /// Sends the head of `POST path` declaring `len` bytes, and `first`.
    pub async fn start(c: &Client, src: IpAddr, path: &str, len: usize, first: &[u8]) -> Upload {
        let mut stream = c.tls(src, false).await;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\n\r\n",
            c.host,
            c.https.port()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(first).await.unwrap();
        stream.flush().await.unwrap();
        Upload { stream }
    }

    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// Reads the answer (until the head and Content-Length bytes, or EOF).
    pub async fn answer(&mut self) -> (u16, String) {
        let mut buf = Vec::new();
        let read = async {
            let mut chunk = [0u8; 8192];
            loop {
                let n = self.stream.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some(i) = text.find("\r\n\r\n") {
                    let len = text[..i]
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if buf.len() >= i + 4 + len {
                        break;
                    }
                }
            }
        };
        tokio::time::timeout(CALL_LIMIT, read)
            .await
            .expect("an answer to the upload in time");
        let text = String::from_utf8_lossy(&buf).to_string();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, text)
    }
}

/// The value of an unlabelled or labelled metric line starting with `name`.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
