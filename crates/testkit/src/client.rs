//! Clients for the tests: HTTPS by made-up names on loopback, raw bytes, TLS facts, websockets.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::util;

/// How long one client call may take before the test fails with a clear message.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A response as the client received it.
#[derive(Clone, Debug)]
pub struct TestResponse {
    pub status: u16,
    /// `HTTP/1.0`, `HTTP/1.1` or `HTTP/2.0`.
    pub version: String,
    /// Headers in order; names lower-case (hyper normalises them).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl TestResponse {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Builds a rustls client config that trusts exactly the CA certificates in `ca_pem_path`.
fn client_config(ca_pem_path: &Path, alpn: &[&[u8]]) -> Result<ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca_pem_path)
        .map_err(|e| format!("cannot read CA file {}: {e}", ca_pem_path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad PEM in CA file {}: {e}", ca_pem_path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "no certificate in CA file {}",
            ca_pem_path.display()
        ));
    }
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| format!("CA file {}: {e}", ca_pem_path.display()))?;
    }
    config_with_roots(roots, alpn)
}

fn config_with_roots(roots: rustls::RootCertStore, alpn: &[&[u8]]) -> Result<ClientConfig, String> {
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
    )
    .map_err(|e| format!("bad TLS server name {host:?}: {e}"))
}

