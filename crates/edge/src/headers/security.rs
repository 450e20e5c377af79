//! Security headers on every response, including those Odoo leaves bare
//! (/web/health, static files, errors). Odoo's own values win where it
//! sets one, with two exceptions: HSTS and Server are always ours, and the
//! CSP is ours unless Odoo's sets `default-src` — Odoo's pages only carry
//! `frame-ancestors 'self'` (which ours includes), while a `default-src`
//! is Odoo locking down a file it serves, which must stay.

use http::{HeaderMap, HeaderName, HeaderValue, header};

use crate::config::SecurityHeaders;

/// The site's header set, parsed once.
#[derive(Debug, Clone, Default)]
pub struct HeaderSet {
    always: Vec<(HeaderName, HeaderValue)>,
    if_absent: Vec<(HeaderName, HeaderValue)>,
    csp: Option<HeaderValue>,
}

/// The `Server` header every answer carries.
pub const SERVER: HeaderValue = HeaderValue::from_static("rampart");

impl HeaderSet {
    /// Parses the site's `[site.headers]`; the error names the bad key.
    pub fn new(c: &SecurityHeaders) -> Result<HeaderSet, String> {
        let mut set = HeaderSet::default();
        let mut add =
            |always: bool, name: HeaderName, key: &str, value: &str| -> Result<(), String> {
                if value.is_empty() {
                    return Ok(());
                }
                let v = HeaderValue::from_str(value)
                    .map_err(|_| format!("headers.{key}: not a valid header value"))?;
                if always {
                    set.always.push((name, v));
                } else {
                    set.if_absent.push((name, v));
                }
                Ok(())
            };
        add(
            true,
            header::STRICT_TRANSPORT_SECURITY,
            "strict_transport_security",
            &c.strict_transport_security,
        )?;
        add(
            false,
            header::X_CONTENT_TYPE_OPTIONS,
            "content_type_options",
            &c.content_type_options,
        )?;
        add(
            false,
            header::X_FRAME_OPTIONS,
            "frame_options",
            &c.frame_options,
        )?;
        add(
            false,
            header::REFERRER_POLICY,
            "referrer_policy",
            &c.referrer_policy,
        )?;
        add(
            false,
            HeaderName::from_static("permissions-policy"),
            "permissions_policy",
            &c.permissions_policy,
        )?;
        if !c.content_security_policy.is_empty() {
            set.csp = Some(
                HeaderValue::from_str(&c.content_security_policy)
                    .map_err(|_| "headers.content_security_policy: not a valid header value")?,
            );
        }
        Ok(set)
    }

    /// Adds the set to an answer (HSTS on HTTPS only).
    pub fn apply(&self, headers: &mut HeaderMap, https: bool) {
        for (name, value) in &self.always {
            // HSTS over plain HTTP is ignored by browsers and misleading.
            if *name == header::STRICT_TRANSPORT_SECURITY && !https {
                continue;
            }
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.if_absent {
            if !headers.contains_key(name) {
                headers.insert(name.clone(), value.clone());
            }
        }
        if let Some(csp) = &self.csp {
            let odoo_locks_down =
                headers
                    .get_all(header::CONTENT_SECURITY_POLICY)
                    .iter()
                    .any(|v| {
                        v.to_str()
                            .is_ok_and(|v| v.to_ascii_lowercase().contains("default-src"))
                    });
            if !odoo_locks_down {
                headers.insert(header::CONTENT_SECURITY_POLICY, csp.clone());
            }
        }
        headers.insert(header::SERVER, SERVER);
        headers.remove(HeaderName::from_static("x-powered-by"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_applied_and_odoo_values_kept() {
        let set = HeaderSet::new(&SecurityHeaders::default()).unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            header::SERVER,
            "Werkzeug/2.2.2 Python/3.11.2".parse().unwrap(),
        );
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            "frame-ancestors 'self'".parse().unwrap(),
        );
        set.apply(&mut h, true);
        assert_eq!(h.get(header::SERVER).unwrap(), "rampart");
        assert_eq!(
            h.get(header::STRICT_TRANSPORT_SECURITY).unwrap(),
            "max-age=31536000; includeSubDomains"
        );
        assert_eq!(h.get(header::X_CONTENT_TYPE_OPTIONS).unwrap(), "nosniff");
        // Odoo's page CSP (frame-ancestors only) gives way to ours, which
        // includes frame-ancestors 'self'.
        let csp = h
            .get(header::CONTENT_SECURITY_POLICY)
            .unwrap()
            .to_str()
            .unwrap();
        assert_eq!(csp, SecurityHeaders::default().content_security_policy);
        assert!(csp.contains("frame-ancestors 'self'"));
        assert!(h.get("permissions-policy").is_some());
    }

    #[test]
    fn hsts_only_over_https() {
        let set = HeaderSet::new(&SecurityHeaders::default()).unwrap();
        let mut plain = HeaderMap::new();
        set.apply(&mut plain, false);
        assert!(plain.get(header::STRICT_TRANSPORT_SECURITY).is_none());
        // The rest of the set does not depend on the scheme.
        assert_eq!(
            plain.get(header::X_CONTENT_TYPE_OPTIONS).unwrap(),
            "nosniff"
        );
        assert_eq!(plain.get(header::SERVER).unwrap(), "rampart");
        let mut tls = HeaderMap::new();
        set.apply(&mut tls, true);
        assert!(tls.get(header::STRICT_TRANSPORT_SECURITY).is_some());
    }

    #[test]
    fn odoo_lock_down_csp_is_kept() {
        let set = HeaderSet::new(&SecurityHeaders::default()).unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'".parse().unwrap(),
        );
        set.apply(&mut h, true);
        assert_eq!(
            h.get(header::CONTENT_SECURITY_POLICY).unwrap(),
            "default-src 'none'"
        );
    }

    #[test]
    fn empty_turns_off_and_bad_value_is_named() {
        let c = SecurityHeaders {
            frame_options: String::new(),
            ..Default::default()
        };
        let set = HeaderSet::new(&c).unwrap();
        let mut h = HeaderMap::new();
        set.apply(&mut h, true);
        assert!(h.get(header::X_FRAME_OPTIONS).is_none());
        let bad = SecurityHeaders {
            referrer_policy: "a\nb".into(),
            ..Default::default()
        };
        assert!(
            HeaderSet::new(&bad)
                .unwrap_err()
                .contains("referrer_policy")
        );
    }
}
