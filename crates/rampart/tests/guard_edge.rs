//! The guard end to end (issue 4): the real `rampart serve` in front of the
//! Odoo-like fixture, with clients bound to several loopback source
//! addresses (Linux routes all of 127.0.0.0/8 to lo), so per-address
//! counting, bans, and the address Odoo and the access log see are checked
//! where users meet them: on the wire, in the fixture's records, in
//! `rampart bans`, in state_dir and on /metrics.

mod common;
mod slots_common;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{Rampart, Setup, Site, TempDir, bin, metric, require_program, run_cli, wait_line};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rampart_testkit::{FixtureOptions, OdooFixture, SeenRequest, TestClient};
use serde_json::Value;
use slots_common::{Resp, ip};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

const HOST: &str = "erp.guard.test";
/// Rates far above anything a test sends, for tests about login failures.
const LOOSE_RATES: &str = "rate = { per_second = 5000, burst = 5000 }\nlogin_rate = { per_minute = 60000, burst = 5000, address_per_minute = 60000, address_burst = 5000 }\n";
/// One client call may take this long before the test fails saying so.
const CALL_LIMIT: Duration = Duration::from_secs(60);

/// Starts rampart for one site in front of `fixture`; `guard` is the body
/// of the `[guard]` table.
async fn start(fixture: &OdooFixture, guard: &str) -> Rampart {
    Rampart::start(guard_setup(fixture, guard)).await
}

fn guard_setup(fixture: &OdooFixture, guard: &str) -> Setup {
    // The shared harness has no [guard] field; its `listen` text closes the
    // [listen] table, so a [guard] table can follow there.
    Setup {
        sites: vec![Site::new(HOST, fixture)],
        listen: format!("\n[guard]\n{guard}\n"),
        ..Setup::default()
    }
}

// ---- requests -------------------------------------------------------------

#[derive(Clone, Debug)]
struct Req {
    method: &'static str,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Req {
    fn get(path: &str) -> Req {
        Req {
            method: "GET",
            path: path.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    fn post(path: &str, content_type: &str, body: String) -> Req {
        Req {
            method: "POST",
            path: path.to_string(),
            headers: vec![("content-type".into(), content_type.into())],
            body: body.into_bytes(),
        }
    }

    fn header(mut self, name: &str, value: &str) -> Req {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The login form (admin/admin is the fixture's only good password) as a browser posts it:
    /// with the session cookie and the CSRF token of the form it loaded. The fixture mints that
    /// pair: fetching the form is not what these tests are about, and a banned address could not.
    fn form_login(fixture: &OdooFixture, password: &str) -> Req {
        let (sid, token) = fixture.login_form_session();
        Req::post(
            "/web/login",
            "application/x-www-form-urlencoded",
            format!("csrf_token={token}&login=admin&password={password}&redirect=%2Fodoo"),
        )
        .header("cookie", &format!("session_id={sid}"))
    }

    fn session_authenticate(password: &str) -> Req {
        Req::post(
            "/web/session/authenticate",
            "application/json",
            serde_json::json!({"jsonrpc": "2.0", "method": "call", "id": 1,
                "params": {"db": "demo1", "login": "admin", "password": password}})
            .to_string(),
        )
    }

    fn xmlrpc_authenticate(password: &str) -> Req {
        Req::post(
            "/xmlrpc/2/common",
            "text/xml",
            format!(
                "<?xml version='1.0'?>\n<methodCall>\n<methodName>authenticate</methodName>\n<params>\n\
                 <param><value><string>demo1</string></value></param>\n\
                 <param><value><string>admin</string></value></param>\n\
                 <param><value><string>{password}</string></value></param>\n\
                 <param><value><struct></struct></value></param>\n</params>\n</methodCall>\n"
            ),
        )
    }

    fn jsonrpc(service: &str, method: &str, args: Value) -> Req {
        Req::post(
            "/jsonrpc",
            "application/json",
            serde_json::json!({"jsonrpc": "2.0", "method": "call", "id": 7,
                "params": {"service": service, "method": method, "args": args}})
            .to_string(),
        )
    }

    fn jsonrpc_login(password: &str) -> Req {
        Req::jsonrpc(
            "common",
            "login",
            serde_json::json!(["demo1", "admin", password]),
        )
    }

    fn execute_kw() -> Req {
        Req::jsonrpc(
            "object",
            "execute_kw",
            serde_json::json!(["demo1", 2, "admin", "res.partner", "search_count", [[]]]),
        )
    }
}

/// The slot tests' client (source address, TLS) for this site, with the
/// guard tests' requests.
#[derive(Clone)]
struct Client(slots_common::Client);

impl Client {
    fn new(r: &Rampart) -> Client {
        Client(slots_common::Client::for_host(r, HOST, CALL_LIMIT))
    }

    async fn tcp(&self, src: IpAddr) -> TcpStream {
        self.0.tcp(src).await
    }

    async fn tls(&self, tcp: TcpStream, h2: bool) -> Result<TlsStream<TcpStream>, String> {
        self.0.tls_on(tcp, h2).await
    }

    fn request(&self, req: &Req, h2: bool) -> http::Request<Full<Bytes>> {
        let mut b = http::Request::builder().method(req.method);
        b = if h2 {
            b.version(http::Version::HTTP_2).uri(format!(
                "https://{HOST}:{}{}",
                self.0.https.port(),
                req.path
            ))
        } else {
            b.uri(req.path.as_str())
                .header("host", format!("{HOST}:{}", self.0.https.port()))
        };
        for (k, v) in &req.headers {
            b = b.header(k.as_str(), v.as_str());
        }
        b.body(Full::new(Bytes::from(req.body.clone()))).unwrap()
    }

    /// One HTTP/1.1 request on a new connection from `src`.
    async fn send(&self, src: IpAddr, req: Req) -> Resp {
        let tcp = self.tcp(src).await;
        self.send_on(tcp, &req)
            .await
            .unwrap_or_else(|e| panic!("{} {} from {src}: {e}", req.method, req.path))
    }

    /// One HTTP/1.1 request over TLS on an already connected socket.
    async fn send_on(&self, tcp: TcpStream, req: &Req) -> Result<Resp, String> {
        let tls = self.tls(tcp, false).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let call = async {
            let res = sender
                .send_request(self.request(req, false))
                .await
                .map_err(|e| e.to_string())?;
            collect(res).await
        };
        tokio::time::timeout(CALL_LIMIT, call)
            .await
            .map_err(|_| "no answer in time".to_string())?
    }

    /// `reqs` as concurrent streams of one HTTP/2 connection from `src`.
    async fn h2_burst(&self, src: IpAddr, reqs: Vec<Req>) -> Vec<Resp> {
        let tls = self.tls(self.tcp(src).await, true).await.unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(conn);
        let calls = reqs.iter().map(|req| {
            let mut sender = sender.clone();
            let request = self.request(req, true);
            async move {
                let res = tokio::time::timeout(CALL_LIMIT, sender.send_request(request))
                    .await
                    .expect("an HTTP/2 answer in time")
                    .expect("an HTTP/2 answer");
                collect(res).await.unwrap()
            }
        });
        join_all(calls).await
    }
}

async fn collect(res: http::Response<hyper::body::Incoming>) -> Result<Resp, String> {
    let (parts, body) = res.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Resp {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    })
}

/// Runs the futures concurrently (as tasks, so they use every worker).
async fn join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("a client task panicked"));
    }
    out
}

