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
//!  7 response Odoo's answer read at Odoo's pace (slot freed then), X-Accel-Redirect, hop-by-hop, cookies, security headers, Server, compression; its first bytes sent with its head
//!  8 login    outcome of login attempts fed back to the guard
//!  9 log      access log line and metrics when the body is done
//! ```

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use http::{Method, Request, Response, header};
use hyper::body::Incoming;
use rampart_guard::{self as guard, LoginAttempt};

use crate::access_log::{RequestLine, finish};
use crate::body::Body;
use crate::headers::{request as request_fields, request_id};
use crate::refusal::Refusal;
use crate::stage::forward::{ReqBody, Target, body_limits, proxy, tunnel};
use crate::stage::login;
use crate::stage::normalize;
use crate::stage::route::{self, Route};
use crate::stage::static_file::static_file;
use crate::stage::{cache, compress, plain_http, respond, site};
use crate::state::{ConnInfo, Ctx, Runtime, Shared};
use crate::{pages, websocket};

/// Takes one request through every stage, in order, to its answer.
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
        refusal: None,
        request_id,
    };
    let line = RequestLine::of(&req);
    let accepted = compress::Accepted::parse(req.headers().get(header::ACCEPT_ENCODING));
    let encoding = accepted.best();

    let mut res = match phases(req, conn.clone(), &shared, &rt, &mut ctx).await {
        Ok(res) => res,
        Err(refusal) => {
            ctx.refusal = Some(refusal.reason());
            refusal.response()
        }
    };

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
                let owner = compress::Owner {
                    memory: &shared.spool.memory,
                    client: ctx.client,
                };
                res = compress::apply(res, &accepted, line.method == Method::HEAD, owner);
            }
        }
        None => {
            res.headers_mut()
                .insert(header::SERVER, crate::headers::security::SERVER);
        }
    }

    res.headers_mut()
        .insert(request_id::NAME, ctx.request_id.clone());
    // Odoo's answer leaves with its head: one write, not two. (A tunnel's
    // 101 has an empty body, which `primed` leaves alone.)
    if ctx.upstream.is_some() {
        res = crate::body::primed(res).await;
    }

    // 9 log
    let (log, activity) = (shared.access_log.clone(), conn.activity.clone());
    let site = ctx.site.clone();
    let meters = site.as_ref().map(|s| &s.meters);
    finish(
        res,
        ctx.done(started),
        line,
        activity,
        log,
        meters,
        &shared.metrics,
    )
}

async fn phases(
    mut req: Request<Incoming>,
    conn: Arc<ConnInfo>,
    shared: &Arc<Shared>,
    rt: &Runtime,
    ctx: &mut Ctx,
) -> Result<Response<Body>, Refusal> {
    // 1 normalise
    let this_request = conn.activity.requests.load(Ordering::Relaxed);
    if conn.framing.refuses(this_request) {
        return Err(Refusal::AmbiguousFraming);
    }
    normalize::check_framing(req.method(), req.version(), req.headers())
        .map_err(|r| Refusal::Framing(r.reason()))?;
    request_fields::normalise(req.headers_mut()).map_err(Refusal::Header)?;
    // `*` asks about the server itself (RFC 9110 §9.3.7): only origin-form
    // targets reach Odoo.
    if req.uri().path() == "*" {
        if req.method() != Method::OPTIONS {
            return Err(Refusal::Asterisk);
        }
        return Ok(pages::options_asterisk());
    }
    let path =
        normalize::canonical_path(req.uri().path()).map_err(|r| Refusal::Path(r.reason()))?;

    // 2 site
    let judged = site::request_host(req.uri(), req.headers()).ok_or(Refusal::Host)?;
    let host = judged.name.clone();
    let index = rt.matcher.find(&host).ok_or(Refusal::UnknownHost)?;
    // On TLS, only the site whose certificate the handshake presented.
    let cert_site = match &conn.sni {
        Some(sni) => rt.matcher.find(sni),
        None if conn.https => shared.certs.site_without_sni(),
        None => Some(index),
    };
    if cert_site != Some(index) {
        return Err(Refusal::WrongCertificate);
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
        return Ok(plain_http::redirect_to_https(
            &host,
            rt.listen.https.port(),
            pq,
        ));
    }

    // 4 guard
    // A session the guard saw log in is its own client (rate, queue);
    // other requests go by address. Logins are held to `login_rate` once
    // their body names the login (below).
    ctx.session = shared.guard.proven_session(req.headers());
    Refusal::admit(shared.guard.admit_request(ctx.client, ctx.session))?;
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
            return Ok(res);
        }
        cache::Found::Miss(fill) => {
            ctx.cache = Some("miss");
            ctx.cache_fill = fill;
        }
    }

    // 5 route
    let allowed_db = c
        .database_manager
        .allow
        .iter()
        .any(|c| c.contains(ctx.client));
    match route::route(&path) {
        Route::DatabaseManager if !allowed_db => {
            tracing::info!(client = %ctx.client, path = %req.uri().path(), "database manager blocked");
            Err(Refusal::DatabaseManager)
        }
        Route::DatabaseRpc if !allowed_db => {
            tracing::info!(client = %ctx.client, path = %req.uri().path(), "database RPC blocked");
            Err(Refusal::DatabaseService)
        }
        Route::Internal => Err(Refusal::Internal),
        Route::Websocket | Route::Longpolling if websocket::is_upgrade(&req) => {
            tunnel(req, &to, ctx).await
        }
        Route::Websocket | Route::Longpolling => {
            let (parts, incoming) = req.into_parts();
            let body = ReqBody::Unread(incoming);
            proxy(parts, body, &site.websocket, &to, ctx, None).await
        }
        Route::Static { module, file }
            if req.method() == Method::GET || req.method() == Method::HEAD =>
        {
            if let Some(res) = static_file(&site, &module, &file, &req, shared).await {
                return Ok(res);
            }
            let (parts, incoming) = req.into_parts();
            proxy(parts, ReqBody::Unread(incoming), &site.odoo, &to, ctx, None).await
        }
        _ => {
            let (parts, incoming) = req.into_parts();
            // The db service, RPC logins and object calls' credentials
            // hide in the body: read it first, with Odoo's parsers' eyes.
            let (body, decision, loaded) = if guard::reads_body(&parts.method, &path.lower) {
                let limits = body_limits(rt, &site);
                let (received, d, loaded) = login::read_for_guard(
                    incoming,
                    &parts,
                    &path.lower,
                    limits,
                    &shared.spool,
                    ctx.client,
                )
                .await?;
                (ReqBody::Received(received), d, loaded)
            } else {
                let d = guard::classify(&parts.method, &path.lower, &parts.headers, None);
                (ReqBody::Unread(incoming), d, None)
            };
            if let Some(why) = decision.refuse {
                return Err(Refusal::RpcBody(why));
            }
            if decision.db_service && !allowed_db {
                tracing::info!(client = %ctx.client, path = %parts.uri.path(), "database service blocked");
                return Err(Refusal::DatabaseService);
            }
            // 8 login: a slot is held while the check is in flight.
            let attempt =
                login::begin(&shared.guard, ctx.client, decision, loaded.as_ref(), &parts).await?;
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
