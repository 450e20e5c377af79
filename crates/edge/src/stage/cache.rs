//! Stage 5a/7a: the edge cache in the pipeline (`crate::cache` says what
//! is kept and why that is safe). 5a answers a cacheable request from an
//! entry, or marks it as the one that fetches the entry; 7a reads that
//! request's answer from Odoo whole (bounded by `max_entry`), keeps it
//! when Odoo's headers allow, and answers from the new entry.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, Request, Response, header};
use http_body_util::BodyExt;

use crate::body::{Body, BoxError};
use crate::cache::{Cache, Candidate, Entry, FillGuard, Lookup, answer, policy};
use crate::config::{CacheConfig, SiteConfig};
use crate::stage::compress;
use crate::stage::normalize::CanonicalPath;

/// What 5a found.
pub enum Found {
    /// Not a cacheable request (or the site's cache is off).
    No,
    /// Answered from the cache.
    Hit(Response<Body>),
    /// A miss; when `Some`, this request fills the entry (stage 7a).
    Miss(Option<FillGuard>),
}

/// 5a: the request after stage 2 (origin-form, the judged Host).
pub async fn lookup<B: hyper::body::Body>(
    cache: &Arc<Cache>,
    site: &str,
    cfg: &CacheConfig,
    compression: bool,
    req: &Request<B>,
    path: &CanonicalPath,
) -> Found {
    let Some(c) = candidate(site, cfg, req, path) else {
        return Found::No;
    };
    match cache.lookup(&c, cfg).await {
        Lookup::Hit(e) => {
            let accepted = compression
                .then(|| compress::negotiate(req.headers().get(header::ACCEPT_ENCODING)))
                .flatten();
            Found::Hit(serve(cache, &c, cfg, &e, req.method(), req.headers(), accepted).await)
        }
        Lookup::Fill(g) => Found::Miss(Some(g)),
        Lookup::Pass => Found::Miss(None),
    }
}

fn candidate<B: hyper::body::Body>(
    site: &str,
    cfg: &CacheConfig,
    req: &Request<B>,
    path: &CanonicalPath,
) -> Option<Candidate> {
    // An HTTP/2 body may come without Content-Length: only a request
    // whose stream ended with its head is a plain GET of the URL.
    if !cfg.enabled || !req.body().is_end_stream() {
        return None;
    }
    let host = req.headers().get(header::HOST)?.to_str().ok()?;
    policy::candidate(
        site,
        host,
        req.method(),
        req.uri().path(),
        req.uri().query(),
        &path.path,
        req.headers(),
    )
}

async fn serve(
    cache: &Cache,
    c: &Candidate,
    cfg: &CacheConfig,
    e: &Arc<Entry>,
    method: &Method,
    req: &HeaderMap,
    accepted: Option<compress::Encoding>,
) -> Response<Body> {
    let variant = match answer::variant_wanted(e, req, accepted) {
        Some(enc) => Some((enc, cache.variant(&c.key, e, enc, cfg).await)),
        None => None,
    };
    // The answer's body is the entry's bytes: it holds the entry (and so
    // its count in the site's live bytes) until the client has it all.
    let held = e.clone();
    answer::respond(e, method, req, variant).map(|b| {
        b.map_frame(move |f| {
            let _ = &held;
            f
        })
        .boxed_unsync()
    })
}

/// 7a: Odoo's answer to the request that holds `fill`. Kept when Odoo
/// answered (not a page of Rampart's own), `policy::storable` agrees and
/// the body fits `max_entry`; otherwise passed on unchanged.
pub async fn keep(
    res: Response<Body>,
    fill: FillGuard,
    cache: &Arc<Cache>,
    site: &SiteConfig,
    accepted: Option<compress::Encoding>,
    upstream_time: Option<Duration>,
) -> Response<Body> {
    let (cfg, read_timeout) = (&site.cache, site.timeout.get());
    let Some(upstream_time) = upstream_time else {
        return res;
    };
    let max_age = match policy::storable(res.status(), res.headers(), cfg.min_max_age.get()) {
        Ok(a) => a,
        Err(why) => {
            tracing::debug!(target = %fill.key().target, why, "not cached");
            return res;
        }
    };
    let max = cfg.max_entry.get();
    let declared = res
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return res;
    }
    // Counted before it is read (red team 4 F3): no room, no fill.
    let Some(charge) = cache.reserve(&fill.key().site, declared.unwrap_or(max), cfg) else {
        tracing::debug!(target = %fill.key().target, "not cached: entries held by readers fill max_memory");
        return res;
    };
    let (parts, mut body) = res.into_parts();
    let mut buf = BytesMut::new();
    let read = tokio::time::timeout(read_timeout, async {
        while let Some(frame) = body.frame().await {
            let frame = frame?;
            if let Ok(data) = frame.into_data() {
                buf.extend_from_slice(&data);
                if buf.len() as u64 > max {
                    return Ok::<bool, BoxError>(false);
                }
            }
        }
        Ok(true)
    })
    .await;
    let whole = match read {
        Ok(Ok(true)) => declared.is_none_or(|n| n == buf.len() as u64),
        Ok(Ok(false)) => false,
        Ok(Err(e)) => {
            let prefix = buf.freeze();
            return Response::from_parts(parts, replay(prefix, failed(e)));
        }
        Err(_) => false,
    };
    let prefix = buf.freeze();
    if !whole {
        // Too large (or slower than Odoo's own timeout): what was read,
        // then the rest, as if nothing had looked.
        return Response::from_parts(parts, replay(prefix, body));
    }
    let mut kept = HeaderMap::new();
    for name in policy::KEPT_HEADERS {
        for v in parts.headers.get_all(&name) {
            kept.append(name.clone(), v.clone());
        }
    }
    let last_modified = kept
        .remove(header::LAST_MODIFIED)
        .and_then(|v| {
            v.to_str()
                .ok()
                .and_then(|s| httpdate::parse_http_date(s).ok())
        })
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs());
    let etag = answer::etag_of(parts.headers.get(header::ETAG), &prefix);
    let entry = cache.insert(
        &fill,
        cfg,
        prefix,
        kept,
        etag,
        last_modified,
        max_age,
        upstream_time,
        charge,
    );
    let c = Candidate {
        key: fill.key().clone(),
        fill: true,
    };
    drop(fill);
    let accepted = if site.compression { accepted } else { None };
    serve(
        cache,
        &c,
        cfg,
        &entry,
        &Method::GET,
        &HeaderMap::new(),
        accepted,
    )
    .await
}

/// A body that yields `prefix`, then what is left of `rest`.
fn replay(prefix: Bytes, rest: Body) -> Body {
    let first = futures_util::stream::iter(
        (!prefix.is_empty()).then(|| Ok::<_, BoxError>(hyper::body::Frame::data(prefix))),
    );
    let rest = http_body_util::BodyStream::new(rest);
    http_body_util::StreamBody::new(futures_util::StreamExt::chain(first, rest)).boxed_unsync()
}

/// An empty body that fails with `e` (Odoo's body broke while being read).
fn failed(e: BoxError) -> Body {
    let s = futures_util::stream::iter([Err::<hyper::body::Frame<Bytes>, BoxError>(e)]);
    http_body_util::StreamBody::new(s).boxed_unsync()
}
