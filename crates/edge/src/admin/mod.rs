//! The admin listener (loopback or a Unix socket): `/` the status page,
//! `/v1/status` its data as JSON, `/metrics` for Prometheus, `/healthz`
//! for load balancers and systemd checks, and the `/v1/...` API that
//! `rampart bans`, `rampart certs renew`, `rampart reload` and
//! `rampart cache` talk to.
//! No TLS: keep it on loopback or a Unix socket, or behind an SSH tunnel
//! or VPN with `admin_token_file` set. Who may do what: access.rs.

pub mod access;
pub mod history;
pub mod listener;
mod page;
pub mod status;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

pub use access::{AdminToken, Via};
pub use listener::{AdminAddr, AdminListener};

use crate::body::Body;
use crate::pages;
use crate::state::Shared;
use history::History;

/// What the admin handlers share besides the edge's state.
struct Admin {
    shared: Arc<Shared>,
    history: Arc<Mutex<History>>,
    via: Via,
}

/// Serves the admin API and status page on `listener` until `shutdown`.
pub async fn serve(listener: AdminListener, shared: Arc<Shared>, shutdown: CancellationToken) {
    let history = Arc::new(Mutex::new(History::default()));
    history::spawn_sampler(shared.clone(), history.clone(), shutdown.clone());
    match &listener {
        AdminListener::Tcp(l) => {
            let Ok(local) = l.local_addr() else { return };
            let admin = Arc::new(Admin {
                shared,
                history,
                via: Via::Tcp(local),
            });
            loop {
                tokio::select! {
                    r = l.accept() => if let Ok((s, _)) = r { spawn_conn(s, admin.clone()) },
                    _ = shutdown.cancelled() => break,
                }
            }
        }
        AdminListener::Unix(l, _, _) => {
            let admin = Arc::new(Admin {
                shared,
                history,
                via: Via::Unix,
            });
            loop {
                tokio::select! {
                    r = l.accept() => if let Ok((s, _)) = r { spawn_conn(s, admin.clone()) },
                    _ = shutdown.cancelled() => break,
                }
            }
        }
    }
    listener.cleanup();
}

fn spawn_conn<S>(io: S, admin: Arc<Admin>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let svc = service_fn(move |req| {
            let admin = admin.clone();
            async move { Ok::<_, Infallible>(handle(req, &admin).await) }
        });
        let mut b = hyper::server::conn::http1::Builder::new();
        b.timer(TokioTimer::new())
            .header_read_timeout(std::time::Duration::from_secs(10));
        let _ = b.serve_connection(TokioIo::new(io), svc).await;
    });
}

fn json(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    pages::text(status, "application/json", value.to_string())
}

fn refuse(status: StatusCode, message: &str) -> Response<Body> {
    json(status, serde_json::json!({ "error": message }))
}

async fn handle(req: Request<Incoming>, admin: &Admin) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let headers = &parts.headers;
    let read = matches!(parts.method.as_str(), "GET" | "HEAD");
    if !access::host_ok(headers, admin.via) {
        return refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "Host must name the admin listener (its address and port, or localhost)",
        );
    }
    if !read && !access::same_origin(headers) {
        return refuse(
            StatusCode::FORBIDDEN,
            "cross-origin requests to the admin listener are refused",
        );
    }
    let token = admin.shared.runtime.load().admin_token.clone();
    let auth = access::auth(headers, token.as_deref(), admin.via);
    let path = parts.uri.path();
    match (read, path) {
        (true, "/healthz") => return healthz(&admin.shared, auth != access::Auth::None),
        (_, "/login" | "/logout") => {
            let body = match collect(body).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            return page::login(
                parts.method.as_str(),
                path,
                &body,
                token.as_deref(),
                admin.via,
            );
        }
        _ => {}
    }
    match auth {
        access::Auth::None if read && path == "/" => return page::login_form(None),
        access::Auth::None => {
            let mut r = refuse(
                StatusCode::UNAUTHORIZED,
                "the admin token is required: Authorization: Bearer <token from admin_token_file>",
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"rampart admin\""),
            );
            return r;
        }
        access::Auth::ReadOnly if !read => {
            return refuse(
                StatusCode::FORBIDDEN,
                "changes need the token as Authorization: Bearer, not the status page's cookie",
            );
        }
        _ => {}
    }
    if !read && !access::is_json(headers) {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "admin API changes need Content-Type: application/json",
        );
    }
    match (read, path) {
        (true, "/") => {
            let s = status::collect(&admin.shared, &admin.history.lock().unwrap());
            return page::status(&s, token.is_some());
        }
        (true, "/v1/status") => {
            let s = status::collect(&admin.shared, &admin.history.lock().unwrap());
            return json(StatusCode::OK, serde_json::to_value(&s).expect("status"));
        }
        (true, "/metrics") => return metrics(&admin.shared),
        (true, "/v1/cache") => return json(StatusCode::OK, admin.shared.cache.stats()),
        _ => {}
    }
    let body = match collect(body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    if (parts.method.as_str(), path) == ("POST", "/v1/cache/purge") {
        return purge(&admin.shared, &body);
    }
    let method = if parts.method == http::Method::HEAD {
        "GET"
    } else {
        parts.method.as_str()
    };
    for hook in &admin.shared.admin_hooks {
        if let Some((status, text)) = hook(method, path, &body) {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return pages::text(status, "application/json", text);
        }
    }
    pages::error(StatusCode::NOT_FOUND, "No such admin endpoint.")
}

/// `{"site": "erp.example.com", "prefix": "/web/assets/"}`, both optional.
fn purge(shared: &Shared, body: &[u8]) -> Response<Body> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Purge {
        site: Option<String>,
        prefix: Option<String>,
    }
    let p: Purge = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                &format!("purge takes {{\"site\": ..., \"prefix\": ...}} (both optional): {e}"),
            );
        }
    };
    let prefix = p.prefix.unwrap_or_default();
    if !prefix.is_empty() && !prefix.starts_with('/') {
        return refuse(
            StatusCode::BAD_REQUEST,
            "prefix is a path prefix: write e.g. \"/web/assets/\"",
        );
    }
    if let Some(s) = &p.site
        && !shared.runtime.load().sites.iter().any(|r| &r.name == s)
    {
        return refuse(
            StatusCode::NOT_FOUND,
            &format!("no site named {s:?} (a site is named by its first host name)"),
        );
    }
    let n = shared.cache.purge(p.site.as_deref(), &prefix);
    tracing::info!(site = ?p.site, prefix, purged = n, "cache purged");
    json(StatusCode::OK, serde_json::json!({ "purged": n }))
}

async fn collect(body: Incoming) -> Result<Bytes, Response<Body>> {
    match Limited::new(body, 64 * 1024).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(_) => Err(pages::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "admin request body too large",
        )),
    }
}

fn metrics(shared: &Shared) -> Response<Body> {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &shared.registry).is_err() {
        return pages::error(StatusCode::INTERNAL_SERVER_ERROR, "metrics encoding failed");
    }
    let mut r = pages::text(
        StatusCode::OK,
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        out,
    );
    r.headers_mut().remove(header::CACHE_CONTROL);
    r
}

/// Liveness for anyone; the upstreams' details only with the token (or
/// when none is configured).
fn healthz(shared: &Shared, detail: bool) -> Response<Body> {
    if !detail {
        return json(StatusCode::OK, serde_json::json!({"status": "ok"}));
    }
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
    json(
        StatusCode::OK,
        serde_json::json!({"status": "ok", "sites": sites}),
    )
}
