//! The PROXY protocol header (v1 text, v2 binary) that L4 balancers
//! (HAProxy, AWS NLB, …) put in front of a connection to pass the client
//! address on without touching the TLS stream.
//!
//! Only believed from `trusted_proxies` with `proxy_protocol = true`
//! ([`crate::Guard::expects_proxy_header`]); from such a peer the header is
//! required, as the specification asks, so a connection cannot skip it to be
//! counted as the balancer itself.
//!
//! Hand-written: the header is a few fixed fields, and the crates that parse
//! it either want the whole header in one buffer or read past its end.
//! [`read_proxy_header`] takes from the socket exactly the header's bytes
//! (v2 by its length field, v1 up to its CRLF) and leaves the TLS bytes after
//! it unread, however the header was split across TCP segments.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::net::TcpStream;

const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Longest v1 line, CRLF included (from the specification).
const V1_MAX: usize = 107;
/// Longest v2 header: 16 fixed bytes and a 16-bit length.
const V2_MAX: usize = 16 + u16::MAX as usize;

/// What the first bytes of a connection say.
#[derive(Debug, PartialEq, Eq)]
pub enum ProxyHeader {
    /// Read more bytes and ask again.
    Incomplete,
    /// A complete header of `consumed` bytes; the TLS stream starts after it.
    /// `source` is None for `UNKNOWN` / `LOCAL` (health checks): use the peer.
    Parsed {
        /// Header length in bytes.
        consumed: usize,
        /// The client's address as the proxy saw it.
        source: Option<SocketAddr>,
    },
}

/// Parses a PROXY header at the start of `buf`.
///
/// ```
/// use rampart_guard::{ProxyHeader, parse_proxy_header};
/// let h = b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\n\x16\x03\x01";
/// assert_eq!(
///     parse_proxy_header(h),
///     Ok(ProxyHeader::Parsed { consumed: 44, source: Some("203.0.113.7:56324".parse().unwrap()) })
/// );
/// assert_eq!(parse_proxy_header(b"PROXY TCP4 203.0"), Ok(ProxyHeader::Incomplete));
/// ```
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

/// Consumes the PROXY v1/v2 header at the start of `stream`, leaving the
/// bytes after it (the TLS handshake) unread; returns the client address it
/// names (None for `UNKNOWN` / `LOCAL`). The caller bounds it with a deadline.
///
/// Each step peeks at what has arrived, and takes only bytes that are
/// certainly the header's: all of them while the header is incomplete, up to
/// its end once it is whole. The next peek then waits for new bytes: no
/// polling, and no limit but the protocol's own (107 bytes for v1,
/// 16 + 65535 for v2).
pub async fn read_proxy_header(stream: &TcpStream) -> Result<Option<SocketAddr>, String> {
    let mut head: Vec<u8> = Vec::new();
    let mut peeked = vec![0u8; 4096];
    loop {
        let room = V2_MAX - head.len();
        let want = peeked.len().min(room);
        let n = stream
            .peek(&mut peeked[..want])
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed in the PROXY header".into());
        }
        let have = head.len();
        head.extend_from_slice(&peeked[..n]);
        match parse_proxy_header(&head)? {
            ProxyHeader::Parsed { consumed, source } => {
                take(stream, consumed - have).await?;
                return Ok(source);
            }
            ProxyHeader::Incomplete if head.len() >= V2_MAX => {
                return Err("PROXY header longer than the protocol allows".into());
            }
            ProxyHeader::Incomplete => take(stream, n).await?,
        }
    }
}

