//! Property tests for the two hand-written parsers of stage 1: the path
//! normaliser and the HTTP/1 framing follower. No panic on any input, and
//! the invariants every later decision relies on. `PROPTEST_CASES` sets the
//! number of cases (proptest's default, 256, in CI; a million outside).

use std::sync::Arc;

use proptest::prelude::*;
use rampart_edge::framing::{FramingWatch, Marks};
use rampart_edge::stage::normalize::canonical_path;

/// Path-like text: the pieces that matter, in any order.
fn path_like() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("/".to_string()),
        Just("//".to_string()),
        Just(".".to_string()),
        Just("..".to_string()),
        Just(";".to_string()),
        Just("\\".to_string()),
        Just("%".to_string()),
        "%[0-9a-fA-F]{2}",
        "%25[0-9a-fA-F]{2}",
        "%2[eEfF]",
        "%5[cC]",
        "[a-zA-Z0-9_~.-]{1,6}",
        any::<char>().prop_map(|c| c.to_string()),
    ];
    proptest::collection::vec(piece, 0..16).prop_map(|v| format!("/{}", v.concat()))
}

/// Percent-encodes what a canonical path may hold that a raw one may not.
fn encode(path: &str) -> String {
    let mut out = String::new();
    for b in path.bytes() {
        if b == b'%' || !b.is_ascii() || b.is_ascii_control() {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(b as char);
        }
    }
    out
}

fn check_canonical(raw: &str) -> Result<(), TestCaseError> {
    let Ok(c) = canonical_path(raw) else {
        return Ok(());
    };
    let p = &c.path;
    prop_assert!(p.starts_with('/'), "{raw:?} → {p:?}");
    prop_assert!(!p.contains("//"), "{raw:?} → {p:?}");
    prop_assert!(p == "/" || !p.ends_with('/'), "{raw:?} → {p:?}");
    prop_assert!(!p.contains('\\'), "{raw:?} → {p:?}");
    prop_assert!(
        !p.chars().any(|ch| ch.is_ascii_control()),
        "{raw:?} → {p:?}"
    );
    for seg in p.split('/') {
        let name = seg.split(';').next().unwrap_or("");
        prop_assert!(name != "." && name != "..", "{raw:?} → {p:?}");
    }
    // The decision key: the same segments, case folded, `;params` dropped.
    let key: Vec<String> = p
        .split('/')
        .map(|s| s.split(';').next().unwrap_or("").to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    prop_assert_eq!(&c.lower, &format!("/{}", key.join("/")));
    // Idempotent: the canonical path, encoded again, is its own canonical form.
    let again = canonical_path(&encode(p));
    prop_assert_eq!(again.as_ref(), Ok(&c), "{:?} → {:?}", raw, p);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn normaliser_never_panics_on_any_text(raw in any::<String>()) {
        check_canonical(&raw)?;
    }

    #[test]
    fn normaliser_invariants_on_path_like_text(raw in path_like()) {
        check_canonical(&raw)?;
    }

    #[test]
    fn normaliser_without_escapes_refuses_exactly_the_ambiguous(
        segs in proptest::collection::vec("[a-z]{0,3}|\\.|\\.\\.|\\.\\.;x", 0..8)
    ) {
        let raw = format!("/{}", segs.join("/"));
        let dotted = segs.iter().any(|s| s == "." || s == ".." || s == "..;x");
        prop_assert_eq!(canonical_path(&raw).is_err(), dotted, "{}", raw);
    }
}

/// One generated request: its bytes, and whether it carries both
/// Content-Length and Transfer-Encoding.
#[derive(Debug, Clone)]
struct Req {
    bytes: Vec<u8>,
    conflict: bool,
}

fn request() -> impl Strategy<Value = Req> {
    let body = proptest::collection::vec(any::<u8>(), 0..40);
    let chunks = proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..20), 0..4);
    (
        0..4u8,
        body,
        chunks,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(kind, body, chunks, upgrade, lf, ext, trailer)| {
            let eol: &[u8] = if lf { b"\n" } else { b"\r\n" };
            let mut head: Vec<Vec<u8>> = vec![b"POST /x HTTP/1.1".to_vec(), b"Host: a".to_vec()];
            if upgrade {
                head.push(b"Upgrade: websocket".to_vec());
                head.push(b"Connection: upgrade".to_vec());
            }
            let mut tail = Vec::new();
            let conflict = kind == 3;
            match kind {
                0 => {}
                1 => {
                    head.push(format!("Content-Length: {}", body.len()).into_bytes());
                    tail = body;
                }
                _ => {
                    if conflict {
                        head.push(b"Content-Length: 3".to_vec());
                    }
                    head.push(b"Transfer-Encoding: chunked".to_vec());
                    for c in &chunks {
                        tail.extend_from_slice(format!("{:x}", c.len()).as_bytes());
                        if ext {
                            tail.extend_from_slice(b" ;e=1");
                        }
                        tail.extend_from_slice(b"\r\n");
                        tail.extend_from_slice(c);
                        tail.extend_from_slice(b"\r\n");
                    }
                    tail.extend_from_slice(b"0\r\n");
                    if trailer {
                        tail.extend_from_slice(b"X-Trailer: 1\r\n");
                    }
                    tail.extend_from_slice(b"\r\n");
                }
            }
            let mut bytes = Vec::new();
            for line in head {
                bytes.extend_from_slice(&line);
                bytes.extend_from_slice(eol);
            }
            bytes.extend_from_slice(eol);
            bytes.extend_from_slice(&tail);
            Req { bytes, conflict }
        })
}

/// Feeds `bytes` cut at `cuts`; (heads, refused request numbers 1..=n+1, lost).
fn follow(bytes: &[u8], cuts: &[usize]) -> (u64, Vec<bool>, bool) {
    let marks = Arc::new(Marks::default());
    let mut w = FramingWatch::new(marks.clone());
    let mut at = 0;
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    for c in cuts.into_iter().chain([bytes.len()]) {
        w.feed(&bytes[at..c.max(at)]);
        at = c.max(at);
    }
    let n = w.heads();
    let refused = (1..=n + 1).map(|k| marks.refuses(k)).collect();
    (n, refused, w.is_lost())
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn follower_never_panics_and_ignores_how_bytes_are_cut(
        bytes in proptest::collection::vec(any::<u8>(), 0..400),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let whole = follow(&bytes, &[]);
        let cut = follow(&bytes, &cuts);
        prop_assert_eq!(whole, cut);
    }

    #[test]
    fn follower_counts_well_formed_requests_and_refuses_the_first_conflict(
        reqs in proptest::collection::vec(request(), 1..6),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let bytes: Vec<u8> = reqs.iter().flat_map(|r| r.bytes.clone()).collect();
        let (heads, refused, lost) = follow(&bytes, &cuts);
        prop_assert!(!lost, "well-formed requests are followed");
        prop_assert_eq!(heads, reqs.len() as u64);
        let first = reqs.iter().position(|r| r.conflict);
        for (i, r) in refused.iter().enumerate() {
            prop_assert_eq!(*r, Some(i) == first, "request {}", i + 1);
        }
        // The same with a conflicting head anywhere after: never missed.
        let mut smuggled = bytes.clone();
        smuggled.extend_from_slice(
            b"POST /s HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        );
        let (heads, refused, _) = follow(&smuggled, &cuts);
        prop_assert_eq!(heads, reqs.len() as u64 + 1);
        prop_assert!(refused[first.unwrap_or(reqs.len())]);
    }
}
