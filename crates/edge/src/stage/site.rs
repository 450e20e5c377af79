//! Stage 2: which site a request is for, by Host (or `:authority`).
//!
//! An unknown host gets 421, never another site's content. On TLS the
//! site named by SNI must be the site named by Host, so one site's
//! certificate cannot be used to reach another.

use http::{HeaderMap, Uri, header};

/// A host name pattern from `hosts = [...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Exact(String),
    /// `*.example.org`: exactly one more label.
    Wildcard(String),
    Any,
}

impl HostPattern {
    pub fn parse(s: &str) -> HostPattern {
        let s = s.to_ascii_lowercase();
        if s == "*" {
            HostPattern::Any
        } else if let Some(rest) = s.strip_prefix("*.") {
            HostPattern::Wildcard(rest.to_string())
        } else {
            HostPattern::Exact(s)
        }
    }

    fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => h == host,
            HostPattern::Wildcard(suffix) => host
                .strip_suffix(suffix.as_str())
                .and_then(|l| l.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty() && !label.contains('.')),
            HostPattern::Any => true,
        }
    }

    /// Exact names win over wildcards, wildcards over `*`.
    fn rank(&self) -> u8 {
        match self {
            HostPattern::Exact(_) => 0,
            HostPattern::Wildcard(_) => 1,
            HostPattern::Any => 2,
        }
    }
}

/// Finds the site index for a host name among each site's patterns.
#[derive(Debug, Clone, Default)]
pub struct SiteMatcher {
    patterns: Vec<(HostPattern, usize)>,
}

impl SiteMatcher {
    pub fn new<'a>(sites: impl IntoIterator<Item = &'a [String]>) -> Self {
        let mut patterns = Vec::new();
        for (i, hosts) in sites.into_iter().enumerate() {
            for h in hosts {
                patterns.push((HostPattern::parse(h), i));
            }
        }
        patterns.sort_by_key(|(p, _)| p.rank());
        SiteMatcher { patterns }
    }

    pub fn find(&self, host: &str) -> Option<usize> {
        self.patterns
            .iter()
            .find(|(p, _)| p.matches(host))
            .map(|(_, i)| *i)
    }
}

/// The request's host name: lower-case, without port or trailing dot.
/// `None` when missing or not a plausible host name (then: 400/421).
/// The site is chosen by this name but Odoo is sent the Host header, so
/// the two must agree: an HTTP/2 `:authority` (or absolute-form target)
/// naming one host with a Host header naming another, or two Host
/// headers, is refused rather than routed by one and served by the other.
pub fn request_host(uri: &Uri, headers: &HeaderMap) -> Option<String> {
    let mut hosts = headers.get_all(header::HOST).iter();
    let host_header = match (hosts.next(), hosts.next()) {
        (Some(h), None) => Some(host_without_port(h.to_str().ok()?)?),
        (None, _) => None,
        (Some(_), Some(_)) => return None,
    };
    match (uri.authority(), host_header) {
        (Some(a), Some(h)) => {
            let a = host_without_port(a.as_str())?;
            (a == h).then_some(a)
        }
        (Some(a), None) => host_without_port(a.as_str()),
        (None, h) => h,
    }
}

pub fn host_without_port(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let host = if let Some(rest) = raw.strip_prefix('[') {
        // [v6]:port
        let end = rest.find(']')?;
        &raw[..end + 2]
    } else {
        match raw.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            Some(_) => return None,
            None => raw,
        }
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let plausible = !host.is_empty()
        && host.len() <= 255
        && host.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'[' | b']' | b':' | b'_')
        });
    plausible.then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn exact_wildcard_any() {
        let a = hosts(&["erp.example.com"]);
        let b = hosts(&["*.example.org"]);
        let m = SiteMatcher::new([a.as_slice(), b.as_slice()]);
        assert_eq!(m.find("erp.example.com"), Some(0));
        assert_eq!(m.find("shop.example.org"), Some(1));
        assert_eq!(m.find("a.b.example.org"), None);
        assert_eq!(m.find("example.org"), None);
        assert_eq!(m.find("evil.com"), None);
        let c = hosts(&["*"]);
        let m = SiteMatcher::new([a.as_slice(), c.as_slice()]);
        assert_eq!(m.find("erp.example.com"), Some(0));
        assert_eq!(m.find("anything"), Some(1));
    }

    #[test]
    fn authority_and_host_must_agree() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "b.example.com".parse().unwrap());
        let abs: Uri = "https://a.example.com/web/login".parse().unwrap();
        let origin: Uri = "/web/login".parse().unwrap();
        assert_eq!(request_host(&abs, &h), None);
        assert_eq!(request_host(&origin, &h).as_deref(), Some("b.example.com"));
        h.insert(header::HOST, "A.example.com:443".parse().unwrap());
        assert_eq!(request_host(&abs, &h).as_deref(), Some("a.example.com"));
        h.append(header::HOST, "b.example.com".parse().unwrap());
        assert_eq!(request_host(&origin, &h), None);
        assert_eq!(
            request_host(&abs, &HeaderMap::new()).as_deref(),
            Some("a.example.com")
        );
    }

    #[test]
    fn host_parsing() {
        assert_eq!(
            host_without_port("ERP.example.com:8443").as_deref(),
            Some("erp.example.com")
        );
        assert_eq!(
            host_without_port("erp.example.com.").as_deref(),
            Some("erp.example.com")
        );
        assert_eq!(host_without_port("[::1]:8443").as_deref(), Some("[::1]"));
        assert_eq!(host_without_port("a b"), None);
        assert_eq!(host_without_port("x:y"), None);
        assert_eq!(host_without_port(""), None);
    }
}
