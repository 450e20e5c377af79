//! odoo.conf, read and edited without losing anything.
//!
//! Administrators annotate odoo.conf by hand, and Odoo keeps keys it does not
//! know; a tool that rewrites the file from a struct throws both away. This
//! keeps every line as written and changes only the lines of the keys it
//! sets, so a diff after `rampart init --force` shows exactly what changed.
//!
//! The syntax is Python's `configparser` as Odoo uses it: `[section]`
//! headers, `key = value` or `key: value`, full-line comments starting with
//! `#` or `;`, continuation lines indented deeper than their key (blank
//! lines inside a value kept), keys case-insensitive, section names as
//! written. Odoo reads the `[options]` section and `[DEFAULT]`.
//! `tests/conf_differential.rs` checks agreement with Python's configparser.

use std::fmt;
use std::path::{Path, PathBuf};

/// The section Odoo reads its settings from.
pub const OPTIONS: &str = "options";
/// configparser's defaults, read as part of every section (so of `[options]`).
const DEFAULT: &str = "DEFAULT";

/// A malformed odoo.conf: the file, the line, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfError {
    /// The file.
    pub file: PathBuf,
    /// 1-based; `None` when the file could not be read at all.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for ConfError {}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    /// Blank lines and comments, kept verbatim.
    Other(String),
    Section {
        raw: String,
        name: String,
    },
    /// `key = value`, plus any indented continuation lines, verbatim.
    Entry {
        raw: Vec<String>,
        section: String,
        key: String,
        value: String,
    },
}

/// One odoo.conf, every line kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OdooConf {
    path: PathBuf,
    lines: Vec<Line>,
    /// Whether the original text ended with a newline (kept on render).
    trailing_newline: bool,
}

/// A key's value and the line it is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Value<'a> {
    /// The value, trimmed.
    pub value: &'a str,
    /// The line it is on, 1-based.
    pub line: usize,
}

impl OdooConf {
    /// An empty file with just the `[options]` header.
    pub fn new(path: &Path) -> Self {
        OdooConf {
            path: path.to_path_buf(),
            lines: vec![Line::Section {
                raw: "[options]".into(),
                name: OPTIONS.into(),
            }],
            trailing_newline: true,
        }
    }

