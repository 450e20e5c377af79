//! Proven sessions: Odoo session ids the guard saw log in, so a request
//! carrying one is its own client (own rate budget, own fair queue) instead
//! of one of the many people behind an office NAT sharing an address.
//!
//! Only a keyed hash (HMAC-SHA256 under a key drawn at start, truncated to
//! 128 bits) of the id is kept. An id enters only from the `Set-Cookie` of
//! an answer the guard read as a successful login, so a forged or unknown
//! id is never in the table and its request stays grouped by address.
//! Entries expire after `lifetime` without use (Odoo 18 drops a session
//! after 7 days of inactivity), the table is bounded (the least recently
//! used go first), and a logout forgets the id.
//!
//! The cookie is read as werkzeug reads it (Odoo takes
//! `request.cookies.get('session_id')`: the first one). werkzeug's parser
//! honours quoted values, where a naive split on `;` would see a
//! `session_id=` hidden inside another cookie's quotes; a Cookie header
//! with a `"` is therefore not read at all (no proven session: grouped by
//! address, which is always safe).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ring::hmac;

/// A proven session's key: the keyed hash of its id.
pub type SessionKey = [u8; 16];

/// Default cap on remembered sessions (~60 bytes each).
pub const DEFAULT_MAX_SESSIONS: usize = 100_000;

pub struct Sessions {
    key: hmac::Key,
    table: Mutex<HashMap<SessionKey, Instant>>,
}

impl Sessions {
    pub fn new() -> Sessions {
        let rng = ring::rand::SystemRandom::new();
        Sessions {
            key: hmac::Key::generate(hmac::HMAC_SHA256, &rng)
                .expect("the system random source is available"),
            table: Mutex::new(HashMap::new()),
        }
    }

    /// The keyed hash of `bytes` under `domain` (session ids, login names).
    pub fn hash(&self, domain: &[u8], bytes: &[u8]) -> SessionKey {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(domain);
        ctx.update(b"\0");
        ctx.update(bytes);
        let tag = ctx.sign();
        let mut k = [0u8; 16];
        k.copy_from_slice(&tag.as_ref()[..16]);
        k
    }

    pub fn key_of(&self, session_id: &[u8]) -> SessionKey {
        self.hash(b"session", session_id)
    }

    /// Remembers a session that just logged in. When the table is full,
    /// expired entries go, then the least recently used eighth.
    pub fn remember(&self, k: SessionKey, now: Instant, max: usize, lifetime: Duration) {
        let mut t = self.lock();
        let max = max.max(1);
        if t.len() >= max && !t.contains_key(&k) {
            t.retain(|_, seen| now.saturating_duration_since(*seen) < lifetime);
            if t.len() >= max {
                let mut seen: Vec<Instant> = t.values().copied().collect();
                seen.sort_unstable();
                let drop = (t.len() - max + 1).max(max / 8).min(seen.len());
                let cutoff = seen[drop - 1];
                let mut left = drop;
                t.retain(|_, s| {
                    if left > 0 && *s <= cutoff {
                        left -= 1;
                        false
                    } else {
                        true
                    }
                });
            }
        }
        t.insert(k, now);
    }

    /// Whether `k` is a live proven session; its use keeps it alive.
    pub fn touch(&self, k: &SessionKey, now: Instant, lifetime: Duration) -> bool {
        let mut t = self.lock();
        match t.get_mut(k) {
            Some(seen) if now.saturating_duration_since(*seen) < lifetime => {
                *seen = now;
                true
            }
            Some(_) => {
                t.remove(k);
                false
            }
            None => false,
        }
    }

    pub fn forget(&self, k: &SessionKey) {
        self.lock().remove(k);
    }

