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
    let before = "; mine\n[options]\n# keep me\nlongpolling_port = 8072\nworkers = 2\nmy_key = 1\n";
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
