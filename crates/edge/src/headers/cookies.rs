//! Odoo sets `session_id` with HttpOnly but without Secure or SameSite:
//! over HTTPS the cookie must get both, or a downgrade or cross-site
//! request carries the session.

use http::{HeaderMap, HeaderValue, header};

/// Adds `Secure` and `SameSite=Lax` to the `Set-Cookie`s of `names`.
pub fn harden(headers: &mut HeaderMap, names: &[String]) {
    if names.is_empty() || !headers.contains_key(header::SET_COOKIE) {
        return;
    }
    let cookies: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .cloned()
        .collect();
    headers.remove(header::SET_COOKIE);
    for v in cookies {
        headers.append(header::SET_COOKIE, harden_one(v, names));
    }
}

fn harden_one(v: HeaderValue, names: &[String]) -> HeaderValue {
    let Ok(s) = v.to_str() else { return v };
    let name = s.split('=').next().unwrap_or("").trim();
    if !names.iter().any(|n| n == name) {
        return v;
    }
    let attrs: Vec<String> = s
        .split(';')
        .skip(1)
        .map(|a| {
            a.trim()
                .split('=')
                .next()
                .unwrap_or("")
                .to_ascii_lowercase()
        })
        .collect();
    let mut out = s.trim_end().trim_end_matches(';').to_string();
    if !attrs.iter().any(|a| a == "secure") {
        out.push_str("; Secure");
    }
    if !attrs.iter().any(|a| a == "samesite") {
        out.push_str("; SameSite=Lax");
    }
    HeaderValue::from_str(&out).unwrap_or(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_secure_and_samesite_to_session_only() {
        let mut h = HeaderMap::new();
        h.append(header::SET_COOKIE, "session_id=abc; Expires=Tue, 01 Dec 2026 10:00:00 GMT; Max-Age=604800; HttpOnly; Path=/".parse().unwrap());
        h.append(
            header::SET_COOKIE,
            "frontend_lang=en_US; Path=/".parse().unwrap(),
        );
        harden(&mut h, &["session_id".into()]);
        let v: Vec<_> = h
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        assert!(v[0].starts_with("session_id=abc;"));
        assert!(v[0].contains("HttpOnly"));
        assert!(v[0].ends_with("; Secure; SameSite=Lax"), "{}", v[0]);
        assert_eq!(v[1], "frontend_lang=en_US; Path=/");
    }

    #[test]
    fn keeps_existing_attributes() {
        let mut h = HeaderMap::new();
        h.append(
            header::SET_COOKIE,
            "session_id=x; secure; SameSite=Strict".parse().unwrap(),
        );
        harden(&mut h, &["session_id".into()]);
        assert_eq!(
            h.get(header::SET_COOKIE).unwrap(),
            "session_id=x; secure; SameSite=Strict"
        );
    }
}
