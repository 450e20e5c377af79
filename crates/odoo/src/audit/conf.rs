//! Offline rules over odoo.conf and its file mode.

use super::{Finding, Severity};
use crate::conf::{OdooConf, parse_bool};
use crate::dbfilter;
use crate::passwd::{self, Pbkdf2Hash, Stored};

const LIMIT_KEYS: [&str; 5] = [
    "limit_memory_soft",
    "limit_memory_hard",
    "limit_request",
    "limit_time_cpu",
    "limit_time_real",
];

/// Audits `conf`, a server that Rampart (or another proxy) fronts.
/// `mode`: the file's permission bits, when known.
pub fn audit_conf(conf: &OdooConf, mode: Option<u32>) -> Vec<Finding> {
    let file = conf.path().display().to_string();
    let at = |key: &str| match conf.get(key) {
        Some(v) => format!("{file}:{}", v.line),
        None => file.clone(),
    };
    let set = |key: &str| {
        conf.get(key)
            .map(|v| v.value.trim())
            .filter(|v| !v.is_empty() && *v != "False")
    };
    let mut out = Vec::new();

    // The master password guards database create, drop, backup and restore.
    let mut plaintext_secret = false;
    match set("admin_passwd") {
        None => out.push(
            Finding::new("admin-passwd-missing", Severity::High, "admin_passwd is not set")
                .why("the master password guards creating, dropping, backing up and restoring databases; without it old Odoo versions accept \"admin\" and newer ones let the first visitor of the database manager choose it")
                .fix("rampart passwd, and put its admin_passwd line in odoo.conf")
                .at(at("admin_passwd")),
        ),
        Some(v) => match passwd::classify(v) {
            Stored::Plaintext => {
                plaintext_secret = true;
                let (id, what) = if v == "admin" {
                    ("admin-passwd-default", "admin_passwd is \"admin\", the well-known default")
                } else {
                    ("admin-passwd-plaintext", "admin_passwd is stored in plain text")
                };
                out.push(
                    Finding::new(id, Severity::High, what)
                        .why("anyone who reads odoo.conf, a backup of it or a support ticket can drop or download every database")
                        .fix("rampart passwd, and replace the line with the hashed one it prints")
                        .at(at("admin_passwd")),
                );
            }
            Stored::UnknownHash => out.push(
                Finding::new("admin-passwd-unknown-hash", Severity::Low, "admin_passwd is a hash Rampart cannot check")
                    .why("only passlib's pbkdf2-sha512 format, the one Odoo writes, is understood")
                    .fix("rampart passwd, to replace it with a 600000-round pbkdf2-sha512 hash")
                    .at(at("admin_passwd")),
            ),
            Stored::Hashed(h) => out.extend(audit_hash(&h, &at("admin_passwd"))),
        },
    }

    if conf.get("list_db").is_none_or(|v| parse_bool(v.value)) {
        out.push(
            Finding::new("list-db-on", Severity::Medium, "list_db is on (Odoo's default)")
                .why("the database manager and /web/database/list show every database name and offer create, drop, backup and restore to anyone who reaches them")
                .fix("list_db = False")
                .at(at("list_db")),
        );
    }

    match set("dbfilter") {
        // Odoo 14+ then serves exactly the db_name list: what the strict
        // role policy needs (see `init::odoo_conf`).
        None if set("db_name").is_some() => {}
        None => out.push(
            Finding::new("dbfilter-missing", Severity::Medium, "no dbfilter and no db_name: every database is served to every host")
                .why("a copy or test database on the same PostgreSQL becomes reachable from the public site")
                .fix("dbfilter = ^yourdb$ (or ^%d$ to pick the database by host name)")
                .at(file.clone()),
        ),
        Some(f) => {
            if let Err(e) = dbfilter::compile_match(&dbfilter::expand(f, &dbfilter::host_parts("example.com"))) {
                out.push(
                    Finding::new("dbfilter-invalid", Severity::Medium, e)
                        .why("Odoo fails on every request when its dbfilter does not compile")
                        .fix("dbfilter = ^yourdb$")
                        .at(at("dbfilter")),
                );
            } else if !dbfilter::end_anchored(f) {
                out.push(
                    Finding::new("dbfilter-unanchored", Severity::Medium, format!("dbfilter {f:?} does not end with $"))
                        .why("Odoo anchors the filter at the start only (re.match), so a filter for \"prod\" also serves \"prod_copy\" and \"prod_test\"")
                        .fix(format!("dbfilter = {}$", if f.starts_with('^') { f.to_string() } else { format!("^{f}") }))
                        .at(at("dbfilter")),
                );
            }
        }
    }

    if !conf.get_bool("proxy_mode").unwrap_or(false) {
        out.push(
            Finding::new("proxy-mode-off", Severity::Medium, "proxy_mode is off behind a proxy")
                .why("Odoo then sees every client as the proxy's address: its login cooldown locks everyone out together, logs name no one, and links are built with http://")
                .fix("proxy_mode = True")
                .at(at("proxy_mode")),
        );
    }

    let workers: u32 = set("workers").and_then(|w| w.parse().ok()).unwrap_or(0);
    if workers == 0 {
        out.push(
            Finding::new("workers-zero", Severity::Medium, "workers = 0: Odoo runs threaded in one process")
                .why("no memory or time limits are enforced, one runaway request can take the server down, and the websocket needs the evented worker that only multi-process mode starts")
                .fix("rampart plan --cpus N --users N, and copy its workers and limit lines")
                .at(at("workers")),
        );
    } else {
        let missing: Vec<&str> = LIMIT_KEYS
            .into_iter()
            .filter(|k| set(k).is_none())
            .collect();
        if !missing.is_empty() {
            out.push(
                Finding::new("limits-missing", Severity::Low, format!("limits not set: {}", missing.join(", ")))
                    .why("Odoo's defaults apply, which may not fit this machine: a worker that leaks memory or loops is recycled late or never")
                    .fix("rampart plan prints the lines")
                    .at(file.clone()),
            );
        }
    }

    // xmlrpc_interface is the name before Odoo 11; http_interface wins.
    let iface_key = if conf.get("http_interface").is_some() {
        "http_interface"
    } else {
        "xmlrpc_interface"
    };
    let iface = set(iface_key).unwrap_or("");
    if !is_loopback(iface) {
        let shown = if iface.is_empty() {
            "every interface".to_string()
        } else {
            iface.to_string()
        };
        out.push(
            Finding::new("odoo-not-loopback", Severity::High, format!("Odoo listens on {shown}, beside the proxy"))
                .why("clients that reach port 8069/8072 directly bypass the proxy's database-manager block, rate limits, bans and TLS")
                .fix("http_interface = 127.0.0.1")
                .at(at(iface_key)),
        );
    }

    if conf.get("longpolling_port").is_some() {
        out.push(
            Finding::new("longpolling-port-name", Severity::Info, "longpolling_port is the name before Odoo 16")
                .why("Odoo 16+ reads gevent_port and only warns about the old name; two names for one port confuse readers")
                .fix("on Odoo 16+: gevent_port = 8072 and remove longpolling_port")
                .at(at("longpolling_port")),
        );
    }

    if conf
        .get("without_demo")
        .is_none_or(|v| !parse_bool(v.value))
    {
        out.push(
            Finding::new("demo-allowed", Severity::Low, "without_demo is not set: new databases may get demo data")
                .why("demo data brings demo users and sample records into what becomes a production database")
                .fix("without_demo = all")
                .at(at("without_demo")),
        );
    }

    if let Some(mode) = mode {
        let db_password = set("db_password").is_some();
        if mode & 0o022 != 0 {
            out.push(
                Finding::new("conf-writable-by-others", Severity::High, format!("odoo.conf is writable by group or others (mode {:o})", mode & 0o7777))
                    .why("whoever can change odoo.conf can point addons_path at their own code and run it as Odoo")
                    .fix(format!("chmod 640 {file}; chown root:odoo {file}"))
                    .at(file.clone()),
            );
        }
        if mode & 0o004 != 0 {
            let sev = if plaintext_secret || db_password {
                Severity::High
            } else {
                Severity::Medium
            };
            out.push(
                Finding::new(
                    "conf-readable-by-others",
                    sev,
                    format!(
                        "odoo.conf is readable by every local user (mode {:o})",
                        mode & 0o7777
                    ),
                )
                .why("it holds the master password hash and often the database password")
                .fix(format!("chmod 640 {file}; chown root:odoo {file}"))
                .at(file.clone()),
            );
        }
    }
    out
}

