//! 6 upstream and 7 response for requests Odoo answers: the body received
//! (or streamed) before a slot is taken, a fair-queued slot on the site's
//! pool, the request rebuilt as Odoo must see it (hop-by-hop stripped,
//! X-Forwarded-* set), one retry on another upstream when a connection was
//! refused (nothing was sent), Odoo's answer read at Odoo's pace, and
//! X-Accel-Redirect served from the filestore. The websocket tunnel's
//! upgrade goes the same way.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use http::{HeaderMap, HeaderValue, Method, Request, Response, Version, header};
use hyper::body::Incoming;
use rampart_guard::{self as guard, LoginAttempt};

use crate::body::{self, Body};
use crate::headers::{detach, forwarded, hop};
use crate::metrics::SiteLabels;
use crate::refusal::Refusal;
use crate::stage::login::login_outcome;
use crate::stage::request_body::{self, Prepared, Received};
use crate::stage::{accel, exchange, normalize, respond};
use crate::state::{ConnInfo, Ctx, Runtime, Shared, SiteRuntime};
use crate::upstream::{Pool, Refused};
use crate::{files, response_buffer, websocket};

#[allow(clippy::too_many_arguments)]
/// What sending a request upstream needs besides the request itself.
pub(crate) struct Target<'a> {
    pub(crate) site: &'a Arc<SiteRuntime>,
    pub(crate) https: bool,
    pub(crate) rt: &'a Runtime,
    pub(crate) shared: &'a Arc<Shared>,
    pub(crate) conn: &'a Arc<ConnInfo>,
}

/// The request body as the route left it.
pub(crate) enum ReqBody {
    /// Not read yet.
    Unread(Incoming),
    /// Received whole by a stage that had to look inside.
    Received(Received),
}

/// The body as it will go to Odoo.
pub(crate) enum Outgoing {
    /// Received whole (memory or spool file): sent with Content-Length.
    Whole(Received),
    /// A route allowed to stream: sent as it arrives.
    Streaming(Body),
}

