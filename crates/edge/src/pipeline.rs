//! The request pipeline: the one place where the stages are put in order.
//! Read `handle` top to bottom; each step is a small unit in `stage/`,
//! `headers/`, `files`, `websocket` or `upstream` with its own tests.
//!
//! ```text
//!  0 who      client address (the peer; the guard may vouch for a trusted proxy's X-Forwarded-For); the request id
//!  1 normalise  framing checks, fields as werkzeug reads them, `*` answered, the path as werkzeug reads it (ambiguous → 400)
//!  2 site     by Host; unknown → 421; the TLS certificate's site only; Odoo gets the judged Host, origin-form
//!  3 plain    HTTP listener: ACME HTTP-01 token, else 308 to https
//!  4 guard    bans, rate limits, login budget
//!  5a cache   Odoo's immutable public answers (bundles, unique-token images) from the edge cache
//!  5 route    database manager (blocked unless allowed) · websocket · static · internal · Odoo
//!  6 upstream body received whole, hop-by-hop stripped, X-Forwarded-* set, a fair-queued slot on a capped pool
//!  7a cache   a cacheable miss's answer kept when Odoo marked it public and long-lived
//!  7 response Odoo's answer read at Odoo's pace (slot freed then), X-Accel-Redirect, hop-by-hop, cookies, security headers, Server, compression
//!  8 login    outcome of login attempts fed back to the guard
//!  9 log      access log line and metrics when the body is done
//! ```

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use rampart_guard::{self as guard, LoginAttempt};

use crate::access_log::{RequestLine, finish};
use crate::body::Body;
use crate::files::static_file;
use crate::headers::{request as request_fields, request_id};
use crate::stage::forward::{ReqBody, Target, body_error_page, body_limits, proxy, tunnel};
use crate::stage::login::{classify_off_thread, refuse};
use crate::stage::request_body::{self, BodyError};
use crate::stage::route::{self, Route};
use crate::stage::{cache, compress, plain_http, respond, site};
use crate::stage::{inspect_budget, normalize};
use crate::state::{ConnInfo, Ctx, Runtime, Shared};
use crate::{pages, websocket};

pub async fn handle(
    mut req: Request<Incoming>,
    conn: Arc<ConnInfo>,
    shared: Arc<Shared>,
) -> Response<Body> {
    let started = Instant::now();
    conn.activity.in_flight.fetch_add(1, Ordering::Relaxed);
    conn.activity.requests.fetch_add(1, Ordering::Relaxed);
    let rt = shared.runtime.load_full();

    // 0 who
    let request_id = request_id::choose(shared.guard.trusts_proxy(conn.peer.ip()), req.headers());
    // The one id Odoo gets (a client's own is replaced, never forwarded).
    req.headers_mut()
        .insert(request_id::NAME, request_id.clone());
    let mut ctx = Ctx {
        client: shared.guard.client_addr(conn.peer.ip(), req.headers()),
        session: None,
        site: None,
        upstream: None,
        upstream_time: None,
        cache: None,
        cache_fill: None,
        request_id,
    };
    let line = RequestLine::of(&req);
    let encoding = compress::negotiate(req.headers().get(header::ACCEPT_ENCODING));

    let mut res = phases(req, conn.clone(), &shared, &rt, &mut ctx).await;

    // 7a cache
    if let (Some(fill), Some(site)) = (ctx.cache_fill.take(), &ctx.site) {
        let up = ctx.upstream_time;
        res = cache::keep(res, fill, &shared.cache, &site.config, encoding, up).await;
    }

    // 7 response (every response, whoever made it)
    match &ctx.site {
        Some(site) => {
            respond::shape(
                &mut res,
                &site.headers,
                &site.config.session_cookies,
                conn.https,
            );
            if site.config.compression {
                res = compress::apply(res, encoding, line.method == Method::HEAD);
            }
        }
        None => {
            res.headers_mut()
                .insert(header::SERVER, crate::headers::security::SERVER);
        }
    }

    res.headers_mut()
        .insert(request_id::NAME, ctx.request_id.clone());

    // 9 log
    finish(res, ctx, line, started, conn, shared)
}

