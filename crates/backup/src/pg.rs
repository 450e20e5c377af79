//! PostgreSQL through its own client programs (psql, pg_dump, pg_restore):
//! the backup needs pg_dump anyway, and the programs speak every auth
//! method libpq knows (.pgpass, PG* variables, peer) without a driver here.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// How to reach the server and which client programs to use.
#[derive(Clone, Debug)]
pub struct Pg {
    /// Connection string or URI without a database ("" = PG* environment).
    conn: String,
    bin: PathBuf,
}

/// A field separator psql will never meet inside Odoo's names.
const SEP: char = '\u{1f}';

/// A psql session holding a transaction open (see [`Pg::hold_snapshot`]);
/// dropped, it ends the transaction and the session.
pub struct HeldSnapshot {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    out: std::io::BufReader<std::process::ChildStdout>,
    /// The exported snapshot, for `pg_dump --snapshot`.
    pub id: String,
}

/// Printed after each query to know where its rows end.
const END: &str = "rampart-end-of-rows-7f3a";

impl HeldSnapshot {
    /// Runs SQL in the held transaction; rows of fields.
    pub fn query(&mut self, sql: &str) -> Result<Vec<Vec<String>>> {
        use std::io::{BufRead, Write};
        let stdin = self.stdin.as_mut().expect("open until drop");
        writeln!(stdin, "{sql}\nSELECT '{END}';")
            .and_then(|()| stdin.flush())
            .context("writing to psql")?;
        let mut rows = Vec::new();
        loop {
            let mut line = String::new();
            if self.out.read_line(&mut line).context("reading from psql")? == 0 {
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                bail!("psql ended: {}", err.trim());
            }
            let line = line.trim_end_matches(['\n', '\r']);
            if line == END {
                return Ok(rows);
            }
            if !line.is_empty() {
                rows.push(line.split(SEP).map(str::to_string).collect());
            }
        }
    }
}

