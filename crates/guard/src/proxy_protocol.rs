//! The PROXY protocol header (v1 text, v2 binary) that L4 balancers
//! (HAProxy, AWS NLB, …) put in front of a connection to pass the client
//! address on without touching the TLS stream.
//!
//! Only believed from `trusted_proxies` with `proxy_protocol = true`
//! ([`crate::Guard::expects_proxy_header`]); from such a peer the header is
//! required, as the specification asks, so a connection cannot skip it to be
//! counted as the balancer itself.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Longest v1 line, CRLF included (from the specification).
const V1_MAX: usize = 107;

/// What the first bytes of a connection say.
#[derive(Debug, PartialEq, Eq)]
pub enum ProxyHeader {
    /// Read more bytes and ask again.
    Incomplete,
    /// A complete header of `consumed` bytes; the TLS stream starts after it.
    /// `source` is None for `UNKNOWN` / `LOCAL` (health checks): use the peer.
    Parsed {
        consumed: usize,
        source: Option<SocketAddr>,
    },
}

/// Parses a PROXY header at the start of `buf`.
pub fn parse_proxy_header(buf: &[u8]) -> Result<ProxyHeader, String> {
    if buf.is_empty() {
        return Ok(ProxyHeader::Incomplete);
    }
    if buf[0] == b'\r' {
        let n = buf.len().min(V2_SIGNATURE.len());
        if buf[..n] != V2_SIGNATURE[..n] {
            return Err(not_a_header());
        }
        return parse_v2(buf);
    }
    if buf[0] == b'P' {
        let n = buf.len().min(6);
        if buf[..n] != b"PROXY "[..n] {
            return Err(not_a_header());
        }
        return parse_v1(buf);
    }
    Err(not_a_header())
}

fn not_a_header() -> String {
    "the connection from a trusted proxy does not start with a PROXY protocol header \
     ([guard].proxy_protocol = true expects one from every trusted proxy)"
        .to_string()
}

fn parse_v1(buf: &[u8]) -> Result<ProxyHeader, String> {
    let Some(end) = buf.windows(2).take(V1_MAX - 1).position(|w| w == b"\r\n") else {
        if buf.len() >= V1_MAX {
            return Err("PROXY v1 header longer than 107 bytes".into());
        }
        return Ok(ProxyHeader::Incomplete);
    };
    let line =
        std::str::from_utf8(&buf[..end]).map_err(|_| "PROXY v1 header is not ASCII".to_string())?;
    let bad = || format!("malformed PROXY v1 header {line:?}");
    let parts: Vec<&str> = line.split(' ').collect();
    let consumed = end + 2;
    match parts.as_slice() {
        ["PROXY", "UNKNOWN", ..] => Ok(ProxyHeader::Parsed {
            consumed,
            source: None,
        }),
        ["PROXY", proto @ ("TCP4" | "TCP6"), src, _dst, sport, _dport] => {
            let ip: IpAddr = src.parse().map_err(|_| bad())?;
            if (*proto == "TCP4") != ip.is_ipv4() {
                return Err(bad());
            }
            let port: u16 = sport.parse().map_err(|_| bad())?;
            Ok(ProxyHeader::Parsed {
                consumed,
                source: Some(SocketAddr::new(ip, port)),
            })
        }
        _ => Err(bad()),
    }
}

