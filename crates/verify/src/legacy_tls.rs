//! TLS 1.0 and 1.1 probes. rustls cannot speak these versions, so the
//! probe writes a ClientHello by hand and only reads the first record of
//! the answer: a ServerHello means the server agreed to the old version;
//! an alert, a close, or anything that is not a handshake record means
//! it refused.
//!
//! The ClientHello, byte by byte (lengths big-endian):
//!
//! ```text
//! 16                    record: handshake
//! 03 01                 record-layer version TLS 1.0 (what old clients send)
//! LL LL                 record length
//!   01                  handshake: ClientHello
//!   LL LL LL            handshake length
//!   03 01 | 03 02       client_version: the highest offered, TLS 1.0 or 1.1
//!   32 bytes            random
//!   00                  no session id
//!   00 0e + 7 suites    ECDHE-RSA/ECDSA AES-CBC-SHA, RSA AES-CBC-SHA, 3DES:
//!                       what a TLS 1.0/1.1 server can pick
//!   01 00               compression: null only
//!   LL LL               extensions length
//!     00 00 ...         server_name (only for a DNS name, never an IP)
//!     00 0a ...         supported_groups: x25519, secp256r1, secp384r1
//!     00 0b ...         ec_point_formats: uncompressed
//!     ff 01 00 01 00    renegotiation_info, empty
//! ```
//!
//! There is no supported_versions extension, so a TLS 1.3 server sees a
//! client whose best is 1.0 (or 1.1) and must either agree or refuse.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::target::tcp;

const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LegacyVersion {
    Tls10,
    Tls11,
}

impl LegacyVersion {
    fn wire(self) -> [u8; 2] {
        match self {
            LegacyVersion::Tls10 => [3, 1],
            LegacyVersion::Tls11 => [3, 2],
        }
    }
}

/// What the server did with the old ClientHello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// A ServerHello at (or below) the offered version.
    Accepted(String),
    /// An alert, a close, or a non-TLS answer; says which.
    Refused(String),
    /// Nothing within the time limit.
    Silent,
}

pub(crate) fn client_hello(version: LegacyVersion, sni: Option<&str>, random: [u8; 32]) -> Vec<u8> {
    let mut ext = Vec::new();
    if let Some(name) = sni {
        let name = name.as_bytes();
        let n = name.len() as u16;
        ext.extend_from_slice(&[0x00, 0x00]);
        ext.extend_from_slice(&(n + 5).to_be_bytes()); // extension data
        ext.extend_from_slice(&(n + 3).to_be_bytes()); // server name list
        ext.push(0x00); // host_name
        ext.extend_from_slice(&n.to_be_bytes());
        ext.extend_from_slice(name);
    }
    ext.extend_from_slice(&[
        0x00, 0x0a, 0x00, 0x08, 0x00, 0x06, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x18,
    ]);
    ext.extend_from_slice(&[0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]);
    ext.extend_from_slice(&[0xff, 0x01, 0x00, 0x01, 0x00]);

    let suites: [u16; 7] = [0xc014, 0xc013, 0xc00a, 0xc009, 0x0035, 0x002f, 0x000a];
    let mut body = Vec::new();
    body.extend_from_slice(&version.wire());
    body.extend_from_slice(&random);
    body.push(0x00);
    body.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        body.extend_from_slice(&s.to_be_bytes());
    }
    body.extend_from_slice(&[0x01, 0x00]);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);

    let mut handshake = vec![0x01];
    handshake.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);

    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

fn alert_name(code: u8) -> &'static str {
    match code {
        0 => "close_notify",
        10 => "unexpected_message",
        40 => "handshake_failure",
        47 => "illegal_parameter",
        50 => "decode_error",
        70 => "protocol_version",
        71 => "insufficient_security",
        80 => "internal_error",
        86 => "inappropriate_fallback",
        112 => "unrecognized_name",
        _ => "other",
    }
}

fn version_name(v: [u8; 2]) -> String {
    match v {
        [3, 0] => "SSL 3.0".into(),
        [3, 1] => "TLS 1.0".into(),
        [3, 2] => "TLS 1.1".into(),
        [3, 3] => "TLS 1.2".into(),
        [a, b] => format!("version {a:02x}{b:02x}"),
    }
}

