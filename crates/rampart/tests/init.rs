//! `rampart init`, `plan`, `passwd`, `dbfilter` and `audit` as a user runs
//! them: the real binary, real files in a temp dir, exit codes scripts rely on.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

fn rampart(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(args)
        .env_remove("RAMPART_CONFIG")
        .output()
        .expect("the rampart binary runs")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

struct TempDir(PathBuf);
impl TempDir {
    fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "rampart-init-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn s(&self) -> &str {
        self.0.to_str().unwrap()
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn init(out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "init",
        "--domain",
        "erp.example.com",
        "--email",
        "ops@example.com",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    rampart(&args)
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_writes_files_that_load_and_audit_clean() {
    let dir = TempDir::new();
    let o = init(&dir.0, &[]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    for f in [
        "rampart.toml",
        "odoo.conf",
        "postgres-roles.sql",
        "odoo.service",
        "rampart.service",
        "compose.yaml",
        ".env",
    ] {
        assert!(dir.0.join(f).exists(), "{f} not written");
    }
    assert!(out.contains("Next steps"), "{out}");
    assert_eq!(
        mode(&dir.0.join("odoo.conf")),
        0o640,
        "odoo.conf holds the master password hash"
    );
    assert_eq!(mode(&dir.0.join(".env")), 0o600);

    // The binary's own Config::load accepts the rampart.toml it wrote.
    let toml = dir.0.join("rampart.toml");
    let o = rampart(&["check", "--config", toml.to_str().unwrap()]);
    assert!(o.status.success(), "{:?}", text(&o));

    // And its own audit finds nothing in what it wrote.
    let conf = dir.0.join("odoo.conf");
    let o = rampart(&[
        "audit",
        "--odoo-conf",
        conf.to_str().unwrap(),
        "--config",
        toml.to_str().unwrap(),
    ]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(out.contains("no findings"), "{out}");
}

#[test]
fn init_prints_the_password_whose_hash_passlib_accepts() {
    let dir = TempDir::new();
    let o = init(&dir.0, &["--db", "prod"]);
    let (out, _) = text(&o);
    let password = out
        .lines()
        .skip_while(|l| !l.starts_with("Master password"))
        .nth(1)
        .expect("the password follows its heading")
        .trim()
        .to_string();
    let conf = std::fs::read_to_string(dir.0.join("odoo.conf")).unwrap();
    assert!(
        !conf.contains(&password),
        "odoo.conf must hold only the hash"
    );
    assert!(conf.contains("\ndb_name = prod\n"), "{conf}");
    assert!(
        !conf.contains("dbfilter ="),
        "strict policy: db_name, no dbfilter:\n{conf}"
    );
    let hash = conf
        .lines()
        .find_map(|l| l.strip_prefix("admin_passwd = "))
        .expect("an admin_passwd line");
    let check = Command::new("python3")
        .args([
            "-c",
            "import sys\nfrom passlib.context import CryptContext\n\
             ctx = CryptContext(['pbkdf2_sha512', 'plaintext'], deprecated=['plaintext'])\n\
             print(ctx.verify(sys.argv[1], sys.argv[2]))",
            &password,
            hash,
        ])
        .output()
        .expect("python3 with passlib (scripts/test.sh installs it)");
    assert_eq!(
        String::from_utf8_lossy(&check.stdout).trim(),
        "True",
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn init_never_overwrites_without_force_and_edits_odoo_conf_with_it() {
    let dir = TempDir::new();
    assert!(init(&dir.0, &[]).status.success());
    let conf = dir.0.join("odoo.conf");
    let mut edited = std::fs::read_to_string(&conf).unwrap();
    edited = edited.replacen(
        "[options]\n",
        "[options]\n# my own note\nmy_module_key = 42\n",
        1,
    );
    std::fs::write(&conf, &edited).unwrap();

    let o = init(&dir.0, &[]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err.contains("odoo.conf") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&conf).unwrap(),
        edited,
        "untouched without --force"
    );

    let env_before = std::fs::read_to_string(dir.0.join(".env")).unwrap();
    let o = init(&dir.0, &["--force"]);
    assert!(o.status.success(), "{:?}", text(&o));
    let after = std::fs::read_to_string(&conf).unwrap();
    assert!(
        after.contains("# my own note\nmy_module_key = 42\n"),
        "{after}"
    );
    let hash = |t: &str| {
        t.lines()
            .find(|l| l.starts_with("admin_passwd"))
            .map(str::to_string)
    };
    assert_ne!(hash(&after), hash(&edited), "a new master password");
    assert_eq!(
        after.matches("admin_passwd").count(),
        edited.matches("admin_passwd").count(),
        "edited in place, not appended"
    );
    assert_eq!(
        std::fs::read_to_string(dir.0.join(".env")).unwrap(),
        env_before,
        "passwords in use are kept"
    );
}

#[test]
fn init_rejects_bad_input_clearly() {
    let dir = TempDir::new();
    let o = rampart(&[
        "init",
        "--domain",
        "https://erp.example.com",
        "--email",
        "a@b.c",
        "--out",
        dir.s(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("--domain"), "{:?}", text(&o));
    let o = rampart(&[
        "init",
        "--domain",
        "erp.example.com",
        "--email",
        "a@b.c",
        "--odoo-version",
        "15",
        "--out",
        dir.s(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        std::fs::read_dir(&dir.0).unwrap().count(),
        0,
        "nothing written on bad input"
    );

    // --force on a malformed odoo.conf names the file and line, writes nothing.
    std::fs::write(dir.0.join("odoo.conf"), "[options]\nworkers 4\n").unwrap();
    let o = init(&dir.0, &["--force"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(err.contains("odoo.conf:2:"), "{err}");
    assert!(!dir.0.join("rampart.toml").exists());
}

#[test]
fn audit_exit_codes() {
    let dir = TempDir::new();
    let conf = dir.0.join("odoo.conf");
    std::fs::write(
        &conf,
        "[options]\nadmin_passwd = admin\ndb_password = odoo\n",
    )
    .unwrap();
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = rampart(&["audit", "--odoo-conf", conf.to_str().unwrap()]);
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(1), "a high finding: {out}");
    assert!(out.contains("admin-passwd-default"), "{out}");
    assert!(out.contains("fix: "), "{out}");

    let o = rampart(&["audit", "--odoo-conf", conf.to_str().unwrap(), "--json"]);
    let (out, _) = text(&o);
    assert!(out.contains("\"severity\": \"high\""), "{out}");
    assert!(out.contains("\"id\": \"conf-readable-by-others\""), "{out}");

    let missing = dir.0.join("nope.conf");
    let o = rampart(&["audit", "--odoo-conf", missing.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("nope.conf"), "{:?}", text(&o));

    // rampart.toml rules: the database manager open to everyone is high.
    let toml = dir.0.join("rampart.toml");
    std::fs::write(
        &toml,
        "[listen]\nhttps = \"0.0.0.0:443\"\n[[site]]\nhosts = [\"erp.example.com\"]\n[site.database_manager]\nallow = [\"0.0.0.0/0\"]\n",
    )
    .unwrap();
    let o = rampart(&["audit", "--config", toml.to_str().unwrap()]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(
        out.contains("front-dbmanager-open") && out.contains("front-local-ca-public"),
        "{out}"
    );

    // An unreachable PostgreSQL is named, with the runtime-failure code.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dsn = format!("host=127.0.0.1 port={port} user=postgres");
    let o = rampart(&["audit", "--pg", &dsn, "--db-user", "odoo"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        text(&o).1.contains(&format!("127.0.0.1:{port}")),
        "{:?}",
        text(&o)
    );
}

#[test]
fn plan_gives_the_guides_example() {
    let o = rampart(&["plan", "--cpus", "4", "--users", "60"]);
    let (out, _) = text(&o);
    assert!(o.status.success());
    assert!(out.contains("8 HTTP worker(s) + 1 cron worker(s)"), "{out}");
    assert!(out.contains("workers = 8\nmax_cron_threads = 1\n"), "{out}");
    let o = rampart(&["plan", "--cpus", "4", "--users", "60", "--json"]);
    assert!(
        text(&o).0.contains("\"ram_needed_mb\": 2923"),
        "{:?}",
        text(&o)
    );
    let o = rampart(&["plan", "--cpus", "0"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn dbfilter_shows_what_odoo_serves() {
    let o = rampart(&[
        "dbfilter",
        "--filter",
        "^%d$",
        "--host",
        "www.mycompany.com",
        "--db",
        "mycompany",
        "--db",
        "mycompany_test",
    ]);
    let (out, _) = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("%d =        mycompany "), "{out}");
    assert!(out.contains("served:     mycompany\n"), "{out}");
    assert!(out.contains("not served: mycompany_test\n"), "{out}");
}

#[test]
fn passwd_hashes_a_given_password() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(["passwd", "--stdin", "--rounds", "1000"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"my secret\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let out = String::from_utf8(o.stdout).unwrap();
    assert!(
        out.starts_with("admin_passwd = $pbkdf2-sha512$1000$"),
        "{out}"
    );
    assert!(!out.contains("my secret"));
}
