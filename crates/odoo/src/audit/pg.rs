//! Live rules against PostgreSQL (`rampart audit --pg DSN`): the role Odoo
//! connects as, who owns the databases, and what is inside each Odoo
//! database (demo data, an `admin` login, a default password).
//!
//! The DSN should be an administrator's (e.g. `postgres` over the local
//! socket): reading `res_users.password` and every database needs it.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls};

use super::{Finding, Severity};
use crate::passwd::{self, Stored};

/// What to check.
#[derive(Debug, Clone)]
pub struct PgAudit {
    /// libpq style: `host=/run/postgresql user=postgres` or `postgresql://...`.
    pub dsn: String,
    /// The role Odoo connects as (odoo.conf `db_user`); the DSN's user when
    /// `None`.
    pub role: Option<String>,
    /// The flexible policy lets Odoo create (and so own) its databases.
    pub flexible: bool,
    /// odoo.conf sets a dbfilter: Odoo then sees only databases its role owns.
    pub dbfilter: bool,
}

/// Why the PostgreSQL checks could not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgError {
    /// The DSN does not parse.
    Dsn(String),
    /// PostgreSQL is unreachable or refused us: names the address.
    Connect {
        /// The address tried.
        target: String,
        /// What PostgreSQL or the connection said.
        message: String,
    },
    /// A check's query failed.
    Query {
        /// The address of the server.
        target: String,
        /// What PostgreSQL said.
        message: String,
    },
}

impl fmt::Display for PgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PgError::Dsn(m) => write!(f, "invalid --pg connection string: {m}"),
            PgError::Connect { target, message } => {
                write!(f, "cannot connect to PostgreSQL at {target}: {message}")
            }
            PgError::Query { target, message } => write!(f, "PostgreSQL at {target}: {message}"),
        }
    }
}

impl std::error::Error for PgError {}

/// The findings and the databases that were looked into.
pub fn audit_pg(a: &PgAudit) -> Result<(Vec<Finding>, Vec<String>), PgError> {
    let (config, role, rt) = prepare(&a.dsn, a.role.as_deref())?;
    rt.block_on(run(config, role, a.flexible, a.dbfilter))
}

/// The databases Odoo's `list_dbs` finds when a dbfilter is set (or no
/// db_name): those owned by its role, not templates, accepting connections,
/// other than `postgres` and `template0` (Odoo's default db_template).
pub fn odoo_list_dbs(dsn: &str, role: Option<&str>) -> Result<Vec<String>, PgError> {
    let (config, role, rt) = prepare(dsn, role)?;
    rt.block_on(async {
        let target = describe(&config);
        let client = connect(&config).await.map_err(|message| PgError::Connect {
            target: target.clone(),
            message,
        })?;
        let rows = client
            .query(
                "SELECT datname::text FROM pg_database WHERE datdba = (SELECT oid FROM pg_roles WHERE rolname = $1) \
                 AND NOT datistemplate AND datallowconn AND datname NOT IN ('postgres', 'template0') ORDER BY datname",
                &[&role],
            )
            .await
            .map_err(|e| PgError::Query {
                target,
                message: error_text(&e),
            })?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    })
}

/// The parsed DSN (with a connect timeout), the role Odoo uses, a runtime.
fn prepare(
    dsn: &str,
    role: Option<&str>,
) -> Result<(Config, String, tokio::runtime::Runtime), PgError> {
    let mut config = Config::from_str(dsn).map_err(|e| PgError::Dsn(e.to_string()))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    let Some(role) = role
        .map(str::to_string)
        .or_else(|| config.get_user().map(str::to_string))
    else {
        return Err(PgError::Dsn(
            "no user in the DSN and no db_user in odoo.conf: say which role Odoo uses".into(),
        ));
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| PgError::Connect {
            target: describe(&config),
            message: format!("cannot start the runtime: {e}"),
        })?;
    Ok((config, role, rt))
}

