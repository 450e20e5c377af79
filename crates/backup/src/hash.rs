//! SHA-1 (Odoo's filestore names) and SHA-256 (dump checksums) in hex, and
//! random names, all from ring (already the workspace's crypto).

use std::io::{self, Read};

use ring::digest::{Context as Digest, SHA1_FOR_LEGACY_USE_ONLY, SHA256};
use ring::rand::{SecureRandom, SystemRandom};

pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

pub fn sha1_hex(data: &[u8]) -> String {
    hex(ring::digest::digest(&SHA1_FOR_LEGACY_USE_ONLY, data).as_ref())
}

pub fn is_sha1_hex(s: &str) -> bool {
    s.len() == 40
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `n` random bytes as hex.
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    SystemRandom::new()
        .fill(&mut buf)
        .expect("the system random source failed");
    hex(&buf)
}

/// A random (version 4) UUID, as Odoo makes for database.secret.
pub fn uuid4() -> String {
    let mut b = [0u8; 16];
    SystemRandom::new()
        .fill(&mut b)
        .expect("the system random source failed");
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A reader that hashes (SHA-256) and counts what passes through it.
pub struct HashingReader<R> {
    inner: R,
    digest: Digest,
    pub bytes: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn sha256(inner: R) -> Self {
        HashingReader {
            inner,
            digest: Digest::new(&SHA256),
            bytes: 0,
        }
    }
    pub fn sha1(inner: R) -> Self {
        HashingReader {
            inner,
            digest: Digest::new(&SHA1_FOR_LEGACY_USE_ONLY),
            bytes: 0,
        }
    }
    pub fn finish(self) -> (String, u64) {
        (hex(self.digest.finish().as_ref()), self.bytes)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digest.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_matches_a_known_vector() {
        assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert!(is_sha1_hex("a9993e364706816aba3e25717850c26c9cd0d89d"));
        assert!(!is_sha1_hex("A9993E364706816ABA3E25717850C26C9CD0D89D"));
    }

    #[test]
    fn uuid4_has_the_version_and_variant_bits() {
        let u = uuid4();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(uuid4(), u);
    }
}
