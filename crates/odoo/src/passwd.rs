//! Odoo's master password (`admin_passwd`) and user passwords, hashed the
//! way Odoo stores them: passlib's `pbkdf2_sha512` format,
//! `$pbkdf2-sha512$<rounds>$<salt>$<checksum>`, salt and checksum in
//! passlib's "adapted base64" (standard alphabet with `.` for `+`, no `=`).
//!
//! Odoo verifies this string with passlib as is, so a hash written here is
//! accepted without Odoo ever seeing the plain password; and a hash read
//! from odoo.conf or `res_users.password` can be checked for weak rounds or
//! a default password without Odoo.

use std::num::NonZeroU32;

use ring::rand::{SecureRandom, SystemRandom};

/// What Odoo 17/18 use; passlib's own default for pbkdf2_sha512 is lower.
pub const DEFAULT_ROUNDS: u32 = 600_000;
/// Fewer rounds than this make offline guessing cheap.
pub const WEAK_ROUNDS: u32 = 100_000;
/// passlib's default salt size for pbkdf2_sha512.
pub const SALT_LEN: usize = 16;
const CHECKSUM_LEN: usize = 64;
const PREFIX: &str = "$pbkdf2-sha512$";

/// A parsed `$pbkdf2-sha512$...` string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pbkdf2Hash {
    /// PBKDF2 iterations.
    pub rounds: u32,
    /// The salt, decoded.
    pub salt: Vec<u8>,
    /// The derived key, decoded.
    pub checksum: Vec<u8>,
}

impl Pbkdf2Hash {
    /// Hashes `password` with a fresh random salt.
    pub fn new(password: &str, rounds: u32) -> Self {
        let mut salt = vec![0u8; SALT_LEN];
        SystemRandom::new()
            .fill(&mut salt)
            .expect("the OS random source failed");
        Self::with_salt(password, &salt, rounds)
    }

    /// Hashes `password` with the salt given (reproducible hashes, for tests).
    pub fn with_salt(password: &str, salt: &[u8], rounds: u32) -> Self {
        Pbkdf2Hash {
            rounds,
            salt: salt.to_vec(),
            checksum: derive(password, salt, rounds),
        }
    }

    /// Parses passlib's format; `None` for anything else (plain text, other
    /// schemes).
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.trim().strip_prefix(PREFIX)?;
        let mut parts = rest.split('$');
        let rounds: u32 = parts.next()?.parse().ok().filter(|r| *r > 0)?;
        let salt = ab64_decode(parts.next()?)?;
        let checksum = ab64_decode(parts.next()?)?;
        if parts.next().is_some() || checksum.len() != CHECKSUM_LEN {
            return None;
        }
        Some(Pbkdf2Hash {
            rounds,
            salt,
            checksum,
        })
    }

    /// Whether `password` is the one hashed here (constant-time compare).
    pub fn verify(&self, password: &str) -> bool {
        let Some(rounds) = NonZeroU32::new(self.rounds) else {
            return false;
        };
        ring::pbkdf2::verify(
            ring::pbkdf2::PBKDF2_HMAC_SHA512,
            rounds,
            &self.salt,
            password.as_bytes(),
            &self.checksum,
        )
        .is_ok()
    }
}

impl std::fmt::Display for Pbkdf2Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{PREFIX}{}${}${}",
            self.rounds,
            ab64_encode(&self.salt),
            ab64_encode(&self.checksum)
        )
    }
}

fn derive(password: &str, salt: &[u8], rounds: u32) -> Vec<u8> {
    let rounds = NonZeroU32::new(rounds).expect("rounds must be at least 1");
    let mut out = vec![0u8; CHECKSUM_LEN];
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA512,
        rounds,
        salt,
        password.as_bytes(),
        &mut out,
    );
    out
}

/// How an `admin_passwd` value is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// A `$pbkdf2-sha512$` hash, as Odoo writes it.
    Hashed(Pbkdf2Hash),
    /// Some other passlib scheme or a damaged hash: starts with `$`.
    UnknownHash,
    /// Not hashed at all: anyone who reads odoo.conf has the master password.
    Plaintext,
}

/// How an `admin_passwd` value is stored.
pub fn classify(value: &str) -> Stored {
    let v = value.trim();
    if let Some(h) = Pbkdf2Hash::parse(v) {
        Stored::Hashed(h)
    } else if v.starts_with('$') {
        Stored::UnknownHash
    } else {
        Stored::Plaintext
    }
}

