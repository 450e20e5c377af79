//! Stage 2: which site a request is for, by Host (or `:authority`).
//!
//! An unknown host gets 421, never another site's content. On TLS the
//! site named by SNI must be the site named by Host, so one site's
//! certificate cannot be used to reach another.

use http::{HeaderMap, Uri, header};

/// The host a request is for, as judged: the name sites are chosen by,
/// and the port as given. Odoo is sent exactly this (`Host`,
/// X-Forwarded-Host), never the client's spelling of it: `ERP.example.com.`
/// and `erp.example.com` choose the same site, and must reach Odoo's
/// dbfilter (`%h`) the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHost {
    /// Lower-case, without port or trailing dot.
    pub name: String,
    /// The port, when the request named one.
    pub port: Option<u16>,
}

impl RequestHost {
    /// `name[:port]`, for the `Host` header sent to Odoo.
    pub fn header_value(&self) -> http::HeaderValue {
        let text = match self.port {
            Some(p) => format!("{}:{p}", self.name),
            None => self.name.clone(),
        };
        http::HeaderValue::from_str(&text).expect("checked host name characters")
    }
}

/// The request's host. `None` when missing or not a plausible host name
/// (then: 400). The site is chosen by this name and Odoo is sent it, so
/// every spelling of it in the request must agree: an HTTP/2 `:authority`
/// (or absolute-form target) and a Host header naming different hosts or
/// ports (RFC 9113 §8.3.1 lets a server treat that as malformed), or two
/// Host headers, are refused rather than routed by one and read by Odoo
/// from the other.
pub fn request_host(uri: &Uri, headers: &HeaderMap) -> Option<RequestHost> {
    let mut hosts = headers.get_all(header::HOST).iter();
    let host_header = match (hosts.next(), hosts.next()) {
        (Some(h), None) => Some(parse_host(h.to_str().ok()?)?),
        (None, _) => None,
        (Some(_), Some(_)) => return None,
    };
    match (uri.authority(), host_header) {
        (Some(a), Some(h)) => {
            let a = parse_host(a.as_str())?;
            (a == h).then_some(a)
        }
        (Some(a), None) => parse_host(a.as_str()),
        (None, h) => h,
    }
}

/// The request as judged, for every stage after 2 and for Odoo: an
/// origin-form target (an absolute-form or HTTP/2 target keeps only its
/// path and query) and the judged host as the one `Host`.
pub fn to_origin_form<B>(req: &mut http::Request<B>, host: &RequestHost) {
    let pq = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    *req.uri_mut() = Uri::from(pq);
    req.headers_mut().insert(header::HOST, host.header_value());
}

/// The host name alone (lower-case, no port, no trailing dot).
pub fn host_without_port(raw: &str) -> Option<String> {
    parse_host(raw).map(|h| h.name)
}

fn parse_host(raw: &str) -> Option<RequestHost> {
    let raw = raw.trim();
    let (host, port) = if let Some(rest) = raw.strip_prefix('[') {
        // [v6] or [v6]:port
        let end = rest.find(']')?;
        let after = &rest[end + 1..];
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (&raw[..end + 2], port)
    } else {
        match raw.rsplit_once(':') {
            Some((h, port)) => (h, Some(port)),
            None => (raw, None),
        }
    };
    // An empty port is allowed (RFC 3986 §3.2.3) and means none.
    let port = match port {
        None | Some("") => None,
        Some(p) if p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().ok()?)
        }
        Some(_) => return None,
    };
    let name = host.trim_end_matches('.').to_ascii_lowercase();
    let plausible = !name.is_empty()
        && name.len() <= 255
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'[' | b']' | b':' | b'_')
        })
        && (name.starts_with('[') || !name.contains([':', '[', ']']));
    plausible.then_some(RequestHost { name, port })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::site_matcher::SiteMatcher;

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
        let name = |uri: &Uri, h: &HeaderMap| request_host(uri, h).map(|r| r.name);
        assert_eq!(name(&abs, &h), None);
        assert_eq!(name(&origin, &h).as_deref(), Some("b.example.com"));
        h.insert(header::HOST, "A.example.com.".parse().unwrap());
        assert_eq!(name(&abs, &h).as_deref(), Some("a.example.com"));
        // Same name, another port: not the same authority.
        h.insert(header::HOST, "a.example.com:443".parse().unwrap());
        assert_eq!(name(&abs, &h), None);
        h.append(header::HOST, "b.example.com".parse().unwrap());
        assert_eq!(name(&origin, &h), None);
        assert_eq!(
            name(&abs, &HeaderMap::new()).as_deref(),
            Some("a.example.com")
        );
    }

    #[test]
    fn the_request_becomes_what_was_judged() {
        let mut req = http::Request::builder()
            .uri("https://ERP.example.com.:8443/web/login?x=1")
            .header(header::HOST, "erp.example.com.:8443")
            .body(())
            .unwrap();
        let host = request_host(req.uri(), req.headers()).unwrap();
        to_origin_form(&mut req, &host);
        assert_eq!(req.uri(), "/web/login?x=1");
        assert_eq!(req.uri().authority(), None);
        let hosts: Vec<_> = req.headers().get_all(header::HOST).iter().collect();
        assert_eq!(hosts, ["erp.example.com:8443"]);
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
        assert_eq!(host_without_port("[::1]junk"), None);
        assert_eq!(host_without_port("a.example.com:99999"), None);
        assert_eq!(host_without_port("a:b:8443"), None);
        let h = parse_host("ERP.Example.com.:0443").unwrap();
        assert_eq!(h.header_value(), "erp.example.com:443");
        assert_eq!(parse_host("erp.example.com:").unwrap().port, None);
        assert_eq!(host_without_port(""), None);
    }
}