impl Drop for HeldSnapshot {
    fn drop(&mut self) {
        // Closing stdin ends psql, which ends the (read-only) transaction.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

impl Pg {
    /// Picks the client programs: `pg_bin` if given; else the Debian
    /// directory of the server's major version, else the newest one, else PATH.
    pub fn connect(conn: &str, pg_bin: Option<&Path>) -> Result<Pg> {
        let mut pg = Pg {
            conn: conn.to_string(),
            bin: pg_bin.map(Path::to_path_buf).unwrap_or_default(),
        };
        if pg_bin.is_none() {
            let dirs = debian_bin_dirs();
            // Start with the newest to ask the server its version.
            if let Some((_, newest)) = dirs.last() {
                pg.bin = newest.clone();
            }
            let server = pg.server_major()?;
            if let Some((_, d)) = dirs.iter().find(|(v, _)| *v == server) {
                pg.bin = d.clone();
            }
        }
        Ok(pg)
    }

    /// The client programs alone, for work that needs no server (turning a
    /// custom dump into SQL): `pg_bin`, else the newest Debian directory.
    pub fn tools(pg_bin: Option<&Path>) -> Pg {
        let bin = pg_bin
            .map(Path::to_path_buf)
            .or_else(|| debian_bin_dirs().pop().map(|(_, d)| d))
            .unwrap_or_default();
        Pg {
            conn: String::new(),
            bin,
        }
    }

    /// The same programs on another server (a connection string without a database).
    pub(crate) fn with_conn(mut self, conn: &str) -> Pg {
        self.conn = conn.to_string();
        self
    }

    pub(crate) fn program(&self, name: &str) -> PathBuf {
        if self.bin.as_os_str().is_empty() {
            PathBuf::from(name)
        } else {
            self.bin.join(name)
        }
    }

    /// The connection string for one database.
    pub fn conn_for(&self, db: &str) -> String {
        conn_with_db(&self.conn, db)
    }

    /// Runs one SQL text in `db`, returns rows of fields.
    pub fn query(&self, db: &str, sql: &str) -> Result<Vec<Vec<String>>> {
        let out = Command::new(self.program("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-F"])
            .arg(SEP.to_string())
            .arg("-d")
            .arg(self.conn_for(db))
            .arg("-c")
            .arg(sql)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", self.program("psql").display()))?;
        if !out.status.success() {
            bail!(
                "psql on database {db:?} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| l.split(SEP).map(str::to_string).collect())
            .collect())
    }

    pub fn query_one(&self, db: &str, sql: &str) -> Result<String> {
        let rows = self.query(db, sql)?;
        rows.into_iter()
            .next()
            .and_then(|r| r.into_iter().next())
            .ok_or_else(|| anyhow::Error::msg(format!("no row for: {sql}")))
    }

    /// Runs a SQL file in one transaction, stopping at the first error.
    pub fn run_file(&self, db: &str, file: &Path, single_transaction: bool) -> Result<()> {
        let mut cmd = Command::new(self.program("psql"));
        cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1"]);
        if single_transaction {
            cmd.arg("-1");
        }
        let out = cmd
            .arg("-d")
            .arg(self.conn_for(db))
            .arg("-f")
            .arg(file)
            .stdin(Stdio::null())
            .output()
            .context("running psql")?;
        if !out.status.success() {
            bail!(
                "psql -f {} on {db:?} failed: {}",
                file.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// Runs a SQL file the way Odoo loads its zips: errors (an extension
    /// comment a non-superuser may not set…) do not stop it.
    pub fn run_file_lenient(&self, db: &str, file: &Path) -> Result<()> {
        let out = Command::new(self.program("psql"))
            .args(["-X", "-q", "-d"])
            .arg(self.conn_for(db))
            .arg("-f")
            .arg(file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .output()
            .context("running psql")?;
        if !out.status.success() {
            bail!(
                "psql -f {} on {db:?} failed: {}",
                file.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    pub fn server_major(&self) -> Result<u32> {
        let num: u32 = self
            .query_one("postgres", "SHOW server_version_num")?
            .trim()
            .parse()
            .context("server_version_num")?;
        Ok(num / 10000)
    }

    pub fn server_version(&self) -> Result<String> {
        // "15.18 (Debian 15.18-0+deb12u1)" → "15.18", as Odoo's manifest has it.
        let v = self.query_one("postgres", "SHOW server_version")?;
        Ok(v.split_whitespace().next().unwrap_or("").to_string())
    }

    /// The major version of a client program (`pg_dump (PostgreSQL) 15.18 …`).
    pub fn client_major(&self, program: &str) -> Result<u32> {
        let out = Command::new(self.program(program))
            .arg("--version")
            .output()
            .with_context(|| format!("running {} --version", self.program(program).display()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace()
            .find_map(|w| w.split('.').next()?.parse::<u32>().ok())
            .ok_or_else(|| anyhow::Error::msg(format!("cannot read the version in {text:?}")))
    }

    /// pg_dump refuses (or worse, misreads) a newer server: say so plainly.
    pub fn check_dump_version(&self) -> Result<()> {
        let server = self.server_major()?;
        let client = self.client_major("pg_dump")?;
        if client < server {
            bail!(
                "pg_dump {client} ({}) is older than the PostgreSQL {server} server; install \
                 postgresql-client-{server} or point backup.pg_bin at its bin directory",
                self.program("pg_dump").display()
            );
        }
        Ok(())
    }

    pub fn database_exists(&self, db: &str) -> Result<bool> {
        Ok(!self
            .query(
                "postgres",
                &format!("SELECT 1 FROM pg_database WHERE datname = {}", literal(db)),
            )?
            .is_empty())
    }

    /// Odoo databases: the ones with an ir_module_module table.
    pub fn odoo_databases(&self) -> Result<Vec<String>> {
        let all = self.query(
            "postgres",
            "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate \
             AND datname <> 'postgres' ORDER BY datname",
        )?;
        let mut out = Vec::new();
        for row in all {
            let db = &row[0];
            if let Ok(r) = self.query_one(db, "SELECT to_regclass('ir_module_module') IS NOT NULL")
                && r == "t"
            {
                out.push(db.clone());
            }
        }
        Ok(out)
    }

    pub fn create_database(&self, db: &str, owner: Option<&str>) -> Result<()> {
        let mut sql = format!(
            "CREATE DATABASE {} ENCODING 'UTF8' TEMPLATE template0",
            ident(db)
        );
        if let Some(o) = owner {
            sql.push_str(&format!(" OWNER {}", ident(o)));
        }
        self.query("postgres", &sql).map(|_| ())
    }

    pub fn drop_database(&self, db: &str) -> Result<()> {
        self.query(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(db)),
        )
        .map(|_| ())
    }

    /// Renames a database, ending the sessions connected to it first
    /// (PostgreSQL refuses to rename a database in use).
    pub fn rename_database(&self, from: &str, to: &str) -> Result<()> {
        self.query(
            "postgres",
            &format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = {} AND pid <> pg_backend_pid()",
                literal(from)
            ),
        )?;
        self.query(
            "postgres",
            &format!("ALTER DATABASE {} RENAME TO {}", ident(from), ident(to)),
        )
        .map(|_| ())
    }

    /// `pg_dump -Fc` as a child process with its stdout piped; with
    /// `snapshot`, it dumps what that exported snapshot sees.
    pub fn spawn_dump(
        &self,
        db: &str,
        snapshot: Option<&str>,
        stderr: std::fs::File,
    ) -> Result<std::process::Child> {
        let mut cmd = Command::new(self.program("pg_dump"));
        cmd.args(["-Fc", "--no-owner"]);
        if let Some(id) = snapshot {
            cmd.arg(format!("--snapshot={id}"));
        }
        cmd.arg("-d")
            .arg(self.conn_for(db))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {}", self.program("pg_dump").display()))
    }

    /// Opens a transaction in `db` and exports its snapshot: queries
    /// through the returned handle and a `pg_dump --snapshot` see exactly
    /// the same rows (the manifest's row counts describe the dump itself).
    pub fn hold_snapshot(&self, db: &str) -> Result<HeldSnapshot> {
        let mut child = Command::new(self.program("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-F"])
            .arg(SEP.to_string())
            .arg("-d")
            .arg(self.conn_for(db))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("running {}", self.program("psql").display()))?;
        let stdin = child.stdin.take().expect("piped");
        let out = std::io::BufReader::new(child.stdout.take().expect("piped"));
        let mut h = HeldSnapshot {
            child,
            stdin: Some(stdin),
            out,
            id: String::new(),
        };
        let rows = h.query(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT pg_export_snapshot();",
        )?;
        h.id = rows
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next())
            .ok_or_else(|| anyhow::Error::msg("pg_export_snapshot gave no id"))?;
        Ok(h)
    }

    /// Loads a custom-format dump into an existing, empty database.
    pub fn restore_dump(&self, db: &str, dump: &Path, role: Option<&str>) -> Result<()> {
        let mut cmd = Command::new(self.program("pg_restore"));
        cmd.args(["--no-owner", "--exit-on-error", "-j", "2", "-d"])
            .arg(self.conn_for(db));
        if let Some(r) = role {
            cmd.arg(format!("--role={r}"));
        }
        let out = cmd
            .arg(dump)
            .stdin(Stdio::null())
            .output()
            .context("running pg_restore")?;
        if !out.status.success() {
            bail!(
                "pg_restore into {db:?} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// Converts a custom-format dump to plain SQL (Odoo's zip holds dump.sql).
    pub fn dump_to_sql(&self, dump: &Path, sql: &Path) -> Result<()> {
        let out = Command::new(self.program("pg_restore"))
            .args(["--no-owner", "-f"])
            .arg(sql)
            .arg(dump)
            .stdin(Stdio::null())
            .output()
            .context("running pg_restore")?;
        if !out.status.success() {
            bail!(
                "pg_restore -f (custom dump to SQL) failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

/// /usr/lib/postgresql/<major>/bin with pg_dump, oldest first.
fn debian_bin_dirs() -> Vec<(u32, PathBuf)> {
    let mut out: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_dump").exists().then_some((v, bin))
        })
        .collect();
    out.sort();
    out
}

/// Puts `db` into a connection string: the path of a URI, or a `dbname=`
/// keyword (the last keyword wins in libpq).
pub fn conn_with_db(conn: &str, db: &str) -> String {
    let conn = conn.trim();
    if let Some(rest) = conn
        .strip_prefix("postgresql://")
        .map(|r| ("postgresql://", r))
        .or_else(|| conn.strip_prefix("postgres://").map(|r| ("postgres://", r)))
    {
        let (scheme, rest) = rest;
        let (before_query, query) = match rest.find('?') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let authority = before_query.split('/').next().unwrap_or("");
        return format!("{scheme}{authority}/{}{query}", percent_encode(db));
    }
    let quoted = db.replace('\\', "\\\\").replace('\'', "\\'");
    if conn.is_empty() {
        format!("dbname='{quoted}'")
    } else {
        format!("{conn} dbname='{quoted}'")
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A SQL identifier, quoted.
pub fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A SQL string literal.
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_goes_into_uri_path_or_keywords() {
        assert_eq!(
            conn_with_db("postgresql://backup@127.0.0.1/postgres", "erp"),
            "postgresql://backup@127.0.0.1/erp"
        );
        assert_eq!(
            conn_with_db("postgres://u@h:5433?sslmode=require", "a b"),
            "postgres://u@h:5433/a%20b?sslmode=require"
        );
        assert_eq!(
            conn_with_db("host=/run/pg port=5432", "erp"),
            "host=/run/pg port=5432 dbname='erp'"
        );
        assert_eq!(conn_with_db("", "o'k"), "dbname='o\\'k'");
    }

    #[test]
    fn quoting() {
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(literal("it's"), "'it''s'");
    }
}
