//! `rampart audit --pg` against a real PostgreSQL: roles made weak and
//! strong on purpose, a database carrying demo-data flags and an `admin`
//! user, and the role SQL `rampart init` writes, applied as a user would.

mod pg;

use rampart_odoo::audit::{Finding, PgAudit, Severity, audit_pg, odoo_list_dbs};
use rampart_odoo::init::{self, InitOptions, RolePolicy};
use rampart_odoo::passwd::Pbkdf2Hash;
use rampart_odoo::sizing;

use pg::Postgres;

/// The two tables the audit reads, shaped as in Odoo.
const ODOO_TABLES: &str = "\
CREATE TABLE ir_module_module (id serial PRIMARY KEY, name varchar NOT NULL, state varchar, demo boolean DEFAULT false);
CREATE TABLE res_users (id serial PRIMARY KEY, login varchar NOT NULL, password varchar, active boolean DEFAULT true);";

fn ids(findings: &[Finding]) -> Vec<&'static str> {
    findings.iter().map(|f| f.id).collect()
}

fn audit(pg: &Postgres, role: &str, flexible: bool) -> (Vec<Finding>, Vec<String>) {
    audit_with(pg, role, flexible, false)
}

fn audit_with(
    pg: &Postgres,
    role: &str,
    flexible: bool,
    dbfilter: bool,
) -> (Vec<Finding>, Vec<String>) {
    audit_pg(&PgAudit {
        dsn: pg.admin_dsn(),
        role: Some(role.into()),
        flexible,
        dbfilter,
    })
    .unwrap_or_else(|e| panic!("audit failed: {e}"))
}

#[test]
fn weak_role_demo_data_and_default_admin_are_found() {
    let pg = Postgres::start();
    pg.psql("postgres", "CREATE ROLE odoo LOGIN SUPERUSER CREATEDB");
    pg.psql("postgres", "CREATE DATABASE shop OWNER odoo");
    pg.psql("postgres", "CREATE DATABASE notodoo");
    pg.psql("shop", ODOO_TABLES);
    pg.psql(
        "shop",
        "INSERT INTO ir_module_module (name, state, demo) VALUES \
         ('base', 'installed', true), ('sale', 'installed', true), ('crm', 'uninstalled', true), ('web', 'installed', false)",
    );
    // Odoo stores user passwords as passlib pbkdf2-sha512 hashes.
    let admin_hash = Pbkdf2Hash::new("admin", 1000).to_string();
    pg.psql(
        "shop",
        &format!("INSERT INTO res_users (login, password) VALUES ('admin', '{admin_hash}')"),
    );

    let (findings, checked) = audit(&pg, "odoo", false);
    assert_eq!(checked, ["shop"], "only Odoo databases are looked into");
    // What Odoo's list_dbs would find: the databases its role owns.
    assert_eq!(
        odoo_list_dbs(&pg.admin_dsn(), Some("odoo")).unwrap(),
        ["shop"]
    );
    let got = ids(&findings);
    for id in [
        "pg-role-superuser",
        "pg-role-createdb",
        "pg-db-owned-by-odoo",
        "pg-demo-data",
        "pg-admin-default-password",
    ] {
        assert!(got.contains(&id), "{id} missing from {got:?}");
    }
    let sev = |id| findings.iter().find(|f| f.id == id).unwrap().severity;
    assert_eq!(sev("pg-role-superuser"), Severity::High);
    assert_eq!(sev("pg-admin-default-password"), Severity::High);
    let demo = findings.iter().find(|f| f.id == "pg-demo-data").unwrap();
    assert!(demo.what.contains("base, sale"), "{}", demo.what);
    assert!(
        !demo.what.contains("crm"),
        "an uninstalled module's flag does not count"
    );

    // Fix it the way the findings say; the audit follows.
    pg.psql("postgres", "ALTER ROLE odoo NOSUPERUSER");
    let strong = Pbkdf2Hash::new("a long and private one", 1000).to_string();
    pg.psql(
        "shop",
        &format!("UPDATE res_users SET password = '{strong}' WHERE login = 'admin'"),
    );
    pg.psql("shop", "UPDATE ir_module_module SET demo = false");
    let (findings, _) = audit(&pg, "odoo", false);
    assert_eq!(
        ids(&findings),
        ["pg-role-createdb", "pg-db-owned-by-odoo", "pg-admin-login"]
    );
    // The flexible policy accepts CREATEDB and owning databases.
    let (findings, _) = audit(&pg, "odoo", true);
    assert_eq!(ids(&findings), ["pg-admin-login"]);
    assert_eq!(findings[0].severity, Severity::Low);
}

