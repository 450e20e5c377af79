//! Why the edge could not start or reload: a message that names the
//! config key and the value (`listen.https = "[::]:443": cannot bind: ...`).
//! Its own file so the listeners and the state can share it without
//! importing each other.

/// The message says what and where; there is no cause to chain.
#[derive(Debug)]
pub struct EdgeError(pub String);

impl std::fmt::Display for EdgeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for EdgeError {}