pub(crate) async fn proxy(
    mut parts: http::request::Parts,
    body: ReqBody,
    pool: &Pool,
    to: &Target<'_>,
    ctx: &mut Ctx,
    mut attempt: Option<LoginAttempt>,
) -> Result<Response<Body>, Refusal> {
    let Target {
        site,
        https,
        rt,
        shared,
        ..
    } = *to;
    let cfg = &site.config;
    // The body first: a slow client must not hold an Odoo slot.
    let body = match body {
        ReqBody::Received(r) => Outgoing::Whole(r),
        ReqBody::Unread(inc) => {
            let lower = normalize::canonical_path(parts.uri.path())
                .map(|p| p.lower)
                .unwrap_or_default();
            let listen = &rt.listen;
            let got = if cfg.buffers_request(&lower) {
                let limits = body_limits(rt, site);
                request_body::receive(inc, &parts.headers, limits, &shared.spool, ctx.client)
                    .await
                    .map(Outgoing::Whole)
            } else {
                request_body::prepare(
                    inc,
                    &parts.headers,
                    cfg.max_body.get(),
                    listen.client_body_timeout.get(),
                    request_body::PREBUFFER,
                )
                .await
                .map(|p| match p {
                    Prepared::Whole(b) => Outgoing::Whole(Received::Memory(b, None)),
                    Prepared::Streaming(b) => Outgoing::Streaming(b),
                })
            };
            got?
        }
    };
    let queued = Instant::now();
    let acquired = pool.acquire(ctx.who()).await;
    site.meters
        .queue(ctx.queue_class())
        .observe(queued.elapsed().as_secs_f64());
    let mut lease = acquired.map_err(|r| refused_slot(r, shared, site))?;
    let file_req = file_request_headers(&parts.headers);
    let mut up = upstream_request(&mut parts, &lease.upstream.addr, ctx.client, https, false)?;
    let (whole, streaming) = match body {
        Outgoing::Whole(b) => (Some(b), None),
        Outgoing::Streaming(b) => (None, Some(b)),
    };
    if let Some(b) = &whole {
        up.headers_mut().remove(header::TRANSFER_ENCODING);
        if !b.is_empty()
            || parts.method == Method::POST
            || parts.method == Method::PUT
            || parts.method == Method::PATCH
        {
            up.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(b.len()));
        } else {
            up.headers_mut().remove(header::CONTENT_LENGTH);
        }
    }
    // The headers are kept for a second attempt only when one may happen.
    let spare =
        may_retry(true, false, whole.is_some(), pool.upstreams.len()).then(|| up.headers().clone());
    let mut body = match (&whole, streaming) {
        (Some(b), _) => Some(b.body()),
        (None, b) => b,
    };
    let mut tried_other = false;
    let (res, lease, sent) = loop {
        let addr = lease.upstream.addr.clone();
        ctx.upstream = Some(addr.clone());
        let this_body = body.take().expect("one body per attempt");
        let sent = Instant::now();
        // The call outlives this future if the client leaves: Odoo's worker
        // stays counted until it is done (stage/exchange.rs).
        let req = std::mem::take(&mut up).map(|()| this_body);
        let Some(x) =
            exchange::send(&site.client, req, lease, attempt.take(), cfg.timeout.get()).await
        else {
            tracing::warn!(site = %site.name, upstream = %addr, timeout = %cfg.timeout, "Odoo did not answer in time");
            return Err(Refusal::UpstreamTimeout);
        };
        lease = x.lease;
        attempt = x.attempt;
        match x.res {
            Err(e) => {
                if let Some(be) = request_body::body_error_of(&e) {
                    return Err(be.into());
                }
                if e.is_connect() {
                    let hc = &cfg.health_check;
                    lease.upstream.record(false, hc.fall, hc.rise);
                    if may_retry(true, tried_other, whole.is_some(), pool.upstreams.len())
                        && let (Some(headers), Some(received)) = (&spare, &whole)
                        && let Some(next) = pool
                            .acquire_avoiding(ctx.who(), Some(&lease.upstream))
                            .await
                    {
                        tracing::warn!(site = %site.name, upstream = %addr, error = %rampart_config::chain::chain(&e), "Odoo refused the connection: trying another upstream");
                        lease = next.map_err(|r| refused_slot(r, shared, site))?;
                        up = retarget(&parts, headers.clone(), &lease.upstream.addr);
                        body = Some(received.body());
                        tried_other = true;
                        continue;
                    }
                }
                tracing::warn!(site = %site.name, upstream = %addr, error = %rampart_config::chain::chain(&e), "Odoo unreachable");
                return Err(Refusal::UpstreamUnreachable);
            }
            Ok(res) => break (res, lease, sent),
        }
    };
    let waited = sent.elapsed();
    ctx.upstream_time = Some(waited);
    site.meters.upstream_seconds.observe(waited.as_secs_f64());

    let (mut rparts, rbody) = res.into_parts();
    // Before anything keeps them: hyper's read buffer must not live as
    // long as this answer (`headers::detach`).
    detach::detach(&mut rparts.headers);

    // 7 X-Accel-Redirect: the file instead of the (empty) body.
    if let Some(target) = accel::target(&rparts.headers) {
        respond::strip_upstream(&mut rparts.headers);
        return accel_file(target, cfg, &parts.method, &file_req, rparts.headers).await;
    }
    respond::strip_upstream(&mut rparts.headers);
    // Odoo's answer is read as fast as Odoo writes it; the lease goes with
    // it and is dropped when Odoo's body is complete.
    // 8 login: the verdict on a check whose answer may be large is read
    // from Odoo's side, as the buffer drains it, so a client that leaves
    // cannot hide a guess (the answer is then read away for it).
    let (rbody, attempt, read_away) = match attempt {
        Some(a) if guard::answer_read(a.route()) == guard::AnswerRead::Prefix => {
            let (route, status, headers) =
                (a.route(), rparts.status.as_u16(), rparts.headers.clone());
            let judged = body::Prefixed::new(rbody, move |prefix: &[u8]| {
                a.finish(guard::login_outcome(route, status, &headers, prefix));
            });
            (body::boxed(judged), None, true)
        }
        other => (body::boxed(rbody), other, false),
    };
    let settings = response_buffer::Settings {
        client: ctx.client,
        upstream_idle: cfg.timeout.get(),
        send_timeout: rt.listen.send_timeout.get(),
        read_away,
    };
    let conn = to.conn.clone();
    let h2 = parts.version == Version::HTTP_2;
    let on_stall: Box<dyn FnOnce() + Send> = Box::new(move || {
        // HTTP/1.1 is stuck behind its one stalled answer; an HTTP/2
        // connection once every stream in flight on it is stalled.
        let stalled = conn.stalled_streams.fetch_add(1, Ordering::Relaxed) + 1;
        if !h2 || stalled >= conn.activity.in_flight.load(Ordering::Relaxed) {
            conn.stalled.cancel();
        }
    });
    let rbody = response_buffer::buffer(rbody, lease, shared.spool.clone(), settings, on_stall);
    let res = Response::from_parts(rparts, rbody);
    match attempt {
        Some(a) => login_outcome(a, res, cfg.timeout.get()).await,
        None => Ok(res),
    }
}

