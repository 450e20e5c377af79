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

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use rampart_guard::{self as guard, Admission, LoginAttempt};

use crate::access_log::Entry;
use crate::body::{self, Body, Observed};
use crate::headers::{forwarded, hop, request as request_fields, request_id};
use crate::metrics::{RequestLabels, SiteLabels};
use crate::stage::request_body::{self, BodyError, Prepared, Received};
use crate::stage::route::{self, Route};
use crate::stage::{accel, cache, compress, exchange, plain_http, respond, site};
use crate::stage::{inspect_budget, normalize};
use crate::state::{ConnInfo, Runtime, Shared, SiteRuntime};
use crate::upstream::{self, Pool, Refused};
use crate::{files, pages, response_buffer, websocket};

/// What the access log and metrics need, filled in as the stages run.
struct Ctx {
    client: IpAddr,
    /// The proven session the request carries (its own client), if any.
    session: Option<guard::SessionKey>,
    site: Option<Arc<SiteRuntime>>,
    upstream: Option<String>,
    upstream_time: Option<std::time::Duration>,
    /// `hit` or `miss` when the edge cache could answer this request.
    cache: Option<&'static str>,
    /// Set when this request fetches a cache entry (stage 7a keeps it).
    cache_fill: Option<crate::cache::FillGuard>,
    request_id: HeaderValue,
}

impl Ctx {
    /// Who waits in the fair queues: the proven session, else the address.
    fn who(&self) -> upstream::Client {
        upstream::Client {
            addr: self.client,
            session: self.session,
        }
    }

    fn queue_class(&self) -> &'static str {
        if self.session.is_some() {
            "session"
        } else {
            "address"
        }
    }
}

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
                    let begun = shared
                        .guard
                        .begin_check_shared(ctx.client, check, decision.proof, login.as_deref())
                        .await;
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

/// Reads an RPC body with the guard's parsers; a large one on the blocking
/// pool (a few at a time), so its parse does not stall the async threads
/// that carry every other connection. A reader that panics fails closed.
async fn classify_off_thread(
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> guard::Decision {
    // Small bodies (the web client's calls, logins) cost microseconds:
    // read in place, not queued behind a large body's parse.
    if body.len() <= CLASSIFY_INLINE {
        let read = || guard::classify(method, path, headers, Some(body));
        return std::panic::catch_unwind(std::panic::AssertUnwindSafe(read))
            .unwrap_or_else(|_| unreadable());
    }
    static READERS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    let readers = READERS.get_or_init(|| tokio::sync::Semaphore::new(2));
    let _permit = readers.acquire().await;
    let (m, p, h, b) = (
        method.clone(),
        path.to_string(),
        headers.clone(),
        body.clone(),
    );
    tokio::task::spawn_blocking(move || guard::classify(&m, &p, &h, Some(&b)))
        .await
        .unwrap_or_else(|_| unreadable())
}

/// The decision when a reader panicked: refused, never waved through.
fn unreadable() -> guard::Decision {
    guard::Decision {
        refuse: Some("the request body could not be read"),
        ..guard::Decision::default()
    }
}

/// Bodies up to this size are classified on the request's own task.
const CLASSIFY_INLINE: usize = 64 * 1024;

/// The guard's refusal as a response: 403 when banned, 429 with
/// Retry-After when over the rate.
fn refuse(a: Admission) -> Option<Response<Body>> {
    match a {
        Admission::Admitted => None,
        Admission::Banned { .. } => Some(pages::error(
            StatusCode::FORBIDDEN,
            "Access from your address is blocked for a while after too many failed attempts.",
        )),
        limited @ Admission::Limited { .. } => {
            let secs = limited.retry_after_secs().unwrap_or(1).max(1);
            let mut r = pages::error(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many requests: please slow down.",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            Some(r)
        }
    }
}

/// 8: reads the verdict of a check from Odoo's answer and tells the
/// guard: the status for forms, the (small) body of RPC logins (read and
/// passed on unchanged). The first KiB of answers that may be large
/// (`object` calls, database forms) is judged in `proxy`, on Odoo's side.
async fn login_outcome(
    attempt: LoginAttempt,
    res: Response<Body>,
    timeout: std::time::Duration,
) -> Response<Body> {
    let route = attempt.route();
    match guard::answer_read(route) {
        guard::AnswerRead::Status => {
            let outcome = guard::login_outcome(route, res.status().as_u16(), res.headers(), b"");
            attempt.finish_answer(outcome, res.headers());
            res
        }
        // Judged as the buffer drains Odoo's answer (`proxy`).
        guard::AnswerRead::Prefix => {
            drop(attempt);
            res
        }
        guard::AnswerRead::Body => {
            let (parts, b) = res.into_parts();
            let bytes = match tokio::time::timeout(timeout, read_small(b)).await {
                Ok(Some(bytes)) => bytes,
                _ => {
                    drop(attempt);
                    return pages::error(
                        StatusCode::BAD_GATEWAY,
                        "Odoo's answer to a login could not be read.",
                    );
                }
            };
            let outcome =
                guard::login_outcome(route, parts.status.as_u16(), &parts.headers, &bytes);
            attempt.finish_answer(outcome, &parts.headers);
            Response::from_parts(parts, body::full(bytes))
        }
    }
}

/// Reads a body of at most `exchange::LOGIN_ANSWER_MAX` bytes.
async fn read_small(mut b: Body) -> Option<Bytes> {
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = b.frame().await {
        if let Ok(data) = frame.ok()?.into_data() {
            buf.extend_from_slice(&data);
            if buf.len() > exchange::LOGIN_ANSWER_MAX {
                return None;
            }
        }
    }
    Some(buf.freeze())
}

/// How request bodies received whole are bounded.
fn body_limits(rt: &Runtime, site: &SiteRuntime) -> request_body::Limits {
    request_body::Limits {
        max_body: site.config.max_body.get(),
        idle: rt.listen.client_body_timeout.get(),
        min_rate: rt.listen.client_body_min_rate.get(),
        grace: rt.listen.client_body_grace.get(),
    }
}

/// RPC bodies up to this size are read whole to find the `db` service,
/// login calls and object calls' credentials.
const INSPECT: usize = 8 * 1024 * 1024;

/// 5 static: `/<module>/static/<file>` from the first addons_path entry
/// that has it; compressed once per encoding (`static_variants`).
async fn static_file(
    site: &SiteRuntime,
    module: &str,
    file: &str,
    req: &Request<Incoming>,
    shared: &Shared,
) -> Option<Response<Body>> {
    for root in &site.config.addons_path {
        let dir = root.join(module).join("static");
        if let Some((path, meta)) = files::resolve_under(&dir, file).await {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(files::content_type(&path)),
            );
            // Odoo's own answer for static files.
            headers.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=604800"),
            );
            let accepted = site
                .config
                .compression
                .then(|| compress::negotiate(req.headers().get(header::ACCEPT_ENCODING)))
                .flatten();
            let variants = &shared.static_variants;
            if let Some(r) = variants
                .serve(
                    &path,
                    &meta,
                    req.method(),
                    req.headers(),
                    headers.clone(),
                    accepted,
                )
                .await
            {
                return Some(r);
            }
            return Some(files::serve(&path, &meta, req.method(), req.headers(), headers).await);
        }
    }
    None
}

