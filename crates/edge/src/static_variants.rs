//! Compress once: static files from addons_path are answered compressed
//! from a variant made once per (file, encoding), or from a precompressed
//! `.gz`/`.br`/`.zst` file beside them, used as it is.
//!
//! A variant is valid for the size and mtime the file had when it was
//! made (an upgraded module changes both); the store is bounded by bytes,
//! least recently used dropped first. Only whole answers (no Range) of
//! compressible types between `compress::MIN_SIZE` and `MAX_FILE` bytes
//! are made here; the rest goes to `files::serve` and the per-request
//! compressor as before.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};

use crate::body::{self, Body};
use crate::cache::variants::compress;
use crate::encoding::{self as negotiation, Encoding};
use crate::files;

/// Files larger than this are compressed as they stream, per request.
pub const MAX_FILE: u64 = 8 * 1024 * 1024;
/// What all variants may hold together.
pub const MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Compressed copies of static files, made once per (file, encoding).
#[derive(Default)]
pub struct StaticVariants {
    inner: Mutex<Store>,
}

#[derive(Default)]
struct Store {
    map: HashMap<(PathBuf, Encoding), Variant>,
    order: BTreeMap<u64, (PathBuf, Encoding)>,
    tick: u64,
    bytes: u64,
}

struct Variant {
    len: u64,
    /// Nanoseconds since the epoch: two writes in one second still differ.
    mtime: u128,
    body: Bytes,
    tick: u64,
}

impl StaticVariants {
    /// The compressed answer for `path`, or `None` when `files::serve`
    /// should answer (no encoding accepted, a range, a small, large or
    /// incompressible file, or a read error).
    pub async fn serve(
        &self,
        path: &Path,
        meta: &std::fs::Metadata,
        method: &Method,
        req: &HeaderMap,
        mut headers: HeaderMap,
        accepted: Option<Encoding>,
    ) -> Option<Response<Body>> {
        let enc = accepted?;
        let len = meta.len();
        if req.contains_key(header::RANGE)
            || !(negotiation::MIN_SIZE..=MAX_FILE).contains(&len)
            || !negotiation::compressible(headers.get(header::CONTENT_TYPE))
        {
            return None;
        }
        let (etag, mtime) = files::validators(meta);
        headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        if let Some(sibling) = precompressed(path, enc).await {
            headers.insert(
                header::CONTENT_ENCODING,
                HeaderValue::from_static(enc.token()),
            );
            return Some(files::serve(&sibling.0, &sibling.1, method, req, headers).await);
        }
        let date = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(mtime));
        headers.insert(header::LAST_MODIFIED, HeaderValue::from_str(&date).ok()?);
        // The strong validator names the identity bytes.
        headers.insert(
            header::ETAG,
            HeaderValue::from_str(&format!("W/{etag}")).ok()?,
        );
        if files::not_modified(req, &etag, mtime) {
            headers.remove(header::CONTENT_TYPE);
            return Some(answer(StatusCode::NOT_MODIFIED, headers, body::empty()));
        }
        let stamp = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let bytes = match self.get(path, enc, len, stamp) {
            Some(b) => b,
            None => {
                let raw = tokio::fs::read(path).await.ok()?;
                // Changed while read: not kept under these validators.
                if raw.len() as u64 != len {
                    return None;
                }
                let b = compress(enc, Bytes::from(raw)).await;
                self.put(path, enc, len, stamp, b.clone());
                b
            }
        };
        headers.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(enc.token()),
        );
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        let b = if method == Method::HEAD {
            body::empty()
        } else {
            body::full(bytes)
        };
        Some(answer(StatusCode::OK, headers, b))
    }

    fn get(&self, path: &Path, enc: Encoding, len: u64, mtime: u128) -> Option<Bytes> {
        let mut s = self.inner.lock().unwrap();
        s.tick += 1;
        let tick = s.tick;
        let key = (path.to_path_buf(), enc);
        let v = s.map.get_mut(&key)?;
        if v.len != len || v.mtime != mtime {
            let n = v.body.len() as u64;
            let t = v.tick;
            s.map.remove(&key);
            s.order.remove(&t);
            s.bytes -= n;
            return None;
        }
        let old = std::mem::replace(&mut v.tick, tick);
        let body = v.body.clone();
        s.order.remove(&old);
        s.order.insert(tick, key);
        Some(body)
    }

    fn put(&self, path: &Path, enc: Encoding, len: u64, mtime: u128, body: Bytes) {
        let mut s = self.inner.lock().unwrap();
        s.tick += 1;
        let tick = s.tick;
        let key = (path.to_path_buf(), enc);
        if let Some(old) = s.map.remove(&key) {
            s.order.remove(&old.tick);
            s.bytes -= old.body.len() as u64;
        }
        s.bytes += body.len() as u64;
        s.order.insert(tick, key.clone());
        s.map.insert(
            key,
            Variant {
                len,
                mtime,
                body,
                tick,
            },
        );
        while s.bytes > MAX_BYTES {
            let Some((_, k)) = s.order.pop_first() else {
                break;
            };
            if let Some(v) = s.map.remove(&k) {
                s.bytes -= v.body.len() as u64;
            }
        }
    }

    /// Variants held (for tests).
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap().map.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `<file>.gz`/`.br`/`.zst` beside `path`: a regular file, not a link.
async fn precompressed(path: &Path, enc: Encoding) -> Option<(PathBuf, std::fs::Metadata)> {
    let ext = match enc {
        Encoding::Gzip => "gz",
        Encoding::Brotli => "br",
        Encoding::Zstd => "zst",
    };
    let mut name = path.file_name()?.to_os_string();
    name.push(".");
    name.push(ext);
    let sibling = path.with_file_name(name);
    let meta = tokio::fs::symlink_metadata(&sibling).await.ok()?;
    meta.is_file().then_some((sibling, meta))
}