    pub fn prune(&self, now: Instant, lifetime: Duration) {
        let mut t = self.lock();
        t.retain(|_, seen| now.saturating_duration_since(*seen) < lifetime);
        t.shrink_to_fit();
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SessionKey, Instant>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The session id Odoo reads from a request: the first `session_id` in
/// the (one, joined) Cookie header, as werkzeug 2.2's parser finds it.
/// None when absent, empty, or when the header has a quote (see above).
pub fn request_session_id(headers: &http::HeaderMap) -> Option<&[u8]> {
    let mut cookies = headers.get_all(http::header::COOKIE).iter();
    let value = cookies.next()?.as_bytes();
    // Stage 1 joins HTTP/2's cookie fields into one; two here would be
    // read by werkzeug differently (it sees only the WSGI-joined one).
    if cookies.next().is_some() || value.contains(&b'"') {
        return None;
    }
    for pair in value.split(|&b| b == b';') {
        // werkzeug 2.2 skips a leading `=` to find a name (`=session_id=x`
        // is session_id to it): not read.
        if pair.trim_ascii().starts_with(b"=") {
            return None;
        }
        let (name, v) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        if name.trim_ascii() == b"session_id" {
            let v = v.trim_ascii();
            return (!v.is_empty()).then_some(v);
        }
    }
    None
}

/// The session id an answer sets: the value of the last `Set-Cookie:
/// session_id=...` (the one a browser keeps).
pub fn answer_session_id(headers: &http::HeaderMap) -> Option<&[u8]> {
    headers
        .get_all(http::header::SET_COOKIE)
        .iter()
        .filter_map(|v| {
            let v = v.as_bytes();
            let pair = v.split(|&b| b == b';').next()?;
            let i = pair.iter().position(|&b| b == b'=')?;
            (pair[..i].trim_ascii() == b"session_id").then(|| pair[i + 1..].trim_ascii())
        })
        .next_back()
        .filter(|v| !v.is_empty())
}

/// Paths whose request ends the session it carries (`/web/session/logout`,
/// `type='http'`, and `/web/session/destroy`, `type='json'`).
pub fn ends_session(path: &str) -> bool {
    let p = path.split(['?', '#']).next().unwrap_or(path);
    let p = if p.len() > 1 {
        p.trim_end_matches('/')
    } else {
        p
    };
    p == "/web/session/logout" || p == "/web/session/destroy"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cookie(v: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::COOKIE, v.parse().unwrap());
        h
    }

    #[test]
    fn the_first_session_id_as_werkzeug_reads_it() {
        let got = |v: &str| {
            request_session_id(&cookie(v)).map(|b| String::from_utf8(b.to_vec()).unwrap())
        };
        assert_eq!(got("session_id=abc"), Some("abc".into()));
        assert_eq!(got("a=1; session_id = abc ; b=2"), Some("abc".into()));
        assert_eq!(
            got("session_id=first; session_id=second"),
            Some("first".into())
        );
        assert_eq!(got("xsession_id=abc"), None);
        assert_eq!(got("session_id="), None);
        assert_eq!(got("flag; session_id=x"), Some("x".into()));
        assert_eq!(got("=session_id=first; session_id=second"), None);
        // A quoted value may hide a `session_id=` from a naive split.
        assert_eq!(got(r#"a="x;session_id=evil"; session_id=good"#), None);
        let mut two = cookie("session_id=a");
        two.append(http::header::COOKIE, "session_id=b".parse().unwrap());
        assert_eq!(request_session_id(&two), None);
    }

    #[test]
    fn the_session_an_answer_sets() {
        let mut h = http::HeaderMap::new();
        h.append(
            http::header::SET_COOKIE,
            "cids=; Max-Age=0; Path=/".parse().unwrap(),
        );
        h.append(
            http::header::SET_COOKIE,
            "session_id=NEW; Expires=x; Max-Age=604800; HttpOnly; Path=/"
                .parse()
                .unwrap(),
        );
        assert_eq!(answer_session_id(&h), Some(&b"NEW"[..]));
        assert_eq!(answer_session_id(&http::HeaderMap::new()), None);
    }

    #[test]
    fn remembered_touched_expired_forgotten() {
        let s = Sessions::new();
        let life = Duration::from_secs(60);
        let t0 = Instant::now();
        let k = s.key_of(b"sid-1");
        assert_ne!(k, s.key_of(b"sid-2"));
        assert_ne!(k, Sessions::new().key_of(b"sid-1"), "keyed per process");
        assert!(!s.touch(&k, t0, life), "unknown ids are not proven");
        s.remember(k, t0, 10, life);
        assert!(s.touch(&k, t0 + Duration::from_secs(50), life));
        // Use keeps it alive past the first lifetime.
        assert!(s.touch(&k, t0 + Duration::from_secs(100), life));
        assert!(!s.touch(&k, t0 + Duration::from_secs(161), life), "idle");
        s.remember(k, t0, 10, life);
        s.forget(&k);
        assert!(!s.touch(&k, t0, life));
    }

    #[test]
    fn a_full_table_drops_the_least_recently_used_never_grows() {
        let s = Sessions::new();
        let life = Duration::from_secs(3600);
        let t0 = Instant::now();
        let max = 64;
        let old = s.key_of(b"old");
        s.remember(old, t0, max, life);
        let busy = s.key_of(b"busy");
        s.remember(busy, t0, max, life);
        for n in 0..10_000u32 {
            let now = t0 + Duration::from_millis(u64::from(n) + 1);
            s.remember(s.key_of(&n.to_be_bytes()), now, max, life);
            s.touch(&busy, now, life);
            assert!(s.len() <= max, "{} entries", s.len());
        }
        assert!(
            s.touch(&busy, t0 + Duration::from_secs(11), life),
            "kept: in use"
        );
        assert!(
            !s.touch(&old, t0 + Duration::from_secs(11), life),
            "dropped: idle"
        );
    }
}
