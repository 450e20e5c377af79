//! A throwaway PostgreSQL for tests: initdb in a temp dir, run as a
//! non-root OS user (postgres refuses root), on a free loopback port with
//! its socket in the temp dir; stopped and removed on drop, even when the
//! test fails.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The unprivileged user the server runs as when the tests run as root.
const RUN_AS: &str = "nobody";
pub const SUPERUSER: &str = "postgres";
pub const SUPERUSER_PASSWORD: &str = "pg-test-admin";

pub struct Postgres {
    pub dir: PathBuf,
    pub bin: PathBuf,
    pub port: u16,
}

fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (apt-get install postgresql; scripts/test.sh does it)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|b| b.join("initdb").exists())
        .collect();
    found.sort();
    found
        .pop()
        .expect("an initdb under /usr/lib/postgresql/*/bin")
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl Postgres {
    /// A command for a server binary, as the unprivileged user when root.
    fn server_cmd(&self, name: &str) -> Command {
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", RUN_AS, "--"]).arg(self.bin.join(name));
            c
        } else {
            Command::new(self.bin.join(name))
        }
    }

    pub fn start() -> Postgres {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "rampart-odoo-pg-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sock")).unwrap();
        std::fs::write(dir.join("pwfile"), SUPERUSER_PASSWORD).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        if is_root() {
            run(Command::new("chown").args(["-R", RUN_AS]).arg(&dir));
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = Postgres {
            dir,
            bin: bin_dir(),
            port,
        };
        // Local socket: trust (the admin's DSN); TCP: passwords, so a role's
        // password set by postgres-roles.sql is really checked.
        run(pg
            .server_cmd("initdb")
            .arg("-D")
            .arg(pg.dir.join("data"))
            .args([
                "-U",
                SUPERUSER,
                "-E",
                "UTF8",
                "--no-locale",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .arg(format!("--pwfile={}", pg.dir.join("pwfile").display())));
        run(pg
            .server_cmd("pg_ctl")
            .arg("-D")
            .arg(pg.dir.join("data"))
            .arg("-l")
            .arg(pg.dir.join("server.log"))
            .arg("-o")
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
                pg.port,
                pg.socket_dir().display()
            ))
            .args(["-w", "-t", "60", "start"]));
        pg
    }

    pub fn socket_dir(&self) -> PathBuf {
        self.dir.join("sock")
    }

    /// An administrator's DSN over the Unix socket.
    pub fn admin_dsn(&self) -> String {
        format!(
            "host={} port={} user={SUPERUSER} dbname=postgres",
            self.socket_dir().display(),
            self.port
        )
    }

    /// Runs SQL as the superuser through psql; panics with psql's output on error.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.psql_as(SUPERUSER, None, db, &["-c", sql])
    }

    pub fn psql_file(&self, db: &str, file: &Path, env: &[(&str, &str)]) -> String {
        let mut c = self.psql_cmd(SUPERUSER, None, db);
        c.arg("-f").arg(file).envs(env.iter().copied());
        String::from_utf8(run(&mut c).stdout).unwrap()
    }

    /// Runs psql as `user`, over TCP with `password` when given.
    pub fn psql_as(&self, user: &str, password: Option<&str>, db: &str, args: &[&str]) -> String {
        let mut c = self.psql_cmd(user, password, db);
        c.args(args);
        String::from_utf8(run(&mut c).stdout).unwrap()
    }

    /// Like `psql_as`, but returns the error output of a statement expected to fail.
    pub fn psql_fails(&self, user: &str, password: Option<&str>, db: &str, sql: &str) -> String {
        let out = self
            .psql_cmd(user, password, db)
            .args(["-c", sql])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{sql} should have failed");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn psql_cmd(&self, user: &str, password: Option<&str>, db: &str) -> Command {
        let mut c = Command::new(self.bin.join("psql"));
        let host = match password {
            Some(_) => "127.0.0.1".to_string(),
            None => self.socket_dir().display().to_string(),
        };
        c.args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-At",
            "-h",
            &host,
            "-p",
            &self.port.to_string(),
            "-U",
            user,
            "-d",
            db,
        ]);
        c.env_remove("PGPASSWORD");
        if let Some(p) = password {
            c.env("PGPASSWORD", p);
        }
        c
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .server_cmd("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "-t", "30", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
