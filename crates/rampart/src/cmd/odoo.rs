//! `rampart plan | passwd | init | dbfilter | audit`: wiring only; the
//! knowledge lives in the `rampart-odoo` crate.

use std::io::Read as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use rampart_config::ByteSize;
use rampart_odoo::audit::{self, FrontFacts, FrontSite, PgAudit, Report};
use rampart_odoo::conf::OdooConf;
use rampart_odoo::dbfilter;
use rampart_odoo::init::{self, InitError, InitOptions, RolePolicy, Written};
use rampart_odoo::passwd::{self, Pbkdf2Hash};
use rampart_odoo::sizing::{self, Machine};

use super::{CmdError, EXIT_FINDINGS, Outcome};

#[derive(clap::Args)]
pub struct PlanArgs {
    /// CPU cores for Odoo (default: this machine's).
    #[arg(long)]
    cpus: Option<u32>,
    /// Concurrent users at peak (default: size for what the CPUs allow).
    #[arg(long)]
    users: Option<u32>,
    /// The machine's RAM, e.g. 16GiB, to warn when it is short.
    #[arg(long, value_parser = parse_size)]
    ram: Option<ByteSize>,
    /// Share of heavy requests (reports, imports), 0 to 1.
    #[arg(long, default_value_t = sizing::DEFAULT_HEAVY_RATIO)]
    heavy_ratio: f64,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

fn parse_size(s: &str) -> Result<ByteSize, String> {
    s.parse()
}

pub fn plan(a: PlanArgs) -> Outcome {
    let machine = Machine {
        cpus: a.cpus.unwrap_or_else(|| sizing::this_machine().0),
        users: a.users,
        ram: a.ram.map(ByteSize::get),
        heavy_ratio: a.heavy_ratio,
    };
    if let Err(e) = sizing::check(&machine) {
        return Err(CmdError::usage(e));
    }
    let p = sizing::plan(&machine);
    if a.json {
        println!("{}", p.render_json());
    } else {
        print!("{}", p.render_text());
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct PasswdArgs {
    /// Hash the password read from standard input instead of making one.
    #[arg(long)]
    stdin: bool,
    /// PBKDF2 rounds (Odoo 17/18 use 600000).
    #[arg(long, default_value_t = passwd::DEFAULT_ROUNDS, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Print JSON: {"password": ..., "admin_passwd": ...}.
    #[arg(long)]
    json: bool,
}

pub fn passwd(a: PasswdArgs) -> Outcome {
    let (password, generated) = if a.stdin {
        let mut s = String::new();
        if let Err(e) = std::io::stdin().read_to_string(&mut s) {
            return Err(CmdError::usage(format!(
                "cannot read the password from standard input: {e}"
            )));
        }
        let p = s.trim_end_matches(['\r', '\n']).to_string();
        if p.is_empty() {
            return Err(CmdError::usage(
                "the password read from standard input is empty",
            ));
        }
        (p, false)
    } else {
        (passwd::random_password(24), true)
    };
    let hash = Pbkdf2Hash::new(&password, a.rounds).to_string();
    if a.json {
        println!(
            "{}",
            passwd::render_json(generated.then_some(password.as_str()), &hash)
        );
    } else {
        if generated {
            println!(
                "Master password (store it in your password manager; Odoo asks for it in the database manager):"
            );
            println!("  {password}");
            println!(
                "Put this line in odoo.conf under [options], replacing any admin_passwd line:"
            );
        }
        println!("admin_passwd = {hash}");
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct InitArgs {
    /// The public host name of the Odoo site, e.g. erp.example.com.
    #[arg(long)]
    domain: String,
    /// Contact address for the ACME (Let's Encrypt) account.
    #[arg(long)]
    email: String,
    /// The database Odoo serves (default: the domain's first label).
    #[arg(long)]
    db: Option<String>,
    /// Odoo major version: 16, 17, 18 or 19.
    #[arg(long, default_value_t = 18)]
    odoo_version: u32,
    /// Where to write the files.
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// Odoo's role cannot create databases; an admin role owns the database (default).
    #[arg(long, conflicts_with = "flexible")]
    strict: bool,
    /// Odoo's role may create databases (still not a superuser).
    #[arg(long)]
    flexible: bool,
    /// Concurrent users at peak, for the worker count.
    #[arg(long)]
    users: Option<u32>,
    /// Replace existing files (atomically); an existing odoo.conf is edited,
    /// keeping its comments and other keys.
    #[arg(long)]
    force: bool,
    /// The SSH port(s) the firewall keeps open (default: sshd_config's
    /// `Port` lines, else 22).
    #[arg(long = "ssh-port", value_name = "PORT")]
    ssh_port: Vec<u16>,
}

/// /etc/ssh/sshd_config and the files it usually includes (Debian).
fn sshd_config_text() -> String {
    let mut text = std::fs::read_to_string("/etc/ssh/sshd_config").unwrap_or_default();
    if let Ok(dir) = std::fs::read_dir("/etc/ssh/sshd_config.d") {
        let mut paths: Vec<_> = dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "conf"))
            .collect();
        paths.sort();
        for p in paths {
            text.push('\n');
            text.push_str(&std::fs::read_to_string(p).unwrap_or_default());
        }
    }
    text
}

pub fn init(a: InitArgs) -> Outcome {
    let db =
        a.db.clone()
            .unwrap_or_else(|| init::default_db_name(&a.domain));
    if let Err(e) = init::check_options(&a.domain, &a.email, &db, a.odoo_version) {
        return Err(CmdError::usage(e));
    }
    let (cpus, ram) = sizing::this_machine();
    let plan = sizing::plan(&Machine {
        cpus,
        users: a.users,
        ram,
        heavy_ratio: sizing::DEFAULT_HEAVY_RATIO,
    });
    let password = passwd::random_password(24);
    let opts = InitOptions {
        domain: a.domain.clone(),
        email: a.email.clone(),
        db,
        odoo_version: a.odoo_version,
        policy: if a.flexible {
            RolePolicy::Flexible
        } else {
            RolePolicy::Strict
        },
        plan,
        admin_passwd_hash: Pbkdf2Hash::new(&password, passwd::DEFAULT_ROUNDS).to_string(),
        ssh_ports: if a.ssh_port.is_empty() {
            rampart_odoo::firewall::ssh_ports(&sshd_config_text())
        } else {
            a.ssh_port.clone()
        },
    };
    // With --force an existing odoo.conf is edited, not replaced.
    let conf_path = a.out.join("odoo.conf");
    let existing = if a.force && conf_path.exists() {
        match OdooConf::load(&conf_path) {
            Ok(c) => Some(c),
            Err(e) => return Err(CmdError::usage(InitError::Conf(e))),
        }
    } else {
        None
    };
    let files = init::generate(&opts, existing);
    let written = match init::write_files(&a.out, &files, a.force) {
        Ok(w) => w,
        Err(e @ InitError::Exists(_)) => return Err(CmdError::usage(e)),
        Err(e) => return Err(CmdError::failure(e)),
    };
    for w in &written {
        match w {
            Written::Created(p) => println!("wrote    {}", p.display()),
            Written::Replaced(p) => println!("replaced {}", p.display()),
            Written::Kept(p) => println!("kept     {} (holds passwords in use)", p.display()),
        }
    }
    for w in &opts.plan.warnings {
        println!("warning: {w}");
    }
    println!();
    println!("Master password (shown once; odoo.conf holds only its hash):");
    println!("  {password}");
    println!();
    print!("{}", init::next_steps(&opts, &a.out));
    print!("{}", backup_receiver_steps());
    Ok(ExitCode::SUCCESS)
}

/// Off-site backups that this server cannot erase: the receiving side's
/// setup, printed with init's next steps.
fn backup_receiver_steps() -> String {
    let key = "ssh-ed25519 AAAA...this-server's-backup-key";
    format!(
        "\nOff-site backups this server cannot erase ([backup] in rampart.toml):\n           SFTP: make a key here (ssh-keygen -t ed25519 -f /etc/rampart/backup_key -N ''), create\n           blobs/ data/ index/ tmp/ wal/ in the receiver's backup directory, and put this line (with the\n           public key) in the receiving account's ~/.ssh/authorized_keys; it allows uploads only:\n             {}\n  {}",
        rampart_backup::sftp_authorized_keys_line(key, "/srv/rampart-backups"),
        rampart_backup::s3_object_lock_advice("BUCKET").replace('\n', "\n  ")
    )
}

#[derive(clap::Args)]
pub struct DbfilterArgs {
    /// The dbfilter, e.g. '^%d$' (default: the one in --odoo-conf).
    #[arg(long)]
    filter: Option<String>,
    /// Read dbfilter and db_name from this odoo.conf.
    #[arg(long, value_name = "PATH")]
    odoo_conf: Option<PathBuf>,
    /// The Host header a browser sends, e.g. www.mycompany.com.
    #[arg(long)]
    host: String,
    /// A database that exists (repeat for each).
    #[arg(long = "db", value_name = "NAME")]
    dbs: Vec<String>,
    /// Ask PostgreSQL for the databases, as Odoo does (those its role owns),
    /// instead of --db: an administrator's DSN, e.g. "host=/run/postgresql user=postgres".
    #[arg(long, value_name = "DSN", conflicts_with = "dbs")]
    pg: Option<String>,
    /// The role Odoo connects as, for --pg (default: odoo.conf's db_user, else the DSN's user).
    #[arg(long, value_name = "ROLE")]
    db_user: Option<String>,
    /// Odoo's db_name option, used only when no dbfilter is set.
    #[arg(long)]
    db_name: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn dbfilter(a: DbfilterArgs) -> Outcome {
    let conf = match a.odoo_conf.as_deref().map(OdooConf::load).transpose() {
        Ok(c) => c,
        Err(e) => return Err(CmdError::usage(e)),
    };
    let from_conf = |k: &str| {
        conf.as_ref()
            .and_then(|c| c.get(k).map(|v| v.value.to_string()))
            .filter(|v| v != "False")
    };
    let filter = a
        .filter
        .clone()
        .or_else(|| from_conf("dbfilter"))
        .unwrap_or_default();
    let db_name = a
        .db_name
        .clone()
        .or_else(|| from_conf("db_name"))
        .unwrap_or_default();
    if filter.is_empty() && db_name.is_empty() && a.odoo_conf.is_none() {
        return Err(CmdError::usage(
            "give --filter (e.g. '^%d$') or --odoo-conf",
        ));
    }
    let mut dbs = a.dbs.clone();
    let mut listed_from = None;
    if let Some(dsn) = &a.pg {
        // Odoo's list_dbs: the db_name list itself when there is no
        // dbfilter, else the databases its role owns.
        if filter.is_empty() && !db_name.is_empty() {
            dbs = db_name.split(',').map(|d| d.trim().to_string()).collect();
            listed_from =
                Some("db_name (Odoo does not ask PostgreSQL without a dbfilter)".to_string());
        } else {
            let role = a.db_user.clone().or_else(|| from_conf("db_user"));
            match audit::odoo_list_dbs(dsn, role.as_deref()) {
                Ok(list) => dbs = list,
                Err(e @ audit::PgError::Dsn(_)) => return Err(CmdError::usage(e)),
                Err(e) => return Err(CmdError::failure(e)),
            }
            listed_from = Some(format!(
                "PostgreSQL: databases owned by role {}",
                role.as_deref().unwrap_or("(the DSN's user)")
            ));
        }
    }
    let outcome = match dbfilter::evaluate(&filter, &db_name, &a.host, &dbs) {
        Ok(o) => o,
        Err(e) => return Err(CmdError::usage(e)),
    };
    if a.json {
        println!(
            "{}",
            dbfilter::render_json(&a.host, &filter, &db_name, &outcome)
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("host:       {}", a.host);
    println!(
        "%h =        {}   (port and a leading \"www.\" removed)",
        outcome.parts.host
    );
    println!("%d =        {}   (first label of %h)", outcome.parts.domain);
    match &outcome.expanded {
        Some(e) => {
            println!("dbfilter:   {filter}  ->  {e}   (re.match: anchored at the start only)")
        }
        None if !db_name.is_empty() => {
            println!("dbfilter:   (none) -> db_name {db_name:?} lists the databases served")
        }
        None => println!("dbfilter:   (none) -> every database is served"),
    }
    if let Some(from) = &listed_from {
        println!("databases:  {}   ({from})", join_or_none(&dbs));
    }
    if dbs.is_empty() && a.pg.is_none() {
        println!("(name the existing databases with --db, or --pg DSN, to see which are served)");
    } else {
        println!("served:     {}", join_or_none(&outcome.served));
        println!("not served: {}", join_or_none(&outcome.not_served));
    }
    Ok(ExitCode::SUCCESS)
}

fn join_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "(none)".into()
    } else {
        v.join(", ")
    }
}

#[derive(clap::Args)]
pub struct AuditArgs {
    /// The odoo.conf to check (default: /etc/odoo/odoo.conf when no other input is given).
    #[arg(long, value_name = "PATH")]
    odoo_conf: Option<PathBuf>,
    /// Check PostgreSQL live: an administrator's connection string, e.g.
    /// "host=/run/postgresql user=postgres".
    #[arg(long, value_name = "DSN")]
    pg: Option<String>,
    /// The role Odoo connects as (default: odoo.conf's db_user, else the DSN's user).
    #[arg(long, value_name = "ROLE")]
    db_user: Option<String>,
    /// Accept an Odoo role that creates and owns its databases.
    #[arg(long)]
    flexible: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

const DEFAULT_ODOO_CONF: &str = "/etc/odoo/odoo.conf";

/// The ports whose live listeners `audit` checks: odoo.conf's when given,
/// else Odoo's and PostgreSQL's defaults; rampart.toml's admin port.
struct WatchedPorts {
    http: (u16, &'static str),
    evented: (u16, &'static str),
    postgres: u16,
    admin: u16,
}

impl Default for WatchedPorts {
    fn default() -> Self {
        use rampart_odoo::firewall::*;
        WatchedPorts {
            http: (ODOO_HTTP_PORT, "http_port"),
            evented: (ODOO_EVENTED_PORT, "gevent_port"),
            postgres: POSTGRES_PORT,
            admin: ADMIN_PORT,
        }
    }
}

impl WatchedPorts {
    fn read_odoo_conf(&mut self, conf: &OdooConf) {
        let port = |keys: &[&'static str]| {
            keys.iter().find_map(|k| {
                conf.get(k)
                    .and_then(|v| v.value.trim().parse::<u16>().ok())
                    .map(|p| (p, *k))
            })
        };
        if let Some(p) = port(&["http_port", "xmlrpc_port"]) {
            self.http = p;
        }
        if let Some(p) = port(&["gevent_port", "longpolling_port"]) {
            self.evented = p;
        }
        if let Some((p, _)) = port(&["db_port"]) {
            self.postgres = p;
        }
    }

    fn list(&self) -> Vec<audit::WatchedPort> {
        use audit::PortKind;
        let w = |port, what: String, kind| audit::WatchedPort { port, what, kind };
        vec![
            w(
                self.http.0,
                format!("Odoo's HTTP port ({} {})", self.http.1, self.http.0),
                PortKind::Odoo,
            ),
            w(
                self.evented.0,
                format!(
                    "Odoo's evented port ({} {})",
                    self.evented.1, self.evented.0
                ),
                PortKind::Odoo,
            ),
            w(
                self.postgres,
                format!("PostgreSQL's port ({})", self.postgres),
                PortKind::Postgres,
            ),
            w(
                self.admin,
                format!("Rampart's admin port ({})", self.admin),
                PortKind::Admin,
            ),
        ]
    }
}

pub fn audit(config: Option<&Path>, a: AuditArgs) -> Outcome {
    let mut report = Report::default();
    let conf_path = match (&a.odoo_conf, &a.pg, config) {
        (Some(p), _, _) => Some(p.clone()),
        (None, None, None) => Some(PathBuf::from(DEFAULT_ODOO_CONF)),
        _ => None,
    };
    let mut db_user = a.db_user.clone();
    let mut has_dbfilter = false;
    let mut watched = WatchedPorts::default();
    if let Some(path) = &conf_path {
        let conf = match OdooConf::load(path) {
            Ok(c) => c,
            Err(e) if a.odoo_conf.is_none() => {
                return Err(CmdError::usage(format!(
                    "{e}\n(name the files to audit: --odoo-conf PATH, --pg DSN, --config rampart.toml)"
                )));
            }
            Err(e) => return Err(CmdError::usage(e)),
        };
        let mode = std::fs::metadata(path).ok().map(|m| m.permissions().mode());
        report.checked.push(format!("odoo.conf {}", path.display()));
        report.add(audit::audit_conf(&conf, mode));
        watched.read_odoo_conf(&conf);
        has_dbfilter = conf
            .get("dbfilter")
            .is_some_and(|v| !v.value.is_empty() && v.value != "False");
        if db_user.is_none() {
            db_user = conf
                .get("db_user")
                .map(|v| v.value.to_string())
                .filter(|v| !v.is_empty() && v != "False");
        }
    }
    if let Some(path) = config {
        let cfg = super::load_config(Some(path))?;
        if let Some(admin) = cfg.listen.admin.as_ref().and_then(|a| a.tcp()) {
            watched.admin = admin.port();
        }
        let facts = FrontFacts {
            file: path.display().to_string(),
            http: cfg.listen.http,
            https: cfg.listen.https,
            admin: cfg.listen.admin.as_ref().and_then(|a| a.tcp()),
            sites: cfg
                .site
                .iter()
                .map(|s| FrontSite {
                    hosts: s.hosts.clone(),
                    tls_local: s.tls == rampart_certs::TlsSource::Local,
                    database_manager_allow: s
                        .database_manager
                        .allow
                        .iter()
                        .map(|c| c.to_string())
                        .collect(),
                })
                .collect(),
        };
        report
            .checked
            .push(format!("rampart.toml {}", path.display()));
        report.add(audit::audit_front(&facts));
    }
    if let Some(dsn) = &a.pg {
        let pg = PgAudit {
            dsn: dsn.clone(),
            role: db_user,
            flexible: a.flexible,
            dbfilter: has_dbfilter,
        };
        match audit::audit_pg(&pg) {
            Ok((findings, dbs)) => {
                report.checked.push(format!(
                    "PostgreSQL: roles, database owners; Odoo databases: {}",
                    join_or_none(&dbs)
                ));
                report.add(findings);
            }
            Err(e @ audit::PgError::Dsn(_)) => return Err(CmdError::usage(e)),
            Err(e) => return Err(CmdError::failure(e)),
        }
    }
    match audit::read_live() {
        Ok(listeners) => {
            report.checked.push(format!(
                "listening sockets (/proc/net/tcp, tcp6): ports {}",
                watched
                    .list()
                    .iter()
                    .map(|w| w.port.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            report.add(audit::audit_sockets(&listeners, &watched.list()));
        }
        Err(e) => report.checked.push(format!(
            "listening sockets: not checked, /proc/net/tcp: {e}"
        )),
    }
    if a.json {
        println!("{}", report.render_json());
    } else {
        print!("{}", report.render_text());
    }
    Ok(if report.has_high() {
        ExitCode::from(EXIT_FINDINGS)
    } else {
        ExitCode::SUCCESS
    })
}
