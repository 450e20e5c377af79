//! The URL and `--resolve` on the command line, turned into addresses to
//! connect to and the name to present (SNI and Host).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::net::TcpStream;

use crate::{Options, RunError};

pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// false for an `http://` URL: no TLS at all.
    pub https: bool,
    /// Lower-cased host name or IP literal (without brackets).
    pub host: String,
    /// The port in the URL (or 443/80).
    pub port: u16,
    /// Where the URL's port is reached.
    pub addr: SocketAddr,
    /// Where the plain-HTTP redirect is checked.
    pub http_addr: SocketAddr,
}

/// The parts of `scheme://host[:port][/...]`.
#[derive(Debug, PartialEq, Eq)]
struct ParsedUrl {
    https: bool,
    host: String,
    port: Option<u16>,
}

fn parse_url(url: &str) -> Result<ParsedUrl, String> {
    let lower = url.to_ascii_lowercase();
    let (https, rest) = if lower.starts_with("https://") {
        (true, &url[8..])
    } else if lower.starts_with("http://") {
        (false, &url[7..])
    } else {
        return Err(format!(
            "URL {url:?}: must start with https:// (or http://), e.g. https://erp.example.com"
        ));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(format!("URL {url:?}: user:password@ is not supported"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (ip, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("URL {url:?}: unclosed [ in the host"))?;
        (ip.to_string(), after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    let port =
        match port {
            None => None,
            Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
                format!("URL {url:?}: port {p:?} is not a number from 1 to 65535")
            })?),
        };
    if host.is_empty() {
        return Err(format!("URL {url:?}: no host name"));
    }
    if host.parse::<IpAddr>().is_err()
        && !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(format!("URL {url:?}: {host:?} is not a host name"));
    }
    Ok(ParsedUrl {
        https,
        host: host.to_ascii_lowercase(),
        port,
    })
}

/// `HOST:ADDR` or `HOST:ADDR:PORT` (ADDR may be `[v6]`): the address, and
/// a port when given. HOST must be the URL's host.
fn parse_resolve(spec: &str, url_host: &str) -> Result<(IpAddr, Option<u16>), String> {
    let (host, addr) = spec.split_once(':').ok_or_else(|| {
        format!("--resolve {spec:?}: expected HOST:ADDR, e.g. erp.example.com:127.0.0.1")
    })?;
    if !host.eq_ignore_ascii_case(url_host) {
        return Err(format!(
            "--resolve {spec:?}: host {host:?} is not the URL's host {url_host:?}"
        ));
    }
    if let Ok(ip) = addr.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Ok((ip, None));
    }
    if let Ok(sa) = addr.parse::<SocketAddr>() {
        return Ok((sa.ip(), Some(sa.port())));
    }
    Err(format!(
        "--resolve {spec:?}: {addr:?} is not an IP address (or IP:PORT)"
    ))
}

impl Target {
    pub async fn from_options(opts: &Options) -> Result<Target, RunError> {
        let url = parse_url(&opts.url).map_err(RunError::Usage)?;
        let port = url.port.unwrap_or(if url.https { 443 } else { 80 });
        let (ip, connect_port) = match &opts.resolve {
            Some(spec) => {
                let (ip, p) = parse_resolve(spec, &url.host).map_err(RunError::Usage)?;
                (ip, p.unwrap_or(port))
            }
            None => match url.host.parse::<IpAddr>() {
                Ok(ip) => (ip, port),
                Err(_) => {
                    let found = tokio::net::lookup_host((url.host.as_str(), port))
                        .await
                        .map_err(|e| {
                            RunError::Unreachable(format!("cannot resolve {}: {e}", url.host))
                        })?
                        .next()
                        .ok_or_else(|| {
                            RunError::Unreachable(format!("{} has no address", url.host))
                        })?;
                    (found.ip(), port)
                }
            },
        };
        let http_port = opts
            .http_port
            .unwrap_or(if url.https { 80 } else { connect_port });
        Ok(Target {
            https: url.https,
            host: url.host,
            port,
            addr: SocketAddr::new(ip, connect_port),
            http_addr: SocketAddr::new(ip, http_port),
        })
    }

    /// The one check whose failure stops everything: nothing listens.
    pub async fn ensure_reachable(&self) -> Result<(), RunError> {
        tcp(self.addr)
            .await
            .map(drop)
            .map_err(RunError::Unreachable)
    }

    /// The Host header: the name, with the port when it is not the default.
    pub fn host_header(&self) -> String {
        let default = if self.https { 443 } else { 80 };
        self.authority(self.port, default)
    }

    /// The Host header for the plain-HTTP port.
    pub fn http_host_header(&self) -> String {
        self.authority(self.http_addr.port(), 80)
    }

    fn authority(&self, port: u16, default: u16) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if port == default {
            host
        } else {
            format!("{host}:{port}")
        }
    }

    /// SNI is a DNS name, or none for an IP literal (rustls handles both).
    pub fn server_name(&self) -> ServerName<'static> {
        ServerName::try_from(self.host.clone())
            .unwrap_or_else(|_| ServerName::try_from("invalid.invalid".to_string()).unwrap())
    }

    /// SNI for hand-built ClientHellos: none for an IP literal.
    pub fn sni(&self) -> Option<&str> {
        self.host
            .parse::<IpAddr>()
            .is_err()
            .then_some(self.host.as_str())
    }
}

pub(crate) async fn tcp(addr: SocketAddr) -> Result<TcpStream, String> {
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(e)) => Err(format!("cannot connect to {addr}: {e}")),
        Err(_) => Err(format!(
            "cannot connect to {addr}: no answer within {} s",
            CONNECT_TIMEOUT.as_secs()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("https://ERP.example.com").unwrap(),
            ParsedUrl {
                https: true,
                host: "erp.example.com".into(),
                port: None
            }
        );
        assert_eq!(
            parse_url("http://127.0.0.1:8069/web").unwrap(),
            ParsedUrl {
                https: false,
                host: "127.0.0.1".into(),
                port: Some(8069)
            }
        );
        assert_eq!(
            parse_url("https://[::1]:8443").unwrap(),
            ParsedUrl {
                https: true,
                host: "::1".into(),
                port: Some(8443)
            }
        );
        for bad in [
            "erp.example.com",
            "ftp://x",
            "https://",
            "https://a:0",
            "https://a:99999",
            "https://u@a",
            "https://a b",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn resolve_specs() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            parse_resolve("erp.test:127.0.0.1", "erp.test").unwrap(),
            (ip, None)
        );
        assert_eq!(
            parse_resolve("ERP.test:127.0.0.1:8443", "erp.test").unwrap(),
            (ip, Some(8443))
        );
        assert_eq!(
            parse_resolve("erp.test:[::1]", "erp.test").unwrap(),
            ("::1".parse().unwrap(), None)
        );
        let e = parse_resolve("other.test:127.0.0.1", "erp.test").unwrap_err();
        assert!(e.contains("not the URL's host"), "{e}");
        assert!(parse_resolve("erp.test:nowhere", "erp.test").is_err());
        assert!(parse_resolve("erp.test", "erp.test").is_err());
    }
}
