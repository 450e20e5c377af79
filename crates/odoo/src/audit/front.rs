//! Rules over rampart.toml, given as plain facts so this crate does not
//! depend on the edge's config types (the binary fills them in).

use std::net::SocketAddr;

use super::{Finding, Severity};

/// What the audit needs to know of a rampart.toml.
#[derive(Debug, Clone)]
pub struct FrontFacts {
    /// The file, for `at`.
    pub file: String,
    /// The plain-HTTP listener, when there is one.
    pub http: Option<SocketAddr>,
    /// The HTTPS listener.
    pub https: SocketAddr,
    /// The admin listener, when there is one.
    pub admin: Option<SocketAddr>,
    /// The `[[site]]` sections, in order.
    pub sites: Vec<FrontSite>,
}

/// What the audit needs to know of one `[[site]]`.
#[derive(Debug, Clone, Default)]
pub struct FrontSite {
    /// The site's host names.
    pub hosts: Vec<String>,
    /// `tls = "local"`: a certificate from Rampart's own CA.
    pub tls_local: bool,
    /// `database_manager.allow`, as written.
    pub database_manager_allow: Vec<String>,
}

/// The findings about a rampart.toml.
pub fn audit_front(f: &FrontFacts) -> Vec<Finding> {
    let mut out = Vec::new();
    for (i, site) in f.sites.iter().enumerate() {
        let at = format!("{} site[{i}] ({})", f.file, site.hosts.join(", "));
        let open: Vec<&String> = site
            .database_manager_allow
            .iter()
            .filter(|c| matches!(c.trim(), "0.0.0.0/0" | "::/0"))
            .collect();
        if !open.is_empty() {
            out.push(
                Finding::new(
                    "front-dbmanager-open",
                    Severity::High,
                    format!("database_manager.allow contains {}: the database manager is open to the internet", open.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")),
                )
                .why("/web/database/* creates, drops, backs up and restores databases, guarded only by the master password")
                .fix("list only the administrators' address ranges, e.g. allow = [\"192.0.2.0/24\"], or none")
                .at(at.clone()),
            );
        }
        if site.tls_local && !f.https.ip().is_loopback() {
            out.push(
                Finding::new(
                    "front-local-ca-public",
                    Severity::Medium,
                    format!("tls = \"local\" on a public listener ({})", f.https),
                )
                .why("browsers do not trust Rampart's local CA: users see certificate warnings and learn to click through them")
                .fix("tls = \"acme\" with an [acme] email, or tls = { cert = \"...\", key = \"...\" }")
                .at(at),
            );
        }
    }
    if let Some(admin) = f.admin
        && !admin.ip().is_loopback()
    {
        out.push(
            Finding::new(
                "front-admin-public",
                Severity::Medium,
                format!("the admin listener ({admin}) is not on loopback"),
            )
            .why("/metrics reveals traffic, upstreams and bans to anyone who reaches it")
            .fix("[listen] admin = \"127.0.0.1:9180\"")
            .at(f.file.clone()),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> FrontFacts {
        FrontFacts {
            file: "rampart.toml".into(),
            http: Some("0.0.0.0:80".parse().unwrap()),
            https: "0.0.0.0:443".parse().unwrap(),
            admin: Some("127.0.0.1:9180".parse().unwrap()),
            sites: vec![FrontSite {
                hosts: vec!["erp.example.com".into()],
                tls_local: false,
                database_manager_allow: vec!["192.0.2.0/24".into()],
            }],
        }
    }

    fn ids(f: &FrontFacts) -> Vec<&'static str> {
        audit_front(f).into_iter().map(|f| f.id).collect()
    }

    #[test]
    fn good_front_has_no_findings() {
        assert!(ids(&facts()).is_empty());
    }

    #[test]
    fn each_rule_fires() {
        let mut f = facts();
        f.sites[0].database_manager_allow.push("::/0".into());
        assert_eq!(ids(&f), ["front-dbmanager-open"]);
        assert_eq!(audit_front(&f)[0].severity, Severity::High);
        let mut f = facts();
        f.sites[0].tls_local = true;
        assert_eq!(ids(&f), ["front-local-ca-public"]);
        f.https = "127.0.0.1:8443".parse().unwrap();
        assert!(
            ids(&f).is_empty(),
            "local CA on loopback is the embedded default"
        );
        let mut f = facts();
        f.admin = Some("0.0.0.0:9180".parse().unwrap());
        assert_eq!(ids(&f), ["front-admin-public"]);
    }
}
