//! The websocket tunnel to Odoo's evented worker. The handshake is
//! proxied as HTTP (Odoo checks Origin and answers 101 itself); after 101
//! both sides are spliced. A tunnel with no traffic either way for
//! `websocket_idle` is closed; on shutdown tunnels get the grace period,
//! then are closed.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::body::{self, Body};
use crate::headers::hop;
use crate::io::{Activity, Tracked, idle};
use crate::state::Shared;
use crate::upstream::Lease;

/// Whether the request asks for a websocket.
pub fn is_upgrade(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Why no tunnel to Odoo's websocket worker was opened.
#[derive(Debug)]
pub enum TunnelError {
    /// The TCP connection to the worker failed.
    Connect(std::io::Error),
    /// Connecting or the upgrade answer took longer than allowed.
    Timeout,
    /// The HTTP/1.1 upgrade exchange failed.
    Handshake(hyper::Error),
}

impl std::fmt::Display for TunnelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TunnelError::Connect(_) => "cannot connect to Odoo's websocket worker",
            TunnelError::Timeout => "Odoo's websocket worker did not answer in time",
            TunnelError::Handshake(_) => "the websocket upgrade with Odoo failed",
        })
    }
}

impl std::error::Error for TunnelError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TunnelError::Connect(e) => Some(e),
            TunnelError::Handshake(e) => Some(e),
            TunnelError::Timeout => None,
        }
    }
}

/// Sends the upgrade request `up_req` (headers already prepared) to the
/// leased upstream; on 101, splices the client and upstream connections.
/// A failure to reach the worker is logged with its causes, as the HTTP
/// path logs an unreachable Odoo.
pub async fn open(
    mut client_req: Request<Incoming>,
    mut up_req: Request<Body>,
    lease: Lease,
    connect_timeout: Duration,
    handshake_timeout: Duration,
    idle_limit: Duration,
    shared: Arc<Shared>,
) -> Result<Response<Body>, TunnelError> {
    // hyper's connection-level client writes the URI as given: Odoo's
    // evented server (gevent's WSGI) reads an absolute-form target as the
    // path and answers 404, so send origin-form (Host carries the name).
    let origin_form = up_req
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/")
        .parse()
        .expect("a path and query is a valid URI");
    *up_req.uri_mut() = origin_form;
    let client_upgrade = hyper::upgrade::on(&mut client_req);
    let addr = &lease.upstream.addr;
    let mut up_res = upgrade(addr, up_req, connect_timeout, handshake_timeout)
        .await
        .inspect_err(|e| {
            tracing::warn!(
                upstream = %addr,
                error = %rampart_config::chain::chain(e),
                "Odoo's websocket worker unreachable"
            );
        })?;

    if up_res.status() != StatusCode::SWITCHING_PROTOCOLS {
        // Odoo refused (400 without Origin, ...): pass its answer on.
        let (mut parts, b) = up_res.into_parts();
        hop::strip(&mut parts.headers, false);
        return Ok(Response::from_parts(parts, body::boxed(b)));
    }
    let upstream_upgrade = hyper::upgrade::on(&mut up_res);
    let mut res = Response::new(body::empty());
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *res.headers_mut() = up_res.headers().clone();
    hop::strip(res.headers_mut(), true);

    let tunnels = shared.tunnels.clone();
    let force = shared.force_close.clone();
    let gauge = shared.metrics.websocket_tunnels.clone();
    tunnels.spawn(async move {
        let (client, upstream) = match tokio::join!(client_upgrade, upstream_upgrade) {
            (Ok(c), Ok(u)) => (c, u),
            _ => return,
        };
        gauge.inc();
        let activity = Activity::new();
        let mut client = Tracked::new(TokioIo::new(client), activity.clone());
        let mut upstream = TokioIo::new(upstream);
        tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
            _ = idle(&activity, idle_limit) => {
                tracing::debug!("websocket tunnel idle: closed");
            }
            _ = force.cancelled() => {}
        }
        gauge.dec();
        drop(lease);
    });
    Ok(res)
}

/// Connects to the websocket worker and sends the upgrade request.
async fn upgrade(
    addr: &str,
    up_req: Request<Body>,
    connect_timeout: Duration,
    handshake_timeout: Duration,
) -> Result<Response<Incoming>, TunnelError> {
    let stream = tokio::time::timeout(connect_timeout, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| TunnelError::Timeout)?
        .map_err(TunnelError::Connect)?;
    let _ = stream.set_nodelay(true);
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(TunnelError::Handshake)?;
    tokio::spawn(conn.with_upgrades());
    tokio::time::timeout(handshake_timeout, send.send_request(up_req))
        .await
        .map_err(|_| TunnelError::Timeout)?
        .map_err(TunnelError::Handshake)
}