/// 6 upstream: the request as Odoo must see it. The error is the
/// response to give the client instead.
#[allow(clippy::result_large_err)]
fn upstream_request(
    parts: &mut http::request::Parts,
    addr: &str,
    client: IpAddr,
    https: bool,
    upgrade: bool,
) -> Result<Request<()>, Response<Body>> {
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let uri: http::Uri = format!("http://{addr}{pq}").parse().map_err(|_| {
        pages::error(
            StatusCode::BAD_REQUEST,
            "Bad request: invalid request target.",
        )
    })?;
    // The judged Host, set by stage 2 (`site::to_origin_form`).
    let host = parts.headers.get(header::HOST).cloned().ok_or_else(|| {
        pages::error(StatusCode::BAD_REQUEST, "Bad request: missing Host header.")
    })?;
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
fn file_request_headers(h: &HeaderMap) -> HeaderMap {
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

#[allow(clippy::too_many_arguments)]
/// What sending a request upstream needs besides the request itself.
struct Target<'a> {
    site: &'a Arc<SiteRuntime>,
    https: bool,
    rt: &'a Runtime,
    shared: &'a Arc<Shared>,
    conn: &'a Arc<ConnInfo>,
}

/// The request body as the route left it.
enum ReqBody {
    /// Not read yet.
    Unread(Incoming),
    /// Received whole by a stage that had to look inside.
    Received(Received),
}

async fn proxy(
    mut parts: http::request::Parts,
    body: ReqBody,
    pool: &Pool,
    to: &Target<'_>,
    ctx: &mut Ctx,
    mut attempt: Option<LoginAttempt>,
) -> Response<Body> {
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
            match got {
                Ok(o) => o,
                Err(e) => return body_error_page(e),
            }
        }
    };
    let queued = Instant::now();
    let acquired = pool.acquire(ctx.who()).await;
    site.meters
        .queue(ctx.queue_class())
        .observe(queued.elapsed().as_secs_f64());
    let mut lease = match acquired {
        Ok(l) => l,
        Err(r) => return refused_slot(r, shared, site),
    };
    let file_req = file_request_headers(&parts.headers);
    let mut up = match upstream_request(&mut parts, &lease.upstream.addr, ctx.client, https, false)
    {
        Ok(u) => u,
        Err(r) => return r,
    };
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
    // A refused connection means nothing was sent: the request may go to
    // another upstream once, whatever its method, if its body is in hand.
    let spare = match &whole {
        Some(_) if pool.upstreams.len() > 1 => Some(up.headers().clone()),
        _ => None,
    };
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
            return pages::error(
                StatusCode::GATEWAY_TIMEOUT,
                "Odoo did not answer in time. A long report or import may still be running.",
            );
        };
        lease = x.lease;
        attempt = x.attempt;
        match x.res {
            Err(e) => {
                if let Some(be) = request_body::body_error_of(&e) {
                    return body_error_page(be);
                }
                if e.is_connect() {
                    let hc = &cfg.health_check;
                    lease.upstream.record(false, hc.fall, hc.rise);
                    if !tried_other
                        && let (Some(headers), Some(received)) = (&spare, &whole)
                        && let Some(next) = pool
                            .acquire_avoiding(ctx.who(), Some(&lease.upstream))
                            .await
                    {
                        tracing::warn!(site = %site.name, upstream = %addr, error = %rampart_config::chain::chain(&e), "Odoo refused the connection: trying another upstream");
                        lease = match next {
                            Ok(l) => l,
                            Err(r) => return refused_slot(r, shared, site),
                        };
                        up = retarget(&parts, headers.clone(), &lease.upstream.addr);
                        body = Some(received.body());
                        tried_other = true;
                        continue;
                    }
                }
                tracing::warn!(site = %site.name, upstream = %addr, error = %rampart_config::chain::chain(&e), "Odoo unreachable");
                return pages::error(
                    StatusCode::BAD_GATEWAY,
                    "Odoo is not answering. The server may be starting or stopped; please try again shortly.",
                );
            }
            Ok(res) => break (res, lease, sent),
        }
    };
    let waited = sent.elapsed();
    ctx.upstream_time = Some(waited);
    site.meters.upstream_seconds.observe(waited.as_secs_f64());

    let (mut rparts, rbody) = res.into_parts();

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
        None => res,
    }
}

