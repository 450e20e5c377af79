//! The request's header fields as werkzeug will read them, made
//! unambiguous before anything judges them (stage 1).
//!
//! Odoo's HTTP hop is HTTP/1.1 to werkzeug's WSGI server, whose
//! `make_environ` turns each field into `HTTP_<NAME>` with `-` → `_`, joins
//! repeated fields with `,` and keeps the last `Content-Type` /
//! `Content-Length`. So, from an HTTP/2 or HTTP/1.1 client:
//! - `cookie`: HTTP/2 browsers send one field per cookie (RFC 9113
//!   §8.2.3); joined with `,` werkzeug reads `a=1,session_id=x` as one
//!   cookie and loses the session (Odoo's CSRF check then fails the login).
//!   They are joined with `; ` into one field, as the RFC requires before an
//!   HTTP/1.1 hop.
//! - names with `_`: `X_Forwarded_Host` or `Content_Length` would land in
//!   the same environ key as the field Rampart set or judged. Dropped, as
//!   nginx drops them by default (`underscores_in_headers off`).
//! - `Content-Type`, `Authorization`: a repeat is read first-wins by
//!   Rampart's `HeaderMap::get`, last-wins (or comma-joined) by werkzeug;
//!   no client sends two, so it is refused.
//! - `Content-Length`: equal repeats (checked by `normalize::check_framing`)
//!   become one.
//! - `Host` / `:authority`: judged by stage 2, which replaces them with the
//!   one host it chose the site by (`site::RequestHost`).
//! - connection-specific fields (`Connection`, `TE`, `Upgrade`,
//!   `Transfer-Encoding`, ...): HTTP/2 refuses them itself; on HTTP/1 they
//!   are stripped at the upstream hop (`hop`). Trailers never reach Odoo:
//!   the upstream client only sends trailer fields a `Trailer` header
//!   announces, and that header is hop-by-hop.

use http::{HeaderMap, HeaderValue, header};

/// Why a request's fields are refused (400).
pub fn normalise(headers: &mut HeaderMap) -> Result<(), &'static str> {
    for (name, why) in [
        (header::CONTENT_TYPE, "repeated Content-Type header"),
        (header::AUTHORIZATION, "repeated Authorization header"),
    ] {
        if headers.get_all(&name).iter().nth(1).is_some() {
            return Err(why);
        }
    }
    let underscored: Vec<_> = headers
        .keys()
        .filter(|n| n.as_str().contains('_'))
        .cloned()
        .collect();
    for name in underscored {
        headers.remove(&name);
    }
    join_cookies(headers);
    if headers
        .get_all(header::CONTENT_LENGTH)
        .iter()
        .nth(1)
        .is_some()
        && let Some(first) = headers.get(header::CONTENT_LENGTH).cloned()
    {
        headers.insert(header::CONTENT_LENGTH, first);
    }
    Ok(())
}

/// Several `cookie` fields → one, joined with "; " (RFC 9113 §8.2.3).
fn join_cookies(headers: &mut HeaderMap) {
    if headers.get_all(header::COOKIE).iter().nth(1).is_none() {
        return;
    }
    let mut joined: Vec<u8> = Vec::new();
    for v in headers.get_all(header::COOKIE) {
        let v = v.as_bytes().trim_ascii();
        if v.is_empty() {
            continue;
        }
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(v);
    }
    match HeaderValue::from_bytes(&joined) {
        Ok(v) => {
            headers.insert(header::COOKIE, v);
        }
        // Valid values joined by "; " stay valid; never expected.
        Err(_) => {
            headers.remove(header::COOKIE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_become_one_field() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "frontend_lang=en_US".parse().unwrap());
        h.append(header::COOKIE, "session_id=abc".parse().unwrap());
        h.append(header::COOKIE, "".parse().unwrap());
        h.append(
            header::COOKIE,
            "tz=Europe/Brussels; cids=1".parse().unwrap(),
        );
        normalise(&mut h).unwrap();
        let all: Vec<_> = h.get_all(header::COOKIE).iter().collect();
        assert_eq!(
            all,
            ["frontend_lang=en_US; session_id=abc; tz=Europe/Brussels; cids=1"]
        );
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "session_id=abc".parse().unwrap());
        normalise(&mut h).unwrap();
        assert_eq!(h.get(header::COOKIE).unwrap(), "session_id=abc");
    }

    #[test]
    fn underscored_names_are_dropped() {
        let mut h = HeaderMap::new();
        h.insert("x_forwarded_host", "evil.example".parse().unwrap());
        h.insert("content_length", "0".parse().unwrap());
        h.insert("x-forwarded-host", "kept-for-forwarded".parse().unwrap());
        normalise(&mut h).unwrap();
        assert!(h.get("x_forwarded_host").is_none());
        assert!(h.get("content_length").is_none());
        assert!(h.get("x-forwarded-host").is_some());
    }

    #[test]
    fn repeated_singletons() {
        let mut h = HeaderMap::new();
        h.append(header::CONTENT_TYPE, "application/json".parse().unwrap());
        h.append(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(normalise(&mut h).is_err());
        let mut h = HeaderMap::new();
        h.append(header::AUTHORIZATION, "Bearer a".parse().unwrap());
        h.append(header::AUTHORIZATION, "Bearer b".parse().unwrap());
        assert!(normalise(&mut h).is_err());
        let mut h = HeaderMap::new();
        h.append(header::CONTENT_LENGTH, "5".parse().unwrap());
        h.append(header::CONTENT_LENGTH, "5".parse().unwrap());
        normalise(&mut h).unwrap();
        assert_eq!(h.get_all(header::CONTENT_LENGTH).iter().count(), 1);
    }
}
