//! How the site is reached: the plain-HTTP redirect, TLS versions, the
//! certificate and ALPN.

use std::net::IpAddr;

use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::Site;
use crate::http1::{Request, truncate};
use crate::legacy_tls::{self, Answer, LegacyVersion};
use crate::report::{Check, Status};

const FIX_REDIRECT: &str = "plain HTTP must answer 301 or 308 to https:// with the same path and query, so typed names and old links land on TLS; rampart does this on [listen] http (behind another proxy: `return 308 https://$host$request_uri`)";
const FIX_OLD_TLS: &str = "TLS 1.0 and 1.1 are broken (BEAST, SHA-1/MD5 handshakes) and PCI DSS forbids them; allow only TLS 1.2 and 1.3 (rampart never offers less; nginx: `ssl_protocols TLSv1.2 TLSv1.3;`)";
const FIX_TLS12: &str = "TLS 1.2 is still what many clients, mobile apps and integrations speak; enable it alongside 1.3";
const FIX_TLS13: &str = "TLS 1.3 is faster (one round trip) and drops every weak cipher; enable it";
const FIX_CHAIN: &str = "browsers refuse a certificate that no trusted CA signed, or an incomplete chain; serve the full chain (leaf + intermediates), e.g. with `tls = \"acme\"`";
const FIX_NAMES: &str = "the certificate must name this host (subjectAltName), or every browser shows a warning; add the host to the site's hosts and reissue";
const FIX_EXPIRY: &str = "an expired certificate locks every user out; renew it (rampart renews ACME certificates 30 days before expiry; check `rampart certs` and the logs if it did not)";
const FIX_ALPN: &str = "without h2 in ALPN browsers fall back to HTTP/1.1 and its six connections per host; Odoo's web client loads many assets in parallel. Enable HTTP/2 on the front";
const FIX_NO_TLS: &str = "serve the site over HTTPS only: passwords and session cookies cross the network in clear text otherwise; put rampart in front of Odoo";

const TLS_CHECKS: [(&str, &str); 8] = [
    ("tls1.0-refused", FIX_OLD_TLS),
    ("tls1.1-refused", FIX_OLD_TLS),
    ("tls1.2-accepted", FIX_TLS12),
    ("tls1.3-accepted", FIX_TLS13),
    ("cert-chain", FIX_CHAIN),
    ("cert-names", FIX_NAMES),
    ("cert-expiry", FIX_EXPIRY),
    ("alpn-h2", FIX_ALPN),
];

/// The path and query the redirect must keep, byte for byte.
const REDIRECT_PROBE: &str = "/web/login?redirect=%2Fodoo%3Fa%3D1&rampart_verify=1";

pub(super) async fn redirect(site: &Site) -> Vec<Check> {
    let t = &site.target;
    let url = format!("http://{}{REDIRECT_PROBE}", t.http_host_header());
    let check =
        |status, detail: String| vec![Check::new("http-redirect", status, detail, FIX_REDIRECT)];
    let r = match site.request_plain(&Request::get(REDIRECT_PROBE)).await {
        Ok(r) => r,
        Err(e) => return check(Status::Fail, format!("GET {url}: {e}")),
    };
    let location = r.header("location").unwrap_or("");
    let seen = format!("GET {url} → {} {location}", r.status)
        .trim_end()
        .to_string();
    if r.status != 301 && r.status != 308 {
        let why = match r.status {
            302 | 303 | 307 => " (temporary: browsers do not remember it)",
            _ => "",
        };
        return check(Status::Fail, format!("{seen}{why}"));
    }
    match redirect_target_ok(location, &t.host, REDIRECT_PROBE) {
        Ok(()) => check(Status::Pass, seen),
        Err(why) => check(Status::Fail, format!("{seen} ({why})")),
    }
}

fn redirect_target_ok(location: &str, host: &str, path_and_query: &str) -> Result<(), String> {
    let rest = location
        .get(..8)
        .filter(|s| s.eq_ignore_ascii_case("https://"))
        .map(|_| &location[8..])
        .ok_or("not to https://")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let loc_host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    };
    if !loc_host.eq_ignore_ascii_case(host) {
        return Err(format!("to host {loc_host:?}, not {host:?}"));
    }
    if path != path_and_query {
        return Err(format!("path and query not kept: {path:?}"));
    }
    Ok(())
}

