//! An error with its causes on one line, for logs and the CLI: hyper's
//! "client error (Connect)" says little until its source says
//! "tcp connect error: Connection refused".

use std::error::Error;

/// `e` and each of its sources, joined by `": "`; a source whose text the
/// line already holds (many errors print their cause themselves) is skipped.
///
/// ```
/// let e = std::io::Error::other(std::fmt::Error);
/// assert_eq!(rampart_config::chain::chain(&e), "an error occurred when formatting an argument");
/// ```
pub fn chain(e: &dyn Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use std::fmt;

    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("client error (Connect)")
        }
    }
    impl Error for Outer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn joins_causes_once() {
        let e = Outer(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused",
        ));
        assert_eq!(chain(&e), "client error (Connect): Connection refused");
    }
}
