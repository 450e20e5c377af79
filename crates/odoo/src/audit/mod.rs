//! `rampart audit`: the mistakes the deployment guides warn about, found in
//! odoo.conf (offline), in PostgreSQL (live, `--pg`) and in rampart.toml.
//!
//! Each rule yields a [`Finding`] that says what is wrong, why it matters
//! and how to fix it, so the report is a to-do list rather than a score.
//! Rules are plain functions over parsed inputs; the CLI only loads files.

mod conf;
mod front;
mod pg;
mod sockets;

use std::fmt::Write as _;

use serde::Serialize;

pub use conf::audit_conf;
pub use front::{FrontFacts, FrontSite, audit_front};
pub use pg::{PgAudit, PgError, audit_pg, odoo_list_dbs};
pub use sockets::{PortKind, WatchedPort, audit_sockets, listening, read_live};

/// How much a finding matters; reports list the gravest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; no risk in itself.
    Info,
    /// A small risk.
    Low,
    /// A risk worth fixing.
    Medium,
    /// Fix before going live: `rampart audit` exits with an error status.
    High,
}

impl Severity {
    /// The lowercase name reports show.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }
}

/// One thing `rampart audit` found, with why it matters and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable identifier, for scripts and for silencing in the future.
    pub id: &'static str,
    /// How much it matters.
    pub severity: Severity,
    /// What was found, in one line.
    pub what: String,
    /// Why it matters.
    pub why: String,
    /// How to fix it.
    pub fix: String,
    /// `file:line`, `database demo1`, `site[0]`: where it was found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
}

impl Finding {
    /// A finding with no `why`, `fix` or `at` yet.
    pub fn new(id: &'static str, severity: Severity, what: impl Into<String>) -> Self {
        Finding {
            id,
            severity,
            what: what.into(),
            why: String::new(),
            fix: String::new(),
            at: None,
        }
    }
    /// Sets why it matters.
    pub fn why(mut self, why: impl Into<String>) -> Self {
        self.why = why.into();
        self
    }
    /// Sets how to fix it.
    pub fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = fix.into();
        self
    }
    /// Sets where it was found.
    pub fn at(mut self, at: impl Into<String>) -> Self {
        self.at = Some(at.into());
        self
    }
}

/// All findings of one run, most severe first.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// What was examined (`odoo.conf /etc/odoo/odoo.conf`, ...).
    pub checked: Vec<String>,
    /// Everything found, gravest first.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Adds findings, keeping the gravest first (rules keep their order within a severity).
    pub fn add(&mut self, findings: impl IntoIterator<Item = Finding>) {
        self.findings.extend(findings);
        // Stable: within a severity, rules keep their order.
        self.findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    }

    /// Whether anything is [`Severity::High`] (the command then fails).
    pub fn has_high(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::High)
    }

    /// How many findings have severity `s`.
    pub fn count(&self, s: Severity) -> usize {
        self.findings.iter().filter(|f| f.severity == s).count()
    }

    /// The report as pretty-printed JSON, for `--json`.
    pub fn render_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report serializes")
    }

    /// One block per finding: severity, id, where, what; then why and fix.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        for c in &self.checked {
            let _ = writeln!(out, "checked: {c}");
        }
        if !self.checked.is_empty() {
            out.push('\n');
        }
        for f in &self.findings {
            let at =
                f.at.as_deref()
                    .map(|a| format!(" ({a})"))
                    .unwrap_or_default();
            let _ = writeln!(
                out,
                "{:<6}  {:<28} {}{at}",
                f.severity.as_str().to_uppercase(),
                f.id,
                f.what
            );
            if !f.why.is_empty() {
                let _ = writeln!(out, "{:<6}  {:<28} why: {}", "", "", f.why);
            }
            if !f.fix.is_empty() {
                let _ = writeln!(out, "{:<6}  {:<28} fix: {}", "", "", f.fix);
            }
        }
        if self.findings.is_empty() {
            out.push_str("no findings\n");
        } else {
            let _ = writeln!(
                out,
                "\n{} finding(s): {} high, {} medium, {} low, {} info",
                self.findings.len(),
                self.count(Severity::High),
                self.count(Severity::Medium),
                self.count(Severity::Low),
                self.count(Severity::Info)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_sorts_by_severity_and_counts() {
        let mut r = Report::default();
        r.add([
            Finding::new("a", Severity::Low, "x"),
            Finding::new("b", Severity::High, "y"),
        ]);
        r.add([Finding::new("c", Severity::Medium, "z")
            .why("w")
            .fix("f")
            .at("odoo.conf:3")]);
        assert_eq!(
            r.findings.iter().map(|f| f.id).collect::<Vec<_>>(),
            ["b", "c", "a"]
        );
        assert!(r.has_high());
        let text = r.render_text();
        assert!(text.contains("MEDIUM  c"), "{text}");
        assert!(text.contains("z (odoo.conf:3)"), "{text}");
        assert!(
            text.contains("3 finding(s): 1 high, 1 medium, 1 low, 0 info"),
            "{text}"
        );
        let json: serde_json::Value = serde_json::from_str(&r.render_json()).unwrap();
        assert_eq!(json["findings"][0]["severity"], "high");
        assert_eq!(json["findings"][1]["fix"], "f");
    }
}