async fn run(
    config: Config,
    role: String,
    flexible: bool,
    dbfilter: bool,
) -> Result<(Vec<Finding>, Vec<String>), PgError> {
    let target = describe(&config);
    let client = connect(&config).await.map_err(|message| PgError::Connect {
        target: target.clone(),
        message,
    })?;
    let q = |e: tokio_postgres::Error| PgError::Query {
        target: target.clone(),
        message: error_text(&e),
    };
    let mut out = Vec::new();

    let rows = client
        .query(
            "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = $1",
            &[&role],
        )
        .await
        .map_err(q)?;
    match rows.first() {
        None => out.push(
            Finding::new(
                "pg-role-missing",
                Severity::Info,
                format!("role {role:?} does not exist on {target}"),
            )
            .why("the role checks need the role Odoo connects as")
            .fix("pass the role with --db-user, or --odoo-conf with its db_user"),
        ),
        Some(r) => {
            let (superuser, createdb, createrole): (bool, bool, bool) =
                (r.get(0), r.get(1), r.get(2));
            if superuser {
                out.push(
                    Finding::new("pg-role-superuser", Severity::High, format!("Odoo's role {role:?} is a PostgreSQL superuser"))
                        .why("a superuser can read and write files and run programs as the postgres OS user (COPY ... PROGRAM): one SQL injection or a stolen master password becomes a shell")
                        .fix(format!("ALTER ROLE \"{role}\" NOSUPERUSER; (rampart init writes postgres-roles.sql)")),
                );
            }
            if createrole {
                out.push(
                    Finding::new(
                        "pg-role-createrole",
                        Severity::Medium,
                        format!("Odoo's role {role:?} can create roles"),
                    )
                    .why("CREATEROLE lets it make new roles and grant itself their rights")
                    .fix(format!("ALTER ROLE \"{role}\" NOCREATEROLE;")),
                );
            }
            if createdb && !flexible {
                out.push(
                    Finding::new("pg-role-createdb", Severity::Medium, format!("Odoo's role {role:?} can create databases"))
                        .why("with CREATEDB the database manager can create (and then drop) databases; the strict policy keeps database creation to an administrator")
                        .fix(format!("ALTER ROLE \"{role}\" NOCREATEDB; or audit with --flexible if Odoo must create databases")),
                );
            }
        }
    }

    let dbs = client
        .query(
            "SELECT datname::text, pg_get_userbyid(datdba)::text FROM pg_database \
             WHERE NOT datistemplate AND datallowconn ORDER BY datname",
            &[],
        )
        .await
        .map_err(q)?;
    let mut checked = Vec::new();
    for row in &dbs {
        let (db, owner): (String, String) = (row.get(0), row.get(1));
        if db == "postgres" {
            continue;
        }
        if owner == role && !flexible {
            out.push(
                Finding::new("pg-db-owned-by-odoo", Severity::Medium, format!("database {db:?} is owned by Odoo's role {role:?}"))
                    .why("the owner can drop the database; under the strict policy an administrator role owns it and Odoo gets only what it needs inside")
                    .fix(format!("ALTER DATABASE \"{db}\" OWNER TO odoo_admin; grant Odoo CONNECT, TEMP and CREATE on schema public (see postgres-roles.sql from rampart init); and in odoo.conf use db_name = {db} instead of a dbfilter"))
                    .at(format!("database {db}")),
            );
        }
        let mut db_config = config.clone();
        db_config.dbname(&db);
        match inspect_database(&db_config, &db).await {
            Ok(Some(findings)) => {
                if dbfilter && owner != role {
                    out.push(
                        Finding::new(
                            "pg-dbfilter-hides-db",
                            Severity::Medium,
                            format!("Odoo cannot find database {db:?}: odoo.conf has a dbfilter and {db:?} is owned by {owner:?}, not {role:?}"),
                        )
                        .why("with a dbfilter, Odoo picks databases only among those its role owns (list_dbs: datdba = current_user); visitors get no database")
                        .fix(format!("remove dbfilter and set db_name = {db} (Odoo then serves exactly db_name; the strict policy's way)"))
                        .at(format!("database {db}")),
                    );
                }
                checked.push(db);
                out.extend(findings);
            }
            Ok(None) => {}
            Err(message) => out.push(
                Finding::new(
                    "pg-db-uninspected",
                    Severity::Info,
                    format!("could not look into database {db:?}: {message}"),
                )
                .why("demo data and default passwords are checked inside each database")
                .fix("audit with an administrator's DSN (e.g. user=postgres)")
                .at(format!("database {db}")),
            ),
        }
    }
    Ok((out, checked))
}