/// `n` concurrent HTTP/1.1 requests, each on its own connection from `src`.
async fn h1_burst(c: &Client, src: IpAddr, req: Req, n: usize) -> Vec<Resp> {
    join_all((0..n).map(|_| {
        let (c, req) = (c.clone(), req.clone());
        async move { c.send(src, req).await }
    }))
    .await
}

fn statuses(rs: &[Resp]) -> std::collections::BTreeMap<u16, usize> {
    let mut m = std::collections::BTreeMap::new();
    for r in rs {
        *m.entry(r.status).or_insert(0) += 1;
    }
    m
}

// ---- what Odoo and rampart saw --------------------------------------------

/// Requests the fixture got for `client` (rampart puts the client it
/// decided on as the only X-Forwarded-For entry) on `path`.
fn seen_from(fixture: &OdooFixture, client: &str, path: &str) -> Vec<SeenRequest> {
    fixture
        .requests()
        .into_iter()
        .filter(|r| r.target.starts_with(path) && r.header("x-forwarded-for") == Some(client))
        .collect()
}

/// The POSTs among [`seen_from`]: the login attempts that reached Odoo.
fn posts_from(fixture: &OdooFixture, client: &str, path: &str) -> usize {
    seen_from(fixture, client, path)
        .iter()
        .filter(|r| r.method == "POST")
        .count()
}

/// `rampart bans list --json` against the running server.
fn bans(r: &Rampart) -> Vec<Value> {
    let config = r.config_path.to_str().unwrap();
    let (code, out, err) = run_cli(&["bans", "list", "--json", "--config", config]);
    assert_eq!(code, 0, "rampart bans list failed: {err}");
    serde_json::from_str::<Vec<Value>>(&out)
        .unwrap_or_else(|e| panic!("bans list --json is not a JSON list ({e}): {out}"))
}

fn ban_of(r: &Rampart, addr: &str) -> Option<Value> {
    bans(r).into_iter().find(|b| b["addr"] == addr)
}

