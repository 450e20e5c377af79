//! Which content coding a client accepts (Accept-Encoding) and which
//! answers are worth compressing. Read by the compression stage, the edge
//! cache and the precompressed static files alike, so it sits below all
//! three (stage/compress.rs does the compressing).

use http::HeaderValue;

/// A content coding Rampart compresses with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Encoding {
    /// `zstd`.
    Zstd,
    /// `br`.
    Brotli,
    /// `gzip`.
    Gzip,
}

impl Encoding {
    /// The Content-Encoding token.
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Zstd => "zstd",
            Encoding::Brotli => "br",
            Encoding::Gzip => "gzip",
        }
    }
}

/// Smaller bodies gain nothing once headers and framing are counted.
pub(crate) const MIN_SIZE: u64 = 1024;

/// The encodings in preference order on a tie.
const ALL: [Encoding; 3] = [Encoding::Zstd, Encoding::Brotli, Encoding::Gzip];

/// What a client's Accept-Encoding allows: a q (0..=1000, 0 = refused) for
/// zstd, br and gzip, in that order. Read once per request; the cache and
/// static files want the best one, the per-request compressor the best
/// one it can afford (stage/compress.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Accepted([u32; 3]);

impl Accepted {
    /// Reads Accept-Encoding: `q=0` refuses an encoding (also through
    /// `*`); none given, none accepted.
    pub fn parse(accept: Option<&HeaderValue>) -> Accepted {
        let Some(accept) = accept.and_then(|a| a.to_str().ok()) else {
            return Accepted::default();
        };
        let mut star: Option<u32> = None;
        // The first q given for zstd, br, gzip; no allocation: this runs
        // for every request.
        let mut explicit: [Option<u32>; 3] = [None; 3];
        for item in accept.split(',') {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim();
            let mut q = 1000u32;
            for p in parts {
                if let Some(v) = p
                    .trim()
                    .strip_prefix("q=")
                    .or_else(|| p.trim().strip_prefix("Q="))
                {
                    q = (v.trim().parse::<f32>().unwrap_or(0.0).clamp(0.0, 1.0) * 1000.0) as u32;
                }
            }
            let slot = if name.eq_ignore_ascii_case("zstd") {
                0
            } else if name.eq_ignore_ascii_case("br") {
                1
            } else if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
                2
            } else if name == "*" {
                star = Some(q);
                continue;
            } else {
                continue;
            };
            explicit[slot].get_or_insert(q);
        }
        Accepted(std::array::from_fn(|i| explicit[i].or(star).unwrap_or(0)))
    }

    /// Whether the client takes `enc` at all.
    pub fn allows(&self, enc: Encoding) -> bool {
        self.0[ALL.iter().position(|e| *e == enc).expect("one of ALL")] > 0
    }

    /// The encodings the client takes, best first: highest q, then zstd,
    /// br, gzip on a tie.
    pub fn ranked(&self) -> impl Iterator<Item = Encoding> + '_ {
        let mut order = [0usize, 1, 2];
        // Stable: a tie keeps ALL's order.
        order.sort_by_key(|&i| std::cmp::Reverse(self.0[i]));
        order.into_iter().filter(|&i| self.0[i] > 0).map(|i| ALL[i])
    }

    /// The best encoding the client takes.
    pub fn best(&self) -> Option<Encoding> {
        self.ranked().next()
    }
}

/// Picks the encoding from Accept-Encoding: highest q wins; on a tie,
/// zstd, then br, then gzip. `q=0` refuses an encoding (also through `*`).
pub fn negotiate(accept: Option<&HeaderValue>) -> Option<Encoding> {
    Accepted::parse(accept).best()
}

/// Text types worth compressing; images, fonts (woff2), archives and
/// PDFs are compressed already.
pub(crate) fn compressible(content_type: Option<&HeaderValue>) -> bool {
    let Some(ct) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let ct = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    ct.starts_with("text/")
        || matches!(
            ct.as_str(),
            "application/javascript"
                | "application/x-javascript"
                | "application/json"
                | "application/xml"
                | "application/xhtml+xml"
                | "application/rss+xml"
                | "application/atom+xml"
                | "application/ld+json"
                | "application/manifest+json"
                | "image/svg+xml"
                | "application/x-font-ttf"
                | "font/ttf"
                | "font/otf"
                | "application/vnd.ms-fontobject"
        )
}