fn answer(status: StatusCode, headers: HeaderMap, b: Body) -> Response<Body> {
    let mut r = Response::new(b);
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::io::Read;

    fn headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/javascript; charset=utf-8"),
        );
        h
    }

    async fn body_of(r: Response<Body>) -> Vec<u8> {
        r.into_body().collect().await.unwrap().to_bytes().to_vec()
    }

    fn gunzip(b: &[u8]) -> String {
        let mut s = String::new();
        flate2::read::GzDecoder::new(b)
            .read_to_string(&mut s)
            .unwrap();
        s
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn made_once_then_remade_when_the_file_changes() {
        let dir = std::env::temp_dir().join(format!("rampart-variants-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("app.js");
        let v1 = "console.log('one');\n".repeat(200);
        std::fs::write(&file, &v1).unwrap();
        let store = StaticVariants::default();
        let get = async |store: &StaticVariants| {
            let meta = std::fs::metadata(&file).unwrap();
            let r = store
                .serve(
                    &file,
                    &meta,
                    &Method::GET,
                    &HeaderMap::new(),
                    headers(),
                    Some(Encoding::Gzip),
                )
                .await
                .expect("a variant");
            assert_eq!(r.headers()[header::CONTENT_ENCODING], "gzip");
            gunzip(&body_of(r).await)
        };
        assert_eq!(get(&store).await, v1);
        assert_eq!(store.len(), 1);
        // Served from the store: the file's bytes are not read again.
        let meta = std::fs::metadata(&file).unwrap();
        let ns = meta
            .modified()
            .unwrap()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        assert!(store.get(&file, Encoding::Gzip, meta.len(), ns).is_some());
        // A new size (and mtime): the old variant is not used.
        let v2 = "console.log('two, longer');\n".repeat(200);
        std::fs::write(&file, &v2).unwrap();
        assert_eq!(get(&store).await, v2);
        assert_eq!(store.len(), 1);

        // A precompressed file beside it is used as it is.
        let mut gz = Vec::new();
        let mut enc = flate2::write::GzEncoder::new(&mut gz, flate2::Compression::fast());
        std::io::Write::write_all(&mut enc, b"FROM THE .gz FILE").unwrap();
        enc.finish().unwrap();
        std::fs::write(dir.join("app.js.gz"), &gz).unwrap();
        assert_eq!(get(&store).await, "FROM THE .gz FILE");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn not_for_ranges_small_files_or_images() {
        let dir = std::env::temp_dir().join(format!("rampart-variants-n-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let small = dir.join("s.js");
        std::fs::write(&small, "x").unwrap();
        let big = dir.join("b.js");
        std::fs::write(&big, "y".repeat(5000)).unwrap();
        let store = StaticVariants::default();
        let m = |p: &Path| std::fs::metadata(p).unwrap();
        let gz = Some(Encoding::Gzip);
        assert!(
            store
                .serve(
                    &small,
                    &m(&small),
                    &Method::GET,
                    &HeaderMap::new(),
                    headers(),
                    gz
                )
                .await
                .is_none()
        );
        let mut range = HeaderMap::new();
        range.insert(header::RANGE, HeaderValue::from_static("bytes=0-1"));
        assert!(
            store
                .serve(&big, &m(&big), &Method::GET, &range, headers(), gz)
                .await
                .is_none()
        );
        let mut png = HeaderMap::new();
        png.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
        assert!(
            store
                .serve(&big, &m(&big), &Method::GET, &HeaderMap::new(), png, gz)
                .await
                .is_none()
        );
        assert!(
            store
                .serve(
                    &big,
                    &m(&big),
                    &Method::GET,
                    &HeaderMap::new(),
                    headers(),
                    None
                )
                .await
                .is_none()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