/// Where to connect for a URL host: the host itself when it is an IP, else 127.0.0.1 (tests use made-up names).
fn connect_ip(host: &str) -> IpAddr {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

struct Url {
    https: bool,
    host: String,
    port: u16,
    /// host[:port] as written in the URL, for Host / :authority.
    authority: String,
    path_and_query: String,
}

fn parse_url(url: &str) -> Url {
    let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else {
        panic!("TestClient: URL must start with http:// or https://: {url}");
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => (
            h.to_string(),
            p.parse()
                .unwrap_or_else(|_| panic!("TestClient: bad port in URL {url}")),
        ),
        _ => (authority.to_string(), if https { 443 } else { 80 }),
    };
    Url {
        https,
        host,
        port,
        authority: authority.to_string(),
        path_and_query: path.to_string(),
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

async fn connect(
    addr: SocketAddr,
    tls: Option<(Arc<ClientConfig>, &str)>,
) -> Result<Box<dyn Io>, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    match tls {
        None => Ok(Box::new(tcp)),
        Some((config, sni)) => {
            let stream = TlsConnector::from(config)
                .connect(server_name(sni)?, tcp)
                .await
                .map_err(|e| format!("TLS handshake with {addr} (SNI {sni}) failed: {e}"))?;
            Ok(Box::new(stream))
        }
    }
}

/// An HTTP(S) client for hitting Rampart in tests: one new connection per request.
pub struct TestClient {
    h1: Arc<ClientConfig>,
    h2: Arc<ClientConfig>,
}

impl TestClient {
    /// A client trusting exactly the CA certificate(s) in this PEM file. Panics on a bad file.
    pub fn new(ca_pem_path: &Path) -> TestClient {
        let h1 = client_config(ca_pem_path, &[b"http/1.1"])
            .unwrap_or_else(|e| panic!("TestClient: {e}"));
        let h2 = client_config(ca_pem_path, &[b"h2"]).unwrap_or_else(|e| panic!("TestClient: {e}"));
        TestClient {
            h1: Arc::new(h1),
            h2: Arc::new(h2),
        }
    }

    /// A client for `http://` URLs only: it trusts no CA, so any `https://` request fails verification.
    pub fn new_plain() -> TestClient {
        let config = |alpn: &[&[u8]]| {
            Arc::new(
                config_with_roots(rustls::RootCertStore::empty(), alpn)
                    .expect("ring provider supports the default protocol versions"),
            )
        };
        TestClient {
            h1: config(&[b"http/1.1"]),
            h2: config(&[b"h2"]),
        }
    }

    pub async fn get(&self, url: &str) -> TestResponse {
        self.request("GET", url, &[], Vec::new()).await
    }

    /// Sends one HTTP/1.1 request. The connection goes to 127.0.0.1 (or the URL's IP) at the URL's
    /// port, with SNI and Host taken from the URL. Panics on connection or protocol errors.
    pub async fn request(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> TestResponse {
        self.try_request(method, url, headers, body, false)
            .await
            .unwrap_or_else(|e| panic!("TestClient {method} {url}: {e}"))
    }

    /// Like [`TestClient::request`], but offers only `h2` in ALPN and speaks HTTP/2.
    pub async fn request_h2(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> TestResponse {
        self.try_request(method, url, headers, body, true)
            .await
            .unwrap_or_else(|e| panic!("TestClient (h2) {method} {url}: {e}"))
    }

    /// The non-panicking form, for tests that expect a failure (refused connection, bad certificate).
    pub async fn try_request(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
        h2: bool,
    ) -> Result<TestResponse, String> {
        tokio::time::timeout(REQUEST_TIMEOUT, self.send(method, url, headers, body, h2))
            .await
            .map_err(|_| format!("no complete response within {REQUEST_TIMEOUT:?}"))?
    }

    async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
        h2: bool,
    ) -> Result<TestResponse, String> {
        let url = parse_url(url);
        let addr = SocketAddr::new(connect_ip(&url.host), url.port);
        let config = if h2 { &self.h2 } else { &self.h1 };
        let tls = url.https.then(|| (config.clone(), url.host.as_str()));
        let io = TokioIo::new(connect(addr, tls).await?);

        let uri = if h2 {
            format!(
                "{}://{}{}",
                if url.https { "https" } else { "http" },
                url.authority,
                url.path_and_query
            )
        } else {
            url.path_and_query.clone()
        };
        let mut builder = http::Request::builder()
            .method(method)
            .uri(uri)
            .version(if h2 {
                http::Version::HTTP_2
            } else {
                http::Version::HTTP_11
            });
        let has_host = headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host"));
        if !h2 && !has_host {
            builder = builder.header("host", &url.authority);
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("bad request: {e}"))?;

        let response = if h2 {
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
            tokio::spawn(conn);
            sender
                .send_request(request)
                .await
                .map_err(|e| format!("sending: {e}"))?
        } else {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|e| format!("HTTP/1.1 handshake: {e}"))?;
            tokio::spawn(conn);
            sender
                .send_request(request)
                .await
                .map_err(|e| format!("sending: {e}"))?
        };
        read_response(response).await
    }

    /// One HTTP/2 connection to the URL's host and port, for several
    /// requests at once on it (streams of one connection, as a browser
    /// sends them).
    pub async fn h2_connection(&self, url: &str) -> Result<H2Connection, String> {
        let url = parse_url(url);
        let addr = SocketAddr::new(connect_ip(&url.host), url.port);
        let tls = url.https.then(|| (self.h2.clone(), url.host.as_str()));
        let io = TokioIo::new(connect(addr, tls).await?);
        let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
        tokio::spawn(conn);
        Ok(H2Connection {
            sender,
            origin: format!(
                "{}://{}",
                if url.https { "https" } else { "http" },
                url.authority
            ),
        })
    }
}

/// See [`TestClient::h2_connection`]; clones share the connection.
#[derive(Clone)]
pub struct H2Connection {
    sender: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    origin: String,
}

impl H2Connection {
    /// GET `path` as a new stream of this connection.
    pub async fn get(&self, path: &str) -> Result<TestResponse, String> {
        let request = http::Request::builder()
            .uri(format!("{}{path}", self.origin))
            .version(http::Version::HTTP_2)
            .body(Full::new(Bytes::new()))
            .map_err(|e| format!("bad request: {e}"))?;
        let response = self
            .sender
            .clone()
            .send_request(request)
            .await
            .map_err(|e| format!("sending: {e}"))?;
        read_response(response).await
    }
}

async fn read_response(
    response: http::Response<hyper::body::Incoming>,
) -> Result<TestResponse, String> {
    let status = response.status().as_u16();
    let version = format!("{:?}", response.version());
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("reading the body: {e}"))?
        .to_bytes()
        .to_vec();
    Ok(TestResponse {
        status,
        version,
        headers,
        body,
    })
}

/// Writes `bytes` as they are and reads until EOF or until `read_timeout` has passed in total;
/// for smuggling and malformed-request tests. Panics if the connection or handshake fails.
pub async fn raw_exchange(
    addr: SocketAddr,
    tls: Option<(&Path, &str)>,
    bytes: &[u8],
    read_timeout: Duration,
) -> Vec<u8> {
    let tls = tls.map(|(ca, sni)| {
        let config =
            client_config(ca, &[b"http/1.1"]).unwrap_or_else(|e| panic!("raw_exchange: {e}"));
        (Arc::new(config), sni)
    });
    let mut stream = connect(addr, tls)
        .await
        .unwrap_or_else(|e| panic!("raw_exchange: {e}"));
    let mut out = Vec::new();
    if stream.write_all(bytes).await.is_err() || stream.flush().await.is_err() {
        // The peer may have answered and closed already; read what there is.
    }
    let deadline = tokio::time::Instant::now() + read_timeout;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

/// Completes a TLS handshake and reports (protocol version like `TLSv1.3`, negotiated ALPN, peer chain as DER).
pub async fn tls_handshake_info(
    addr: SocketAddr,
    ca: &Path,
    sni: &str,
    alpn: &[&[u8]],
) -> Result<(String, Option<Vec<u8>>, Vec<Vec<u8>>), String> {
    let config = Arc::new(client_config(ca, alpn)?);
    let tcp = tokio::time::timeout(REQUEST_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connecting to {addr} timed out"))?
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let stream = tokio::time::timeout(
        REQUEST_TIMEOUT,
        TlsConnector::from(config).connect(server_name(sni)?, tcp),
    )
    .await
    .map_err(|_| format!("TLS handshake with {addr} timed out"))?
    .map_err(|e| format!("TLS handshake with {addr} (SNI {sni}) failed: {e}"))?;
    let (_, conn) = stream.get_ref();
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
        Some(other) => format!("{other:?}"),
        None => "unknown".to_string(),
    };
    let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
    let chain = conn
        .peer_certificates()
        .map(|certs| certs.iter().map(|c| c.as_ref().to_vec()).collect())
        .unwrap_or_default();
    Ok((version, alpn, chain))
}

/// Opens a websocket (`ws://` or, with `tls`, `wss://`), sends `message` as a text frame and
/// returns the text echoed back. A non-101 answer comes back as `Err(status line)`.
pub async fn websocket_echo(
    addr: SocketAddr,
    tls: Option<(&Path, &str)>,
    host: &str,
    path: &str,
    origin: Option<&str>,
    message: &str,
) -> Result<String, String> {
    tokio::time::timeout(
        REQUEST_TIMEOUT,
        websocket_echo_inner(addr, tls, host, path, origin, message),
    )
    .await
    .map_err(|_| format!("websocket exchange with {addr} timed out"))?
}

async fn websocket_echo_inner(
    addr: SocketAddr,
    tls: Option<(&Path, &str)>,
    host: &str,
    path: &str,
    origin: Option<&str>,
    message: &str,
) -> Result<String, String> {
    let tls = match tls {
        Some((ca, sni)) => Some((Arc::new(client_config(ca, &[b"http/1.1"])?), sni)),
        None => None,
    };
    let mut stream = BufReader::new(connect(addr, tls).await?);
    let key = util::base64_encode(&util::random_bytes::<16>());
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    );
    if let Some(origin) = origin {
        request.push_str(&format!("Origin: {origin}\r\n"));
    }
    request.push_str("\r\n");
    let io = |e: std::io::Error| format!("websocket I/O with {addr}: {e}");
    stream.write_all(request.as_bytes()).await.map_err(io)?;
    stream.flush().await.map_err(io)?;

    let mut status_line = String::new();
    stream.read_line(&mut status_line).await.map_err(io)?;
    let status_line = status_line.trim_end().to_string();
    let mut accept = None;
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line).await.map_err(io)? == 0 {
            return Err(format!(
                "connection closed inside the response head after {status_line:?}"
            ));
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("sec-websocket-accept")
        {
            accept = Some(value.trim().to_string());
        }
    }
    if status_line.split(' ').nth(1) != Some("101") {
        return Err(status_line);
    }
    if accept.as_deref() != Some(util::websocket_accept(&key).as_str()) {
        return Err(format!(
            "bad Sec-WebSocket-Accept {accept:?} in the 101 answer"
        ));
    }
    let mask = util::random_bytes::<4>();
    write_client_frame(&mut stream, 0x1, message.as_bytes(), mask)
        .await
        .map_err(io)?;
    // Skip control frames (pings) until a data frame arrives.
    let reply = loop {
        let (opcode, payload) = read_server_frame(&mut stream).await.map_err(io)?;
        match opcode {
            0x1 | 0x2 => break payload,
            0x8 => return Err("the server closed the websocket before echoing".to_string()),
            _ => continue,
        }
    };
    let _ = write_client_frame(
        &mut stream,
        0x8,
        &1000u16.to_be_bytes(),
        util::random_bytes::<4>(),
    )
    .await;
    String::from_utf8(reply).map_err(|_| "the echoed message is not UTF-8".to_string())
}

