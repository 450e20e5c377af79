//! Real parts for the backup tests: a PostgreSQL cluster (initdb/pg_ctl
//! in a temp dir, run as an unprivileged user), a database shaped like
//! Odoo's with its filestore, age keys, and helpers to compare restores.
#![allow(dead_code)]

pub mod remote;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use age::secrecy::ExposeSecret;
use rampart_backup::{BackupConfig, TargetConfig};

pub const PG_USER: &str = "rampart-test";

/// The unprivileged OS user PostgreSQL (and the SFTP receiver) run as.
pub fn ensure_user() {
    let exists = Command::new("id")
        .arg(PG_USER)
        .output()
        .unwrap()
        .status
        .success();
    if !exists {
        let _ = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/bin/sh",
                PG_USER,
            ])
            .status();
    }
    // '*' instead of useradd's '!': sshd refuses key logins to accounts
    // with a locked password.
    let _ = Command::new("usermod").args(["-p", "*", PG_USER]).status();
}

pub fn chown_to_user(path: &Path) {
    let st = Command::new("chown")
        .args(["-R", PG_USER])
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success());
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn pg_bin() -> PathBuf {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (scripts/test.sh installs it)")
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, p): &(u32, PathBuf)| p.join("initdb").exists())
        .collect();
    dirs.sort();
    dirs.pop()
        .expect("an initdb under /usr/lib/postgresql/*/bin")
        .1
}

/// A throwaway PostgreSQL server on a free loopback port.
pub struct PgCluster {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub bin: PathBuf,
}

