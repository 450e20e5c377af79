//! The files `rampart init` writes: rampart.toml, a hardened odoo.conf,
//! the PostgreSQL roles, systemd units and a compose file.
//!
//! Generators are pure functions from [`InitOptions`] to file contents, so
//! tests read exactly what a user gets; [`write_files`] is the only part
//! that touches the disk, and it refuses to replace anything unless forced.
//!
//! This file holds the options and the generators; `write` puts their
//! files on disk and says what to do next.

use std::path::Path;

use crate::conf::OdooConf;
use crate::dbfilter::python_re_escape;
use crate::sizing::Plan;
use crate::template::{self as templates, render};

mod write;

pub use write::{InitError, Written, next_steps, write_files};

/// Odoo versions `init` writes for; the evented port's key changed in 16.
pub const SUPPORTED_VERSIONS: [u32; 4] = [16, 17, 18, 19];
/// Odoo's data directory (filestore and sessions) in the files `init` writes.
pub const DATA_DIR: &str = "/var/lib/odoo";
/// Where Debian's odoo package and the official image keep the addons.
pub const ADDONS_PATH: &str = "/usr/lib/python3/dist-packages/odoo/addons";
/// The PostgreSQL role Odoo connects as.
pub const ODOO_ROLE: &str = "odoo";
/// Owns the database under the strict policy, so Odoo's role cannot drop it.
pub const OWNER_ROLE: &str = "odoo_admin";

/// What Odoo's PostgreSQL role may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolePolicy {
    /// Odoo's role cannot create databases; an admin role owns the one it uses.
    Strict,
    /// Odoo's role may create (and own) databases; still not a superuser.
    Flexible,
}

/// What `rampart init` writes its files for.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The public host name Odoo is served under.
    pub domain: String,
    /// The ACME account's contact address.
    pub email: String,
    /// The database Odoo serves.
    pub db: String,
    /// The Odoo major version (one of [`SUPPORTED_VERSIONS`]).
    pub odoo_version: u32,
    /// The PostgreSQL role policy.
    pub policy: RolePolicy,
    /// Workers and limits for odoo.conf.
    pub plan: Plan,
    /// The `$pbkdf2-sha512$...` line value for admin_passwd.
    pub admin_passwd_hash: String,
    /// Where sshd listens, kept open by the firewall (`firewall::ssh_ports`).
    pub ssh_ports: Vec<u16>,
}

/// One file to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenFile {
    /// The file's name inside the output directory.
    pub name: &'static str,
    /// What it holds.
    pub contents: String,
    /// Unix permissions it is written with.
    pub mode: u32,
    /// Holds secrets of a running deployment: never replaced, even forced.
    pub keep_existing: bool,
}

/// Checks the user's input; the message names the option.
pub fn check_options(domain: &str, email: &str, db: &str, version: u32) -> Result<(), String> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if domain.len() > 253 || !domain.contains('.') || !domain.split('.').all(label_ok) {
        return Err(format!(
            "--domain {domain:?} is not a host name such as erp.example.com (no scheme, port, path or wildcard)"
        ));
    }
    let email_ok = email.split_once('@').is_some_and(|(u, d)| {
        !u.is_empty() && d.contains('.') && !email.contains([' ', '"', '\\', '<', '>'])
    });
    if !email_ok {
        return Err(format!("--email {email:?} is not an e-mail address"));
    }
    // Odoo's DBNAME_PATTERN.
    let db_ok = db.len() >= 2
        && db.as_bytes()[0].is_ascii_alphanumeric()
        && db
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !db_ok {
        return Err(format!(
            "--db {db:?} is not a database name Odoo accepts: letters, digits, '_', '.', '-', starting with a letter or digit"
        ));
    }
    if !SUPPORTED_VERSIONS.contains(&version) {
        return Err(format!(
            "--odoo-version {version}: rampart init writes for Odoo 16, 17, 18 or 19"
        ));
    }
    Ok(())
}