    /// Reads `path`; a missing file or a malformed line is an error naming it.
    pub fn load(path: &Path) -> Result<Self, ConfError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfError {
            file: path.to_path_buf(),
            line: None,
            message: format!("cannot read odoo.conf: {e}"),
        })?;
        Self::parse(path, &text)
    }

    /// Parses `text`; `path` is only used in errors and for `save`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfError> {
        let err = |line: usize, message: String| ConfError {
            file: path.to_path_buf(),
            line: Some(line),
            message,
        };
        let mut lines: Vec<Line> = Vec::new();
        let mut section: Option<String> = None;
        let mut seen_keys: std::collections::HashMap<(String, String), usize> = Default::default();
        let mut seen_sections: std::collections::HashMap<String, usize> = Default::default();
        // configparser's state: the entry a deeper-indented line continues,
        // the indentation of the last section or key line, and the blank
        // lines seen since that entry's last line (kept in its value when
        // a continuation follows).
        let mut current: Option<usize> = None;
        let mut indent_level = 0usize;
        let mut blanks = 0usize;
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let trimmed = raw.trim();
            let comment = trimmed.starts_with('#') || trimmed.starts_with(';');
            if trimmed.is_empty() || comment {
                // A blank line inside a value is part of it; a comment is not.
                if !comment && current.is_some() {
                    blanks += 1;
                }
                lines.push(Line::Other(raw.to_string()));
                continue;
            }
            let indent = raw.len() - raw.trim_start().len();
            if let Some(at) = current
                && indent > indent_level
            {
                // Lines between the entry and here (blanks, comments) are now its own.
                let between: Vec<String> = lines
                    .drain(at + 1..)
                    .map(|l| match l {
                        Line::Other(r) => r,
                        _ => unreachable!("only blanks and comments follow the current entry"),
                    })
                    .collect();
                if let Line::Entry { raw: r, value, .. } = &mut lines[at] {
                    r.extend(between);
                    r.push(raw.to_string());
                    for _ in 0..=blanks {
                        value.push('\n');
                    }
                    value.push_str(trimmed);
                }
                blanks = 0;
                continue;
            }
            indent_level = indent;
            blanks = 0;
            // configparser's `\[(?P<header>.+)\]`: up to the last ']', not trimmed.
            if let Some(rest) = trimmed.strip_prefix('[')
                && let Some(close) = rest.rfind(']')
                && close > 0
            {
                let name = rest[..close].to_string();
                current = None;
                if name != DEFAULT
                    && let Some(first) = seen_sections.insert(name.clone(), n)
                {
                    return Err(err(
                        n,
                        format!(
                            "section [{name}] already starts on line {first}; Odoo refuses a repeated section"
                        ),
                    ));
                }
                section = Some(name.clone());
                lines.push(Line::Section {
                    raw: raw.to_string(),
                    name,
                });
                continue;
            }
            let Some(sec) = section.clone() else {
                return Err(err(
                    n,
                    format!(
                        "{trimmed:?} comes before any section header; Odoo reads keys under [options]"
                    ),
                ));
            };
            let Some(pos) = trimmed.find(['=', ':']) else {
                return Err(err(
                    n,
                    format!("{trimmed:?} is not `key = value`, a [section] or a # comment"),
                ));
            };
            let key = trimmed[..pos].trim();
            if key.is_empty() {
                return Err(err(n, "a value without a key".into()));
            }
            let key = key.to_lowercase();
            // Odoo's RawConfigParser is strict: a repeated key stops Odoo.
            if let Some(first) = seen_keys.insert((sec.clone(), key.clone()), n) {
                return Err(err(
                    n,
                    format!(
                        "{key:?} is already set on line {first}; Odoo refuses a key set twice in [{sec}]"
                    ),
                ));
            }
            current = Some(lines.len());
            lines.push(Line::Entry {
                raw: vec![raw.to_string()],
                section: sec,
                key,
                value: trimmed[pos + 1..].trim().to_string(),
            });
        }
        Ok(OdooConf {
            path: path.to_path_buf(),
            lines,
            trailing_newline: text.is_empty() || text.ends_with('\n'),
        })
    }

    /// The file this was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The value of `key` in `[options]` with its line; a key of
    /// `[DEFAULT]` counts when `[options]` does not set it, as in configparser.
    pub fn get(&self, key: &str) -> Option<Value<'_>> {
        let key = key.to_lowercase();
        let mut line_no = 0;
        let (mut found, mut default) = (None, None);
        for l in &self.lines {
            line_no += 1;
            if let Line::Entry {
                raw,
                section,
                key: k,
                value,
            } = l
            {
                if *k == key {
                    let v = Some(Value {
                        value: value.as_str(),
                        line: line_no,
                    });
                    if section == OPTIONS {
                        found = v;
                    } else if section == DEFAULT {
                        default = v;
                    }
                }
                line_no += raw.len() - 1;
            }
        }
        // Without an [options] section Odoo reads nothing, defaults included.
        found.or(default.filter(|_| self.has_options()))
    }

    fn has_options(&self) -> bool {
        self.lines
            .iter()
            .any(|l| matches!(l, Line::Section { name, .. } if name == OPTIONS))
    }

    /// Odoo's reading of a boolean: `True`/`true`/`1`-like words are true;
    /// `None` when the key is absent.
    pub fn get_bool(&self, key: &str) -> Option<bool> {
        self.get(key).map(|v| parse_bool(v.value))
    }

    /// Every `(key, value)` Odoo reads from `[options]`: configparser's
    /// `items("options")`, the `[DEFAULT]` keys first (overridden by
    /// `[options]`), then the others in file order.
    pub fn options(&self) -> impl Iterator<Item = (&str, &str)> {
        let entries = |want: &'static str| {
            self.lines.iter().filter_map(move |l| match l {
                Line::Entry {
                    section,
                    key,
                    value,
                    ..
                } if section == want => Some((key.as_str(), value.as_str())),
                _ => None,
            })
        };
        // Without an [options] section Odoo reads nothing, defaults included.
        let mut out: Vec<(&str, &str)> = if self.has_options() {
            entries(DEFAULT).collect()
        } else {
            Vec::new()
        };
        for (k, v) in entries(OPTIONS) {
            match out.iter_mut().find(|(dk, _)| *dk == k) {
                Some(slot) => slot.1 = v,
                None => out.push((k, v)),
            }
        }
        out.into_iter()
    }

    /// Sets `key` in `[options]`: rewrites its line in place (keeping how the
    /// key was spelt), or adds it after the last entry of `[options]`.
    pub fn set(&mut self, key: &str, value: &str) {
        let lower = key.to_lowercase();
        let existing = self.lines.iter().rposition(
            |l| matches!(l, Line::Entry { section, key: k, .. } if section == OPTIONS && *k == lower),
        );
        if let Some(i) = existing {
            if let Line::Entry { raw, value: v, .. } = &mut self.lines[i] {
                // Same indentation: a line after it that was not a
                // continuation must not become one.
                let first = raw[0].trim_start();
                let indent = &raw[0][..raw[0].len() - first.len()];
                let spelt = first[..first.find(['=', ':']).unwrap_or(first.len())].trim_end();
                *raw = vec![format!("{indent}{spelt} = {value}")];
                *v = value.to_string();
            }
            return;
        }
        let entry = Line::Entry {
            raw: vec![format!("{lower} = {value}")],
            section: OPTIONS.into(),
            key: lower,
            value: value.to_string(),
        };
        let options_at = self
            .lines
            .iter()
            .position(|l| matches!(l, Line::Section { name, .. } if name == OPTIONS));
        match options_at {
            Some(start) => {
                let mut at = start + 1;
                for (i, l) in self.lines.iter().enumerate().skip(start + 1) {
                    match l {
                        Line::Section { .. } => break,
                        Line::Entry { .. } => at = i + 1,
                        Line::Other(_) => {}
                    }
                }
                // Indented like the next line with content, so that line
                // does not read as a continuation of the new key.
                let mut entry = entry;
                if let Line::Entry { raw, .. } = &mut entry
                    && let Some(next) = self.lines[at..].iter().find_map(|l| match l {
                        Line::Other(r) if r.trim().is_empty() || is_comment(r) => None,
                        Line::Other(r) | Line::Section { raw: r, .. } => Some(r.as_str()),
                        Line::Entry { raw, .. } => Some(raw[0].as_str()),
                    })
                {
                    let indent = &next[..next.len() - next.trim_start().len()];
                    raw[0] = format!("{indent}{}", raw[0]);
                }
                self.lines.insert(at, entry);
            }
            None => {
                self.lines.push(Line::Section {
                    raw: "[options]".into(),
                    name: OPTIONS.into(),
                });
                self.lines.push(entry);
            }
        }
    }

    /// Removes every `key` line from `[options]` (and `[DEFAULT]`, which
    /// would show through); true when one was there.
    pub fn remove(&mut self, key: &str) -> bool {
        let lower = key.to_lowercase();
        let before = self.lines.len();
        self.lines.retain(
            |l| !matches!(l, Line::Entry { section, key: k, .. } if (section == OPTIONS || section == DEFAULT) && *k == lower),
        );
        before != self.lines.len()
    }

    /// Adds a comment line just before `key`'s line (or at the end).
    pub fn comment_before(&mut self, key: &str, comment: &str) {
        let lower = key.to_ascii_lowercase();
        let at = self
            .lines
            .iter()
            .position(|l| matches!(l, Line::Entry { section, key: k, .. } if section == OPTIONS && *k == lower))
            .unwrap_or(self.lines.len());
        self.lines.insert(at, Line::Other(format!("# {comment}")));
    }

    /// Appends blank and `#` comment lines at the end of the file.
    pub fn append_comments(&mut self, text: &str) {
        for l in text.lines() {
            debug_assert!(
                l.trim().is_empty() || l.starts_with('#'),
                "not a comment: {l:?}"
            );
            self.lines.push(Line::Other(l.to_string()));
        }
    }

    /// The file's text: unchanged lines byte for byte.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for l in &self.lines {
            match l {
                Line::Other(raw) | Line::Section { raw, .. } => {
                    out.push_str(raw);
                    out.push('\n');
                }
                Line::Entry { raw, .. } => {
                    for r in raw {
                        out.push_str(r);
                        out.push('\n');
                    }
                }
            }
        }
        if !self.trailing_newline && out.ends_with('\n') {
            out.pop();
        }
        out
    }
}

