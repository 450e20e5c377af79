//! The admin listener (loopback by default): `/metrics` for Prometheus,
//! `/healthz` for load balancers and systemd checks, and the `/v1/...`
//! API that `rampart bans` and `rampart certs renew` talk to. It carries
//! no TLS and no authentication, so keep it off public addresses
//! (`rampart audit` says so when it is not).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::body::Body;
use crate::pages;
use crate::server::Shared;

pub async fn serve(listener: TcpListener, shared: Arc<Shared>, shutdown: CancellationToken) {
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
            _ = shutdown.cancelled() => return,
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(req, &shared).await) }
            });
            let mut b = hyper::server::conn::http1::Builder::new();
            b.timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10));
            let _ = b.serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

async fn handle(req: Request<Incoming>, shared: &Shared) -> Response<Body> {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    match (method.as_str(), path.as_str()) {
        ("GET", "/metrics") => {
            let mut out = String::new();
            if prometheus_client::encoding::text::encode(&mut out, &shared.registry).is_err() {
                return pages::error(StatusCode::INTERNAL_SERVER_ERROR, "metrics encoding failed");
            }
            let mut r = pages::text(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                out,
            );
            r.headers_mut().remove(http::header::CACHE_CONTROL);
            r
        }
        ("GET", "/healthz") => {
            let rt = shared.runtime.load();
            let sites: Vec<_> = rt
                .sites
                .iter()
                .map(|s| {
                    let ups: Vec<_> = s
                        .odoo
                        .upstreams
                        .iter()
                        .chain(s.websocket.upstreams.iter())
                        .map(|u| serde_json::json!({"addr": u.addr, "healthy": u.is_healthy(), "active": u.active()}))
                        .collect();
                    serde_json::json!({"site": s.name, "upstreams": ups})
                })
                .collect();
            let body = serde_json::json!({"status": "ok", "sites": sites}).to_string();
            pages::text(StatusCode::OK, "application/json", body)
        }
        _ => {
            let body: Bytes = match Limited::new(req.into_body(), 64 * 1024).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return pages::error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "admin request body too large",
                    );
                }
            };
            for hook in &shared.admin_hooks {
                if let Some((status, json)) = hook(&method, &path, &body) {
                    let status =
                        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                    return pages::text(status, "application/json", json);
                }
            }
            pages::error(StatusCode::NOT_FOUND, "No such admin endpoint.")
        }
    }
}