/// `None` when `db` is not an Odoo database.
async fn inspect_database(config: &Config, db: &str) -> Result<Option<Vec<Finding>>, String> {
    let client = connect(config).await?;
    let e = |e: tokio_postgres::Error| error_text(&e);
    let is_odoo: bool = client
        .query_one(
            "SELECT to_regclass('ir_module_module') IS NOT NULL AND to_regclass('res_users') IS NOT NULL",
            &[],
        )
        .await
        .map_err(e)?
        .get(0);
    if !is_odoo {
        return Ok(None);
    }
    let mut out = Vec::new();
    let at = format!("database {db}");
    let demo: Vec<String> = client
        .query(
            "SELECT name::text FROM ir_module_module WHERE state = 'installed' AND demo ORDER BY name",
            &[],
        )
        .await
        .map_err(e)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if !demo.is_empty() {
        let shown: Vec<&str> = demo.iter().take(5).map(String::as_str).collect();
        let more = if demo.len() > 5 {
            format!(" and {} more", demo.len() - 5)
        } else {
            String::new()
        };
        out.push(
            Finding::new("pg-demo-data", Severity::Medium, format!("demo data is installed in {db:?} ({}{more})", shown.join(", ")))
                .why("demo data brings demo users with known passwords and sample partners, products and invoices into production")
                .fix("create a fresh database without demo data (without_demo = all) and move the real data there; demo data cannot be cleanly uninstalled")
                .at(at.clone()),
        );
    }
    let admins = client
        .query(
            "SELECT active, COALESCE(password, '')::text FROM res_users WHERE login = 'admin'",
            &[],
        )
        .await
        .map_err(e)?;
    for r in &admins {
        let (active, stored): (bool, String) = (r.get(0), r.get(1));
        if !active {
            continue;
        }
        let default_password = match passwd::classify(&stored) {
            Stored::Hashed(h) => h.verify("admin"),
            Stored::Plaintext => stored == "admin",
            Stored::UnknownHash => false,
        };
        if default_password {
            out.push(
                Finding::new("pg-admin-default-password", Severity::High, format!("the user \"admin\" in {db:?} still has the password \"admin\""))
                    .why("it is the first pair every scanner tries, and the admin user has every right")
                    .fix("log in as admin and change the password (Preferences > Account Security), or set a strong one in Settings > Users")
                    .at(at.clone()),
            );
        } else {
            out.push(
                Finding::new("pg-admin-login", Severity::Low, format!("a user with login \"admin\" exists in {db:?}"))
                    .why("a predictable login is half of a credential: brute-force attempts need only guess the password")
                    .fix("change the administrator's login to a personal e-mail address")
                    .at(at.clone()),
            );
        }
    }
    Ok(Some(out))
}

async fn connect(config: &Config) -> Result<Client, String> {
    let (client, connection) = config.connect(NoTls).await.map_err(|e| error_text(&e))?;
    tokio::spawn(async move {
        // The connection ends when the client is dropped; errors then surface
        // on the client's queries.
        let _ = connection.await;
    });
    Ok(client)
}

/// The server's message when there is one, else tokio-postgres's.
fn error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(inner) = src {
                s.push_str(": ");
                s.push_str(&inner.to_string());
                src = inner.source();
            }
            s
        }
    }
}

/// `host:port` list and database, for messages.
fn describe(c: &Config) -> String {
    let ports = c.get_ports();
    let hosts: Vec<String> = c
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match h {
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(dir) => format!("{}/.s.PGSQL.{port}", dir.display()),
            }
        })
        .collect();
    let hosts = if hosts.is_empty() {
        "localhost:5432".to_string()
    } else {
        hosts.join(",")
    };
    match c.get_dbname() {
        Some(db) => format!("{hosts} (database {db})"),
        None => hosts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_dsn_is_named() {
        let e = audit_pg(&PgAudit {
            dsn: "host=/tmp port=notaport".into(),
            role: Some("odoo".into()),
            flexible: false,
            dbfilter: false,
        })
        .unwrap_err();
        assert!(matches!(e, PgError::Dsn(_)), "{e}");
    }

    #[test]
    fn unreachable_server_names_the_address() {
        // A port nothing listens on: bind one, then free it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = audit_pg(&PgAudit {
            dsn: format!("host=127.0.0.1 port={port} user=postgres"),
            role: None,
            flexible: false,
            dbfilter: false,
        })
        .unwrap_err();
        assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
        assert!(matches!(e, PgError::Connect { .. }));
    }
}
