//! Hop-by-hop headers (RFC 9110 §7.6.1) belong to one connection and
//! are never forwarded: not to Odoo (which would otherwise see the
//! client's `Connection`/`TE`), not back to the client (Odoo's
//! `Connection: close` would end every keep-alive connection).

use http::{HeaderMap, HeaderName, header};

const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Removes hop-by-hop headers and any header the `Connection` header
/// names. `keep_upgrade` keeps `Upgrade` (and sets `Connection: upgrade`)
/// for a websocket handshake.
///
/// ```
/// use http::{HeaderMap, HeaderValue};
/// let mut h = HeaderMap::new();
/// h.insert("connection", HeaderValue::from_static("x-secret"));
/// h.insert("x-secret", HeaderValue::from_static("1"));
/// h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
/// h.insert("accept", HeaderValue::from_static("*/*"));
/// rampart_edge::headers::hop::strip(&mut h, false);
/// assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["accept"]);
/// ```
pub fn strip(headers: &mut HeaderMap, keep_upgrade: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        if keep_upgrade && name == header::UPGRADE {
            continue;
        }
        // Never let a client strip what the proxy itself sets.
        if is_protected(&name) {
            continue;
        }
        headers.remove(&name);
    }
    for name in HOP_BY_HOP.iter() {
        headers.remove(name);
    }
    if keep_upgrade {
        headers.insert(
            header::CONNECTION,
            http::HeaderValue::from_static("upgrade"),
        );
    } else {
        headers.remove(header::UPGRADE);
    }
}

fn is_protected(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "host"
            | "x-forwarded-for"
            | "x-forwarded-host"
            | "x-forwarded-proto"
            | "x-real-ip"
            | "content-length"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_listed_and_named() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            "keep-alive, X-Secret, x-forwarded-for".parse().unwrap(),
        );
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert(header::TE, "trailers".parse().unwrap());
        h.insert(header::UPGRADE, "websocket".parse().unwrap());
        h.insert("x-forwarded-for", "1.2.3.4".parse().unwrap());
        h.insert(header::ACCEPT, "*/*".parse().unwrap());
        strip(&mut h, false);
        assert!(h.get("x-secret").is_none());
        assert!(h.get(header::CONNECTION).is_none());
        assert!(h.get("keep-alive").is_none());
        assert!(h.get(header::TE).is_none());
        assert!(h.get(header::UPGRADE).is_none());
        assert!(h.get(header::ACCEPT).is_some());
        assert!(
            h.get("x-forwarded-for").is_some(),
            "left for the forwarded stage to overwrite"
        );
    }

    #[test]
    fn keeps_upgrade_for_websocket() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "Upgrade".parse().unwrap());
        h.insert(header::UPGRADE, "websocket".parse().unwrap());
        strip(&mut h, true);
        assert_eq!(h.get(header::UPGRADE).unwrap(), "websocket");
        assert_eq!(h.get(header::CONNECTION).unwrap(), "upgrade");
    }

    #[test]
    fn a_websocket_handshake_still_loses_the_other_named_headers() {
        // Only Upgrade is kept for the tunnel; whatever else Connection
        // names is still one hop's and is dropped.
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            "Upgrade, X-Secret, Cookie".parse().unwrap(),
        );
        h.insert(header::UPGRADE, "websocket".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert(header::COOKIE, "session_id=x".parse().unwrap());
        strip(&mut h, true);
        assert_eq!(h.get(header::UPGRADE).unwrap(), "websocket");
        assert!(h.get("x-secret").is_none());
        assert!(h.get(header::COOKIE).is_none());
    }
}