/// The database name `init` picks for a domain: its first label,
/// `erp.example.com` → `erp`, so `^%d$` would select it too.
pub fn default_db_name(domain: &str) -> String {
    let first = domain.split('.').next().unwrap_or("odoo");
    let name: String = first
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if name.len() < 2 {
        format!("odoo_{name}")
    } else {
        name
    }
}

/// The evented worker's port key: `gevent_port` from 16, `longpolling_port` before.
pub fn evented_port_key(version: u32) -> (&'static str, &'static str) {
    if version >= 16 {
        ("gevent_port", "longpolling_port")
    } else {
        ("longpolling_port", "gevent_port")
    }
}

/// Every file, in the order they are written and listed.
pub fn generate(o: &InitOptions, existing_odoo_conf: Option<OdooConf>) -> Vec<GenFile> {
    let file = |name, contents, mode| GenFile {
        name,
        contents,
        mode,
        keep_existing: false,
    };
    vec![
        file("rampart.toml", rampart_toml(o), 0o640),
        file(
            "odoo.conf",
            odoo_conf(o, existing_odoo_conf).render(),
            0o640,
        ),
        file("postgres-roles.sql", postgres_roles_sql(o), 0o644),
        file("odoo.service", odoo_service(o), 0o644),
        file("rampart.service", rampart_service(), 0o644),
        file("compose.yaml", compose_yaml(o), 0o644),
        file(
            "rampart.nft",
            crate::firewall::nftables(&o.domain, &o.ssh_ports),
            0o644,
        ),
        GenFile {
            name: ".env",
            contents: compose_env(),
            mode: 0o600,
            keep_existing: true,
        },
    ]
}

/// A TOML string literal, escaped by the toml crate (quotes, backslashes
/// and control characters: a newline in an address cannot start a key).
fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// The rampart.toml `init` writes.
pub fn rampart_toml(o: &InitOptions) -> String {
    render(
        templates::RAMPART_TOML,
        &[
            ("domain", &o.domain),
            ("email", &toml_str(&o.email)),
            ("host", &toml_str(&o.domain)),
            ("addons_path", &toml_str(ADDONS_PATH)),
            ("data_dir", &toml_str(DATA_DIR)),
        ],
    )
}

/// The hardened settings, each with why; applied to `existing` losslessly
/// (its comments, order and other keys stay), or to a fresh file.
pub fn odoo_conf(o: &InitOptions, existing: Option<OdooConf>) -> OdooConf {
    let fresh = existing.is_none();
    let mut conf = existing.unwrap_or_else(|| {
        let header = render(
            templates::ODOO_CONF,
            &[
                ("domain", &o.domain),
                ("odoo_version", &o.odoo_version.to_string()),
            ],
        );
        OdooConf::parse(Path::new("odoo.conf"), &header).expect("the header parses")
    });
    let (port_key, old_port_key) = evented_port_key(o.odoo_version);
    let sized = format!(
        "Sized by `rampart plan` for this machine ({} CPUs{}).",
        o.plan.cpus,
        o.plan
            .ram_mb
            .map(|m| format!(", {m} MB RAM"))
            .unwrap_or_default()
    );
    let mut settings: Vec<(&str, String, Option<String>)> = vec![
        (
            "admin_passwd",
            o.admin_passwd_hash.clone(),
            Some("The master password (database manager), as a passlib pbkdf2-sha512 hash; `rampart passwd` makes a new one.".into()),
        ),
        (
            "list_db",
            "False".into(),
            Some("Never list databases or offer the database manager (Rampart blocks /web/database/* as well).".into()),
        ),
        (
            "db_name",
            o.db.clone(),
            Some("Serve exactly this database whatever the Host header says.".into()),
        ),
        ("db_user", ODOO_ROLE.into(), Some("PostgreSQL role: not a superuser (see postgres-roles.sql).".into())),
        (
            "proxy_mode",
            "True".into(),
            Some("Rampart is the only client: trust its X-Forwarded-* headers and listen on loopback only.".into()),
        ),
        ("http_interface", "127.0.0.1".into(), None),
        ("http_port", "8069".into(), None),
        (
            port_key,
            "8072".into(),
            Some(format!("The evented worker for /websocket ({old_port_key} in other Odoo versions).")),
        ),
    ];
    for (i, (k, v)) in o.plan.conf_lines().into_iter().enumerate() {
        settings.push((k, v, (i == 0).then(|| sized.clone())));
    }
    settings.push((
        "without_demo",
        "all".into(),
        Some("No demo data in new databases.".into()),
    ));
    settings.push((
        "data_dir",
        DATA_DIR.into(),
        Some("Filestore and sessions.".into()),
    ));

    // With a dbfilter, Odoo looks for databases among those its role OWNS
    // (list_dbs: datdba = current_user); under the strict policy it owns
    // none and would find nothing. Without a dbfilter, Odoo serves exactly
    // the db_name list, no ownership asked. Under the flexible policy Odoo
    // owns its databases, and the dbfilter also guards ones it creates.
    match o.policy {
        RolePolicy::Strict => {
            conf.remove("dbfilter");
        }
        RolePolicy::Flexible => settings.insert(
            3,
            (
                "dbfilter",
                format!("^{}$", python_re_escape(&o.db)),
                Some("Also for databases Odoo creates later; `$` matters, Odoo anchors only the start.".into()),
            ),
        ),
    }
    // Two names for one port confuse Odoo and readers alike.
    conf.remove(old_port_key);
    for (key, value, comment) in settings {
        let is_new = conf.get(key).is_none();
        conf.set(key, &value);
        if let (true, Some(c)) = (is_new, comment) {
            conf.comment_before(key, &c);
        }
    }
    if fresh {
        conf.append_comments(&format!(
            "\n# Logs go to standard output (the journal, or `docker compose logs`);\n\
             # set logfile = /var/log/odoo/odoo.log to write a file instead.\n\
             # Odoo finds its own addons; add yours with addons_path = {ADDONS_PATH},/opt/odoo/addons\n"
        ));
    }
    conf
}

