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

/// Picks the encoding from Accept-Encoding: highest q wins; on a tie,
/// zstd, then br, then gzip. `q=0` refuses an encoding (also through `*`).
pub fn negotiate(accept: Option<&HeaderValue>) -> Option<Encoding> {
    let accept = accept?.to_str().ok()?;
    let mut star: Option<u32> = None;
    // The first q given for zstd, br, gzip (in that order); no allocation:
    // this runs for every request.
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
    let mut best: Option<(Encoding, u32)> = None;
    for (i, enc) in [Encoding::Zstd, Encoding::Brotli, Encoding::Gzip]
        .into_iter()
        .enumerate()
    {
        let q = explicit[i].or(star).unwrap_or(0);
        if q > 0 && best.is_none_or(|(_, bq)| q > bq) {
            best = Some((enc, q));
        }
    }
    best.map(|(e, _)| e)
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