async fn write_client_frame<W: AsyncWrite + Unpin>(
    out: &mut W,
    opcode: u8,
    payload: &[u8],
    mask: [u8; 4],
) -> std::io::Result<()> {
    crate::fixture::write_frame(out, opcode, payload, Some(mask)).await
}

async fn read_server_frame<R: AsyncRead + Unpin>(reader: &mut R) -> std::io::Result<(u8, Vec<u8>)> {
    let mut first = [0u8; 2];
    reader.read_exact(&mut first).await?;
    let len = match first[1] & 0x7f {
        126 => u64::from(reader.read_u16().await?),
        127 => reader.read_u64().await?,
        n => u64::from(n),
    };
    if first[1] & 0x80 != 0 {
        let mut mask = [0u8; 4];
        reader.read_exact(&mut mask).await?;
    }
    let mut payload = vec![0u8; len.min(64 * 1024 * 1024) as usize];
    reader.read_exact(&mut payload).await?;
    Ok((first[0] & 0x0f, payload))
}

/// A port that was free a moment ago on 127.0.0.1 (bind :0, read, release).
pub fn free_port() -> u16 {
    // The kernel may hand the same port out again once its listener is
    // closed: never give one port twice in this process (a test's http and
    // admin listeners once got the same one).
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("cannot bind 127.0.0.1:0");
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Waits until something accepts TCP connections at `addr`.
pub async fn wait_for_port(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("nothing listening on {addr} after {timeout:?}"));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