impl PgCluster {
    pub fn start() -> PgCluster {
        ensure_user();
        let bin = pg_bin();
        let dir = tempfile::tempdir().unwrap();
        chown_to_user(dir.path());
        let data = dir.path().join("data");
        let st = Command::new("runuser")
            .args(["-u", PG_USER, "--"])
            .arg(bin.join("initdb"))
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
                "-D",
            ])
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&st.stderr)
        );
        let port = free_port();
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=40",
            dir.path().display()
        );
        let st = Command::new("runuser")
            .args(["-u", PG_USER, "--"])
            .arg(bin.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.path().join("log"))
            .args(["-o", &opts, "-w", "-t", "30", "start"])
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "pg_ctl: {}",
            String::from_utf8_lossy(&st.stderr)
        );
        PgCluster { dir, port, bin }
    }

    pub fn conn(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// psql -At: rows joined by newlines, fields by '|'.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(format!(
                "postgresql://postgres@127.0.0.1:{}/{db}",
                self.port
            ))
            .arg("-c")
            .arg(sql)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    }

    pub fn exists(&self, db: &str) -> bool {
        self.psql(
            "postgres",
            &format!("SELECT count(*) FROM pg_database WHERE datname = '{db}'"),
        ) == "1"
    }

    /// A table's rows, in id order, as text.
    pub fn table(&self, db: &str, table: &str) -> String {
        self.psql(db, &format!("SELECT * FROM {table} ORDER BY id"))
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", PG_USER, "--"])
            .arg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

pub const TABLES: [&str; 6] = [
    "ir_module_module",
    "res_users",
    "ir_attachment",
    "ir_mail_server",
    "ir_cron",
    "res_partner",
];

/// Creates `db` shaped like an Odoo database, with `files` attachments in
/// `<data_dir>/filestore/<db>/`, plus one file whose name is not its hash.
pub fn make_odoo_db(pg: &PgCluster, data_dir: &Path, db: &str, files: usize, file_size: usize) {
    pg.psql("postgres", &format!("CREATE DATABASE \"{db}\""));
    pg.psql(
        db,
        "CREATE TABLE ir_module_module (id serial PRIMARY KEY, name varchar NOT NULL UNIQUE, state varchar, latest_version varchar);
         INSERT INTO ir_module_module (name, state, latest_version) VALUES
           ('base', 'installed', '18.0.1.3'), ('web', 'installed', '18.0.1.0'),
           ('mail', 'installed', '18.0.1.15'), ('sale', 'uninstalled', NULL);
         CREATE TABLE ir_config_parameter (id serial PRIMARY KEY, key varchar NOT NULL, value text NOT NULL,
           CONSTRAINT ir_config_parameter_key_uniq UNIQUE (key));
         INSERT INTO ir_config_parameter (key, value) VALUES
           ('database.uuid', 'a5f3c1e2-0000-11ef-8000-000000000001'),
           ('database.secret', 'f00dfeed-1111-4222-8333-444455556666'),
           ('web.base.url', 'https://erp.example.com');
         CREATE TABLE res_users (id serial PRIMARY KEY, login varchar UNIQUE, password varchar, active boolean);
         INSERT INTO res_users (login, password, active) VALUES
           ('__system__', NULL, false), ('admin', '$pbkdf2-sha512$600000$x$y', true), ('demo', NULL, true);
         CREATE TABLE res_partner (id serial PRIMARY KEY, name varchar, email varchar, note text);
         INSERT INTO res_partner (name, email, note)
           SELECT 'Partner ' || i, 'p' || i || '@example.com', repeat('é', i % 50) FROM generate_series(1, 500) i;
         CREATE TABLE ir_mail_server (id serial PRIMARY KEY, name varchar, active boolean);
         INSERT INTO ir_mail_server (name, active) VALUES ('smtp.example.com', true);
         CREATE TABLE ir_cron (id serial PRIMARY KEY, name varchar, active boolean);
         INSERT INTO ir_cron (name, active) VALUES ('autovacuum', true), ('mail queue', true);
         CREATE TABLE ir_attachment (id serial PRIMARY KEY, name varchar, store_fname varchar, checksum varchar, file_size integer);",
    );
    let root = data_dir.join("filestore").join(db);
    for i in 0..files {
        let content = pseudo_random(i as u64 + 1, file_size);
        add_attachment(pg, &root, db, &format!("file{i}.bin"), &content);
    }
    // A file whose name is not the SHA-1 of its content (copied by hand).
    let odd = root
        .join("ab")
        .join("abababababababababababababababababababab");
    std::fs::create_dir_all(odd.parent().unwrap()).unwrap();
    std::fs::write(&odd, b"not what the name says").unwrap();
    pg.psql(
        db,
        "INSERT INTO ir_attachment (name, store_fname, checksum, file_size) VALUES
         ('odd.txt', 'ab/abababababababababababababababababababab', 'abababababababababababababababababababab', 22)",
    );
}

/// Stores `content` the way Odoo does and records the attachment row.
pub fn add_attachment(pg: &PgCluster, root: &Path, db: &str, name: &str, content: &[u8]) -> String {
    let sha = sha1_hex(content);
    let rel = format!("{}/{sha}", &sha[..2]);
    let p = root.join(&rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, content).unwrap();
    pg.psql(
        db,
        &format!(
            "INSERT INTO ir_attachment (name, store_fname, checksum, file_size) VALUES ('{name}', '{rel}', '{sha}', {})",
            content.len()
        ),
    );
    rel
}

pub fn sha1_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Incompressible, reproducible bytes (xorshift).
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Every file under a filestore directory: relative path → bytes.
pub fn read_tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// An age key pair: the public key for the config, the identity file path.
pub struct Keys {
    pub recipient: String,
    pub identity: PathBuf,
    _dir: tempfile::TempDir,
}

pub fn keys() -> Keys {
    let id = age::x25519::Identity::generate();
    let dir = tempfile::tempdir().unwrap();
    let identity = dir.path().join("backup.key");
    std::fs::write(&identity, format!("{}\n", id.to_string().expose_secret())).unwrap();
    Keys {
        recipient: id.to_public().to_string(),
        identity,
        _dir: dir,
    }
}

pub fn file_target(name: &str, dir: &Path) -> TargetConfig {
    TargetConfig {
        name: name.into(),
        url: format!("file://{}", dir.display()),
        ..Default::default()
    }
}

pub fn config(
    pg: &PgCluster,
    data_dir: &Path,
    keys: &Keys,
    targets: Vec<TargetConfig>,
) -> BackupConfig {
    BackupConfig {
        databases: vec![],
        data_dir: data_dir.to_path_buf(),
        pg: pg.conn(),
        recipients: vec![keys.recipient.clone()],
        zstd_level: 3,
        targets,
        ..Default::default()
    }
}

/// Table contents and filestore of `a` and `b` are the same (the identity
/// parameters aside, which a copy must change).
pub fn assert_same_database(pg: &PgCluster, data_dir: &Path, a: &str, b: &str) {
    for t in TABLES {
        assert_eq!(
            pg.table(a, t),
            pg.table(b, t),
            "table {t} differs between {a} and {b}"
        );
    }
    let params = "SELECT key, value FROM ir_config_parameter WHERE key NOT IN \
                  ('database.uuid', 'database.secret', 'database.create_date') ORDER BY key";
    assert_eq!(pg.psql(a, params), pg.psql(b, params));
    let fa = read_tree(&data_dir.join("filestore").join(a));
    let fb = read_tree(&data_dir.join("filestore").join(b));
    assert_eq!(fa.len(), fb.len(), "filestore file counts differ");
    assert!(fa == fb, "filestore contents differ between {a} and {b}");
}

pub fn param(pg: &PgCluster, db: &str, key: &str) -> String {
    pg.psql(
        db,
        &format!("SELECT value FROM ir_config_parameter WHERE key = '{key}'"),
    )
}

/// Object names in a file target's directory.
pub fn objects(root: &Path, dir: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root.join(dir))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