fn banned_addrs(r: &Rampart) -> Vec<String> {
    bans(r)
        .iter()
        .map(|b| b["addr"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Polls `bans list` until `addr` is banned (the log follower works on its
/// own schedule); panics naming what is listed after 15 s.
async fn wait_banned(r: &Rampart, addr: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(b) = ban_of(r, addr) {
            return b;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{addr} not banned after 15 s; bans: {:?}\nstderr:\n{}",
            bans(r),
            r.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// SIGTERM, wait for a clean exit, then `rampart serve` again on the same
/// config (same ports, same state_dir); the harness still stops it on drop.
async fn restart(r: &mut Rampart) {
    r.signal("TERM");
    let status = r
        .wait_exit(Duration::from_secs(15))
        .expect("rampart did not stop within 15 s of SIGTERM");
    assert!(status.success(), "SIGTERM exit: {status}\n{}", r.stderr());
    let stderr = std::fs::OpenOptions::new()
        .append(true)
        .open(&r.stderr_path)
        .unwrap();
    let child = std::process::Command::new(bin())
        .arg("serve")
        .arg("--config")
        .arg(&r.config_path)
        .env("RAMPART_LOG", "info")
        .env_remove("RAMPART_CONFIG")
        .current_dir(r.dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("cannot start rampart again");
    r.pid = child.id();
    r.child = Some(child);
    for addr in [r.https, r.admin] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(addr).await.is_err() {
            if let Some(s) = r.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("rampart exited ({s}) on restart:\n{}", r.stderr());
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "rampart did not listen on {addr} again within 30 s:\n{}",
                r.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

// ---- 1 client address -----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn spoofed_forwarded_for_is_ignored_without_trusted_proxies() {
    let fixture = OdooFixture::start().await;
    let r = start(
        &fixture,
        &format!("{LOOSE_RATES}login_failures = {{ max = 2, within = \"60s\", ban = \"1h\" }}"),
    )
    .await;
    let c = Client::new(&r);
    let peer = ip("127.0.0.2");

    let res = c
        .send(
            peer,
            Req::get("/echo/spoof").header("x-forwarded-for", "203.0.113.9"),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let seen = seen_from(&fixture, "127.0.0.2", "/echo/spoof");
    assert_eq!(seen.len(), 1, "{:?}", fixture.requests());
    assert_eq!(seen[0].header_all("x-forwarded-for"), vec!["127.0.0.2"]);
    assert_eq!(seen[0].header("x-real-ip"), Some("127.0.0.2"));
    let line = r.wait_access_line(&["/echo/spoof"]).await;
    assert!(line.starts_with("127.0.0.2 "), "access log: {line}");

    // Failures claiming a new address each time still count for the peer.
    for spoof in ["203.0.113.9", "203.0.113.10"] {
        let res = c
            .send(
                peer,
                Req::form_login(&fixture, "wrong").header("x-forwarded-for", spoof),
            )
            .await;
        assert_eq!(res.status, 200, "a failed login re-renders the form");
    }
    let res = c
        .send(
            peer,
            Req::get("/odoo").header("x-forwarded-for", "198.51.100.77"),
        )
        .await;
    assert_eq!(res.status, 403, "the peer is banned whatever it claims");
    assert_eq!(banned_addrs(&r), vec!["127.0.0.2".to_string()]);
    // Another address is not affected.
    let res = c.send(ip("127.0.0.3"), Req::get("/web/login")).await;
    assert_eq!(res.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trusted_proxy_forwarded_for_names_the_client() {
    let fixture = OdooFixture::start().await;
    let r = start(
        &fixture,
        &format!(
            "trusted_proxies = [\"127.0.0.1/32\"]\n{LOOSE_RATES}login_failures = {{ max = 2, within = \"60s\", ban = \"1h\" }}"
        ),
    )
    .await;
    let c = Client::new(&r);
    let proxy = ip("127.0.0.1");

    let res = c
        .send(
            proxy,
            Req::get("/echo/xff").header("x-forwarded-for", "203.0.113.9"),
        )
        .await;
    assert_eq!(res.status, 200);
    let seen = seen_from(&fixture, "203.0.113.9", "/echo/xff");
    assert_eq!(seen.len(), 1, "{:?}", fixture.requests());
    assert_eq!(seen[0].header_all("x-forwarded-for"), vec!["203.0.113.9"]);
    let line = r.wait_access_line(&["/echo/xff"]).await;
    assert!(line.starts_with("203.0.113.9 "), "access log: {line}");

    // Walked right to left: the entry the trusted proxy added wins over
    // whatever the client wrote before it.
    let res = c
        .send(
            proxy,
            Req::get("/echo/chain").header("x-forwarded-for", "198.51.100.1, 203.0.113.9"),
        )
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(seen_from(&fixture, "203.0.113.9", "/echo/chain").len(), 1);

    for _ in 0..2 {
        let res = c
            .send(
                proxy,
                Req::form_login(&fixture, "wrong").header("x-forwarded-for", "203.0.113.9"),
            )
            .await;
        assert_eq!(res.status, 200);
    }
    let res = c
        .send(
            proxy,
            Req::get("/odoo").header("x-forwarded-for", "203.0.113.9"),
        )
        .await;
    assert_eq!(res.status, 403);
    assert_eq!(banned_addrs(&r), vec!["203.0.113.9".to_string()]);
    // The proxy itself, carrying other clients, is not banned.
    let res = c
        .send(
            proxy,
            Req::get("/web/login").header("x-forwarded-for", "198.51.100.20"),
        )
        .await;
    assert_eq!(res.status, 200);
}

/// PROXY protocol v1 header for a TCP4 connection from `src`.
fn proxy_v1(src: &str) -> Vec<u8> {
    format!("PROXY TCP4 {src} 127.0.0.1 40001 443\r\n").into_bytes()
}

/// PROXY protocol v2 header (binary) for a TCP4 connection from `src`.
fn proxy_v2(src: &str) -> Vec<u8> {
    let src: std::net::Ipv4Addr = src.parse().unwrap();
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x21); // version 2, command PROXY
    h.push(0x11); // AF_INET, STREAM
    h.extend_from_slice(&12u16.to_be_bytes());
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&40002u16.to_be_bytes());
    h.extend_from_slice(&443u16.to_be_bytes());
    h
}

/// Connects from 127.0.0.1, writes `header` as is, then does TLS and one
/// HTTP/1.1 request on the same socket.
async fn via_proxy_header(c: &Client, header: &[u8], req: Req) -> Resp {
    let mut tcp = c.tcp(ip("127.0.0.1")).await;
    tcp.write_all(header).await.unwrap();
    c.send_on(tcp, &req)
        .await
        .unwrap_or_else(|e| panic!("{} {} after a PROXY header: {e}", req.method, req.path))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn proxy_protocol_source_is_the_client() {
    let fixture = OdooFixture::start().await;
    let r = start(
        &fixture,
        &format!(
            "trusted_proxies = [\"127.0.0.1/32\"]\nproxy_protocol = true\n{LOOSE_RATES}login_failures = {{ max = 2, within = \"60s\", ban = \"1h\" }}"
        ),
    )
    .await;
    let c = Client::new(&r);

    let res = via_proxy_header(&c, &proxy_v1("198.51.100.7"), Req::get("/echo/v1")).await;
    assert_eq!(res.status, 200, "{}", res.text());
    let seen = seen_from(&fixture, "198.51.100.7", "/echo/v1");
    assert_eq!(seen.len(), 1, "{:?}", fixture.requests());
    let line = r.wait_access_line(&["/echo/v1"]).await;
    assert!(line.starts_with("198.51.100.7 "), "access log: {line}");

    let res = via_proxy_header(&c, &proxy_v2("198.51.100.8"), Req::get("/echo/v2")).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(seen_from(&fixture, "198.51.100.8", "/echo/v2").len(), 1);
    let line = r.wait_access_line(&["/echo/v2"]).await;
    assert!(line.starts_with("198.51.100.8 "), "access log: {line}");

    // A v2 header with 4 KB of TLVs (a balancer's TLS and unique-id
    // TLVs), arriving in 97-byte segments: read by its length field, with
    // the TLS bytes after it left for the handshake.
    let mut big = proxy_v2("198.51.100.9");
    big.push(0x04); // PP2_TYPE_NOOP
    big.extend_from_slice(&4000u16.to_be_bytes());
    big.resize(big.len() + 4000, 0xAA);
    let len = u16::try_from(big.len() - 16).unwrap();
    big[14..16].copy_from_slice(&len.to_be_bytes());
    let mut tcp = c.tcp(ip("127.0.0.1")).await;
    tcp.set_nodelay(true).unwrap();
    for chunk in big.chunks(97) {
        tcp.write_all(chunk).await.unwrap();
        tcp.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let res = c
        .send_on(tcp, &Req::get("/echo/v2-large"))
        .await
        .unwrap_or_else(|e| panic!("after a 4 KB PROXY v2 header: {e}"));
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(
        seen_from(&fixture, "198.51.100.9", "/echo/v2-large").len(),
        1
    );

    // Bans fall on the header's source, not on the balancer.
    for _ in 0..2 {
        let res = via_proxy_header(
            &c,
            &proxy_v1("198.51.100.7"),
            Req::form_login(&fixture, "wrong"),
        )
        .await;
        assert_eq!(res.status, 200);
    }
    let res = via_proxy_header(&c, &proxy_v1("198.51.100.7"), Req::get("/odoo")).await;
    assert_eq!(res.status, 403);
    let res = via_proxy_header(&c, &proxy_v2("198.51.100.8"), Req::get("/web/login")).await;
    assert_eq!(res.status, 200);
    assert_eq!(banned_addrs(&r), vec!["198.51.100.7".to_string()]);

    // A trusted proxy must send the header: a bare TLS handshake is refused.
    let bare = c
        .send_on(c.tcp(ip("127.0.0.1")).await, &Req::get("/echo/bare"))
        .await;
    assert!(
        bare.is_err(),
        "a connection without PROXY header was served: {bare:?}"
    );
    assert!(fixture.requests().iter().all(|r| r.target != "/echo/bare"));
    r.wait_stderr_line(&["PROXY protocol header expected from this trusted proxy"])
        .await;
    // An untrusted peer cannot use the header to pose as someone else...
    let mut tcp = c.tcp(ip("127.0.0.2")).await;
    tcp.write_all(&proxy_v1("203.0.113.50")).await.unwrap();
    let forged = c.send_on(tcp, &Req::get("/echo/forged")).await;
    assert!(
        forged.is_err(),
        "a PROXY header from an untrusted peer was believed: {forged:?}"
    );
    // ...and is served as itself without one.
    let res = c.send(ip("127.0.0.2"), Req::get("/echo/direct")).await;
    assert_eq!(res.status, 200);
    assert_eq!(seen_from(&fixture, "127.0.0.2", "/echo/direct").len(), 1);
}

// ---- 2 rate limits --------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn over_the_rate_gets_429_with_retry_after() {
    let fixture = OdooFixture::start().await;
    let r = start(&fixture, "rate = { per_second = 5, burst = 5 }").await;
    let c = Client::new(&r);
    // Streams of one HTTP/2 connection arrive together, past one handshake.
    let rs = c
        .h2_burst(ip("127.0.0.2"), vec![Req::get("/echo/rate"); 30])
        .await;
    let by = statuses(&rs);
    assert_eq!(
        by.get(&200).unwrap_or(&0) + by.get(&429).unwrap_or(&0),
        30,
        "{by:?}"
    );
    assert!(by.get(&429).is_some_and(|n| *n >= 1), "{by:?}");
    for res in rs.iter().filter(|r| r.status == 429) {
        let secs: u64 = res
            .headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .expect("a 429 carries Retry-After in seconds");
        assert!(secs >= 1, "Retry-After: {secs}");
    }
    // Refused requests never reached Odoo.
    assert_eq!(
        seen_from(&fixture, "127.0.0.2", "/echo/rate").len(),
        by[&200],
        "{by:?}"
    );
    // The limit is per client.
    let res = c.send(ip("127.0.0.3"), Req::get("/echo/other")).await;
    assert_eq!(res.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn login_rate_holds_logins_not_rpc_calls() {
    let fixture = OdooFixture::start().await;
    let r = start(
        &fixture,
        // The other budgets out of the way: 30 unproven checks in flight
        // at once would fill the address's and uid 2's (per login).
        "rate = { per_second = 1000, burst = 1000 }\nlogin_rate = { per_minute = 3, burst = 3 }\nlogin_failures = { max = 100 }\nper_login_failures = { max = 100, within = \"15m\", delay = \"1s\" }",
    )
    .await;
    let c = Client::new(&r);
    let rpc = ip("127.0.0.2");

    // 30 execute_kw calls at once: /jsonrpc is a login route only for logins.
    let rs = h1_burst(&c, rpc, Req::execute_kw(), 30).await;
    assert_eq!(
        statuses(&rs),
        [(200, 30)].into(),
        "execute_kw is not held to login_rate"
    );
    assert_eq!(seen_from(&fixture, "127.0.0.2", "/jsonrpc").len(), 30);

    // common.login on the same endpoint is.
    let mut codes = Vec::new();
    for _ in 0..6 {
        codes.push(c.send(rpc, Req::jsonrpc_login("wrong")).await);
    }
    let got: Vec<u16> = codes.iter().map(|r| r.status).collect();
    assert_eq!(
        &got[..3],
        &[200, 200, 200],
        "the burst of 3 passes: {got:?}"
    );
    assert!(
        got[3..].contains(&429),
        "then login_rate answers 429: {got:?}"
    );
    let limited = codes.iter().find(|r| r.status == 429).unwrap();
    assert!(limited.headers.contains_key("retry-after"));
    let passed = got.iter().filter(|s| **s == 200).count();
    assert_eq!(
        seen_from(&fixture, "127.0.0.2", "/jsonrpc").len(),
        30 + passed
    );
    // Still not the RPC calls that are not logins.
    let res = c.send(rpc, Req::execute_kw()).await;
    assert_eq!(res.status, 200);

    // The form, from another address.
    let form = ip("127.0.0.3");
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(
            c.send(form, Req::form_login(&fixture, "wrong"))
                .await
                .status,
        );
    }
    assert_eq!(&got[..3], &[200, 200, 200], "{got:?}");
    assert!(got[3..].contains(&429), "{got:?}");
    // Reading the form is not a login.
    assert_eq!(c.send(form, Req::get("/web/login")).await.status, 200);
}

// ---- 3 login outcomes -----------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Kind {
    Form,
    SessionAuthenticate,
    XmlRpc,
    JsonRpc,
}

impl Kind {
    fn req(self, fixture: &OdooFixture, password: &str) -> Req {
        match self {
            Kind::Form => Req::form_login(fixture, password),
            Kind::SessionAuthenticate => Req::session_authenticate(password),
            Kind::XmlRpc => Req::xmlrpc_authenticate(password),
            Kind::JsonRpc => Req::jsonrpc_login(password),
        }
    }

    fn path(self) -> &'static str {
        match self {
            Kind::Form => "/web/login",
            Kind::SessionAuthenticate => "/web/session/authenticate",
            Kind::XmlRpc => "/xmlrpc/2/common",
            Kind::JsonRpc => "/jsonrpc",
        }
    }

    /// Whether Odoo's answer says the password was right.
    fn succeeded(self, res: &Resp) -> bool {
        let text = res.text();
        match self {
            Kind::Form => res.status == 303,
            Kind::SessionAuthenticate => text.contains("\"result\""),
            Kind::XmlRpc => text.contains("<int>2</int>"),
            Kind::JsonRpc => text.contains("\"result\":2"),
        }
    }
}

/// fail, fail, success, fail: banned with max = 3, since a success forgets
/// none of the address's failures (a working account's login between
/// guesses at another must not reset the count: red team 4); even the
/// right password no longer reaches Odoo.
async fn check_outcomes(c: Client, fixture: Arc<OdooFixture>, kind: Kind, src: &'static str) {
    let addr = ip(src);
    for (i, password) in ["x1", "x2", "admin", "x3"].into_iter().enumerate() {
        let res = c.send(addr, kind.req(&fixture, password)).await;
        assert!(
            res.status == 200 || res.status == 303,
            "{kind:?} #{i}: {res:?}"
        );
        assert_eq!(
            kind.succeeded(&res),
            password == "admin",
            "{kind:?} #{i}: {}",
            res.text()
        );
    }
    let res = c.send(addr, kind.req(&fixture, "admin")).await;
    assert_eq!(
        res.status, 403,
        "{kind:?}: 3 failures around a success ban {src}"
    );
    assert_eq!(c.send(addr, Req::get("/odoo")).await.status, 403);
    assert_eq!(
        posts_from(&fixture, src, kind.path()),
        4,
        "{kind:?}: the attempt after the ban never reached Odoo"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_login_route_counts_failures_and_a_success_forgets_none() {
    let dir = TempDir::new("guard-outcomes");
    let log = dir.path().join("odoo.log");
    let fixture = Arc::new(
        OdooFixture::start_with(FixtureOptions {
            log_file: Some(log.clone()),
            ..FixtureOptions::default()
        })
        .await,
    );
    let r = start(
        &fixture,
        &format!("{LOOSE_RATES}login_failures = {{ max = 3, within = \"60s\", ban = \"1h\" }}"),
    )
    .await;
    let c = Client::new(&r);
    let runs = [
        (Kind::Form, "127.0.0.2"),
        (Kind::SessionAuthenticate, "127.0.0.3"),
        (Kind::XmlRpc, "127.0.0.4"),
        (Kind::JsonRpc, "127.0.0.5"),
    ];
    join_all(runs.map(|(kind, src)| check_outcomes(c.clone(), fixture.clone(), kind, src))).await;
    let mut listed = banned_addrs(&r);
    listed.sort();
    assert_eq!(listed, ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]);
    // What fail2ban on Odoo's log would have had to go on: the RPC logins
    // carry no address there.
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines()
            .any(|l| l.contains("Login failed") && l.ends_with("from n/a")),
        "{text}"
    );
    let metrics = r.metrics().await;
    assert_eq!(
        metric(&metrics, "rampart_guard_login_failures_total"),
        4.0 * 3.0
    );
    assert_eq!(metric(&metrics, "rampart_guard_bans_active"), 4.0);
}

// ---- 4 zero leak ----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_failed_logins_lets_at_most_max_reach_odoo() {
    const MAX: usize = 5;
    const BURST: usize = 200;
    let fixture = OdooFixture::start().await;
    let r = start(
        &fixture,
        &format!("{LOOSE_RATES}login_failures = {{ max = {MAX}, within = \"60s\", ban = \"1h\" }}"),
    )
    .await;
    let c = Client::new(&r);
    let (h1, h2) = (ip("127.0.0.2"), ip("127.0.0.3"));
    let burst_h1 = h1_burst(&c, h1, Req::form_login(&fixture, "wrong"), BURST);
    let burst_h2 = c.h2_burst(h2, vec![Req::form_login(&fixture, "wrong"); BURST]);
    let (rs1, rs2) = tokio::join!(burst_h1, burst_h2);

    for (src, rs) in [("127.0.0.2", &rs1), ("127.0.0.3", &rs2)] {
        let by = statuses(rs);
        let reached = posts_from(&fixture, src, "/web/login");
        assert!(
            (1..=MAX).contains(&reached),
            "{src}: {reached} login POSTs reached Odoo (max {MAX}); answers {by:?}"
        );
        assert_eq!(by.get(&200), Some(&reached), "{src}: {by:?}");
        assert_eq!(by.get(&403), Some(&(BURST - reached)), "{src}: {by:?}");
    }
    // Bans are per address: a third address logs in and browses.
    let other = ip("127.0.0.4");
    let res = c.send(other, Req::form_login(&fixture, "admin")).await;
    assert_eq!(res.status, 303, "{}", res.text());
    assert_eq!(c.send(other, Req::get("/web/login")).await.status, 200);

    let mut listed = banned_addrs(&r);
    listed.sort();
    assert_eq!(listed, ["127.0.0.2", "127.0.0.3"]);
    // Refused at the threshold while attempts were in flight (before the
    // ban landed); after it, the ban itself answers (not counted here).
    let metrics = r.metrics().await;
    let refused = metric(&metrics, "rampart_guard_logins_refused_total");
    assert!(
        refused >= 1.0 && refused <= (2 * (BURST - MAX)) as f64,
        "{refused}"
    );
    assert_eq!(metric(&metrics, "rampart_guard_bans_active"), 2.0);
}

// ---- 5 bans: restart, expiry, allow, repeat, CLI, metrics, fail2ban -------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bans_survive_restart_and_cli_bans_apply_at_once_but_never_to_allow() {
    let fixture = OdooFixture::start().await;
    let mut r = start(
        &fixture,
        &format!(
            "allow = [\"127.0.0.6/32\"]\n{LOOSE_RATES}login_failures = {{ max = 2, within = \"60s\", ban = \"1h\" }}"
        ),
    )
    .await;
    let c = Client::new(&r);
    let config = r.config_path.to_str().unwrap().to_string();
    let attacker = ip("127.0.0.2");
    for _ in 0..2 {
        assert_eq!(
            c.send(attacker, Req::form_login(&fixture, "wrong"))
                .await
                .status,
            200
        );
    }
    assert_eq!(c.send(attacker, Req::get("/odoo")).await.status, 403);
    let before = ban_of(&r, "127.0.0.2").expect("127.0.0.2 banned");
    let metrics = r.metrics().await;
    assert_eq!(metric(&metrics, "rampart_guard_bans_active"), 1.0);
    assert_eq!(metric(&metrics, "rampart_guard_bans_total"), 1.0);

    restart(&mut r).await;
    assert_eq!(c.send(attacker, Req::get("/odoo")).await.status, 403);
    let after = ban_of(&r, "127.0.0.2").expect("still banned after a restart");
    assert_eq!(after["until"], before["until"]);
    assert_eq!(after["reason"], before["reason"]);
    assert_eq!(metric(&r.metrics().await, "rampart_guard_bans_active"), 1.0);
    assert!(r.state_dir.join("bans.json").is_file());

    // An administrator's ban, through the admin listener.
    let admin_banned = ip("127.0.0.5");
    assert_eq!(
        c.send(admin_banned, Req::get("/web/login")).await.status,
        200
    );
    let (code, out, err) = run_cli(&[
        "bans",
        "ban",
        "127.0.0.5",
        "--for",
        "1h",
        "--config",
        &config,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("banned 127.0.0.5"), "{out}");
    assert_eq!(
        c.send(admin_banned, Req::get("/web/login")).await.status,
        403
    );
    let b = ban_of(&r, "127.0.0.5").unwrap();
    assert_eq!(b["reason"], "banned by an administrator");
    let metrics = r.metrics().await;
    assert_eq!(metric(&metrics, "rampart_guard_bans_active"), 2.0);
    assert_eq!(
        metric(&metrics, "rampart_guard_bans_total"),
        1.0,
        "counted since this start"
    );
    let (code, _, err) = run_cli(&["bans", "unban", "127.0.0.5", "--config", &config]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        c.send(admin_banned, Req::get("/web/login")).await.status,
        200
    );
    assert!(ban_of(&r, "127.0.0.5").is_none());
    assert_eq!(metric(&r.metrics().await, "rampart_guard_bans_active"), 1.0);
    let (code, _, err) = run_cli(&["bans", "unban", "127.0.0.5", "--config", &config]);
    assert_ne!(code, 0, "unbanning what is not banned says so: {err}");
    let log = std::fs::read_to_string(r.state_dir.join("bans.log")).unwrap();
    assert!(
        log.contains(
            "rampart[guard]: ban 127.0.0.5 for 3600s reason=\"banned by an administrator\""
        ),
        "{log}"
    );
    assert!(
        log.contains("rampart[guard]: unban 127.0.0.5 reason="),
        "{log}"
    );

    // `allow` is never banned: not by failures, not by an administrator.
    let allowed = ip("127.0.0.6");
    for _ in 0..6 {
        assert_eq!(
            c.send(allowed, Req::form_login(&fixture, "wrong"))
                .await
                .status,
            200
        );
    }
    assert_eq!(c.send(allowed, Req::get("/odoo")).await.status, 303);
    let (code, _, err) = run_cli(&[
        "bans",
        "ban",
        "127.0.0.6",
        "--for",
        "1h",
        "--config",
        &config,
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("allow"), "{err}");
    assert_eq!(banned_addrs(&r), vec!["127.0.0.2".to_string()]);
}

/// The `rampart-guard.conf` filter out of `rampart fail2ban`'s output.
fn rampart_filter(config: &str) -> String {
    let (code, out, err) = run_cli(&["fail2ban", "--config", config]);
    assert_eq!(code, 0, "{err}");
    let start = out
        .find("# ---- /etc/fail2ban/filter.d/rampart-guard.conf ----")
        .expect("the rampart-guard filter in `rampart fail2ban`");
    let rest = &out[start..];
    let end = rest[1..].find("# ----").map_or(rest.len(), |i| i + 1);
    rest[..end].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bans_expire_repeat_offenders_wait_longer_and_fail2ban_reads_the_log() {
    let fixture = OdooFixture::start().await;
    let r = start(
        &fixture,
        &format!(
            "{LOOSE_RATES}login_failures = {{ max = 2, within = \"60s\", ban = \"2s\", repeat_factor = 3 }}"
        ),
    )
    .await;
    let c = Client::new(&r);
    let src = ip("127.0.0.7");
    let ban_log = r.state_dir.join("bans.log");

    for _ in 0..2 {
        assert_eq!(
            c.send(src, Req::form_login(&fixture, "wrong")).await.status,
            200
        );
    }
    assert_eq!(c.send(src, Req::get("/odoo")).await.status, 403);
    assert_eq!(ban_of(&r, "127.0.0.7").unwrap()["count"], 1);
    wait_line(
        &ban_log,
        &["rampart[guard]: ban 127.0.0.7 for 2s reason=\"2 failed logins in 1m\""],
    )
    .await;

    // Lifted on time, without anyone doing anything.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while c.send(src, Req::get("/odoo")).await.status == 403 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a 2 s ban still holds after 15 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(ban_of(&r, "127.0.0.7").is_none());
    // Housekeeping (every 5 s) logs the end; the ban history outlives it.
    wait_line(
        &ban_log,
        &["rampart[guard]: unban 127.0.0.7 reason=\"expired\""],
    )
    .await;

    // Again: the second ban is repeat_factor times longer.
    for _ in 0..2 {
        assert_eq!(
            c.send(src, Req::form_login(&fixture, "wrong")).await.status,
            200
        );
    }
    assert_eq!(c.send(src, Req::get("/odoo")).await.status, 403);
    assert_eq!(ban_of(&r, "127.0.0.7").unwrap()["count"], 2);
    wait_line(&ban_log, &["rampart[guard]: ban 127.0.0.7 for 6s reason="]).await;
    let metrics = r.metrics().await;
    assert_eq!(metric(&metrics, "rampart_guard_bans_total"), 2.0);

    // The documented line format, every line stamped with an RFC 3339 time.
    let text = std::fs::read_to_string(&ban_log).unwrap();
    for line in text.lines() {
        let (time, rest) = line.split_once(' ').unwrap();
        assert!(
            time.len() >= 20 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
            "{line}"
        );
        assert!(rest.starts_with("rampart[guard]: "), "{line}");
    }

    // fail2ban's own matcher finds both bans with the printed filter.
    let fail2ban_regex = require_program("fail2ban-regex", "fail2ban");
    let dir = TempDir::new("guard-f2b");
    let filter = dir.path().join("rampart-guard.conf");
    std::fs::write(&filter, rampart_filter(r.config_path.to_str().unwrap())).unwrap();
    let out = std::process::Command::new(fail2ban_regex)
        .arg("--print-all-matched")
        .arg(&ban_log)
        .arg(&filter)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Both bans match; the unban line does not.
    assert!(
        report.contains("3 lines, 0 ignored, 2 matched, 1 missed"),
        "fail2ban-regex on\n{text}\n{report}"
    );
    assert!(report.contains("127.0.0.7"), "{report}");
}

// ---- 6 Odoo's log ---------------------------------------------------------

/// A failed login sent to the fixture directly, as if through another
/// front that Odoo (proxy_mode) believes: Odoo logs "from <client>".
async fn direct_failure(fixture: &OdooFixture, client: &str) {
    let (sid, token) = fixture.login_form_session();
    let cookie = format!("session_id={sid}");
    let res = TestClient::new_plain()
        .request(
            "POST",
            &format!("http://{}/web/login", fixture.http_addr),
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("x-forwarded-for", client),
                ("x-forwarded-host", HOST),
                ("cookie", &cookie),
            ],
            format!("csrf_token={token}&login=admin&password=wrong").into_bytes(),
        )
        .await;
    assert_eq!(res.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failures_in_odoos_log_ban_too_across_rotation() {
    let dir = TempDir::new("guard-follow");
    let log = dir.path().join("odoo.log");
    std::fs::write(&log, "").unwrap();
    let fixture = OdooFixture::start_with(FixtureOptions {
        log_file: Some(log.clone()),
        ..FixtureOptions::default()
    })
    .await;
    let r = start(
        &fixture,
        &format!(
            "odoo_log = {:?}\n{LOOSE_RATES}login_failures = {{ max = 3, within = \"60s\", ban = \"1h\" }}",
            log.display().to_string()
        ),
    )
    .await;
    r.wait_stderr_line(&["following", "odoo.log"]).await;
    let c = Client::new(&r);

    // Through rampart, a failure is seen on the response and in the log:
    // counted once, so two of them stay under max = 3.
    let twice = ip("127.0.0.11");
    for _ in 0..2 {
        assert_eq!(
            c.send(twice, Req::form_login(&fixture, "wrong"))
                .await
                .status,
            200
        );
    }

    // Failures that bypass rampart.
    for _ in 0..3 {
        direct_failure(&fixture, "127.0.0.9").await;
    }
    let b = wait_banned(&r, "127.0.0.9").await;
    assert_eq!(b["reason"], "3 failed logins in 1m");
    assert_eq!(c.send(ip("127.0.0.9"), Req::get("/odoo")).await.status, 403);
    // The follower reads in order, so it has read 127.0.0.11's lines too.
    assert!(ban_of(&r, "127.0.0.11").is_none(), "{:?}", bans(&r));
    assert_eq!(c.send(twice, Req::get("/web/login")).await.status, 200);

    // logrotate renames; Odoo (here the fixture) opens a new file.
    std::fs::rename(&log, dir.path().join("odoo.log.1")).unwrap();
    for _ in 0..3 {
        direct_failure(&fixture, "127.0.0.10").await;
    }
    assert!(log.is_file(), "the fixture writes a new log file");
    wait_banned(&r, "127.0.0.10").await;
    assert_eq!(
        c.send(ip("127.0.0.10"), Req::get("/odoo")).await.status,
        403
    );
}
