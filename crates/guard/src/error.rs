//! [`GuardError`]: what can go wrong with the ban table, the one state the
//! guard keeps on disk. Apart so the error a caller matches on reads in one
//! screen, away from the guard's logic.

use std::path::PathBuf;

/// Why the guard could not load, change or save its bans.
#[derive(Debug)]
pub enum GuardError {
    /// The ban table file exists but cannot be read as one.
    Corrupt {
        /// The ban table file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The ban table could not be read or written.
    Io {
        /// The file concerned.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The address is in `[guard].allow`, which is never banned.
    Allowed(String),
}

impl std::fmt::Display for GuardError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GuardError::Corrupt { path, message } => write!(
                f,
                "{}: not a valid ban table: {message} (fix or move the file away; it is never discarded silently)",
                path.display()
            ),
            GuardError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            GuardError::Allowed(a) => write!(f, "{a} is in [guard].allow and is never banned"),
        }
    }
}

impl std::error::Error for GuardError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            GuardError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
