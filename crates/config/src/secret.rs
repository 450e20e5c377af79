//! Secrets in `rampart check --print`: serialised as a mask, so printing
//! the effective config never shows them (the config's Serialize exists
//! only for that). Values taken from `${VAR}` or `{ file = … }` (see
//! `resolve`) are shown as written in the file, and scrubbed from messages.

use serde::Serializer;

/// What a secret is printed as.
pub const MASK: &str = "********";

/// Serialises a secret as [`MASK`] (an empty one stays empty: "not set" shows).
pub fn mask<S: Serializer>(v: &str, s: S) -> Result<S::Ok, S::Error> {
    if v.is_empty() {
        s.serialize_str("")
    } else {
        s.serialize_str(MASK)
    }
}

/// [`mask`] for an optional secret.
pub fn mask_opt<S: Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => mask(v, s),
        None => s.serialize_none(),
    }
}

/// A libpq connection string or URI: the password (`password=...` or the
/// `user:password@` of a URI) is masked, the rest kept.
pub fn mask_password_in<S: Serializer>(v: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&masked_conninfo(v))
}

/// The connection string with its password replaced by [`MASK`].
pub fn masked_conninfo(v: &str) -> String {
    if let Some((scheme, rest)) = v.split_once("://") {
        let (auth, host) = match rest.split_once('@') {
            Some((a, h)) if !a.contains('/') => (Some(a), h),
            _ => (None, rest),
        };
        let auth = match auth {
            None => String::new(),
            Some(a) => match a.split_once(':') {
                Some((user, _)) => format!("{user}:{MASK}@"),
                None => format!("{a}@"),
            },
        };
        return format!("{scheme}://{auth}{}", mask_params(host, '&'));
    }
    mask_params(v, ' ')
}

/// `password=...` in `key=value` lists (libpq keywords, URI query).
fn mask_params(v: &str, sep: char) -> String {
    let lower = v.to_ascii_lowercase();
    let Some(at) = lower.find("password=") else {
        return v.to_string();
    };
    let start = at + "password=".len();
    let end = v[start..]
        .find([sep, ' '])
        .map(|e| start + e)
        .unwrap_or(v.len());
    format!("{}{MASK}{}", &v[..start], &v[end..])
}

/// One step of a key path: a table key or an array index.
#[derive(Clone, Debug, PartialEq)]
pub enum Seg {
    /// A table key.
    Key(String),
    /// An array index.
    Index(usize),
}

/// `site[0].hosts[1]`, as serde_path_to_error writes it.
pub fn key_string(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// How a resolved value was written in the file.
#[derive(Clone, PartialEq)]
pub enum Reference {
    /// A string holding `${NAME}` (kept whole, as written).
    Env(String),
    /// `{ file = "…" }`, the path as written.
    File(String),
}

/// A value taken from the environment or a file.
#[derive(Clone, PartialEq)]
pub struct Resolved {
    /// Where in the document the value goes.
    pub path: Vec<Seg>,
    /// How it was written.
    pub reference: Reference,
    /// What it resolved to (never printed).
    pub value: String,
}

/// Every value a config took from the environment or a file. Its Debug
/// names the references, never the values.
#[derive(Clone, Default, PartialEq)]
pub struct Secrets(pub Vec<Resolved>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|r| key_string(&r.path)))
            .finish()
    }
}

/// Values shorter than this are not scrubbed from free text (a `${WORKERS}`
/// of "4" would blank every 4); they are still masked at their own key.
const SCRUB_MIN: usize = 4;

impl Secrets {
    /// Whether the config took no value from the environment or a file.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `text` with every resolved value replaced by the mask: for error
    /// messages and findings. A value at `key` is scrubbed whatever its length.
    pub fn scrub(&self, text: &str, key: Option<&str>) -> String {
        let mut values: Vec<&str> = self
            .0
            .iter()
            .filter(|r| r.value.len() >= SCRUB_MIN || key.is_some_and(|k| k == key_string(&r.path)))
            .map(|r| r.value.as_str())
            .collect();
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        let mut out = text.to_string();
        for v in values {
            if !v.is_empty() {
                out = out.replace(v, MASK);
            }
        }
        out
    }

