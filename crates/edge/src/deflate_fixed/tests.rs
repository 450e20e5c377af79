//! The encoder against Python's zlib: every stream must inflate, in the
//! reference inflater, to exactly the bytes it was made from.

use super::*;
use rampart_testkit::oracle::{self, Rng, env_number};

const PYTHON: &str = "/usr/bin/python3";
const NEEDS: &str = "apt-get install python3";

/// What Python's zlib inflates each gzip stream to: Ok((len, sha256 hex))
/// or Err(zlib's complaint).
fn python_gunzip(streams: &[Bytes]) -> Vec<Result<(usize, String), String>> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/zlib_gunzip.py");
    let lines = streams.iter().map(|s| oracle::hex(s)).collect();
    oracle::run(PYTHON, script, NEEDS, lines)
        .into_iter()
        .map(|a| match a["error"].as_str() {
            Some(e) => Err(e.to_string()),
            None => Ok((
                a["len"].as_u64().expect("len") as usize,
                a["sha256"].as_str().expect("sha256").to_string(),
            )),
        })
        .collect()
}

fn sha256_hex(b: &[u8]) -> String {
    oracle::hex(ring::digest::digest(&ring::digest::SHA256, b).as_ref())
}

/// Gzips every input on this one thread, in order (so each call finds the
/// hash table the calls before it left), and checks each with zlib.
fn assert_zlib_inflates_each(inputs: &[Vec<u8>]) -> Vec<Bytes> {
    let streams: Vec<Bytes> = inputs.iter().map(|i| gzip(i)).collect();
    for (i, (input, got)) in inputs.iter().zip(python_gunzip(&streams)).enumerate() {
        let want = (input.len(), sha256_hex(input));
        assert_eq!(
            got,
            Ok(want),
            "case {i} ({} bytes, first {:?}): zlib disagrees",
            input.len(),
            String::from_utf8_lossy(&input[..input.len().min(60)])
        );
    }
    streams
}

fn random_bytes(rng: &mut Rng, len: usize) -> Vec<u8> {
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

/// Odoo-like markup: the repetitive text deflate is used on.
fn markup(rng: &mut Rng, len: usize) -> Vec<u8> {
    const PARTS: &[&str] = &[
        "<div class=\"o_login_auth\">",
        "</div>\n",
        "<input type=\"hidden\" name=\"csrf_token\" value=\"",
        "<script type=\"text/javascript\" src=\"/web/assets/",
        "{\"jsonrpc\": \"2.0\", \"id\": ",
        "\"result\": {\"server_version\": \"18.0\"}",
        "    ",
        "é—ü",
    ];
    let mut out = Vec::with_capacity(len + 64);
    while out.len() < len {
        if rng.chance(3) {
            out.extend_from_slice(format!("{:x}", rng.next_u64()).as_bytes());
        } else {
            out.extend_from_slice(rng.pick(PARTS).as_bytes());
        }
    }
    out.truncate(len);
    out
}

/// A generated corpus covering what the encoder branches on: no match,
/// matches of every length up to 258 and past it, overlapping matches
/// (runs), the tail shorter than four bytes, and inputs past the window.
fn corpus(rng: &mut Rng, cases: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(cases);
    for _ in 0..cases {
        let input = match rng.below(7) {
            0 => {
                let n = rng.below(3000);
                random_bytes(rng, n)
            }
            1 => {
                let len = rng.below(70_000);
                (0..len).map(|_| b"abcd"[rng.below(4)]).collect()
            }
            2 => {
                let n = rng.below(60_000);
                markup(rng, n)
            }
            3 => {
                let mut v = Vec::new();
                for _ in 0..rng.below(8) {
                    let b = rng.next_u64() as u8;
                    v.extend(std::iter::repeat_n(b, 1 + rng.below(700)));
                    let n = rng.below(5);
                    v.extend(random_bytes(rng, n));
                }
                v
            }
            4 => {
                // A block, then a copy of part of it, near the window's edge.
                let n = WINDOW - 8 + rng.below(16);
                let mut v = random_bytes(rng, n);
                let start = rng.below(64);
                let len = 1 + rng.below(600);
                let copy = v[start..start + len].to_vec();
                v.extend(copy);
                v
            }
            5 => {
                // Only bytes with 9-bit codes, hardly a match: the
                // longest output the writer must have room for.
                let len = rng.below(20_000);
                (0..len).map(|_| 144 + rng.below(112) as u8).collect()
            }
            _ => {
                let n = rng.below(4);
                random_bytes(rng, n)
            }
        };
        out.push(input);
    }
    out
}

#[test]
fn every_generated_buffer_inflates_to_itself_in_pythons_zlib() {
    let seed = env_number("RAMPART_DIFF_SEED", 0x6a1f) | 1;
    let cases = env_number("RAMPART_DIFF_CASES", 600) as usize;
    let mut rng = Rng::new(seed);
    let mut inputs = corpus(&mut rng, cases);
    // The largest body Rampart gzips in one go, then tiny ones after it:
    // the small ones meet the big one's positions in the hash table.
    inputs.push(markup(&mut rng, 256 * 1024));
    inputs.extend((0..5).map(|n| markup(&mut rng, n)));
    inputs.push(Vec::new());
    assert_zlib_inflates_each(&inputs);
}

#[test]
fn a_match_reaches_exactly_the_window_and_never_past_it() {
    let mut rng = Rng::new(0x5eed);
    // 300 random bytes, then zeros: the zeros' four-byte phrases all hash
    // to one slot, so the random bytes' positions stay in the table.
    let mut block = random_bytes(&mut rng, 300);
    block.resize(WINDOW + 1, 0);
    // The copy starts exactly WINDOW bytes after its original...
    let mut at_edge = block[..WINDOW].to_vec();
    at_edge.extend_from_slice(&block[..300]);
    // ...or one byte further, where deflate cannot point.
    let mut past_edge = block.clone();
    past_edge.extend_from_slice(&block[..300]);
    let alone = gzip(&block[..WINDOW]).len();
    let streams = assert_zlib_inflates_each(&[at_edge, past_edge]);
    assert!(
        streams[0].len() < alone + 16,
        "the copy at distance 32768 is a match ({} vs {alone})",
        streams[0].len()
    );
    assert!(
        streams[1].len() > alone + 250,
        "the copy at 32769 cannot be one ({} vs {alone})",
        streams[1].len()
    );
}

#[test]
fn every_match_length_is_spelled_right() {
    // A run of `len` copies of a 4-byte phrase after one original: one
    // match of each length 4..=258 (and 259.. split in two).
    let inputs: Vec<Vec<u8>> = (4..=300)
        .map(|len| {
            let mut v = b"xyzw".to_vec();
            v.extend(b"xyzw".iter().cycle().take(len));
            v.push(b'!');
            v
        })
        .collect();
    assert_zlib_inflates_each(&inputs);
}

#[test]
fn an_odoo_page_shrinks_like_zlib_level_one() {
    let mut rng = Rng::new(0x0d00);
    let page = markup(&mut rng, 12_500);
    let ours = gzip(&page).len();
    let mut zlib = flate2::Compress::new(flate2::Compression::new(1), false);
    let mut theirs = Vec::with_capacity(page.len());
    zlib.compress_vec(&page, &mut theirs, flate2::FlushCompress::Finish)
        .unwrap();
    // The gzip header and trailer are 18 bytes of ours.
    assert!(
        ours < theirs.len() + 18 + theirs.len() / 10,
        "{ours} bytes against zlib-rs level 1's {} + 18",
        theirs.len()
    );
    assert!(ours < page.len() / 2, "{ours} of {}", page.len());
}
