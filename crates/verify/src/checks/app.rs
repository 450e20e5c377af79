//! What the web client needs to work well: HTTP/2, the websocket (bus,
//! live chat, notifications), the health endpoint, compression.

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::Site;
use crate::http1::{EXCHANGE_TIMEOUT, Request};
use crate::report::{Check, Status};

const FIX_H2: &str = "HTTP/2 multiplexes Odoo's many asset and RPC requests over one connection; enable it on the front (rampart serves h2 by default)";
const FIX_WS: &str = "Odoo's bus (notifications, discuss, live updates) needs /websocket upgraded and sent to the gevent port (gevent_port, 8072); route it there with the Upgrade and Connection headers (rampart: the site's `websocket` upstreams)";
const FIX_HEALTH: &str = "/web/health is what load balancers and monitors poll; it must reach Odoo and answer 200 {\"status\": \"pass\"}";
const FIX_GZIP: &str =
    "Odoo's pages and JSON compress 5-10x; compress on the front (gzip or br) for clients that ask";

/// A fixed key is fine: the check only needs the 101, not a session.
const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

pub(super) async fn http2(site: &Site) -> Vec<Check> {
    let check = |status, detail: String| vec![Check::new("http2", status, detail, FIX_H2)];
    if !site.target.https {
        return check(
            Status::Warn,
            "browsers speak HTTP/2 only over TLS; the URL is http://".into(),
        );
    }
    let config = site.tls.config(rustls::DEFAULT_VERSIONS, &[b"h2"]);
    let hs = match site.tls.connect(&site.target, config).await {
        Ok(hs) => hs,
        Err(e) => return check(Status::Fail, e),
    };
    if hs.alpn.as_deref() != Some("h2") {
        return check(
            Status::Warn,
            "the server did not agree to h2 in ALPN".into(),
        );
    }
    let uri = format!("https://{}/", site.target.host_header());
    let result = tokio::time::timeout(EXCHANGE_TIMEOUT, async {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(hs.stream))
                .await
                .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
        tokio::spawn(conn);
        let req = http::Request::get(uri.as_str())
            .header(
                http::header::USER_AGENT,
                concat!("rampart-verify/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("building GET {uri}: {e}"))?;
        sender
            .send_request(req)
            .await
            .map(|r| r.status().as_u16())
            .map_err(|e| format!("GET {uri} over HTTP/2: {e}"))
    })
    .await
    .unwrap_or_else(|_| {
        Err(format!(
            "no HTTP/2 answer within {} s",
            EXCHANGE_TIMEOUT.as_secs()
        ))
    });
    match result {
        Ok(s) if s < 500 => check(Status::Pass, format!("GET / over HTTP/2 → {s}")),
        Ok(s) => check(Status::Fail, format!("GET / over HTTP/2 → {s}")),
        Err(e) => check(Status::Fail, e),
    }
}

pub(super) async fn websocket(site: &Site) -> Vec<Check> {
    let scheme = if site.target.https { "https" } else { "http" };
    let origin = format!("{scheme}://{}", site.target.host_header());
    let mut req = Request::get("/websocket")
        .header("Upgrade", "websocket")
        .header("Connection", "Upgrade")
        .header("Sec-WebSocket-Key", WS_KEY)
        .header("Sec-WebSocket-Version", "13")
        .header("Origin", origin.clone());
    req.close = false;
    let check = |status, detail: String| vec![Check::new("websocket", status, detail, FIX_WS)];
    match site.request(&req).await {
        Ok(r) if r.status == 101 => check(
            Status::Pass,
            format!("GET /websocket (Origin: {origin}) → 101"),
        ),
        Ok(r) => check(
            Status::Fail,
            format!("GET /websocket (Origin: {origin}) → {}, not 101", r.status),
        ),
        Err(e) => check(Status::Fail, format!("GET /websocket: {e}")),
    }
}

pub(super) async fn health(site: &Site) -> Vec<Check> {
    let check = |status, detail: String| vec![Check::new("health", status, detail, FIX_HEALTH)];
    let r = match site.request(&Request::get("/web/health")).await {
        Ok(r) => r,
        Err(e) => return check(Status::Fail, format!("GET /web/health: {e}")),
    };
    let status = serde_json::from_slice::<serde_json::Value>(&r.body)
        .ok()
        .and_then(|v| v.get("status").and_then(|s| s.as_str()).map(str::to_string));
    let body = crate::http1::truncate(r.text().trim(), 60);
    match (r.status, status.as_deref()) {
        (200, Some("pass")) => check(Status::Pass, format!("200 {body}")),
        (s, _) => check(Status::Fail, format!("{s} {body}")),
    }
}

pub(super) async fn compression(site: &Site) -> Vec<Check> {
    let check = |status, detail: String| vec![Check::new("compression", status, detail, FIX_GZIP)];
    let req = Request::get("/web/login").header("Accept-Encoding", "gzip, br");
    match site.request(&req).await {
        Ok(r) => match r.header("content-encoding") {
            Some(enc) if !enc.eq_ignore_ascii_case("identity") => check(
                Status::Pass,
                format!("GET /web/login (Accept-Encoding: gzip, br) → Content-Encoding: {enc}"),
            ),
            _ => check(
                Status::Warn,
                format!(
                    "GET /web/login (Accept-Encoding: gzip, br) → {} without Content-Encoding",
                    r.status
                ),
            ),
        },
        Err(e) => check(Status::Fail, format!("GET /web/login: {e}")),
    }
}
