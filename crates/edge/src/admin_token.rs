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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn token_file(dir: &Path, text: &str, mode: u32) -> std::path::PathBuf {
        let p = dir.join(format!("token-{mode:o}-{}", text.len()));
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn the_token_file_must_be_private_and_one_word_of_16_or_more() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // Exactly 16 characters, a trailing newline, owner and group may read.
        for mode in [0o600, 0o640] {
            let t = AdminToken::load(&token_file(d, "0123456789abcdef\n", mode))
                .unwrap_or_else(|e| panic!("mode {mode:o}: {e}"));
            assert!(t.matches("0123456789abcdef"));
            assert!(!t.matches("0123456789abcdef\n"));
        }
        let err = AdminToken::load(&token_file(d, "0123456789abcdef", 0o604)).unwrap_err();
        assert!(
            err.contains("readable by every user") && err.contains("chmod 600"),
            "{err}"
        );
        for bad in ["0123456789abcde", "short", "", "0123456789 abcdef0123"] {
            let err = AdminToken::load(&token_file(d, bad, 0o600)).unwrap_err();
            assert!(err.contains("at least 16 characters"), "{bad:?}: {err}");
        }
        let err = AdminToken::load(&d.join("absent")).unwrap_err();
        assert!(err.contains("absent"), "{err}");
    }

    #[test]
    fn the_page_cookie_is_an_hmac_of_the_token_not_the_token_and_never_empty() {
        let t = AdminToken::new("0123456789abcdef0123");
        // HMAC-SHA256(key = token, "rampart admin page cookie v1"), as
        // python3's hmac module computes it.
        let want = "897a1869cf4e4959ec47999cc0e6c4a3b0f0663aa6b3e97f243ca7db94cea89d";
        assert_eq!(t.cookie_value(), want);
        assert!(t.cookie_matches(want));
        for wrong in ["", "0123456789abcdef0123", &want[..63], "xyzzy"] {
            assert!(!t.cookie_matches(wrong), "{wrong:?}");
        }
        assert_ne!(
            AdminToken::new("another token 0123").cookie_value(),
            want,
            "each token has its own cookie"
        );
    }

    /// A comparison that folded the differences with XOR (or any test
    /// weaker than "every byte equal") lets about one guess in 256 in.
    #[test]
    fn thousands_of_wrong_guesses_all_fail() {
        let t = AdminToken::new("0123456789abcdef0123");
        for i in 0..4096 {
            let guess = format!("guess-{i:016}");
            assert!(!t.matches(&guess), "token guess {guess} accepted");
            assert!(!t.cookie_matches(&guess), "cookie guess {guess} accepted");
        }
        assert!(t.matches("0123456789abcdef0123"));
    }

    #[test]
    fn debug_output_never_shows_the_token() {
        let t = AdminToken::new("0123456789abcdef0123");
        assert_eq!(format!("{t:?}"), "AdminToken(..)");
    }
}
