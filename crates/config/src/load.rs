//! Reading a TOML file into a typed config, with errors that say where.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::secret::Secrets;

/// A config error: the file, the line and column, the key path
/// (`site[0].timeout`), and what is wrong there.
#[derive(Debug, Clone)]
pub struct ConfigError {
    /// The config file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// The key path, e.g. `site[0].timeout`.
    pub key: Option<String>,
    /// What is wrong there.
    pub message: String,
    /// The offending line of the file, for display.
    pub source_line: Option<String>,
}

impl ConfigError {
    /// An error found after parsing (a cross-field check), pointing at a key.
    pub fn at_key(file: &Path, text: &str, key: &str, message: impl Into<String>) -> Self {
        let line = locate_key(text, key);
        ConfigError {
            file: file.to_path_buf(),
            line,
            column: None,
            key: Some(key.to_string()),
            message: message.into(),
            source_line: line
                .and_then(|l| text.lines().nth(l - 1))
                .map(str::to_string),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        write!(f, ": ")?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        write!(f, "{}", self.message)?;
        if let (Some(line), Some(src)) = (self.line, &self.source_line) {
            write!(f, "\n  {line:>4} | {src}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Reads and parses `path`.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        line: None,
        column: None,
        key: None,
        message: format!("cannot read the config file: {e}"),
        source_line: None,
    })?;
    from_str(path, &text)
}

/// Parses `text`, naming `path` in errors.
pub fn from_str<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    from_str_with_secrets(path, text).map(|(v, _)| v)
}

/// Parses `text` with its `${VAR}` and `{ file = … }` references resolved
/// (see `resolve`); also returns what was resolved, so the caller can keep
/// those values out of what it prints. Errors never repeat a resolved value.
pub fn from_str_with_secrets<T: DeserializeOwned>(
    path: &Path,
    text: &str,
) -> Result<(T, Secrets), ConfigError> {
    let mut root = match toml::de::DeTable::parse(text) {
        Ok(root) => root,
        Err(e) => return Err(from_toml(path, text, &e, None)),
    };
    let secrets = match crate::resolve::resolve(root.get_mut(), text, path) {
        Ok(s) => s,
        Err(e) => {
            let (line, _) = line_col(text, e.offset);
            return Err(ConfigError {
                file: path.to_path_buf(),
                line: Some(line),
                column: None,
                key: (!e.key.is_empty()).then_some(e.key),
                message: e.message,
                source_line: text.lines().nth(line - 1).map(str::to_string),
            });
        }
    };
    let de = toml::de::Deserializer::from(root);
    match serde_path_to_error::deserialize::<_, T>(de) {
        Ok(v) => Ok((v, secrets)),
        Err(e) => {
            let key_path = e.path().to_string();
            let inner = e.into_inner();
            let key = (!key_path.is_empty() && key_path != ".").then_some(key_path.as_str());
            let mut err = from_toml(path, text, &inner, key);
            err.message = secrets.scrub(&err.message, key);
            Err(err)
        }
    }
}

fn from_toml(path: &Path, text: &str, e: &toml::de::Error, key: Option<&str>) -> ConfigError {
    let (line, column) = match e.span() {
        Some(span) => {
            let (l, c) = line_col(text, span.start);
            (Some(l), Some(c))
        }
        None => match key {
            Some(k) => (locate_key(text, k), None),
            None => (None, None),
        },
    };
    ConfigError {
        file: path.to_path_buf(),
        line,
        column,
        key: key.map(str::to_string),
        message: e.message().trim().to_string(),
        source_line: line
            .and_then(|l| text.lines().nth(l - 1))
            .map(str::to_string),
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map(|i| offset - i).unwrap_or(offset + 1);
    (line, col)
}

/// Best-effort line of a dotted key path such as `site[1].odoo` or
/// `listen.https`: walks the tables in order and finds the last segment.
fn locate_key(text: &str, key: &str) -> Option<usize> {
    let parts: Vec<(String, Option<usize>)> = key
        .split('.')
        .map(|p| match p.split_once('[') {
            Some((name, idx)) => (name.to_string(), idx.trim_end_matches(']').parse().ok()),
            None => (p.to_string(), None),
        })
        .collect();
    let (leaf, _) = parts.last()?;
    let mut table_path: Vec<String> = Vec::new();
    let mut counts: std::collections::HashMap<String, usize> = Default::default();
    let wanted_table: Vec<String> = parts[..parts.len() - 1]
        .iter()
        .map(|(n, _)| n.clone())
        .collect();
    let wanted_index: Option<usize> = parts[..parts.len().saturating_sub(1)]
        .iter()
        .find_map(|(_, i)| *i);
    let mut current_index: Option<usize> = None;
    let mut table_line = None;
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if let Some(name) = l.strip_prefix("[[").and_then(|s| s.strip_suffix("]]")) {
            table_path = name.split('.').map(|s| s.trim().to_string()).collect();
            let n = counts.entry(name.trim().to_string()).or_insert(0);
            current_index = Some(*n);
            *n += 1;
            if table_path == wanted_table
                && (wanted_index.is_none() || wanted_index == current_index)
            {
                table_line = Some(i + 1);
            }
            continue;
        }
        if let Some(name) = l.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            let new_path: Vec<String> = name.split('.').map(|s| s.trim().to_string()).collect();
            // A sub-table of an array element keeps that element's index.
            if !(new_path.len() > table_path.len() && new_path.starts_with(&table_path)) {
                current_index = None;
            }
            table_path = new_path;
            if table_path == wanted_table
                && (wanted_index.is_none() || wanted_index == current_index)
            {
                table_line = Some(i + 1);
            }
            continue;
        }
        let in_table =
            table_path == wanted_table && (wanted_index.is_none() || wanted_index == current_index);
        if in_table
            && let Some((k, _)) = l.split_once('=')
            && k.trim().trim_matches('"') == leaf
        {
            return Some(i + 1);
        }
    }
    if wanted_table.is_empty() {
        None
    } else {
        table_line
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Site {
        hosts: Vec<String>,
        #[serde(default)]
        timeout: Option<crate::Duration>,
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Top {
        state_dir: Option<String>,
        #[serde(default)]
        site: Vec<Site>,
    }

    #[test]
    fn names_file_line_and_key() {
        let text = "state_dir = \"/tmp\"\n[[site]]\nhosts = [\"a\"]\n[[site]]\nhosts = [\"b\"]\ntimeout = \"72x\"\n";
        let err = from_str::<Top>(Path::new("rampart.toml"), text).unwrap_err();
        assert_eq!(err.line, Some(6), "{err}");
        assert_eq!(err.key.as_deref(), Some("site[1].timeout"));
        let shown = err.to_string();
        assert!(shown.starts_with("rampart.toml:6:"), "{shown}");
        assert!(shown.contains("unknown unit"), "{shown}");
    }

    #[test]
    fn unknown_key_is_named() {
        let text = "[[site]]\nhosts = [\"a\"]\ntimout = \"5s\"\n";
        let err = from_str::<Top>(Path::new("r.toml"), text).unwrap_err();
        assert_eq!(err.line, Some(3), "{err}");
        assert!(err.message.contains("timout"), "{err}");
    }

    #[test]
    fn syntax_error_has_position() {
        let err = from_str::<Top>(Path::new("r.toml"), "state_dir = \n").unwrap_err();
        assert_eq!(err.line, Some(1), "{err}");
    }

    #[test]
    fn locate_key_in_array_tables() {
        let text = "[[site]]\nodoo = [\"a\"]\n[[site]]\nodoo = [\"b\"]\n[site.database_manager]\nallow = []\n";
        assert_eq!(locate_key(text, "site[1].odoo"), Some(4));
        assert_eq!(locate_key(text, "site[1].database_manager.allow"), Some(6));
    }
}
