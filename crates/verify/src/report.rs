//! One line per check, as a table for people or JSON for scripts.

use serde::Serialize;

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Status {
    /// As it should be.
    #[serde(rename = "PASS")]
    Pass,
    /// Worth a look; not a hole by itself.
    #[serde(rename = "WARN")]
    Warn,
    /// A weakness to fix (`rampart verify` exits 1).
    #[serde(rename = "FAIL")]
    Fail,
}

impl Status {
    /// `PASS`, `WARN` or `FAIL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

/// One line of the checklist. `fix` says why the check matters and what
/// to change; it is filled for every status so JSON consumers have it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// The check's short name.
    pub check: String,
    /// Its verdict.
    pub status: Status,
    /// What was seen.
    pub detail: String,
    /// Why it matters and what to change.
    pub fix: String,
}

impl Check {
    /// A check line.
    pub fn new(
        check: impl Into<String>,
        status: Status,
        detail: impl Into<String>,
        fix: &str,
    ) -> Check {
        Check {
            check: check.into(),
            status,
            detail: detail.into(),
            fix: fix.to_string(),
        }
    }
}

/// The table: `STATUS  check  detail`, with the fix under every non-PASS
/// line, then a count.
///
/// ```
/// use rampart_verify::{Check, Status, render_table};
/// let t = render_table(&[Check::new("hsts", Status::Fail, "no Strict-Transport-Security", "add it")]);
/// assert!(t.starts_with("FAIL  hsts  no Strict-Transport-Security\n"));
/// assert!(t.contains("fix: add it\n"));
/// assert!(t.ends_with("1 checks: 0 PASS, 0 WARN, 1 FAIL\n"));
/// ```
pub fn render_table(checks: &[Check]) -> String {
    let width = checks.iter().map(|c| c.check.len()).max().unwrap_or(0);
    let mut out = String::new();
    for c in checks {
        out.push_str(&format!(
            "{}  {:width$}  {}\n",
            c.status.as_str(),
            c.check,
            c.detail
        ));
        if c.status != Status::Pass {
            out.push_str(&format!("      {:width$}  fix: {}\n", "", c.fix));
        }
    }
    let count = |s| checks.iter().filter(|c| c.status == s).count();
    out.push_str(&format!(
        "\n{} checks: {} PASS, {} WARN, {} FAIL\n",
        checks.len(),
        count(Status::Pass),
        count(Status::Warn),
        count(Status::Fail)
    ));
    out
}

/// A JSON array of `{check, status, detail, fix}`.
pub fn render_json(checks: &[Check]) -> String {
    serde_json::to_string_pretty(checks).unwrap_or_else(|_| "[]".into()) + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_shows_fix_only_for_non_pass_and_counts() {
        let checks = vec![
            Check::new("a", Status::Pass, "fine", "why a"),
            Check::new("bb", Status::Fail, "broken", "do b"),
        ];
        let t = render_table(&checks);
        assert!(t.contains("PASS  a   fine\n"), "{t}");
        assert!(t.contains("FAIL  bb  broken\n"), "{t}");
        assert!(t.contains("fix: do b"), "{t}");
        assert!(!t.contains("why a"), "{t}");
        assert!(t.contains("2 checks: 1 PASS, 0 WARN, 1 FAIL"), "{t}");
    }

    #[test]
    fn json_has_the_four_fields() {
        let j = render_json(&[Check::new("x", Status::Warn, "d", "f")]);
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(
            v,
            serde_json::json!([{"check": "x", "status": "WARN", "detail": "d", "fix": "f"}])
        );
    }
}
