//! `"${VAR}"` and `{ file = "…" }` in rampart.toml: values taken from the
//! environment or from a file (systemd's `LoadCredential=`), resolved on the
//! parsed document before any section sees it, so every string field of
//! every crate takes them alike and errors still point at the line.
//!
//! The rules (README, "Secrets and the environment"):
//! - in any string value, `${NAME}` (letters, digits, `_`, not starting with
//!   a digit) is replaced by that variable; `$${` is a literal `${`; any other
//!   `$` is literal. An unset, empty or non-UTF-8 variable is an error, as is
//!   `${` without a valid name and `}` (no `${A:-default}` forms).
//! - an inline table whose only key is `file` is replaced by that file's
//!   text: `${…}` is expanded in the path (not in the content), a relative
//!   path is relative to the config file's directory; the file must be a
//!   regular file, not readable by every user, at most 64 KiB, UTF-8 without
//!   NUL; trailing line breaks are dropped and the rest must not be empty.
//!
//! Every resolved value is recorded (key path, how it was written) so
//! `rampart check --print` shows the reference instead of the value and no
//! error message repeats it.

use std::borrow::Cow;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use toml::de::{DeTable, DeValue};

use crate::secret::{Reference, Resolved, Secrets, Seg};

/// The largest secret file read.
pub const MAX_SECRET_FILE: u64 = 64 * 1024;

/// A reference that cannot be resolved: where (byte offset, key path) and why.
pub struct ResolveError {
    pub offset: usize,
    pub key: String,
    pub message: String,
}

/// Resolves every reference in `root` in place; `config_path` anchors
/// relative secret-file paths.
pub fn resolve(
    root: &mut DeTable<'_>,
    text: &str,
    config_path: &Path,
) -> Result<Secrets, ResolveError> {
    let mut w = Walker {
        text,
        base: config_path.parent().unwrap_or(Path::new(".")),
        path: Vec::new(),
        out: Secrets::default(),
        env: &|name| std::env::var_os(name),
    };
    w.table(root)?;
    Ok(w.out)
}

struct Walker<'a> {
    text: &'a str,
    base: &'a Path,
    path: Vec<Seg>,
    out: Secrets,
    env: &'a dyn Fn(&str) -> Option<std::ffi::OsString>,
}