/// Rules for a parsed pbkdf2-sha512 hash: too few rounds, or "admin".
pub fn audit_hash(h: &Pbkdf2Hash, at: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    if h.verify("admin") {
        out.push(
            Finding::new(
                "admin-passwd-default",
                Severity::High,
                "admin_passwd is the hash of \"admin\", the well-known default",
            )
            .why("anyone can drop or download every database through the database manager")
            .fix("rampart passwd, and replace the line with the one it prints")
            .at(at),
        );
    }
    if h.rounds < passwd::WEAK_ROUNDS {
        out.push(
            Finding::new("admin-passwd-weak-hash", Severity::Medium, format!("admin_passwd is hashed with only {} rounds", h.rounds))
                .why(format!("fewer than {} PBKDF2 rounds make guessing the password from a leaked odoo.conf cheap; Odoo 17+ uses {}", passwd::WEAK_ROUNDS, passwd::DEFAULT_ROUNDS))
                .fix("rampart passwd, and replace the line with the one it prints")
                .at(at),
        );
    }
    out
}

fn is_loopback(iface: &str) -> bool {
    iface == "localhost"
        || iface
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn ids(text: &str, mode: Option<u32>) -> Vec<&'static str> {
        let conf = OdooConf::parse(Path::new("/etc/odoo/odoo.conf"), text).unwrap();
        audit_conf(&conf, mode).into_iter().map(|f| f.id).collect()
    }

    fn hardened() -> String {
        let h = Pbkdf2Hash::with_salt("long random one", b"0123456789abcdef", 100_000);
        format!(
            "[options]\nadmin_passwd = {h}\nlist_db = False\ndbfilter = ^erp$\nproxy_mode = True\nworkers = 4\n\
             limit_memory_soft = 1\nlimit_memory_hard = 2\nlimit_request = 3\nlimit_time_cpu = 4\nlimit_time_real = 5\n\
             http_interface = 127.0.0.1\nwithout_demo = all\n"
        )
    }

    #[test]
    fn hardened_conf_has_no_findings() {
        assert_eq!(ids(&hardened(), Some(0o640)), Vec::<&str>::new());
    }

    #[test]
    fn stock_conf_gets_every_finding() {
        let got = ids("[options]\ndb_password = odoo\n", Some(0o644));
        for id in [
            "admin-passwd-missing",
            "list-db-on",
            "dbfilter-missing",
            "proxy-mode-off",
            "workers-zero",
            "odoo-not-loopback",
            "demo-allowed",
            "conf-readable-by-others",
        ] {
            assert!(got.contains(&id), "{id} missing from {got:?}");
        }
        let conf = OdooConf::parse(Path::new("o.conf"), "[options]\ndb_password = x\n").unwrap();
        let f = audit_conf(&conf, Some(0o644));
        let readable = f
            .iter()
            .find(|f| f.id == "conf-readable-by-others")
            .unwrap();
        assert_eq!(
            readable.severity,
            Severity::High,
            "a readable database password is high"
        );
    }

    #[test]
    fn admin_passwd_variants() {
        let with = |v: &str| {
            ids(
                &hardened().replace(
                    &hardened().lines().nth(1).unwrap().to_string(),
                    &format!("admin_passwd = {v}"),
                ),
                None,
            )
        };
        assert_eq!(with("admin"), ["admin-passwd-default"]);
        assert_eq!(with("hunter2"), ["admin-passwd-plaintext"]);
        let weak = Pbkdf2Hash::with_salt("x", b"saltsaltsaltsalt", 5000).to_string();
        assert_eq!(with(&weak), ["admin-passwd-weak-hash"]);
        let admin_hash = Pbkdf2Hash::with_salt("admin", b"saltsaltsaltsalt", 1000).to_string();
        assert_eq!(
            with(&admin_hash),
            ["admin-passwd-default", "admin-passwd-weak-hash"]
        );
        assert_eq!(
            with("$6$rounds=5000$abc$def"),
            ["admin-passwd-unknown-hash"]
        );
    }

    #[test]
    fn dbfilter_rules() {
        let with = |v: &str| ids(&hardened().replace("dbfilter = ^erp$", v), None);
        assert_eq!(with("dbfilter = ^erp"), ["dbfilter-unanchored"]);
        assert_eq!(with("dbfilter = ^%d$"), Vec::<&str>::new());
        assert_eq!(with("dbfilter = ^(erp"), ["dbfilter-invalid"]);
        assert_eq!(with("db_name = erp"), Vec::<&str>::new());
        assert_eq!(with(""), ["dbfilter-missing"]);
    }

    #[test]
    fn interface_rules() {
        let with = |v: &str| ids(&hardened().replace("http_interface = 127.0.0.1", v), None);
        assert_eq!(with("http_interface = ::1"), Vec::<&str>::new());
        assert_eq!(with("http_interface = localhost"), Vec::<&str>::new());
        assert_eq!(with("http_interface = 0.0.0.0"), ["odoo-not-loopback"]);
        assert_eq!(with("http_interface ="), ["odoo-not-loopback"]);
        assert_eq!(with("xmlrpc_interface = 127.0.0.1"), Vec::<&str>::new());
    }

    #[test]
    fn old_evented_port_name_is_noted() {
        assert_eq!(
            ids(&format!("{}longpolling_port = 8072\n", hardened()), None),
            ["longpolling-port-name"]
        );
    }

    #[test]
    fn file_mode_rules() {
        assert_eq!(ids(&hardened(), Some(0o644)), ["conf-readable-by-others"]);
        assert_eq!(ids(&hardened(), Some(0o660)), ["conf-writable-by-others"]);
        assert_eq!(ids(&hardened(), Some(0o600)), Vec::<&str>::new());
    }

    #[test]
    fn workers_and_limits() {
        let h = hardened();
        assert_eq!(
            ids(&h.replace("workers = 4", "workers = 0"), None),
            ["workers-zero"]
        );
        assert_eq!(
            ids(&h.replace("limit_request = 3\n", ""), None),
            ["limits-missing"]
        );
    }

    #[test]
    fn findings_point_at_the_line() {
        let conf = OdooConf::parse(
            Path::new("/etc/odoo/odoo.conf"),
            "[options]\n\nlist_db = True\n",
        )
        .unwrap();
        let f = audit_conf(&conf, None);
        let list = f.iter().find(|f| f.id == "list-db-on").unwrap();
        assert_eq!(list.at.as_deref(), Some("/etc/odoo/odoo.conf:3"));
    }
}