/// The body as it will go to Odoo.
enum Outgoing {
    /// Received whole (memory or spool file): sent with Content-Length.
    Whole(Received),
    /// A route allowed to stream: sent as it arrives.
    Streaming(Body),
}

/// 503 + Retry-After when no slot is given: the queue timed out, or the
/// client already holds its share of the pool.
fn refused_slot(r: Refused, shared: &Shared, site: &SiteRuntime) -> Response<Body> {
    match r {
        Refused::QueueTimeout => busy(),
        Refused::ClientCap => {
            shared
                .metrics
                .client_cap_refusals
                .get_or_create(&SiteLabels {
                    site: site.name.clone(),
                })
                .inc();
            let mut r = pages::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Too many requests from your address are already in progress. Please try again in a moment.",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            r
        }
    }
}

/// 503 when every upstream slot stays taken for `queue_timeout`.
fn busy() -> Response<Body> {
    let mut r = pages::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "Odoo is busy: every worker is taken. Please try again in a moment.",
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
}

/// The same upstream request, for another upstream address.
fn retarget(parts: &http::request::Parts, headers: HeaderMap, addr: &str) -> Request<()> {
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

async fn accel_file(
    target: Result<String, String>,
    cfg: &crate::config::SiteConfig,
    method: &Method,
    req_headers: &HeaderMap,
    headers: HeaderMap,
) -> Response<Body> {
    let rel = match target {
        Ok(r) => r,
        Err(why) => {
            tracing::error!("{why}");
            return pages::error(StatusCode::BAD_GATEWAY, "The download could not be served.");
        }
    };
    let Some(data_dir) = &cfg.data_dir else {
        tracing::error!(
            "Odoo sent X-Accel-Redirect but the site has no data_dir: set data_dir to Odoo's data_dir"
        );
        return pages::error(StatusCode::BAD_GATEWAY, "The download could not be served.");
    };
    match files::resolve_under(&data_dir.join("filestore"), &rel).await {
        Some((path, meta)) => {
            files::serve(
                &path,
                &meta,
                method,
                req_headers,
                accel::file_headers(headers),
            )
            .await
        }
        None => {
            tracing::warn!(file = %rel, "X-Accel-Redirect names a file missing from the filestore");
            pages::error(StatusCode::NOT_FOUND, "The file is missing.")
        }
    }
}

async fn tunnel(req: Request<Incoming>, to: &Target<'_>, ctx: &mut Ctx) -> Response<Body> {
    let Target {
        site,
        https,
        shared,
        ..
    } = *to;
    let cfg = &site.config;
    let lease = match site.websocket.acquire(ctx.who()).await {
        Ok(l) => l,
        Err(r) => {
            let why = match r {
                Refused::ClientCap => "Too many open websockets from your address.",
                Refused::QueueTimeout => "Too many open websockets.",
            };
            let mut res = pages::error(StatusCode::SERVICE_UNAVAILABLE, why);
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            return res;
        }
    };
    ctx.upstream = Some(lease.upstream.addr.clone());
    let (mut parts, incoming) = req.into_parts();
    let up = match upstream_request(&mut parts, &lease.upstream.addr, ctx.client, https, true) {
        Ok(u) => u.map(|()| body::empty()),
        Err(r) => return r,
    };
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
        Ok(r) => r,
        Err(websocket::TunnelError::Timeout) => pages::error(
            StatusCode::GATEWAY_TIMEOUT,
            "Odoo's websocket worker did not answer in time.",
        ),
        Err(_) => pages::error(
            StatusCode::BAD_GATEWAY,
            "Odoo's websocket worker is not answering (is gevent_port running?).",
        ),
    }
}