impl Walker<'_> {
    fn table(&mut self, t: &mut DeTable<'_>) -> Result<(), ResolveError> {
        for (k, v) in t.iter_mut() {
            self.path.push(Seg::Key(k.get_ref().to_string()));
            let span = v.span();
            self.value(v.get_mut(), span.start)?;
            self.path.pop();
        }
        Ok(())
    }

    fn value(&mut self, v: &mut DeValue<'_>, offset: usize) -> Result<(), ResolveError> {
        match v {
            DeValue::String(s) => {
                let raw = s.to_string();
                if let Some(value) = expand(&raw, self.env).map_err(|m| self.err(offset, m))? {
                    self.record(Reference::Env(raw), value.clone());
                    *s = Cow::Owned(value);
                }
            }
            DeValue::Array(a) => {
                for (i, e) in a.iter_mut().enumerate() {
                    self.path.push(Seg::Index(i));
                    let span = e.span();
                    self.value(e.get_mut(), span.start)?;
                    self.path.pop();
                }
            }
            DeValue::Table(t) => {
                let inline = self.text.get(offset..).is_some_and(|r| r.starts_with('{'));
                let file = match t.iter().next() {
                    Some((k, f)) if inline && t.len() == 1 && k.get_ref() == "file" => {
                        Some(f.get_ref().as_str().map(str::to_string).ok_or_else(|| {
                            self.err(offset, "{ file = … } takes a path string".into())
                        })?)
                    }
                    _ => None,
                };
                match file {
                    Some(raw) => {
                        let value = self.file(&raw).map_err(|m| self.err(offset, m))?;
                        self.record(Reference::File(raw), value.clone());
                        *v = DeValue::String(Cow::Owned(value));
                    }
                    None => self.table(t)?,
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn file(&self, raw: &str) -> Result<String, String> {
        let expanded = expand(raw, self.env)?.unwrap_or_else(|| raw.to_string());
        let path = self.base.join(&expanded);
        read_secret_file(&path).map_err(|e| format!("secret file {}: {e}", path.display()))
    }

    fn record(&mut self, reference: Reference, value: String) {
        self.out.0.push(Resolved {
            path: self.path.clone(),
            reference,
            value,
        });
    }

    fn err(&self, offset: usize, message: String) -> ResolveError {
        ResolveError {
            offset,
            key: crate::secret::key_string(&self.path),
            message,
        }
    }
}

/// `raw` with its `${NAME}` and `$${` replaced; `None` when it has neither.
fn expand(
    raw: &str,
    env: &dyn Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<Option<String>, String> {
    if !raw.contains("${") {
        return Ok(None);
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let Some(end) = after.find('}') else {
                return Err(
                    "\"${\" without a closing \"}\" (write $${ for a literal ${)".to_string(),
                );
            };
            let name = &after[..end];
            if !valid_name(name) {
                return Err(format!(
                    "\"${{{name}}}\" is not a variable reference: write ${{NAME}} with letters, \
                     digits and _ only (no defaults), or $${{ for a literal ${{"
                ));
            }
            let value = match env(name) {
                None => return Err(format!("environment variable {name} is not set")),
                Some(v) => v
                    .into_string()
                    .map_err(|_| format!("environment variable {name} is not UTF-8"))?,
            };
            if value.is_empty() {
                return Err(format!("environment variable {name} is set but empty"));
            }
            out.push_str(&value);
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(Some(out))
}

fn valid_name(n: &str) -> bool {
    let mut c = n.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Reads one secret file under the rules above. Opened non-blocking so a
/// FIFO put there by mistake is refused, never waited on.
pub fn read_secret_file(path: &Path) -> Result<String, String> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("cannot read it: {e}"))?;
    let meta = f.metadata().map_err(|e| format!("cannot read it: {e}"))?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.mode() & 0o004 != 0 {
        return Err(format!(
            "readable by every user (mode {:04o}): chmod o-rwx it, or use systemd's LoadCredential=",
            meta.mode() & 0o7777
        ));
    }
    if meta.len() > MAX_SECRET_FILE {
        return Err(format!(
            "too large ({} bytes; a secret file holds at most {MAX_SECRET_FILE})",
            meta.len()
        ));
    }
    let mut bytes = Vec::new();
    f.take(MAX_SECRET_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.len() as u64 > MAX_SECRET_FILE {
        return Err(format!(
            "too large (a secret file holds at most {MAX_SECRET_FILE} bytes)"
        ));
    }
    let mut text = String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    if text.contains('\0') {
        return Err("contains a NUL byte".into());
    }
    while text.ends_with('\n') || text.ends_with('\r') {
        text.pop();
    }
    if text.is_empty() {
        return Err("is empty".into());
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<std::ffi::OsString> {
        match name {
            "PGPASS" => Some("hunter2".into()),
            "EMPTY" => Some("".into()),
            _ => None,
        }
    }

    #[test]
    fn expansion_rules() {
        let e = |s: &str| expand(s, &env);
        assert_eq!(e("plain $x $ {y}").unwrap(), None);
        assert_eq!(e("${PGPASS}").unwrap().as_deref(), Some("hunter2"));
        assert_eq!(
            e("postgresql://odoo:${PGPASS}@db/").unwrap().as_deref(),
            Some("postgresql://odoo:hunter2@db/")
        );
        assert_eq!(e("$${PGPASS}").unwrap().as_deref(), Some("${PGPASS}"));
        // Left to right: a `$` not starting `$${` or `${` is itself.
        assert_eq!(e("a$$${PGPASS}").unwrap().as_deref(), Some("a$${PGPASS}"));
        // The value is never expanded again.
        let nested = |n: &str| (n == "A").then(|| std::ffi::OsString::from("${A}"));
        assert_eq!(expand("${A}", &nested).unwrap().as_deref(), Some("${A}"));
        assert!(e("${NOPE}").unwrap_err().contains("NOPE is not set"));
        assert!(e("${EMPTY}").unwrap_err().contains("empty"));
        assert!(e("${PGPASS").unwrap_err().contains("closing"));
        assert!(e("${A:-b}").unwrap_err().contains("no defaults"));
        assert!(e("${1A}").is_err());
        assert!(e("${}").is_err());
    }
}
