//! The login name a login attempt is for, so `login_rate` can count per
//! (address, login): colleagues behind one NAT logging in one after the
//! other must not spend one shared budget.
//!
//! The name only picks a rate bucket (and the address ceiling above the
//! buckets bounds them all), so a misreading costs an attacker's bucket,
//! never a check: where the reading is not certain (a multipart form, a
//! body that is not the form) the name is None, and every such attempt
//! from an address shares one bucket.
//!
//! The form is read as werkzeug 2.2 reads it for Odoo's `request.params`
//! (`{**args, **form}`, each MultiDict giving its first value): the
//! urlencoded body wins over the query string; pairs split on `&`, `+` is
//! a space, `%XX` decoded where valid (tests/session_differential.rs holds
//! this against werkzeug).

/// The login a `POST /web/login` form is for.
pub fn form_login(query: Option<&str>, content_type: Option<&[u8]>, body: &[u8]) -> Option<String> {
    let mime = content_type
        .map(|c| {
            let c = c.split(|&b| b == b';').next().unwrap_or(c);
            String::from_utf8_lossy(c.trim_ascii()).to_ascii_lowercase()
        })
        .unwrap_or_default();
    let from_form = match mime.as_str() {
        "application/x-www-form-urlencoded" => first(body, b"login"),
        // werkzeug parses these too; the name is not worth a multipart reader.
        "multipart/form-data" => return None,
        _ => None,
    };
    // A value that is not UTF-8 once decoded: werkzeug 2.2 replaces the
    // bad bytes, 3.x re-quotes them; neither is certain, so no name.
    let value = from_form.or_else(|| first(query.unwrap_or("").as_bytes(), b"login"))?;
    String::from_utf8(value).ok().map(|l| normalise(&l))
}

/// One spelling per login for the bucket: surrounding spaces and case
/// folded (at worst two of Odoo's logins share a bucket: stricter).
pub fn normalise(login: &str) -> String {
    login.trim().to_lowercase()
}

/// The first value of `name`, percent-decoded.
fn first(pairs: &[u8], name: &[u8]) -> Option<Vec<u8>> {
    pairs
        .split(|&b| b == b'&')
        .filter(|p| !p.is_empty())
        .find_map(|p| {
            let (k, v) = match p.iter().position(|&b| b == b'=') {
                Some(i) => (&p[..i], &p[i + 1..]),
                None => (p, &b""[..]),
            };
            (unquote_plus(k) == name).then(|| unquote_plus(v))
        })
}

fn unquote_plus(s: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < s.len() => match (hex(s[i + 1]), hex(s[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORM: &[u8] = b"application/x-www-form-urlencoded";

    #[test]
    fn the_login_odoo_reads_from_the_form() {
        let l = |q: Option<&str>, ct: Option<&[u8]>, body: &[u8]| form_login(q, ct, body);
        assert_eq!(
            l(
                None,
                Some(FORM),
                b"csrf_token=x&login=Alice%40Example.com&password=p"
            ),
            Some("alice@example.com".into())
        );
        assert_eq!(
            l(None, Some(FORM), b"login=a+b&login=c"),
            Some("a b".into())
        );
        assert_eq!(
            l(
                Some("login=fromquery"),
                Some(b"application/x-www-form-urlencoded; charset=utf-8"),
                b"login=form"
            ),
            Some("form".into())
        );
        assert_eq!(
            l(Some("login=q"), Some(FORM), b"password=x"),
            Some("q".into())
        );
        assert_eq!(
            l(Some("login=q"), Some(b"text/plain"), b"login=x"),
            Some("q".into())
        );
        assert_eq!(
            l(
                Some("login=q"),
                Some(b"multipart/form-data; boundary=x"),
                b""
            ),
            None
        );
        assert_eq!(l(None, Some(FORM), b"login=%zz%4"), Some("%zz%4".into()));
        assert_eq!(
            l(None, Some(FORM), b"%6Cogin=encoded"),
            Some("encoded".into())
        );
        assert_eq!(l(None, None, b"login=x"), None);
        assert_eq!(
            l(Some("login=q"), Some(FORM), b"login=%FF"),
            None,
            "not UTF-8"
        );
    }
}
