//! Private keys at rest in PostgreSQL: AES-256-GCM under a key that lives
//! in a file on each node (`[cluster] secret_key_file`), never in the
//! database, so a dump or a read-only database role does not give away
//! the ACME account or a certificate's key.
//!
//! Each value gets a random nonce (stored in front of it) and its row's
//! name as associated data, so a sealed value moved to another row does
//! not open. A wrong key is a clear error naming the file, never taken
//! for "nothing stored" (which would make every node order again).

use std::path::{Path, PathBuf};

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// The key's length in bytes.
pub const KEY_LEN: usize = 32;

/// The cluster's secret key, read from its file.
pub struct SecretKey {
    key: LessSafeKey,
    path: PathBuf,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretKey")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SecretKey {
    /// Reads the key: exactly 32 bytes, or 64 hex digits (and a newline).
    pub fn read(path: &Path) -> Result<SecretKey, String> {
        let bytes = std::fs::read(path).map_err(|e| {
            format!(
                "[cluster] secret_key_file {}: cannot read: {e} (create one with `rampart cluster new-key FILE` and copy it to every node)",
                path.display()
            )
        })?;
        let raw = if bytes.len() == KEY_LEN {
            bytes
        } else {
            let text = String::from_utf8_lossy(&bytes);
            hex(text.trim()).ok_or_else(|| {
                format!(
                    "[cluster] secret_key_file {}: not a key (32 bytes, or 64 hex digits; `rampart cluster new-key FILE` writes one)",
                    path.display()
                )
            })?
        };
        let key = UnboundKey::new(&AES_256_GCM, &raw).map_err(|_| "bad key length".to_string())?;
        Ok(SecretKey {
            key: LessSafeKey::new(key),
            path: path.to_path_buf(),
        })
    }

    /// A new random key, as 64 hex digits and a newline (what
    /// `rampart cluster new-key` writes).
    pub fn generate() -> String {
        let mut k = [0u8; KEY_LEN];
        SystemRandom::new()
            .fill(&mut k)
            .expect("the system random source is available");
        let mut s: String = k.iter().map(|b| format!("{b:02x}")).collect();
        s.push('\n');
        s
    }

    /// nonce ‖ ciphertext ‖ tag of `plain`, bound to `row`.
    pub fn seal(&self, row: &str, plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .expect("the system random source is available");
        let mut out = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(row.as_bytes()),
                &mut out,
            )
            .expect("AES-GCM seals any length a row holds");
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&out);
        sealed
    }

    /// The plaintext of a value sealed for `row`; an error naming the key
    /// file when it does not open (another key, or a damaged value).
    pub fn open(&self, row: &str, sealed: &[u8]) -> Result<Vec<u8>, String> {
        let fail = || {
            format!(
                "{row}: cannot decrypt with the key in {} (is it the same file as on the node that stored it?)",
                self.path.display()
            )
        };
        if sealed.len() < NONCE_LEN {
            return Err(fail());
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| fail())?;
        let mut buf = body.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(row.as_bytes()), &mut buf)
            .map_err(|_| fail())?;
        Ok(plain.to_vec())
    }
}

fn hex(s: &str) -> Option<Vec<u8>> {
    if s.len() != KEY_LEN * 2 || !s.is_ascii() {
        return None;
    }
    (0..KEY_LEN)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_file(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn sealed_values_open_only_with_the_same_key_and_row() {
        let dir = std::env::temp_dir().join(format!("rampart-sealed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = SecretKey::read(&key_file(&dir, "a", &SecretKey::generate())).unwrap();
        let b = SecretKey::read(&key_file(&dir, "b", &SecretKey::generate())).unwrap();
        let sealed = a.seal("cert x", b"-----BEGIN PRIVATE KEY-----");
        assert!(!sealed.windows(5).any(|w| w == b"BEGIN"), "not in clear");
        assert_eq!(
            a.open("cert x", &sealed).unwrap(),
            b"-----BEGIN PRIVATE KEY-----"
        );
        assert_ne!(
            sealed,
            a.seal("cert x", b"-----BEGIN PRIVATE KEY-----"),
            "random nonce"
        );
        let wrong = b.open("cert x", &sealed).unwrap_err();
        assert!(
            wrong.contains(&dir.join("b").display().to_string()),
            "{wrong}"
        );
        assert!(a.open("cert y", &sealed).is_err(), "bound to its row");
        assert!(a.open("cert x", &sealed[..5]).is_err());
        let bad = SecretKey::read(&key_file(&dir, "c", "short")).unwrap_err();
        assert!(bad.contains("new-key"), "{bad}");
        let missing = SecretKey::read(&dir.join("none")).unwrap_err();
        assert!(missing.contains("cannot read"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
