//! The files `rampart init` writes: rampart.toml, a hardened odoo.conf,
//! the PostgreSQL roles, systemd units and a compose file.
//!
//! Generators are pure functions from [`InitOptions`] to file contents, so
//! tests read exactly what a user gets; [`write_files`] is the only part
//! that touches the disk, and it refuses to replace anything unless forced.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use crate::conf::{ConfError, OdooConf};
use crate::dbfilter::python_re_escape;
use crate::sizing::Plan;
use crate::template::{self as templates, render};
use rampart_config::atomic::write_atomic;

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

/// What [`write_files`] did with each file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// It did not exist.
    Created(PathBuf),
    /// It existed and `--force` replaced it.
    Replaced(PathBuf),
    /// Kept because it holds secrets in use (`.env`).
    Kept(PathBuf),
}

/// Why `rampart init` wrote nothing, or stopped partway.
#[derive(Debug)]
pub enum InitError {
    /// Files exist and `--force` was not given; nothing was written.
    Exists(Vec<PathBuf>),
    /// A file could not be written: the file, and what the system said.
    Io(PathBuf, io::Error),
    /// The existing odoo.conf to edit is malformed.
    Conf(ConfError),
}

impl std::fmt::Display for InitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InitError::Exists(paths) => {
                let list: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
                write!(
                    f,
                    "{} already exist(s); nothing was written. Use --force to replace them (odoo.conf is then edited in place, keeping its comments and other keys)",
                    list.join(", ")
                )
            }
            InitError::Io(p, e) => write!(f, "cannot write {}: {e}", p.display()),
            InitError::Conf(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for InitError {}

/// Writes `files` into `dir`. Without `force`, any existing file (other
/// than kept ones) stops everything before a byte is written. Each file is
/// replaced atomically.
pub fn write_files(dir: &Path, files: &[GenFile], force: bool) -> Result<Vec<Written>, InitError> {
    if !force {
        let existing: Vec<PathBuf> = files
            .iter()
            .filter(|f| !f.keep_existing)
            .map(|f| dir.join(f.name))
            .filter(|p| p.exists())
            .collect();
        if !existing.is_empty() {
            return Err(InitError::Exists(existing));
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| InitError::Io(dir.to_path_buf(), e))?;
    let mut done = Vec::new();
    for f in files {
        let path = dir.join(f.name);
        let existed = path.exists();
        if existed && f.keep_existing {
            done.push(Written::Kept(path));
            continue;
        }
        write_atomic(&path, f.contents.as_bytes(), f.mode)
            .map_err(|e| InitError::Io(path.clone(), e))?;
        done.push(if existed {
            Written::Replaced(path)
        } else {
            Written::Created(path)
        });
    }
    Ok(done)
}

/// What to do after `init`, for a plain server and for compose.
pub fn next_steps(o: &InitOptions, dir: &Path) -> String {
    let d = dir.display();
    let mut s = String::new();
    let _ = writeln!(s, "Next steps on a server with systemd (files in {d}):");
    let steps = [
        format!("sudo -u postgres psql -f {d}/postgres-roles.sql"),
        "useradd --system --home /var/lib/odoo odoo; useradd --system --groups odoo rampart   (if they do not exist; in group odoo, rampart reads the filestore)".into(),
        "the binary at /usr/bin/rampart, where rampart.service runs it: the rampart .deb puts it there, else install -m 755 rampart /usr/bin/".into(),
        format!("install -d -o odoo -g odoo -m 750 {DATA_DIR} && install -o root -g odoo -m 640 {d}/odoo.conf /etc/odoo/odoo.conf"),
        format!(
            "sudo -u odoo odoo --config /etc/odoo/odoo.conf -d {} -i base --stop-after-init   (first start: creates the tables)",
            o.db
        ),
        format!("install -d /etc/rampart && install -o root -g rampart -m 640 {d}/rampart.toml /etc/rampart/rampart.toml"),
        "rampart check --config /etc/rampart/rampart.toml".into(),
        format!("install -m 644 {d}/odoo.service {d}/rampart.service /etc/systemd/system/ && systemctl daemon-reload"),
        "systemctl enable --now odoo rampart".into(),
        format!(
            "nft -c -f {d}/rampart.nft && nft -f {d}/rampart.nft   (firewall: 80/443 and SSH on {}; Odoo, PostgreSQL and the admin port from loopback only; see the file to keep it across reboots)",
            o.ssh_ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        format!(
            "point the DNS name {} at this server; ports 80 and 443 must reach it (ACME)",
            o.domain
        ),
        "rampart audit --odoo-conf /etc/odoo/odoo.conf --pg \"host=/run/postgresql user=postgres\" --config /etc/rampart/rampart.toml".into(),
        format!("rampart verify https://{}", o.domain),
    ];
    for (i, step) in steps.iter().enumerate() {
        let _ = writeln!(s, "  {:>2}. {step}", i + 1);
    }
    let _ = writeln!(
        s,
        "With containers instead: cd {d} && docker compose up -d   (then the audit and verify steps)"
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sizing::{self, Machine};

    fn opts(policy: RolePolicy, version: u32) -> InitOptions {
        InitOptions {
            domain: "erp.example.com".into(),
            email: "ops@example.com".into(),
            db: "erp".into(),
            odoo_version: version,
            policy,
            plan: sizing::plan(&Machine {
                cpus: 4,
                users: None,
                ram: Some(16 << 30),
                heavy_ratio: sizing::DEFAULT_HEAVY_RATIO,
            }),
            admin_passwd_hash: "$pbkdf2-sha512$600000$c2FsdA$aGFzaA".into(),
            ssh_ports: vec![22],
        }
    }

    #[test]
    fn checks_input() {
        assert!(check_options("erp.example.com", "a@b.c", "erp", 18).is_ok());
        assert!(
            check_options("https://erp.example.com", "a@b.c", "erp", 18)
                .unwrap_err()
                .contains("--domain")
        );
        assert!(check_options("*.example.com", "a@b.c", "erp", 18).is_err());
        assert!(check_options("localhost", "a@b.c", "erp", 18).is_err());
        assert!(
            check_options("erp.example.com", "nobody", "erp", 18)
                .unwrap_err()
                .contains("--email")
        );
        assert!(
            check_options("erp.example.com", "a@b.c", "_x", 18)
                .unwrap_err()
                .contains("--db")
        );
        assert!(check_options("erp.example.com", "a@b.c", "erp;drop", 18).is_err());
        assert!(
            check_options("erp.example.com", "a@b.c", "erp", 15)
                .unwrap_err()
                .contains("16, 17, 18 or 19")
        );
        assert_eq!(default_db_name("erp.example.com"), "erp");
        assert_eq!(default_db_name("my-erp.example.com"), "my_erp");
    }

    #[test]
    fn odoo_conf_is_hardened_and_passes_the_audit() {
        let o = opts(RolePolicy::Strict, 18);
        let text = odoo_conf(&o, None).render();
        let conf = OdooConf::parse(Path::new("odoo.conf"), &text).unwrap();
        for (k, v) in [
            ("list_db", "False"),
            ("db_name", "erp"),
            ("proxy_mode", "True"),
            ("http_interface", "127.0.0.1"),
            ("gevent_port", "8072"),
            ("workers", "8"),
            ("max_cron_threads", "1"),
            ("without_demo", "all"),
            ("data_dir", "/var/lib/odoo"),
        ] {
            assert_eq!(conf.get(k).map(|x| x.value), Some(v), "{k} in\n{text}");
        }
        assert!(conf.get("longpolling_port").is_none());
        assert!(
            conf.get("dbfilter").is_none(),
            "strict: Odoo's role owns no database, so no dbfilter"
        );
        let flexible = odoo_conf(&opts(RolePolicy::Flexible, 18), None);
        assert_eq!(flexible.get("dbfilter").map(|v| v.value), Some("^erp$"));
        assert_eq!(flexible.get("db_name").map(|v| v.value), Some("erp"));
        // A real hash so the audit sees a strong one.
        let mut o = o;
        o.admin_passwd_hash =
            crate::passwd::Pbkdf2Hash::with_salt("x", b"0123456789abcdef", 100_000).to_string();
        let conf = odoo_conf(&o, None);
        let findings = crate::audit::audit_conf(&conf, Some(0o640));
        assert!(findings.is_empty(), "{findings:#?}");
    }

    #[test]
    fn evented_port_key_by_version() {
        assert_eq!(evented_port_key(16).0, "gevent_port");
        assert_eq!(evented_port_key(19).0, "gevent_port");
        assert_eq!(evented_port_key(15).0, "longpolling_port");
        let text = odoo_conf(&opts(RolePolicy::Strict, 16), None).render();
        assert!(text.contains("gevent_port = 8072"));
        assert!(text.contains("longpolling_port in other Odoo versions"));
    }

    #[test]
    fn editing_an_existing_conf_keeps_comments_and_other_keys() {
        let before =
            "; mine\n[options]\n# keep me\nlongpolling_port = 8072\nworkers = 2\nmy_key = 1\n";
        let existing = OdooConf::parse(Path::new("odoo.conf"), before).unwrap();
        let text = odoo_conf(&opts(RolePolicy::Strict, 18), Some(existing)).render();
        assert!(text.starts_with("; mine\n[options]\n# keep me\n"), "{text}");
        assert!(
            text.contains("\nworkers = 8\nmy_key = 1\n"),
            "edited in place, order kept:\n{text}"
        );
        assert!(!text.contains("longpolling_port ="), "{text}");
        assert!(text.contains("list_db = False"));
    }

    #[test]
    fn roles_sql_by_policy() {
        let strict = postgres_roles_sql(&opts(RolePolicy::Strict, 18));
        assert!(strict.contains("NOSUPERUSER NOCREATEDB NOCREATEROLE"));
        assert!(strict.contains("CREATE DATABASE \"erp\" OWNER odoo_admin"));
        assert!(strict.contains("GRANT USAGE, CREATE ON SCHEMA public TO odoo"));
        let flexible = postgres_roles_sql(&opts(RolePolicy::Flexible, 18));
        assert!(flexible.contains("NOSUPERUSER CREATEDB NOCREATEROLE"));
        assert!(!flexible.contains("CREATE DATABASE"));
    }

    #[test]
    fn units_and_compose_carry_the_hardening() {
        let o = opts(RolePolicy::Strict, 17);
        let odoo = odoo_service(&o);
        for l in [
            "User=odoo",
            "ProtectSystem=strict",
            "ReadWritePaths=/var/lib/odoo /var/log/odoo",
            "NoNewPrivileges=yes",
            "PrivateTmp=yes",
            "ProtectHome=yes",
        ] {
            assert!(odoo.contains(l), "{l} missing in odoo.service");
        }
        let rampart = rampart_service();
        for l in [
            "Type=notify",
            "AmbientCapabilities=CAP_NET_BIND_SERVICE",
            "ExecReload=/bin/kill -HUP $MAINPID",
            "StateDirectory=rampart",
            "WatchdogSec=30s",
            "RuntimeDirectory=rampart",
            "User=rampart",
            "NoNewPrivileges=yes",
        ] {
            assert!(rampart.contains(l), "{l} missing in rampart.service");
        }
        let compose = compose_yaml(&o);
        assert!(compose.contains("image: odoo:17"));
        assert!(compose.contains("image: postgres:16"));
        // Only Rampart publishes ports.
        assert_eq!(compose.matches("ports:").count(), 1);
        let ports_at = compose.find("ports:").unwrap();
        assert!(compose[..ports_at].rfind("rampart:").is_some());
        assert!(compose[..ports_at].rfind("odoo:\n").is_none());
    }

    #[test]
    fn rampart_toml_names_the_site() {
        let t = rampart_toml(&opts(RolePolicy::Strict, 18));
        for l in [
            "http = \"0.0.0.0:80\"",
            "https = \"0.0.0.0:443\"",
            "[acme]\n# Let's Encrypt writes here about expiring certificates.\nemail = \"ops@example.com\"",
            "hosts = [\"erp.example.com\"]",
            "tls = \"acme\"",
            "odoo = [\"127.0.0.1:8069\"]",
            "websocket = [\"127.0.0.1:8072\"]",
        ] {
            assert!(t.contains(l), "{l} missing in\n{t}");
        }
    }

    #[test]
    fn rampart_toml_escapes_what_it_quotes() {
        let mut o = opts(RolePolicy::Strict, 18);
        o.email = "ops@example.com\n[evil]\nx = \"1\"\t\\".into();
        let t = rampart_toml(&o);
        let v: toml::Table = t.parse().unwrap_or_else(|e| panic!("{e}\n{t}"));
        assert_eq!(v["acme"]["email"].as_str(), Some(o.email.as_str()));
        assert!(v.get("evil").is_none(), "{t}");
    }

    #[test]
    fn write_files_never_overwrites_without_force() {
        let dir = std::env::temp_dir().join(format!("rampart-init-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let files = generate(&opts(RolePolicy::Strict, 18), None);
        let first = write_files(&dir, &files, false).unwrap();
        assert!(first.iter().all(|w| matches!(w, Written::Created(_))));
        let env_before = std::fs::read_to_string(dir.join(".env")).unwrap();
        std::fs::write(dir.join("odoo.conf"), "mine").unwrap();
        match write_files(&dir, &files, false) {
            Err(InitError::Exists(p)) => assert_eq!(p.len(), 7),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            std::fs::read_to_string(dir.join("odoo.conf")).unwrap(),
            "mine"
        );
        let again = write_files(&dir, &files, true).unwrap();
        assert!(again.contains(&Written::Kept(dir.join(".env"))));
        assert!(again.contains(&Written::Replaced(dir.join("odoo.conf"))));
        assert_eq!(
            std::fs::read_to_string(dir.join(".env")).unwrap(),
            env_before
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