pub(super) async fn tls(site: &Site) -> Vec<Check> {
    if !site.target.https {
        return TLS_CHECKS
            .iter()
            .map(|(name, fix)| {
                let fix = if name.starts_with("tls") || name.starts_with("cert") {
                    FIX_NO_TLS
                } else {
                    fix
                };
                Check::new(
                    *name,
                    Status::Fail,
                    "the URL is http://: no TLS at all",
                    fix,
                )
            })
            .collect();
    }
    let mut out = Vec::new();
    for (name, version) in [
        ("tls1.0-refused", LegacyVersion::Tls10),
        ("tls1.1-refused", LegacyVersion::Tls11),
    ] {
        let check = match legacy_tls::probe(site.target.addr, site.target.sni(), version).await {
            Ok(Answer::Refused(how)) => {
                Check::new(name, Status::Pass, format!("refused: {how}"), FIX_OLD_TLS)
            }
            Ok(Answer::Accepted(how)) => {
                Check::new(name, Status::Fail, format!("accepted: {how}"), FIX_OLD_TLS)
            }
            Ok(Answer::Silent) => Check::new(
                name,
                Status::Warn,
                "no answer to the ClientHello within 5 s (neither accepted nor refused)",
                FIX_OLD_TLS,
            ),
            Err(e) => Check::new(name, Status::Fail, e, FIX_OLD_TLS),
        };
        out.push(check);
    }
    for (name, version, fix) in [
        ("tls1.2-accepted", &rustls::version::TLS12, FIX_TLS12),
        ("tls1.3-accepted", &rustls::version::TLS13, FIX_TLS13),
    ] {
        let config = site.tls.config(&[version], &[b"http/1.1"]);
        out.push(match site.tls.connect(&site.target, config).await {
            Ok(hs) => {
                let suite = hs
                    .stream
                    .get_ref()
                    .1
                    .negotiated_cipher_suite()
                    .map(|s| format!(" with {:?}", s.suite()))
                    .unwrap_or_default();
                Check::new(
                    name,
                    Status::Pass,
                    format!("{} handshake{suite}", hs.version),
                    fix,
                )
            }
            Err(e) => Check::new(name, Status::Fail, e, fix),
        });
    }
    out.extend(certificate_and_alpn(site).await);
    out
}

async fn certificate_and_alpn(site: &Site) -> Vec<Check> {
    let config = site
        .tls
        .config(rustls::DEFAULT_VERSIONS, &[b"h2", b"http/1.1"]);
    let hs = match site.tls.connect(&site.target, config).await {
        Ok(hs) => hs,
        Err(e) => {
            return TLS_CHECKS[4..]
                .iter()
                .map(|(name, fix)| Check::new(*name, Status::Fail, e.clone(), fix))
                .collect();
        }
    };
    let host = &site.target.host;
    let mut out = Vec::new();
    let verdict = site.tls.last_verdict();
    out.push(match verdict {
        Some(v) if v.result.is_ok() || v.name_mismatch => Check::new(
            "cert-chain",
            Status::Pass,
            format!(
                "{} certificate(s), trusted by {}",
                hs.chain.len(),
                site.tls.roots_desc
            ),
            FIX_CHAIN,
        ),
        Some(v) => Check::new(
            "cert-chain",
            Status::Fail,
            format!(
                "not trusted by {}: {}",
                site.tls.roots_desc,
                v.result.err().unwrap_or_default()
            ),
            FIX_CHAIN,
        ),
        None => Check::new(
            "cert-chain",
            Status::Fail,
            "the server sent no certificate",
            FIX_CHAIN,
        ),
    });
    let leaf = hs
        .chain
        .first()
        .and_then(|der| X509Certificate::from_der(der).ok().map(|(_, c)| c));
    let Some(leaf) = leaf else {
        for (name, fix) in &TLS_CHECKS[5..7] {
            out.push(Check::new(
                *name,
                Status::Fail,
                "no readable certificate",
                fix,
            ));
        }
        out.push(alpn_check(hs.alpn.as_deref()));
        return out;
    };
    let names = subject_names(&leaf);
    let shown = truncate(&names.join(", "), 120);
    out.push(if names.iter().any(|n| name_matches(n, host)) {
        Check::new(
            "cert-names",
            Status::Pass,
            format!("{host} is covered by [{shown}]"),
            FIX_NAMES,
        )
    } else {
        Check::new(
            "cert-names",
            Status::Fail,
            format!("{host} is not in [{shown}]"),
            FIX_NAMES,
        )
    });
    let not_after = leaf.validity().not_after;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let secs_left = not_after.timestamp() - now;
    let days = secs_left.div_euclid(86_400);
    out.push(if secs_left < 0 {
        Check::new(
            "cert-expiry",
            Status::Fail,
            format!("expired {} day(s) ago ({not_after})", -days),
            FIX_EXPIRY,
        )
    } else if days < 14 {
        Check::new(
            "cert-expiry",
            Status::Warn,
            format!("{days} day(s) left (until {not_after})"),
            FIX_EXPIRY,
        )
    } else {
        Check::new(
            "cert-expiry",
            Status::Pass,
            format!("{days} days left (until {not_after})"),
            FIX_EXPIRY,
        )
    });
    out.push(alpn_check(hs.alpn.as_deref()));
    out
}

