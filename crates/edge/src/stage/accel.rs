//! X-Accel-Redirect: with `--x-sendfile`, Odoo answers an attachment
//! download with `X-Accel-Redirect: /web/filestore/<db>/<xx>/<sha1>` and
//! an empty body; the front serves that file from
//! `<data_dir>/filestore/<db>/<xx>/<sha1>` with Odoo's headers kept.
//! Only that namespace is honoured, and requests for it from outside are
//! refused (route `Internal`).

use http::{HeaderMap, header};

const PREFIX: &str = "/web/filestore/";

/// Odoo's headers, kept for the file answer, less what described Odoo's
/// own empty answer: its `Date` (werkzeug writes one and Odoo's stream
/// response another; the file answer gets one, stamped when it is sent).
pub fn file_headers(mut headers: HeaderMap) -> HeaderMap {
    headers.remove(header::DATE);
    headers
}

/// The path under `<data_dir>/filestore/` that Odoo asked for.
pub fn target(headers: &HeaderMap) -> Option<Result<String, String>> {
    let v = headers.get("x-accel-redirect")?;
    let Ok(v) = v.to_str() else {
        return Some(Err("X-Accel-Redirect is not text".into()));
    };
    let Some(rel) = v.strip_prefix(PREFIX) else {
        return Some(Err(format!("X-Accel-Redirect outside {PREFIX}: {v:?}")));
    };
    let ok = rel
        .split('/')
        .all(|s| !s.is_empty() && s != "." && s != ".." && !s.contains('\\') && !s.contains('%'));
    if !ok {
        return Some(Err(format!("X-Accel-Redirect with an unsafe path: {v:?}")));
    }
    Some(Ok(rel.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &str) -> Option<Result<String, String>> {
        let mut h = HeaderMap::new();
        h.insert("x-accel-redirect", v.parse().unwrap());
        target(&h)
    }

    #[test]
    fn only_filestore_and_safe() {
        assert_eq!(
            t("/web/filestore/demo1/ab/abcdef").unwrap().unwrap(),
            "demo1/ab/abcdef"
        );
        assert!(t("/etc/passwd").unwrap().is_err());
        assert!(t("/web/filestore/../../etc/passwd").unwrap().is_err());
        assert!(t("/web/filestore/demo1//x").unwrap().is_err());
        assert!(t("/web/filestore/demo1/%2e%2e/x").unwrap().is_err());
        assert!(target(&HeaderMap::new()).is_none());
    }

    #[test]
    fn odoo_dates_are_dropped() {
        let mut h = HeaderMap::new();
        h.append(
            header::DATE,
            "Tue, 01 Dec 2026 00:00:00 GMT".parse().unwrap(),
        );
        h.append(
            header::DATE,
            "Tue, 01 Dec 2026 00:00:01 GMT".parse().unwrap(),
        );
        h.insert(header::CONTENT_TYPE, "application/pdf".parse().unwrap());
        let h = file_headers(h);
        assert!(h.get(header::DATE).is_none());
        assert!(h.get(header::CONTENT_TYPE).is_some());
    }
}
