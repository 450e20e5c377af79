//! The admin listener's token, kept only as digests.
//!
//! It lives outside `admin` because the runtime state (`state.rs`) loads
//! it at start-up and hands it to the admin listener: with the type in
//! `admin`, state and admin imported each other. Comparison is constant
//! time (both sides hashed to 32 bytes first).

use std::path::Path;

use ring::{digest, hmac};

/// The admin token, kept only as digests.
pub struct AdminToken {
    digest: [u8; 32],
    cookie: String,
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

impl AdminToken {
    /// Reads the token file: one line, at least 16 characters, not readable
    /// by every user of the machine.
    pub fn load(path: &Path) -> Result<AdminToken, String> {
        use std::os::unix::fs::PermissionsExt;
        let shown = path.display();
        let meta = std::fs::metadata(path).map_err(|e| format!("admin_token_file {shown}: {e}"))?;
        if meta.permissions().mode() & 0o004 != 0 {
            return Err(format!(
                "admin_token_file {shown} is readable by every user (mode {:o}): chmod 600 it",
                meta.permissions().mode() & 0o777
            ));
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("admin_token_file {shown}: {e}"))?;
        let token = text.trim();
        if token.len() < 16 || token.contains(char::is_whitespace) {
            return Err(format!(
                "admin_token_file {shown}: the token must be one word of at least 16 characters \
                 (e.g. `openssl rand -hex 32`)"
            ));
        }
        Ok(AdminToken::new(token))
    }

    /// Keeps the token's digest only, and the status page's cookie derived from it.
    pub fn new(token: &str) -> AdminToken {
        let d = digest::digest(&digest::SHA256, token.as_bytes());
        let key = hmac::Key::new(hmac::HMAC_SHA256, token.as_bytes());
        let tag = hmac::sign(&key, b"rampart admin page cookie v1");
        AdminToken {
            digest: d.as_ref().try_into().expect("32 bytes"),
            cookie: hex(tag.as_ref()),
        }
    }

    /// Constant time: both sides are hashed to 32 bytes first, so neither
    /// the content nor the length of the token leaks through timing.
    pub fn matches(&self, presented: &str) -> bool {
        let d = digest::digest(&digest::SHA256, presented.as_bytes());
        ct_eq(&self.digest, d.as_ref())
    }

    /// The status page's cookie value (not the token itself).
    pub fn cookie_value(&self) -> &str {
        &self.cookie
    }

    pub(crate) fn cookie_matches(&self, presented: &str) -> bool {
        let a = digest::digest(&digest::SHA256, self.cookie.as_bytes());
        let b = digest::digest(&digest::SHA256, presented.as_bytes());
        ct_eq(a.as_ref(), b.as_ref())
    }
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && std::hint::black_box(a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y))) == 0
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