fn alpn_check(alpn: Option<&str>) -> Check {
    match alpn {
        Some("h2") => Check::new(
            "alpn-h2",
            Status::Pass,
            "the server chose h2 from [h2, http/1.1]",
            FIX_ALPN,
        ),
        Some(p) => Check::new(
            "alpn-h2",
            Status::Warn,
            format!("the server chose {p} over h2"),
            FIX_ALPN,
        ),
        None => Check::new(
            "alpn-h2",
            Status::Warn,
            "the server ignored ALPN (no h2)",
            FIX_ALPN,
        ),
    }
}

/// DNS and IP subjectAltNames; the subject CN only when there are none
/// (browsers ignore the CN otherwise).
fn subject_names(cert: &X509Certificate<'_>) -> Vec<String> {
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => names.push(d.to_ascii_lowercase()),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => names.push(IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()).to_string()),
                    16 => names.push(IpAddr::from(<[u8; 16]>::try_from(*b).unwrap()).to_string()),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    if names.is_empty() {
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(|cn| format!("CN={cn}")),
        );
    }
    names
}

/// Exact match, or `*.example.com` for exactly one more label.
fn name_matches(pattern: &str, host: &str) -> bool {
    if pattern.eq_ignore_ascii_case(host) {
        return true;
    }
    match (pattern.strip_prefix("*."), host.split_once('.')) {
        (Some(suffix), Some((label, rest))) => {
            !label.is_empty() && rest.eq_ignore_ascii_case(suffix)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_targets() {
        let pq = "/web/login?x=1";
        assert!(redirect_target_ok("https://erp.test/web/login?x=1", "erp.test", pq).is_ok());
        assert!(redirect_target_ok("HTTPS://ERP.test:8443/web/login?x=1", "erp.test", pq).is_ok());
        assert!(redirect_target_ok("http://erp.test/web/login?x=1", "erp.test", pq).is_err());
        assert!(redirect_target_ok("https://evil.test/web/login?x=1", "erp.test", pq).is_err());
        let e = redirect_target_ok("https://erp.test/", "erp.test", pq).unwrap_err();
        assert!(e.contains("not kept"), "{e}");
        assert!(redirect_target_ok("https://[::1]:1/web/login?x=1", "::1", pq).is_ok());
    }

    #[test]
    fn wildcards_cover_one_label() {
        assert!(name_matches("erp.test", "ERP.test"));
        assert!(name_matches("*.example.com", "erp.example.com"));
        assert!(!name_matches("*.example.com", "a.b.example.com"));
        assert!(!name_matches("*.example.com", "example.com"));
        assert!(!name_matches("other.test", "erp.test"));
    }
}
