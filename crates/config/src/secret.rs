//! Secrets in `rampart check --print`: serialised as a mask, so printing
//! the effective config never shows them (the config's Serialize exists
//! only for that).

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