async fn phases(
    mut req: Request<Incoming>,
    conn: Arc<ConnInfo>,
    shared: &Arc<Shared>,
    rt: &Runtime,
    ctx: &mut Ctx,
) -> Response<Body> {
    // 1 normalise
    let this_request = conn.activity.requests.load(Ordering::Relaxed);
    if conn.framing.refuses(this_request) {
        return pages::error(
            StatusCode::BAD_REQUEST,
            "Bad request: ambiguous framing (Content-Length together with Transfer-Encoding, or a connection that could not be followed).",
        );
    }
    if let Err(r) = normalize::check_framing(req.method(), req.version(), req.headers()) {
        return pages::error(
            StatusCode::BAD_REQUEST,
            &format!("Bad request: {}.", r.reason()),
        );
    }
    if let Err(why) = request_fields::normalise(req.headers_mut()) {
        return pages::error(StatusCode::BAD_REQUEST, &format!("Bad request: {why}."));
    }
    // `*` asks about the server itself (RFC 9110 §9.3.7): only origin-form
    // targets reach Odoo.
    if req.uri().path() == "*" {
        return pages::asterisk(req.method());
    }
    let path = match normalize::canonical_path(req.uri().path()) {
        Ok(p) => p,
        Err(r) => {
            return pages::error(
                StatusCode::BAD_REQUEST,
                &format!("Bad request: {}.", r.reason()),
            );
        }
    };

    // 2 site
    let Some(judged) = site::request_host(req.uri(), req.headers()) else {
        return pages::error(
            StatusCode::BAD_REQUEST,
            "Bad request: missing or invalid Host header.",
        );
    };
    let host = judged.name.clone();
    let Some(index) = rt.matcher.find(&host) else {
        return pages::error(
            StatusCode::MISDIRECTED_REQUEST,
            "This server does not serve that host name.",
        );
    };
    // On TLS, only the site whose certificate the handshake presented.
    let cert_site = match &conn.sni {
        Some(sni) => rt.matcher.find(sni),
        None if conn.https => shared.certs.site_without_sni(),
        None => Some(index),
    };
    if cert_site != Some(index) {
        return pages::error(
            StatusCode::MISDIRECTED_REQUEST,
            "The host name does not match the one this connection was opened for.",
        );
    }
    // What Odoo is sent is what was judged: origin-form, the judged Host.
    site::to_origin_form(&mut req, &judged);
    let site = rt.sites[index].clone();
    ctx.site = Some(site.clone());
    let https = conn.https;
    let to = Target {
        site: &site,
        https,
        rt,
        shared,
        conn: &conn,
    };

    // 3 plain HTTP
    if !https {
        if let Some(token) = plain_http::acme_token(req.uri().path()) {
            return plain_http::acme_answer(shared.certs.http01_response(token));
        }
        let pq = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        return plain_http::redirect_to_https(&host, rt.listen.https.port(), pq);
    }

    // 4 guard
    // A session the guard saw log in is its own client (rate, queue);
    // other requests go by address. Logins are held to `login_rate` once
    // their body names the login (below).
    ctx.session = shared.guard.proven_session(req.headers());
    if let Some(refusal) = refuse(shared.guard.admit_request(ctx.client, ctx.session)) {
        return refusal;
    }
    if let Some(s) = ctx.session
        && guard::ends_session(&path.lower)
    {
        shared.guard.end_session(s);
    }

    // 5a cache
    let c = &site.config;
    match cache::lookup(
        &shared.cache,
        &site.name,
        &c.cache,
        c.compression,
        &req,
        &path,
    )
    .await
    {
        cache::Found::No => {}
        cache::Found::Hit(res) => {
            ctx.cache = Some("hit");
            return res;
        }
        cache::Found::Miss(fill) => {
            ctx.cache = Some("miss");
            ctx.cache_fill = fill;
        }
    }

    // 5 route
    let allowed_db = site
        .config
        .database_manager
        .allow
        .iter()
        .any(|c| c.contains(ctx.client));
    let route = route::route(&path);
    match route {
        Route::DatabaseManager if !allowed_db => {
            tracing::info!(client = %ctx.client, path = %req.uri().path(), "database manager blocked");
            pages::redirect(StatusCode::SEE_OTHER, "/web/login")
        }
        Route::DatabaseRpc if !allowed_db => {
            tracing::info!(client = %ctx.client, path = %req.uri().path(), "database RPC blocked");
            pages::error(
                StatusCode::FORBIDDEN,
                "The database service is not available from this address.",
            )
        }
        Route::Internal => pages::error(StatusCode::NOT_FOUND, "Not found."),
        Route::Websocket | Route::Longpolling => {
            if websocket::is_upgrade(&req) {
                tunnel(req, &to, ctx).await
            } else {
                let (parts, incoming) = req.into_parts();
                proxy(
                    parts,
                    ReqBody::Unread(incoming),
                    &site.websocket,
                    &to,
                    ctx,
                    None,
                )
                .await
            }
        }
        Route::Static { module, file }
            if req.method() == Method::GET || req.method() == Method::HEAD =>
        {
            if let Some(res) = static_file(&site, &module, &file, &req, shared).await {
                return res;
            }
            let (parts, incoming) = req.into_parts();
            proxy(parts, ReqBody::Unread(incoming), &site.odoo, &to, ctx, None).await
        }
        _ => {
            let (parts, incoming) = req.into_parts();
            // The db service, RPC logins and object calls' credentials
            // hide in the body: read it first, with Odoo's parsers' eyes.
            let reads = guard::reads_body(&parts.method, &path.lower);
            let (body, decision, loaded) = if reads {
                // Received whole like any upload (memory, then the spool,
                // at the minimum pace), then read.
                let limits = body_limits(rt, &site);
                let received = match request_body::receive(
                    incoming,
                    &parts.headers,
                    limits,
                    &shared.spool,
                    ctx.client,
                )
                .await
                {
                    Ok(r) => r,
                    Err(e) => return body_error_page(e),
                };
                let (d, loaded) = match inspect_budget::load(&received, ctx.client, INSPECT).await {
                    Ok(Some(loaded)) => {
                        let d = classify_off_thread(
                            &parts.method,
                            &path.lower,
                            &parts.headers,
                            &loaded.bytes,
                        )
                        .await;
                        (d, Some(loaded))
                    }
                    // Too large to read here (an attachment sent through
                    // execute_kw): judged unreadable, so it fails closed.
                    Ok(None) => (
                        guard::classify(&parts.method, &path.lower, &parts.headers, None),
                        None,
                    ),
                    Err(inspect_budget::LoadError::Busy) => {
                        let mut r = pages::error(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "Too many large requests in progress from your address: retry in a moment.",
                        );
                        r.headers_mut()
                            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                        return r;
                    }
                    Err(inspect_budget::LoadError::Io(e)) => {
                        return body_error_page(BodyError::Spool {
                            full: false,
                            source: e,
                        });
                    }
                };
                (ReqBody::Received(received), d, loaded)
            } else {
                let d = guard::classify(&parts.method, &path.lower, &parts.headers, None);
                (ReqBody::Unread(incoming), d, None)
            };
            if let Some(why) = decision.refuse {
                return pages::error(StatusCode::BAD_REQUEST, &format!("Bad request: {why}."));
            }
            if decision.db_service && !allowed_db {
                tracing::info!(client = %ctx.client, path = %parts.uri.path(), "database service blocked");
                return pages::error(
                    StatusCode::FORBIDDEN,
                    "The database service is not available from this address.",
                );
            }
            // 8 login: a slot is held while the check is in flight.
            let attempt = match decision.check {
                None => None,
                Some(check) => {
                    let login = decision.login.clone().or_else(|| match &loaded {
                        Some(l) if check == guard::LoginRoute::WebLogin => {
                            let ct = parts.headers.get(header::CONTENT_TYPE);
                            guard::form_login(parts.uri.query(), ct.map(|v| v.as_bytes()), &l.bytes)
                        }
                        _ => None,
                    });
                    if check.is_login()
                        && let Some(refusal) =
                            refuse(shared.guard.admit_login(ctx.client, login.as_deref()))
                    {
                        return refusal;
                    }
                    let begun = shared.guard.begin_check_as(
                        ctx.client,
                        check,
                        decision.proof,
                        login.as_deref(),
                    );
                    match begun {
                        Ok(a) => Some(a),
                        Err(guard::Refused::LoginLocked) => {
                            return pages::error(
                                StatusCode::FORBIDDEN,
                                "Too many failed logins for this account: try again later, or from where you logged in before.",
                            );
                        }
                        // A login over budget is refused as before; other
                        // checks in flight (an integration's burst) are
                        // told to retry in a moment.
                        Err(guard::Refused::Banned) | Err(guard::Refused::Busy)
                            if check.is_login() =>
                        {
                            return pages::error(
                                StatusCode::FORBIDDEN,
                                "Too many failed logins from your address: try again later.",
                            );
                        }
                        Err(guard::Refused::Banned) => {
                            return pages::error(
                                StatusCode::FORBIDDEN,
                                "Too many failed password checks from your address: try again later.",
                            );
                        }
                        Err(guard::Refused::Busy) => {
                            let mut r = pages::error(
                                StatusCode::TOO_MANY_REQUESTS,
                                "Too many password checks in flight from your address: retry in a moment.",
                            );
                            r.headers_mut()
                                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                            return r;
                        }
                    }
                }
            };
            // The bytes read are not needed past the guard's decision.
            drop(loaded);
            // An account under attack from elsewhere: slowed from here.
            if let Some(wait) = attempt.as_ref().and_then(LoginAttempt::delay) {
                tokio::time::sleep(wait).await;
            }
            proxy(parts, body, &site.odoo, &to, ctx, attempt).await
        }
    }
}

/// RPC bodies up to this size are read whole to find the `db` service,
/// login calls and object calls' credentials.
const INSPECT: usize = 8 * 1024 * 1024;
