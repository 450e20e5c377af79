//! Which databases Odoo serves for a host, computed as Odoo's
//! `odoo.http.db_filter` does (16.0 to 18.0 share the code):
//!
//! 1. the Host header loses its port (`partition(':')`), then a leading
//!    `www.`; that is `%h`;
//! 2. `%d` is `%h` up to its first dot;
//! 3. both are regex-escaped (`re.escape`) and substituted into `dbfilter`;
//! 4. a database is served when `re.match` succeeds: anchored at the start
//!    only, so `^prod` also serves `prod_old`; only a `$` closes the end;
//! 5. without a dbfilter, a `db_name` list (comma separated) is the set of
//!    databases served; without either, every database is.
//!
//! Python's `re` and the `regex` crate agree on the syntax used in
//! dbfilters (anchors, classes, groups, alternation, repetition);
//! look-around and backreferences, which `regex` lacks, are reported as
//! unsupported instead of guessed at.

use serde::Serialize;

/// `%h` and `%d` for a Host header value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostParts {
    /// `%h`: the host without port and without a leading `www.`.
    pub host: String,
    /// `%d`: the first label of `%h`.
    pub domain: String,
}

/// Splits a Host header into `%h` and `%d` as Odoo does (port and `www.` dropped).
pub fn host_parts(host_header: &str) -> HostParts {
    let mut host = host_header.split(':').next().unwrap_or("");
    if let Some(rest) = host.strip_prefix("www.") {
        host = rest;
    }
    let domain = host.split('.').next().unwrap_or("");
    HostParts {
        host: host.to_string(),
        domain: domain.to_string(),
    }
}

/// Python's `re.escape` (3.7+): escapes exactly these characters. Shown to
/// the user so the expanded filter reads as Odoo builds it.
///
/// ```
/// use rampart_odoo::dbfilter::python_re_escape;
/// assert_eq!(python_re_escape("erp.example-1"), r"erp\.example\-1");
/// ```
pub fn python_re_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "()[]{}?*+-|^$\\.&~# \t\n\r\x0b\x0c".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The dbfilter with `%h` and `%d` replaced, as Odoo compiles it. Odoo
/// replaces `%h` first, then `%d`.
pub fn expand(filter: &str, parts: &HostParts) -> String {
    filter
        .replace("%h", &python_re_escape(&parts.host))
        .replace("%d", &python_re_escape(&parts.domain))
}

/// The answer for one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// The host's `%h` and `%d`.
    pub parts: HostParts,
    /// The filter after substitution; `None` when no dbfilter is set.
    pub expanded: Option<String>,
    /// The databases Odoo would serve, in the order given (sorted for the
    /// `db_name` case, as Odoo sorts it).
    pub served: Vec<String>,
    /// The databases that exist but Odoo would not serve for this host.
    pub not_served: Vec<String>,
}

/// `filter`: the dbfilter (empty = unset); `db_name`: Odoo's `db_name`
/// option (used only without a filter); `dbs`: the databases that exist.
pub fn evaluate(
    filter: &str,
    db_name: &str,
    host_header: &str,
    dbs: &[String],
) -> Result<Outcome, String> {
    let parts = host_parts(host_header);
    if !filter.is_empty() {
        let expanded = expand(filter, &parts);
        let re = compile_match(&expanded)?;
        let (served, not_served) = dbs.iter().cloned().partition(|db| re.is_match(db));
        return Ok(Outcome {
            parts,
            expanded: Some(expanded),
            served,
            not_served,
        });
    }
    if !db_name.trim().is_empty() && db_name.trim() != "False" {
        let exposed: Vec<&str> = db_name.split(',').map(str::trim).collect();
        let (mut served, not_served): (Vec<String>, Vec<String>) = dbs
            .iter()
            .cloned()
            .partition(|db| exposed.contains(&db.as_str()));
        served.sort();
        served.dedup();
        return Ok(Outcome {
            parts,
            expanded: None,
            served,
            not_served,
        });
    }
    Ok(Outcome {
        parts,
        expanded: None,
        served: dbs.to_vec(),
        not_served: vec![],
    })
}

/// `rampart dbfilter --json`.
pub fn render_json(host: &str, filter: &str, db_name: &str, o: &Outcome) -> String {
    let v = serde_json::json!({
        "host": host,
        "filter": filter,
        "db_name": db_name,
        "h": o.parts.host,
        "d": o.parts.domain,
        "expanded": o.expanded,
        "served": o.served,
        "not_served": o.not_served,
    });
    serde_json::to_string_pretty(&v).expect("serializes")
}

