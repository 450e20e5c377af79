//! One error type that always says which file, site or CA is at fault.

use std::fmt;
use std::path::{Path, PathBuf};

/// What went wrong with certificates, naming the file, site or CA at fault.
#[derive(Debug, Clone)]
pub enum CertError {
    /// A certificate or key file (the administrator's, or one in the state dir).
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// A site whose configuration cannot be served (e.g. a wildcard with ACME).
    Site {
        /// The site's index in the config (`site[N]`).
        site: usize,
        /// What is wrong with it.
        problem: String,
    },
    /// The ACME CA refused or could not be reached.
    Acme {
        /// The site being served, when the failure is about one.
        site: Option<usize>,
        /// What the CA said, or why it could not be reached.
        detail: String,
    },
}

impl CertError {
    pub(crate) fn file(path: &Path, problem: impl Into<String>) -> Self {
        CertError::File {
            path: path.to_path_buf(),
            problem: problem.into(),
        }
    }
    pub(crate) fn site(site: usize, problem: impl Into<String>) -> Self {
        CertError::Site {
            site,
            problem: problem.into(),
        }
    }
}

impl fmt::Display for CertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertError::File { path, problem } => write!(f, "{}: {problem}", path.display()),
            CertError::Site { site, problem } => write!(f, "site[{site}]: {problem}"),
            CertError::Acme {
                site: Some(site),
                detail,
            } => write!(f, "site[{site}]: ACME: {detail}"),
            CertError::Acme { site: None, detail } => write!(f, "ACME: {detail}"),
        }
    }
}

impl std::error::Error for CertError {}