    /// `config` as TOML, each resolved value shown as written (`"${VAR}"`,
    /// `{ file = "…" }`) and scrubbed from every other string (a value that
    /// travelled into a field built from it): the output reads back as the
    /// same config.
    pub fn print_toml<T: serde::Serialize>(&self, config: &T) -> Result<String, String> {
        if self.is_empty() {
            // Straight from the struct: a Value's tables lose the field order.
            return toml::to_string(config).map_err(|e| e.to_string());
        }
        let mut root = toml::Value::try_from(config).map_err(|e| e.to_string())?;
        self.scrub_toml(&mut root);
        // toml writes a one-key table as a `[section]`; a placeholder string
        // is swapped for the inline `{ file = … }` in the text.
        let mut files = Vec::new();
        for r in &self.0 {
            if let Some(slot) = walk_toml(&mut root, &r.path) {
                *slot = toml::Value::String(match &r.reference {
                    Reference::Env(raw) => raw.clone(),
                    Reference::File(p) => {
                        files.push(p.clone());
                        format!("@@rampart-secret-file-{}@@", files.len() - 1)
                    }
                });
            }
        }
        let mut text = toml::to_string(&root).map_err(|e| e.to_string())?;
        for (i, p) in files.iter().enumerate() {
            let quoted = toml::Value::String(p.clone()).to_string();
            text = text.replace(
                &format!("\"@@rampart-secret-file-{i}@@\""),
                &format!("{{ file = {quoted} }}"),
            );
        }
        Ok(text)
    }

    /// The same for the JSON form.
    pub fn mask_json(&self, root: &mut serde_json::Value) {
        if self.is_empty() {
            return;
        }
        self.scrub_json(root);
        for r in &self.0 {
            if let Some(slot) = walk_json(root, &r.path) {
                *slot = match &r.reference {
                    Reference::Env(raw) => serde_json::Value::String(raw.clone()),
                    Reference::File(p) => serde_json::json!({ "file": p }),
                };
            }
        }
    }
}

impl Secrets {
    fn scrub_toml(&self, v: &mut toml::Value) {
        match v {
            toml::Value::String(s) => *s = self.scrub(s, None),
            toml::Value::Array(a) => a.iter_mut().for_each(|e| self.scrub_toml(e)),
            toml::Value::Table(t) => t.iter_mut().for_each(|(_, e)| self.scrub_toml(e)),
            _ => {}
        }
    }

    fn scrub_json(&self, v: &mut serde_json::Value) {
        match v {
            serde_json::Value::String(s) => *s = self.scrub(s, None),
            serde_json::Value::Array(a) => a.iter_mut().for_each(|e| self.scrub_json(e)),
            serde_json::Value::Object(o) => o.values_mut().for_each(|e| self.scrub_json(e)),
            _ => {}
        }
    }
}

fn walk_toml<'v>(mut v: &'v mut toml::Value, path: &[Seg]) -> Option<&'v mut toml::Value> {
    for seg in path {
        v = match seg {
            Seg::Key(k) => v.as_table_mut()?.get_mut(k)?,
            Seg::Index(i) => v.as_array_mut()?.get_mut(*i)?,
        };
    }
    Some(v)
}

fn walk_json<'v>(
    mut v: &'v mut serde_json::Value,
    path: &[Seg],
) -> Option<&'v mut serde_json::Value> {
    for seg in path {
        v = match seg {
            Seg::Key(k) => v.as_object_mut()?.get_mut(k)?,
            Seg::Index(i) => v.as_array_mut()?.get_mut(*i)?,
        };
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conninfo_passwords_masked() {
        assert_eq!(
            masked_conninfo("host=db user=odoo password=hunter2 dbname=x"),
            "host=db user=odoo password=******** dbname=x"
        );
        assert_eq!(
            masked_conninfo("postgresql://odoo:hunter2@db:5432/?sslmode=require"),
            "postgresql://odoo:********@db:5432/?sslmode=require"
        );
        assert_eq!(
            masked_conninfo("postgres://db/?password=hunter2&sslmode=require"),
            "postgres://db/?password=********&sslmode=require"
        );
        assert_eq!(
            masked_conninfo("host=/run/postgresql"),
            "host=/run/postgresql"
        );
    }
}