/// Compiles `pattern` for Python `re.match` semantics: anchored at the start
/// of the name, free at the end.
pub fn compile_match(pattern: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(&format!(r"\A(?:{pattern})")).map_err(|e| {
        let msg = e.to_string();
        if msg.contains("look-around") || msg.contains("backreference") {
            format!("dbfilter {pattern:?} uses look-around or a backreference, which Rampart cannot evaluate: {msg}")
        } else {
            format!("dbfilter {pattern:?} is not a valid regular expression: {msg}")
        }
    })
}

/// Whether a dbfilter pins the end of the name (`$` or `\Z` at the end,
/// outside a character class). Without it, `^prod` also serves `prod_copy`.
pub fn end_anchored(filter: &str) -> bool {
    let f = filter.trim();
    (f.ends_with('$') && !f.ends_with("\\$")) || f.ends_with("\\Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dbs(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn host_parts_drop_port_then_www() {
        assert_eq!(
            host_parts("www.mycompany.com:8069"),
            HostParts {
                host: "mycompany.com".into(),
                domain: "mycompany".into()
            }
        );
        assert_eq!(host_parts("erp.mycompany.com").domain, "erp");
        assert_eq!(host_parts("erp.mycompany.com").host, "erp.mycompany.com");
        assert_eq!(host_parts("localhost").domain, "localhost");
        // Only a leading "www." goes, and only once.
        assert_eq!(host_parts("www.www.a.b").host, "www.a.b");
        assert_eq!(host_parts("wwwx.a").domain, "wwwx");
        assert_eq!(host_parts("").host, "");
    }

    /// The deployment guide's examples: `^%d$` serves the database named
    /// after the first label; `^%h$` the one named after the full host.
    #[test]
    fn guide_examples() {
        let all = dbs(&[
            "mycompany",
            "mycompany_test",
            "erp",
            "mycompany.com",
            "other",
        ]);
        let o = evaluate("^%d$", "", "www.mycompany.com", &all).unwrap();
        assert_eq!(o.expanded.as_deref(), Some("^mycompany$"));
        assert_eq!(o.served, ["mycompany"]);

        let o = evaluate("^%h$", "", "mycompany.com:443", &all).unwrap();
        assert_eq!(o.expanded.as_deref(), Some(r"^mycompany\.com$"));
        assert_eq!(o.served, ["mycompany.com"]);

        let o = evaluate("^%d$", "", "erp.mycompany.com", &all).unwrap();
        assert_eq!(o.served, ["erp"]);

        let o = evaluate("^mycompany.*$", "", "x", &all).unwrap();
        assert_eq!(o.served, ["mycompany", "mycompany_test", "mycompany.com"]);
    }

    #[test]
    fn match_is_anchored_at_the_start_only() {
        let all = dbs(&["prod", "prod_copy", "old_prod"]);
        let o = evaluate("prod", "", "h", &all).unwrap();
        assert_eq!(o.served, ["prod", "prod_copy"], "re.match does not search");
        let o = evaluate("^prod$", "", "h", &all).unwrap();
        assert_eq!(o.served, ["prod"]);
        // Alternation binds inside the start anchor, as with re.match.
        let o = evaluate("a|prod", "", "h", &all).unwrap();
        assert_eq!(o.served, ["prod", "prod_copy"]);
    }

    #[test]
    fn host_is_escaped_so_dots_are_literal() {
        let all = dbs(&["aXb", "a.b"]);
        let o = evaluate("^%h$", "", "a.b", &all).unwrap();
        assert_eq!(o.served, ["a.b"]);
        assert_eq!(python_re_escape("a-b.c"), r"a\-b\.c");
        // `%d` is replaced after `%h`, as Odoo does.
        assert_eq!(expand("%h_%d", &host_parts("www.x.y")), r"x\.y_x");
    }

    #[test]
    fn without_filter_db_name_list_then_everything() {
        let all = dbs(&["b", "a", "c"]);
        let o = evaluate("", "c, a", "h", &all).unwrap();
        assert_eq!(o.served, ["a", "c"]);
        assert_eq!(o.not_served, ["b"]);
        let o = evaluate("", "", "h", &all).unwrap();
        assert_eq!(o.served, ["b", "a", "c"]);
    }

    #[test]
    fn unsupported_and_invalid_filters_say_so() {
        let e = evaluate("^(?!test).*$", "", "h", &dbs(&["a"])).unwrap_err();
        assert!(e.contains("look-around"), "{e}");
        let e = evaluate("^(a$", "", "h", &dbs(&["a"])).unwrap_err();
        assert!(e.contains("not a valid regular expression"), "{e}");
    }

    #[test]
    fn end_anchoring() {
        assert!(end_anchored("^%d$"));
        assert!(end_anchored("^(a|b)$"));
        assert!(!end_anchored("^%d"));
        assert!(!end_anchored(r"^a\$"));
        assert!(!end_anchored(".*"));
    }
}