pub(crate) async fn tunnel(
    req: Request<Incoming>,
    to: &Target<'_>,
    ctx: &mut Ctx,
) -> Result<Response<Body>, Refusal> {
    let Target {
        site,
        https,
        shared,
        ..
    } = *to;
    let cfg = &site.config;
    let lease = site
        .websocket
        .acquire(ctx.who())
        .await
        .map_err(|r| match r {
            Refused::ClientCap => Refusal::WebsocketClientCap,
            Refused::QueueTimeout => Refusal::WebsocketQueueTimeout,
        })?;
    ctx.upstream = Some(lease.upstream.addr.clone());
    let (mut parts, incoming) = req.into_parts();
    let up = upstream_request(&mut parts, &lease.upstream.addr, ctx.client, https, true)?
        .map(|()| body::empty());
    let client_req = Request::from_parts(parts, incoming);
    match websocket::open(
        client_req,
        up,
        lease,
        cfg.connect_timeout.get(),
        cfg.timeout.get(),
        cfg.websocket_idle.get(),
        shared.clone(),
    )
    .await
    {
        Ok(r) => Ok(r),
        Err(websocket::TunnelError::Timeout) => Err(Refusal::WebsocketTimeout),
        Err(_) => Err(Refusal::WebsocketUnreachable),
    }
}

/// 6 upstream: the request as Odoo must see it.
pub(crate) fn upstream_request(
    parts: &mut http::request::Parts,
    addr: &str,
    client: IpAddr,
    https: bool,
    upgrade: bool,
) -> Result<Request<()>, Refusal> {
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let uri: http::Uri = format!("http://{addr}{pq}")
        .parse()
        .map_err(|_| Refusal::Target)?;
    // The judged Host, set by stage 2 (`site::to_origin_form`).
    let host = parts
        .headers
        .get(header::HOST)
        .cloned()
        .ok_or(Refusal::NoHost)?;
    // Taken, not copied: the client's headers are not needed after this.
    let mut headers = std::mem::take(&mut parts.headers);
    hop::strip(&mut headers, upgrade);
    forwarded::set(&mut headers, client, &host, https);
    let mut up = Request::new(());
    *up.method_mut() = parts.method.clone();
    *up.uri_mut() = uri;
    // HTTP/2 arrives with pseudo-headers; Odoo speaks HTTP/1.x.
    *up.version_mut() = Version::HTTP_11;
    *up.headers_mut() = headers;
    Ok(up)
}

/// The conditional and range headers a file answer needs, kept before the
/// request goes upstream.
pub(crate) fn file_request_headers(h: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in [
        header::RANGE,
        header::IF_RANGE,
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
    ] {
        if let Some(v) = h.get(&name) {
            out.insert(name, v.clone());
        }
    }
    out
}

/// 503 + Retry-After when no slot is given: the queue timed out, or the
/// client already holds its share of the pool (counted).
pub(crate) fn refused_slot(r: Refused, shared: &Shared, site: &SiteRuntime) -> Refusal {
    match r {
        Refused::QueueTimeout => Refusal::QueueTimeout,
        Refused::ClientCap => {
            shared
                .metrics
                .client_cap_refusals
                .get_or_create(&SiteLabels {
                    site: site.name.clone(),
                })
                .inc();
            Refusal::ClientCap
        }
    }
}

/// The retry rule: a refused connection means nothing was sent, so the
/// request may go to another upstream, once, whatever its method, when its
/// body is in hand to send again (received whole, not streamed) and the
/// pool has another upstream. Any other failure may have reached Odoo.
fn may_retry(refused: bool, retried: bool, body_in_hand: bool, upstreams: usize) -> bool {
    refused && !retried && body_in_hand && upstreams > 1
}

/// The same upstream request, for another upstream address.
pub(crate) fn retarget(
    parts: &http::request::Parts,
    headers: HeaderMap,
    addr: &str,
) -> Request<()> {
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut up = Request::new(());
    *up.method_mut() = parts.method.clone();
    *up.uri_mut() = format!("http://{addr}{pq}")
        .parse()
        .expect("checked when first built");
    *up.version_mut() = Version::HTTP_11;
    *up.headers_mut() = headers;
    up
}