fn parse_v2(buf: &[u8]) -> Result<ProxyHeader, String> {
    if buf.len() < 16 {
        return Ok(ProxyHeader::Incomplete);
    }
    let ver_cmd = buf[12];
    if ver_cmd >> 4 != 2 {
        return Err(format!(
            "PROXY v2 header with unknown version {}",
            ver_cmd >> 4
        ));
    }
    let len = u16::from_be_bytes([buf[14], buf[15]]) as usize;
    let consumed = 16 + len;
    if buf.len() < consumed {
        return Ok(ProxyHeader::Incomplete);
    }
    let body = &buf[16..consumed];
    match ver_cmd & 0x0f {
        0 => {
            return Ok(ProxyHeader::Parsed {
                consumed,
                source: None,
            });
        } // LOCAL
        1 => {}
        c => return Err(format!("PROXY v2 header with unknown command {c}")),
    }
    let short = || "PROXY v2 address block shorter than its family needs".to_string();
    let source = match buf[13] >> 4 {
        1 => {
            let b: [u8; 12] = body
                .get(..12)
                .ok_or_else(short)?
                .try_into()
                .expect("12 bytes");
            let ip = Ipv4Addr::new(b[0], b[1], b[2], b[3]);
            Some(SocketAddr::new(
                IpAddr::V4(ip),
                u16::from_be_bytes([b[8], b[9]]),
            ))
        }
        2 => {
            let b: [u8; 36] = body
                .get(..36)
                .ok_or_else(short)?
                .try_into()
                .expect("36 bytes");
            let ip = Ipv6Addr::from(<[u8; 16]>::try_from(&b[..16]).expect("16 bytes"));
            Some(SocketAddr::new(
                IpAddr::V6(ip),
                u16::from_be_bytes([b[32], b[33]]),
            ))
        }
        // AF_UNSPEC, AF_UNIX: no IP address to believe.
        _ => None,
    };
    Ok(ProxyHeader::Parsed { consumed, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_tcp4_tcp6_unknown() {
        let h = b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\n\x16\x03\x01";
        assert_eq!(
            parse_proxy_header(h).unwrap(),
            ProxyHeader::Parsed {
                consumed: h.len() - 3,
                source: Some(sa("203.0.113.7:56324"))
            }
        );
        let h = b"PROXY TCP6 2001:db8::7 2001:db8::1 4000 443\r\n";
        assert_eq!(
            parse_proxy_header(h).unwrap(),
            ProxyHeader::Parsed {
                consumed: h.len(),
                source: Some(sa("[2001:db8::7]:4000"))
            }
        );
        let h = b"PROXY UNKNOWN\r\n";
        assert_eq!(
            parse_proxy_header(h).unwrap(),
            ProxyHeader::Parsed {
                consumed: 15,
                source: None
            }
        );
    }

    #[test]
    fn v1_incomplete_and_malformed() {
        assert_eq!(
            parse_proxy_header(b"PROX").unwrap(),
            ProxyHeader::Incomplete
        );
        assert_eq!(
            parse_proxy_header(b"PROXY TCP4 203.0.113.7 19").unwrap(),
            ProxyHeader::Incomplete
        );
        assert!(
            parse_proxy_header(b"PROXY TCP4 2001:db8::1 192.0.2.1 1 2\r\n").is_err(),
            "family mismatch"
        );
        assert!(parse_proxy_header(b"PROXY TCP4 203.0.113.7 192.0.2.1 99999 443\r\n").is_err());
        assert!(parse_proxy_header(&[b'P'; 200]).is_err());
        let err = parse_proxy_header(b"\x16\x03\x01\x02\x00").unwrap_err();
        assert!(err.contains("does not start with a PROXY"), "{err}");
        assert!(parse_proxy_header(b"GET / HTTP/1.1\r\n").is_err());
    }

    fn v2(cmd: u8, fam: u8, addr: &[u8], tlv: &[u8]) -> Vec<u8> {
        let mut v = V2_SIGNATURE.to_vec();
        v.push(0x20 | cmd);
        v.push(fam);
        v.extend(((addr.len() + tlv.len()) as u16).to_be_bytes());
        v.extend(addr);
        v.extend(tlv);
        v
    }

    #[test]
    fn v2_ipv4_ipv6_local_and_tlvs() {
        let addr4 = [203, 0, 113, 7, 192, 0, 2, 1, 0xdc, 0x04, 0x01, 0xbb];
        let tlv = [0x04, 0x00, 0x01, 0x00]; // PP2_TYPE_NOOP
        let mut h = v2(1, 0x11, &addr4, &tlv);
        let consumed = h.len();
        h.extend(b"\x16\x03\x01");
        assert_eq!(
            parse_proxy_header(&h).unwrap(),
            ProxyHeader::Parsed {
                consumed,
                source: Some(sa("203.0.113.7:56324"))
            }
        );
        assert_eq!(
            parse_proxy_header(&h[..20]).unwrap(),
            ProxyHeader::Incomplete
        );
        assert_eq!(
            parse_proxy_header(&h[..5]).unwrap(),
            ProxyHeader::Incomplete
        );

        let mut addr6 = Vec::new();
        addr6.extend("2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
        addr6.extend("2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        addr6.extend([0x0f, 0xa0, 0x01, 0xbb]);
        let h = v2(1, 0x21, &addr6, &[]);
        assert_eq!(
            parse_proxy_header(&h).unwrap(),
            ProxyHeader::Parsed {
                consumed: h.len(),
                source: Some(sa("[2001:db8::7]:4000"))
            }
        );

        let h = v2(0, 0x00, &[], &[]);
        assert_eq!(
            parse_proxy_header(&h).unwrap(),
            ProxyHeader::Parsed {
                consumed: 16,
                source: None
            }
        );
        assert!(
            parse_proxy_header(&v2(1, 0x11, &addr4[..8], &[])).is_err(),
            "short address block"
        );
        let mut bad_version = v2(1, 0x11, &addr4, &[]);
        bad_version[12] = 0x11;
        assert!(parse_proxy_header(&bad_version).is_err());
    }
}
