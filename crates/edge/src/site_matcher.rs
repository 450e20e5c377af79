//! Which configured site a host name belongs to (`hosts = [...]`). Built
//! once with the runtime state; the pipeline's stage 2 asks it for the
//! site of the request's host and of the TLS SNI (they must be one site).

/// A host name pattern from `hosts = [...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// One host name.
    Exact(String),
    /// `*.example.org`: exactly one more label.
    Wildcard(String),
    /// `*`: any host.
    Any,
}

impl HostPattern {
    /// Reads one `hosts` entry (case does not matter).
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
    /// A matcher over each site's `hosts`, in site order.
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

    /// The index of the site `host` belongs to, exact names first.
    pub fn find(&self, host: &str) -> Option<usize> {
        self.patterns
            .iter()
            .find(|(p, _)| p.matches(host))
            .map(|(_, i)| *i)
    }
}