/// The SQL that creates Odoo's PostgreSQL roles under the chosen policy.
pub fn postgres_roles_sql(o: &InitOptions) -> String {
    let (policy, part) = match o.policy {
        RolePolicy::Strict => (
            "strict",
            render(
                templates::POSTGRES_ROLES_STRICT,
                &[
                    ("role", ODOO_ROLE),
                    ("owner", OWNER_ROLE),
                    // Validated by check_options; a quote would end the identifier.
                    ("db", &o.db.replace('"', "")),
                ],
            ),
        ),
        RolePolicy::Flexible => (
            "flexible",
            render(templates::POSTGRES_ROLES_FLEXIBLE, &[("role", ODOO_ROLE)]),
        ),
    };
    render(
        templates::POSTGRES_ROLES,
        &[
            ("domain", &o.domain),
            ("policy", policy),
            ("role", ODOO_ROLE),
            ("policy_part", part.strip_suffix('\n').unwrap_or(&part)),
        ],
    )
}

/// Why each sandboxing line is there is in systemd.exec(5); the ones left
/// out would break Odoo (MemoryDenyWriteExecute: wkhtmltopdf's JIT).
pub fn odoo_service(o: &InitOptions) -> String {
    render(
        templates::ODOO_SERVICE,
        &[
            ("odoo_version", &o.odoo_version.to_string()),
            ("domain", &o.domain),
            ("data_dir", DATA_DIR),
        ],
    )
}

/// Rampart's unit: the same file for every site (and the one the package
/// installs), so it has no placeholders.
pub fn rampart_service() -> String {
    templates::RAMPART_SERVICE.to_string()
}

/// The docker-compose.yml `init` writes.
pub fn compose_yaml(o: &InitOptions) -> String {
    render(
        templates::COMPOSE_YAML,
        &[
            ("odoo_version", &o.odoo_version.to_string()),
            ("domain", &o.domain),
            ("role", ODOO_ROLE),
        ],
    )
}

fn compose_env() -> String {
    render(
        templates::ENV,
        &[
            ("postgres_password", &crate::passwd::random_password(32)),
            ("odoo_db_password", &crate::passwd::random_password(32)),
        ],
    )
}

#[cfg(test)]
mod tests;