/// Reads the first record's header and the start of its body.
pub(crate) fn classify(offered: LegacyVersion, answer: &[u8]) -> Answer {
    match answer {
        [] => Answer::Refused("the server closed the connection".into()),
        [0x15, _, _, _, _, level, code, ..] => Answer::Refused(format!(
            "{} alert {code} ({})",
            if *level == 2 { "fatal" } else { "warning" },
            alert_name(*code)
        )),
        // record header (5), handshake type 2 = ServerHello, length (3), server_version (2)
        [0x16, _, _, _, _, 0x02, _, _, _, major, minor, ..] => {
            let chosen = [*major, *minor];
            // A lower version than offered is judged by that version's own
            // probe, except SSL 3.0, which has no probe and is worse still.
            if chosen == offered.wire() || chosen < [3, 1] {
                Answer::Accepted(format!("ServerHello choosing {}", version_name(chosen)))
            } else if chosen < offered.wire() {
                Answer::Refused(format!(
                    "ServerHello falling back to {} (see that version's check)",
                    version_name(chosen)
                ))
            } else {
                Answer::Refused(format!(
                    "ServerHello for {} (above what was offered; a client aborts)",
                    version_name(chosen)
                ))
            }
        }
        [0x16, ..] | [0x15, ..] => Answer::Refused("a truncated TLS record, then close".into()),
        other => Answer::Refused(format!(
            "a non-TLS answer starting {:?}",
            String::from_utf8_lossy(&other[..other.len().min(12)])
        )),
    }
}

/// Connects, sends the old ClientHello, and classifies the first answer.
pub(crate) async fn probe(
    addr: std::net::SocketAddr,
    sni: Option<&str>,
    version: LegacyVersion,
) -> Result<Answer, String> {
    let mut stream = tcp(addr).await?;
    let mut random = [0u8; 32];
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    for (i, b) in random.iter_mut().enumerate() {
        *b = (nanos >> ((i % 16) * 8)) as u8 ^ (i as u8).wrapping_mul(151);
    }
    let hello = client_hello(version, sni, random);
    stream
        .write_all(&hello)
        .await
        .map_err(|e| format!("cannot send the ClientHello to {addr}: {e}"))?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(ANSWER_TIMEOUT, async {
        while answer.len() < 11 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break, // a close or a reset both mean "refused"
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    if read.is_err() && answer.is_empty() {
        return Ok(Answer::Silent);
    }
    Ok(classify(version, &answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_lengths_are_consistent() {
        let h = client_hello(LegacyVersion::Tls11, Some("erp.test"), [7; 32]);
        assert_eq!(&h[..3], &[0x16, 0x03, 0x01]);
        assert_eq!(u16::from_be_bytes([h[3], h[4]]) as usize, h.len() - 5);
        assert_eq!(h[5], 0x01);
        let hs_len = u32::from_be_bytes([0, h[6], h[7], h[8]]) as usize;
        assert_eq!(hs_len, h.len() - 9);
        assert_eq!(&h[9..11], &[3, 2]);
        // extensions length matches what follows it
        let suites_at = 9 + 2 + 32 + 1;
        let suites_len = u16::from_be_bytes([h[suites_at], h[suites_at + 1]]) as usize;
        let ext_at = suites_at + 2 + suites_len + 2;
        let ext_len = u16::from_be_bytes([h[ext_at], h[ext_at + 1]]) as usize;
        assert_eq!(ext_len, h.len() - ext_at - 2);
        assert!(h.windows(8).any(|w| w == b"erp.test"));
        let no_sni = client_hello(LegacyVersion::Tls10, None, [7; 32]);
        assert_eq!(no_sni.len(), h.len() - (8 + 9));
    }

    #[test]
    fn answers() {
        use LegacyVersion::*;
        assert_eq!(
            classify(Tls10, &[0x15, 3, 1, 0, 2, 2, 70]),
            Answer::Refused("fatal alert 70 (protocol_version)".into())
        );
        assert!(matches!(classify(Tls10, &[]), Answer::Refused(_)));
        assert!(matches!(
            classify(Tls10, b"HTTP/1.1 400 Bad Request"),
            Answer::Refused(_)
        ));
        let hello = |v: u8| vec![0x16, 3, 1, 0, 60, 2, 0, 0, 56, 3, v];
        assert_eq!(
            classify(Tls11, &hello(2)),
            Answer::Accepted("ServerHello choosing TLS 1.1".into())
        );
        assert!(matches!(classify(Tls11, &hello(1)), Answer::Refused(_)));
        assert_eq!(
            classify(Tls10, &hello(0)),
            Answer::Accepted("ServerHello choosing SSL 3.0".into())
        );
        assert!(matches!(classify(Tls10, &hello(3)), Answer::Refused(_)));
    }
}
