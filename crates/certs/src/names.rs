//! Host names: normalising, matching SNI against a site's hosts, and the
//! names a local certificate lists.

/// Lower case without a trailing dot: how SNI and config hosts compare.
pub fn normalise(host: &str) -> String {
    host.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// `*.example.org` → `example.org`; None for anything else.
pub fn wildcard_parent(host: &str) -> Option<&str> {
    host.strip_prefix("*.")
}

/// The names a local CA leaf lists for a site: its hosts, and for the
/// catch-all `*` the names a client on this machine uses.
pub fn local_names(hosts: &[String]) -> Vec<String> {
    let mut names = Vec::new();
    for h in hosts {
        if h == "*" {
            for n in ["localhost", "127.0.0.1", "::1"] {
                names.push(n.to_string());
            }
            if let Some(host) = machine_hostname() {
                names.push(host);
            }
        } else {
            names.push(h.clone());
        }
    }
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

/// This machine's host name, when it is a usable DNS name.
pub fn machine_hostname() -> Option<String> {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()?;
    let h = normalise(&raw);
    let ok = !h.is_empty()
        && h != "localhost"
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    ok.then_some(h)
}

/// A file name for a site's certificate, from its first host:
/// `erp.example.com`, `_wildcard.example.org`, `_any`.
pub fn file_stem(hosts: &[String]) -> String {
    let first = hosts.first().map(String::as_str).unwrap_or("*");
    let s = if first == "*" {
        "_any".to_string()
    } else if let Some(parent) = wildcard_parent(first) {
        format!("_wildcard.{parent}")
    } else {
        first.to_string()
    };
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_are_safe_file_names() {
        assert_eq!(file_stem(&["erp.example.com".into()]), "erp.example.com");
        assert_eq!(
            file_stem(&["*.example.org".into()]),
            "_wildcard.example.org"
        );
        assert_eq!(file_stem(&["*".into()]), "_any");
        assert_eq!(file_stem(&["../etc/passwd".into()]), ".._etc_passwd");
    }

    #[test]
    fn catch_all_lists_loopback_names() {
        let n = local_names(&["*".into(), "erp.test".into()]);
        assert!(n.contains(&"localhost".to_string()) && n.contains(&"::1".to_string()));
        assert!(n.contains(&"erp.test".to_string()));
    }
}