pub(crate) async fn accel_file(
    target: Result<String, String>,
    cfg: &crate::config::SiteConfig,
    method: &Method,
    req_headers: &HeaderMap,
    headers: HeaderMap,
) -> Result<Response<Body>, Refusal> {
    let rel = match target {
        Ok(r) => r,
        Err(why) => {
            tracing::error!("{why}");
            return Err(Refusal::AccelUnservable);
        }
    };
    let Some(data_dir) = &cfg.data_dir else {
        tracing::error!(
            "Odoo sent X-Accel-Redirect but the site has no data_dir: set data_dir to Odoo's data_dir"
        );
        return Err(Refusal::AccelUnservable);
    };
    match files::resolve_under(&data_dir.join("filestore"), &rel).await {
        Some((path, meta)) => Ok(files::serve(
            &path,
            &meta,
            method,
            req_headers,
            accel::file_headers(headers),
        )
        .await),
        None => {
            tracing::warn!(file = %rel, "X-Accel-Redirect names a file missing from the filestore");
            Err(Refusal::AccelMissing)
        }
    }
}

/// How request bodies received whole are bounded.
pub(crate) fn body_limits(rt: &Runtime, site: &SiteRuntime) -> request_body::Limits {
    request_body::Limits {
        max_body: site.config.max_body.get(),
        idle: rt.listen.client_body_timeout.get(),
        min_rate: rt.listen.client_body_min_rate.get(),
        grace: rt.listen.client_body_grace.get(),
        deadline: rt.listen.client_body_deadline.get(),
    }
}

#[cfg(test)]
mod tests {
    use http::StatusCode;

    use super::*;

    #[test]
    fn retry_once_only_after_a_refused_connection_with_the_body_in_hand() {
        assert!(may_retry(true, false, true, 2));
        // Once.
        assert!(!may_retry(true, true, true, 2));
        // A timeout or a reset may have reached Odoo.
        assert!(!may_retry(false, false, true, 2));
        // A streamed body is gone.
        assert!(!may_retry(true, false, false, 2));
        // Nowhere else to go.
        assert!(!may_retry(true, false, true, 1));
    }

    fn parts(uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = Request::builder().method(Method::POST).uri(uri);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.version(Version::HTTP_2).body(()).unwrap().into_parts().0
    }

    #[test]
    fn the_upstream_request_is_origin_form_http11_without_hop_by_hop_headers() {
        let mut p = parts(
            "/web/login?redirect=%2Fodoo",
            &[
                ("host", "erp.example.com"),
                ("connection", "x-secret"),
                ("x-secret", "1"),
                ("keep-alive", "timeout=5"),
                ("x-forwarded-for", "10.9.9.9"),
                ("cookie", "session_id=abc"),
            ],
        );
        let client: IpAddr = "203.0.113.9".parse().unwrap();
        let up = upstream_request(&mut p, "127.0.0.1:8069", client, true, false).unwrap();
        assert_eq!(up.uri(), "http://127.0.0.1:8069/web/login?redirect=%2Fodoo");
        assert_eq!(up.version(), Version::HTTP_11);
        assert_eq!(up.method(), Method::POST);
        let h = up.headers();
        assert!(
            h.get("x-secret").is_none(),
            "named by Connection: hop-by-hop"
        );
        assert!(h.get("keep-alive").is_none());
        assert!(h.get(header::CONNECTION).is_none());
        assert_eq!(
            h["x-forwarded-for"], "203.0.113.9",
            "the client's own is replaced"
        );
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h[header::HOST], "erp.example.com");
        assert_eq!(h[header::COOKIE], "session_id=abc");
    }

    #[test]
    fn an_upstream_request_without_host_is_refused() {
        let mut p = parts("/web", &[]);
        let client: IpAddr = "203.0.113.9".parse().unwrap();
        let r = upstream_request(&mut p, "127.0.0.1:8069", client, true, false).unwrap_err();
        assert!(matches!(r, Refusal::NoHost), "{r:?}");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn retarget_keeps_method_target_and_headers() {
        let p = parts("/jsonrpc?x=1", &[]);
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("erp.example.com"));
        let up = retarget(&p, h, "10.0.0.2:8069");
        assert_eq!(up.uri(), "http://10.0.0.2:8069/jsonrpc?x=1");
        assert_eq!(up.method(), Method::POST);
        assert_eq!(up.version(), Version::HTTP_11);
        assert_eq!(up.headers()[header::HOST], "erp.example.com");
    }
}