/// A random password of `len` characters from letters and digits (no
/// look-alikes), about 5.8 bits each: 24 characters ≈ 140 bits.
pub fn random_password(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let rng = SystemRandom::new();
    let mut out = String::with_capacity(len);
    // Rejection sampling keeps every character equally likely.
    let limit = 256 - (256 % ALPHABET.len());
    let mut buf = [0u8; 64];
    while out.len() < len {
        rng.fill(&mut buf).expect("the OS random source failed");
        for &b in &buf {
            if (b as usize) < limit && out.len() < len {
                out.push(ALPHABET[b as usize % ALPHABET.len()] as char);
            }
        }
    }
    out
}

/// `rampart passwd --json`: the hash line's value, and the password when
/// it was generated (never echo one the user typed).
pub fn render_json(password: Option<&str>, admin_passwd: &str) -> String {
    let mut v = serde_json::json!({ "admin_passwd": admin_passwd });
    if let Some(p) = password {
        v["password"] = p.into();
    }
    v.to_string()
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789./";

/// passlib's `ab64_encode`: base64 with `.` instead of `+`, no padding.
pub fn ab64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// passlib's `ab64_decode`; also takes `+` and padding, as passlib does.
pub fn ab64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    if s.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.as_bytes().chunks(4) {
        let mut n: u32 = 0;
        for (i, &c) in chunk.iter().enumerate() {
            let v = match c {
                b'+' => 62,
                _ => B64.iter().position(|&x| x == c)? as u32,
            };
            n |= v << (18 - 6 * i);
        }
        for i in 0..chunk.len() - 1 {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ab64_round_trips_and_uses_dot() {
        for len in 0..20 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 250) as u8).collect();
            let enc = ab64_encode(&data);
            assert!(!enc.contains('+') && !enc.contains('='), "{enc}");
            assert_eq!(ab64_decode(&enc).unwrap(), data);
        }
        // 0xfb 0xef 0xbe is "++++" in standard base64.
        assert_eq!(ab64_encode(&[0xfb, 0xef, 0xbe]), "....");
        assert_eq!(ab64_decode("++++").unwrap(), vec![0xfb, 0xef, 0xbe]);
        assert_eq!(ab64_decode("A"), None);
        assert_eq!(ab64_decode("A*B="), None);
    }

    /// A hash made by passlib 1.7.4:
    /// `pbkdf2_sha512.using(rounds=1000, salt=b"0123456789abcdef").hash("admin")`.
    #[test]
    fn matches_a_passlib_hash() {
        let h = Pbkdf2Hash::with_salt("admin", b"0123456789abcdef", 1000);
        assert_eq!(h.to_string(), PASSLIB_ADMIN_1000);
        let parsed = Pbkdf2Hash::parse(PASSLIB_ADMIN_1000).unwrap();
        assert!(parsed.verify("admin"));
        assert!(!parsed.verify("Admin"));
    }
    const PASSLIB_ADMIN_1000: &str = include_str!("../tests/data/passlib-admin-1000.txt");

    #[test]
    fn new_hash_has_odoo_shape() {
        let h = Pbkdf2Hash::new("s3cret", 1000);
        let s = h.to_string();
        let parts: Vec<&str> = s.split('$').collect();
        assert_eq!(parts[..3], ["", "pbkdf2-sha512", "1000"]);
        assert_eq!(parts[3].len(), 22, "16-byte salt");
        assert_eq!(parts[4].len(), 86, "64-byte checksum");
        assert!(Pbkdf2Hash::parse(&s).unwrap().verify("s3cret"));
        assert_ne!(
            Pbkdf2Hash::new("s3cret", 1000).salt,
            h.salt,
            "salt is random"
        );
    }

    #[test]
    fn classifies_stored_values() {
        assert_eq!(classify("admin"), Stored::Plaintext);
        assert_eq!(classify("$2b$12$abc"), Stored::UnknownHash);
        assert_eq!(classify("$pbkdf2-sha512$0$AAAA$AAAA"), Stored::UnknownHash);
        assert!(
            matches!(classify(PASSLIB_ADMIN_1000.trim()), Stored::Hashed(h) if h.rounds == 1000)
        );
    }

    #[test]
    fn random_passwords_differ_and_use_the_alphabet() {
        let a = random_password(24);
        let b = random_password(24);
        assert_eq!(a.len(), 24);
        assert_ne!(a, b);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() && !"0O1lI".contains(c))
        );
    }
}