fn init_options(policy: RolePolicy) -> InitOptions {
    InitOptions {
        domain: "erp.example.com".into(),
        email: "ops@example.com".into(),
        db: "erp".into(),
        odoo_version: 18,
        policy,
        plan: sizing::plan(&sizing::Machine {
            cpus: 2,
            users: None,
            ram: None,
            heavy_ratio: sizing::DEFAULT_HEAVY_RATIO,
        }),
        admin_passwd_hash: String::new(),
        ssh_ports: vec![22],
    }
}

#[test]
fn inits_strict_roles_sql_gives_a_clean_audit_and_odoo_still_works() {
    let pg = Postgres::start();
    // A weak role from before: the script must repair it, not just create.
    pg.psql("postgres", "CREATE ROLE odoo LOGIN SUPERUSER CREATEROLE");
    let sql = pg.dir.join("postgres-roles.sql");
    std::fs::write(
        &sql,
        init::postgres_roles_sql(&init_options(RolePolicy::Strict)),
    )
    .unwrap();
    let password = "odoo-tcp-password";
    pg.psql_file("postgres", &sql, &[("ODOO_DB_PASSWORD", password)]);
    // Run again: the script is idempotent.
    pg.psql_file("postgres", &sql, &[("ODOO_DB_PASSWORD", password)]);

    // Odoo's role logs in over TCP with the password from the environment
    // and can create its tables in the database it does not own.
    pg.psql_as("odoo", Some(password), "erp", &["-c", ODOO_TABLES]);
    let strong = Pbkdf2Hash::new("a long and private one", 1000).to_string();
    pg.psql_as(
        "odoo",
        Some(password),
        "erp",
        &[
            "-c",
            &format!("INSERT INTO res_users (login, password) VALUES ('admin', '{strong}')"),
        ],
    );
    // ... but cannot drop it, nor create another.
    let err = pg.psql_fails("odoo", Some(password), "postgres", "DROP DATABASE erp");
    assert!(err.contains("must be owner"), "{err}");
    let err = pg.psql_fails("odoo", Some(password), "postgres", "CREATE DATABASE other");
    assert!(err.contains("permission denied"), "{err}");
    let owner = pg.psql(
        "postgres",
        "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'erp'",
    );
    assert_eq!(owner.trim(), init::OWNER_ROLE);

    let (findings, checked) = audit(&pg, "odoo", false);
    assert_eq!(checked, ["erp"]);
    assert_eq!(ids(&findings), ["pg-admin-login"], "{findings:#?}");
    // Odoo's list_dbs, with a dbfilter set, sees only databases its role owns:
    // exactly what init avoids by writing db_name without a dbfilter.
    let owned = pg.psql_as(
        "odoo",
        Some(password),
        "postgres",
        &["-c", "SELECT count(*) FROM pg_database WHERE datdba = (SELECT usesysid FROM pg_user WHERE usename = current_user)"],
    );
    assert_eq!(owned.trim(), "0");
    let (findings, _) = audit_with(&pg, "odoo", false, true);
    assert_eq!(ids(&findings), ["pg-dbfilter-hides-db", "pg-admin-login"]);
    assert_eq!(
        odoo_list_dbs(&pg.admin_dsn(), Some("odoo")).unwrap(),
        Vec::<String>::new()
    );

    // The flexible script grants CREATEDB, which the strict audit reports.
    std::fs::write(
        &sql,
        init::postgres_roles_sql(&init_options(RolePolicy::Flexible)),
    )
    .unwrap();
    pg.psql_file("postgres", &sql, &[]);
    let (findings, _) = audit(&pg, "odoo", false);
    assert_eq!(ids(&findings), ["pg-role-createdb", "pg-admin-login"]);
    let (findings, _) = audit(&pg, "odoo", true);
    assert_eq!(ids(&findings), ["pg-admin-login"]);
}

#[test]
fn a_missing_role_and_the_dsn_user_default() {
    let pg = Postgres::start();
    let (findings, checked) = audit(&pg, "odoo", false);
    assert_eq!(ids(&findings), ["pg-role-missing"]);
    assert!(checked.is_empty());
    // Without a role, the DSN's user is checked: here a superuser.
    let (findings, _) = audit_pg(&PgAudit {
        dsn: pg.admin_dsn(),
        role: None,
        flexible: false,
        dbfilter: false,
    })
    .unwrap();
    assert!(
        ids(&findings).contains(&"pg-role-superuser"),
        "{findings:#?}"
    );
}