/// Reads and drops exactly `n` bytes that a peek has already seen.
async fn take(stream: &TcpStream, mut n: usize) -> Result<(), String> {
    let mut sink = [0u8; 4096];
    while n > 0 {
        stream.readable().await.map_err(|e| e.to_string())?;
        let k = n.min(sink.len());
        match stream.try_read(&mut sink[..k]) {
            Ok(0) => return Err("connection closed in the PROXY header".into()),
            Ok(k) => n -= k,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
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

    #[test]
    fn v1_line_of_107_bytes_is_read_and_of_108_refused() {
        // The specification's limit counts the CRLF; UNKNOWN lets the rest
        // of the line be anything, so padding makes any length.
        let line = |len: usize| {
            let mut l = b"PROXY UNKNOWN ".to_vec();
            l.resize(len - 2, b'x');
            l.extend_from_slice(b"\r\n");
            l
        };
        let h = line(107);
        assert_eq!(
            parse_proxy_header(&h).unwrap(),
            ProxyHeader::Parsed {
                consumed: 107,
                source: None
            }
        );
        let err = parse_proxy_header(&line(108)).unwrap_err();
        assert!(err.contains("longer than 107"), "{err}");
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

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Sends `header` then `after` in `pieces`-byte writes (flushed one by
    /// one, with a yield between so they leave as separate segments) and
    /// returns what `read_proxy_header` said and the bytes left unread.
    async fn over_tcp(
        header: &[u8],
        after: &[u8],
        piece: usize,
    ) -> (Result<Option<SocketAddr>, String>, Vec<u8>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut bytes = header.to_vec();
        bytes.extend_from_slice(after);
        let writer = tokio::spawn(async move {
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            c.set_nodelay(true).unwrap();
            for chunk in bytes.chunks(piece) {
                c.write_all(chunk).await.unwrap();
                c.flush().await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            c.shutdown().await.unwrap();
        });
        let (mut s, _) = listener.accept().await.unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_secs(30), read_proxy_header(&s))
            .await
            .expect("read_proxy_header hung");
        writer.await.unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        (got, rest)
    }

    #[tokio::test]
    async fn reads_v1_split_byte_by_byte_and_leaves_the_rest() {
        let h = b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\n";
        for piece in [1, 2, 7, 64] {
            let (got, rest) = over_tcp(h, b"\x16\x03\x01rest", piece).await;
            assert_eq!(got, Ok(Some(sa("203.0.113.7:56324"))), "piece {piece}");
            assert_eq!(rest, b"\x16\x03\x01rest", "piece {piece}");
        }
        let (got, rest) = over_tcp(b"PROXY UNKNOWN\r\n", b"X", 1).await;
        assert_eq!((got, rest), (Ok(None), b"X".to_vec()));
    }

    #[tokio::test]
    async fn reads_v2_with_large_tlvs_in_many_writes() {
        let addr4 = [203, 0, 113, 7, 192, 0, 2, 1, 0xdc, 0x04, 0x01, 0xbb];
        // The old reader stopped at 536 bytes; v2 allows 16 + 65535.
        for tlv_len in [600usize, 4000, 65535 - 12 - 3] {
            let mut tlv = vec![0x04]; // PP2_TYPE_NOOP
            tlv.extend((tlv_len as u16).to_be_bytes());
            tlv.resize(3 + tlv_len, 0xAA);
            let h = v2(1, 0x11, &addr4, &tlv);
            assert!(h.len() <= V2_MAX);
            for piece in [1000, 4096] {
                let (got, rest) = over_tcp(&h, b"\x16\x03\x01", piece).await;
                assert_eq!(got, Ok(Some(sa("203.0.113.7:56324"))), "{tlv_len}/{piece}");
                assert_eq!(rest, b"\x16\x03\x01", "{tlv_len}/{piece}");
            }
        }
        let h = v2(1, 0x11, &addr4, &[0x04, 0x00, 0x01, 0x00]);
        let (got, rest) = over_tcp(&h, b"tls", 1).await;
        assert_eq!(
            (got, rest),
            (Ok(Some(sa("203.0.113.7:56324"))), b"tls".to_vec())
        );
    }

    #[tokio::test]
    async fn refuses_garbage_truncation_and_overlong_v1() {
        let (got, _) = over_tcp(b"\x16\x03\x01\x02\x00", b"", 1).await;
        assert!(got.unwrap_err().contains("does not start with a PROXY"));
        let (got, _) = over_tcp(b"PROXY TCP4 203.0.113.7", b"", 3).await;
        assert!(got.unwrap_err().contains("connection closed"));
        let mut long = b"PROXY TCP4 ".to_vec();
        long.resize(300, b'7');
        let (got, _) = over_tcp(&long, b"", 10).await;
        assert!(got.unwrap_err().contains("longer than 107"));
        let addr4 = [203, 0, 113, 7, 192, 0, 2, 1, 0xdc, 0x04, 0x01, 0xbb];
        let h = v2(1, 0x11, &addr4, &[0u8; 100]);
        let (got, _) = over_tcp(&h[..h.len() - 1], b"", 50).await;
        assert!(got.unwrap_err().contains("connection closed"));
    }
}
