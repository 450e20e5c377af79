//! X-Forwarded-* towards Odoo. With `proxy_mode`, Odoo applies
//! werkzeug's ProxyFix with exactly one trusted hop, and only when
//! X-Forwarded-Host is present; it takes the LAST X-Forwarded-For entry.
//! So whatever the client sent is discarded and replaced: the chain is
//! exactly the client address (as the guard determined it: the peer, or
//! the address a trusted proxy vouched for), and Host/Proto are always set.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue, header};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Names, not strings: a `&str` name is parsed and checked again on every
/// call (profiled under the bench).
const SPOOFABLE: [HeaderName; 8] = [
    X_FORWARDED_FOR,
    X_FORWARDED_HOST,
    X_FORWARDED_PROTO,
    HeaderName::from_static("x-forwarded-port"),
    HeaderName::from_static("x-forwarded-prefix"),
    HeaderName::from_static("x-forwarded-server"),
    X_REAL_IP,
    header::FORWARDED,
];

/// Replaces every forwarding header the client sent with the client's
/// address, the judged host and the scheme.
pub fn set(headers: &mut HeaderMap, client: IpAddr, host: &HeaderValue, https: bool) {
    for name in &SPOOFABLE {
        headers.remove(name);
    }
    let client =
        HeaderValue::from_str(&client.to_string()).expect("an IP address is a valid header value");
    headers.insert(X_FORWARDED_FOR, client.clone());
    headers.insert(X_REAL_IP, client);
    headers.insert(X_FORWARDED_HOST, host.clone());
    headers.insert(
        X_FORWARDED_PROTO,
        HeaderValue::from_static(if https { "https" } else { "http" }),
    );
    if !headers.contains_key(header::HOST) {
        headers.insert(header::HOST, host.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overwrites_spoofed_values() {
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", "6.6.6.6".parse().unwrap());
        h.append("x-forwarded-for", "7.7.7.7".parse().unwrap());
        h.insert("x-forwarded-host", "evil.com".parse().unwrap());
        h.insert("x-forwarded-proto", "http".parse().unwrap());
        h.insert("forwarded", "for=1.1.1.1".parse().unwrap());
        set(
            &mut h,
            "203.0.113.9".parse().unwrap(),
            &"erp.example.com".parse().unwrap(),
            true,
        );
        let xff: Vec<_> = h.get_all("x-forwarded-for").iter().collect();
        assert_eq!(xff, vec!["203.0.113.9"]);
        assert_eq!(h.get("x-real-ip").unwrap(), "203.0.113.9");
        assert_eq!(h.get("x-forwarded-host").unwrap(), "erp.example.com");
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "https");
        assert!(h.get("forwarded").is_none());
        assert_eq!(h.get(header::HOST).unwrap(), "erp.example.com");
    }
}
