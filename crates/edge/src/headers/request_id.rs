//! X-Request-ID: one id per request, sent to Odoo, written in the access
//! log and returned to the client, so a user can quote it and an operator
//! find the request in both logs.
//!
//! A client's own X-Request-ID is never forwarded: it would let anyone write
//! what they like into Odoo's and Rampart's logs (or collide with another
//! request's id). Only a trusted proxy's (`guard.trusted_proxies`, the peer
//! the guard already believes about X-Forwarded-For) is kept, and only when it
//! is one field of 1 to 128 characters from `A-Z a-z 0-9 - _ . :` (UUIDs,
//! hex, nginx's `$request_id`, Heroku's ids): anything else gets a fresh id.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use http::{HeaderMap, HeaderName, HeaderValue};

/// `X-Request-ID`.
pub const NAME: HeaderName = HeaderName::from_static("x-request-id");
/// The longest id kept from a trusted proxy.
pub const MAX_LEN: usize = 128;

/// The id of a request: the trusted proxy's valid one, else a fresh one.
pub fn choose(from_trusted_proxy: bool, headers: &HeaderMap) -> HeaderValue {
    if from_trusted_proxy {
        let mut all = headers.get_all(&NAME).iter();
        if let (Some(v), None) = (all.next(), all.next())
            && valid(v.as_bytes())
        {
            return v.clone();
        }
    }
    fresh()
}

/// Whether a trusted proxy's id may be kept as it is.
pub fn valid(v: &[u8]) -> bool {
    (1..=MAX_LEN).contains(&v.len())
        && v.iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// 32 hex digits: a random 64-bit value drawn once per process, then a
/// counter, both mixed through a keyed permutation so ids are unique within
/// the process, unlikely to repeat across restarts, and do not reveal how
/// many requests were served.
pub fn fresh() -> HeaderValue {
    static KEY: OnceLock<[u64; 2]> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let key = KEY.get_or_init(|| {
        let mut b = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
            .expect("the system random source");
        [
            u64::from_le_bytes(b[..8].try_into().unwrap()),
            u64::from_le_bytes(b[8..].try_into().unwrap()),
        ]
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let id = format!("{:016x}{:016x}", key[0], permute(n, key[1]));
    HeaderValue::from_str(&id).expect("hex is a valid header value")
}

/// A bijection on u64 (so distinct counters give distinct ids): xor with
/// the key and odd-constant multiplications with xorshifts (splitmix64's
/// finaliser), each step invertible.
fn permute(n: u64, key: u64) -> u64 {
    let mut z = n ^ key;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(&NAME, HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    #[test]
    fn only_a_trusted_proxys_valid_id_is_kept() {
        let uuid = b"0f8fad5b-d9cb-469f-a165-70867728950e";
        assert_eq!(choose(true, &with(&[uuid])).as_bytes(), uuid);
        assert_ne!(choose(false, &with(&[uuid])).as_bytes(), uuid);
        for bad in [
            &b""[..],
            b"a b",
            b"x\"y",
            b"id;rm",
            b"caf\xc3\xa9",
            &[b'a'; MAX_LEN + 1],
        ] {
            assert_ne!(choose(true, &with(&[bad])).as_bytes(), bad, "{bad:?}");
        }
        // Two fields: which one would Odoo see? Neither.
        let two = choose(true, &with(&[b"a", b"b"]));
        assert!(two.as_bytes() != b"a" && two.as_bytes() != b"b");
        assert!(valid(&[b'a'; MAX_LEN]));
    }

    #[test]
    fn fresh_ids_are_distinct_and_valid() {
        let ids: std::collections::HashSet<_> = (0..10_000).map(|_| fresh()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids.iter().all(|v| v.len() == 32 && valid(v.as_bytes())));
    }
}
