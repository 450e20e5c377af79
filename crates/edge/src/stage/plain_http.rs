//! Stage 3: the plain-HTTP listener answers ACME HTTP-01 tokens and
//! sends everything else to https with a permanent redirect (308 keeps
//! the method and body of a POST).

use http::{Response, StatusCode};

use crate::body::Body;
use crate::pages;
use crate::refusal::Refusal;

/// Where ACME HTTP-01 tokens are asked for.
pub const ACME_PREFIX: &str = "/.well-known/acme-challenge/";

/// The token of an HTTP-01 challenge request, if this is one.
pub fn acme_token(raw_path: &str) -> Option<&str> {
    let token = raw_path.strip_prefix(ACME_PREFIX)?;
    let ok = !token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then_some(token)
}

/// The answer to an HTTP-01 request: its key authorization, or 404 when
/// none is pending.
pub fn acme_answer(key_authorization: Option<String>) -> Result<Response<Body>, Refusal> {
    let k = key_authorization.ok_or(Refusal::NoAcmeChallenge)?;
    Ok(pages::text(StatusCode::OK, "text/plain", k))
}

/// `https://host[:port]/path?query`; the port only when not 443.
pub fn redirect_to_https(host: &str, https_port: u16, path_and_query: &str) -> Response<Body> {
    let location = if https_port == 443 {
        format!("https://{host}{path_and_query}")
    } else {
        format!("https://{host}:{https_port}{path_and_query}")
    };
    pages::redirect(StatusCode::PERMANENT_REDIRECT, &location)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        assert_eq!(
            acme_token("/.well-known/acme-challenge/abc-DEF_123"),
            Some("abc-DEF_123")
        );
        assert_eq!(acme_token("/.well-known/acme-challenge/../x"), None);
        assert_eq!(acme_token("/.well-known/acme-challenge/"), None);
        assert_eq!(acme_token("/web/login"), None);
    }

    #[test]
    fn only_a_pending_token_is_answered() {
        let r = acme_answer(Some("tok.key".into())).unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "text/plain");
        let r = acme_answer(None).unwrap_err();
        assert_eq!(r.status(), 404);
        assert_eq!(r.message(), "No such ACME challenge.");
    }

    #[test]
    fn redirect_keeps_path_and_query() {
        let r = redirect_to_https("erp.example.com", 443, "/web/login?redirect=%2Fodoo");
        assert_eq!(r.status(), 308);
        assert_eq!(
            r.headers()["location"],
            "https://erp.example.com/web/login?redirect=%2Fodoo"
        );
        let r = redirect_to_https("localhost", 8443, "/");
        assert_eq!(r.headers()["location"], "https://localhost:8443/");
    }
}