fn body_error_page(e: BodyError) -> Response<Body> {
    match e {
        BodyError::TooLarge(limit) => pages::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!(
                "The request body is larger than this site accepts ({}). Administrators: raise max_body in rampart.toml.",
                rampart_config::ByteSize(limit)
            ),
        ),
        BodyError::Timeout => pages::error(
            StatusCode::REQUEST_TIMEOUT,
            "The request body did not arrive in time.",
        ),
        BodyError::Malformed(why) => pages::error(
            StatusCode::BAD_REQUEST,
            &format!("Bad request body: {why}."),
        ),
        BodyError::TooSlow => pages::error(
            StatusCode::REQUEST_TIMEOUT,
            "The request body arrived too slowly.",
        ),
        BodyError::Spool { full: true, .. } => pages::error(
            StatusCode::INSUFFICIENT_STORAGE,
            "The request body could not be stored: the server's spool is full. Nothing was sent to Odoo.",
        ),
        BodyError::Spool { full: false, .. } => {
            let mut r = pages::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "The request body could not be stored (spool error). Nothing was sent to Odoo.",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
            r
        }
    }
}

/// The parts of the request line the access log keeps.
struct RequestLine {
    method: Method,
    target: String,
    version: &'static str,
    referer: String,
    user_agent: String,
}

impl RequestLine {
    fn of(req: &Request<Incoming>) -> RequestLine {
        let h = req.headers();
        let text = |n: header::HeaderName| {
            h.get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        RequestLine {
            method: req.method().clone(),
            target: req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".into()),
            version: match req.version() {
                Version::HTTP_09 => "HTTP/0.9",
                Version::HTTP_10 => "HTTP/1.0",
                Version::HTTP_2 => "HTTP/2.0",
                Version::HTTP_3 => "HTTP/3.0",
                _ => "HTTP/1.1",
            },
            referer: text(header::REFERER),
            user_agent: text(header::USER_AGENT),
        }
    }
}

/// 9: logs and counts when the body is done, releasing the connection's
/// in-flight mark at the same moment.
fn finish(
    res: Response<Body>,
    ctx: Ctx,
    line: RequestLine,
    started: Instant,
    conn: Arc<ConnInfo>,
    shared: Arc<Shared>,
) -> Response<Body> {
    let status = res.status().as_u16();
    let site_name = ctx
        .site
        .as_ref()
        .map(|s| s.name.clone())
        .unwrap_or_default();
    match &ctx.site {
        Some(site) => site.meters.request(status),
        None => {
            shared
                .metrics
                .requests
                .get_or_create(&RequestLabels {
                    site: String::new(),
                    status,
                })
                .inc();
        }
    }
    let time = SystemTime::now();
    let client = ctx.client;
    let upstream = ctx.upstream.unwrap_or_default();
    let upstream_time = ctx.upstream_time;
    let cache = ctx.cache;
    let request_id = String::from_utf8_lossy(ctx.request_id.as_bytes()).into_owned();
    let (parts, body) = res.into_parts();
    let on_end = move |bytes: u64, _complete: bool| {
        conn.activity.in_flight.fetch_sub(1, Ordering::Relaxed);
        conn.activity.touch();
        shared.access_log.log(&Entry {
            client,
            time,
            method: line.method.to_string(),
            target: line.target,
            version: line.version,
            status,
            bytes,
            referer: line.referer,
            user_agent: line.user_agent,
            site: site_name,
            upstream,
            duration: started.elapsed(),
            upstream_duration: upstream_time,
            cache,
            request_id,
        });
    };
    Response::from_parts(parts, body::boxed(Observed::new(body, on_end)))
}