fn is_comment(line: &str) -> bool {
    let t = line.trim();
    t.starts_with('#') || t.starts_with(';')
}

/// Odoo's config reads `True`/`true` and `False`/`false`; anything else
/// non-empty is a truthy string in Python.
pub fn parse_bool(v: &str) -> bool {
    !matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "" | "false" | "0" | "no" | "off" | "none"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
; written by hand
[options]
# the master password
admin_passwd = secret
db_host = False
Workers: 4
addons_path = /opt/a,
    /opt/b
my_custom_key = kept

[queue_job]
channels = root:2
";

    fn conf() -> OdooConf {
        OdooConf::parse(Path::new("odoo.conf"), SAMPLE).unwrap()
    }

    #[test]
    fn unchanged_file_renders_byte_for_byte() {
        assert_eq!(conf().render(), SAMPLE);
        let no_nl = "[options]\nworkers = 2";
        assert_eq!(
            OdooConf::parse(Path::new("x"), no_nl).unwrap().render(),
            no_nl
        );
    }

    #[test]
    fn reads_values_case_insensitive_keys_and_continuations() {
        let c = conf();
        assert_eq!(c.get("workers").unwrap().value, "4");
        assert_eq!(c.get("workers").unwrap().line, 6);
        assert_eq!(c.get("addons_path").unwrap().value, "/opt/a,\n/opt/b");
        assert_eq!(c.get("my_custom_key").unwrap().line, 9);
        assert_eq!(
            c.get("channels"),
            None,
            "other sections are not Odoo's options"
        );
        assert_eq!(c.get_bool("db_host"), Some(false));
    }

    #[test]
    fn set_edits_in_place_and_keeps_everything_else() {
        let mut c = conf();
        c.set("admin_passwd", "$pbkdf2-sha512$600000$x$y");
        c.set("WORKERS", "9");
        c.set("addons_path", "/opt/c");
        c.set("list_db", "False");
        let out = c.render();
        let expected = "\
; written by hand
[options]
# the master password
admin_passwd = $pbkdf2-sha512$600000$x$y
db_host = False
Workers = 9
addons_path = /opt/c
my_custom_key = kept
list_db = False

[queue_job]
channels = root:2
";
        assert_eq!(out, expected);
        // And what was written reads back the same.
        let again = OdooConf::parse(Path::new("odoo.conf"), &out).unwrap();
        assert_eq!(again.get("workers").unwrap().value, "9");
        assert_eq!(again.get("list_db").unwrap().value, "False");
    }

    #[test]
    fn set_without_options_section_adds_one() {
        let mut c = OdooConf::parse(Path::new("x"), "# empty\n").unwrap();
        c.set("proxy_mode", "True");
        assert_eq!(c.render(), "# empty\n[options]\nproxy_mode = True\n");
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        let e = OdooConf::parse(
            Path::new("/etc/odoo/odoo.conf"),
            "[options]\nworkers = 2\nlist_db False\n",
        )
        .unwrap_err();
        assert_eq!(e.line, Some(3));
        assert!(e.to_string().starts_with("/etc/odoo/odoo.conf:3: "), "{e}");
        let e = OdooConf::parse(Path::new("o.conf"), "workers = 2\n").unwrap_err();
        assert_eq!(e.line, Some(1));
        assert!(e.message.contains("before any section"), "{e}");
        let e = OdooConf::parse(Path::new("o.conf"), "[options\n").unwrap_err();
        assert_eq!(e.line, Some(1));
    }

    #[test]
    fn repeated_keys_and_sections_are_errors_as_in_odoo() {
        let e = OdooConf::parse(Path::new("o.conf"), "[options]\nworkers = 2\nWorkers = 4\n")
            .unwrap_err();
        assert_eq!(e.line, Some(3));
        assert!(e.message.contains("already set on line 2"), "{e}");
        let e = OdooConf::parse(Path::new("o.conf"), "[options]\n[x]\n[options]\n").unwrap_err();
        assert_eq!(e.line, Some(3));
        // The same key in two sections is fine.
        assert!(OdooConf::parse(Path::new("o.conf"), "[options]\na = 1\n[x]\na = 2\n").is_ok());
    }

    #[test]
    fn missing_file_is_named() {
        let e = OdooConf::load(Path::new("/nonexistent/odoo.conf")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/odoo.conf"), "{e}");
    }

    #[test]
    fn remove_drops_the_key() {
        let mut c = conf();
        assert!(c.remove("db_host"));
        assert!(!c.render().contains("db_host"));
        assert!(!c.remove("db_host"));
    }
}
