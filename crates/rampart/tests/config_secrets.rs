//! `"${VAR}"` and `{ file = "…" }` anywhere a string goes in rampart.toml
//! (systemd's LoadCredential= works), and no command ever prints the value:
//! not `check --print`, not `--json`, not an error message. Through the real
//! binary.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::{Rampart, Setup, Site, TempDir, bin};
use rampart_testkit::OdooFixture;

/// `rampart <args>` with exactly `env` added; (code, stdout, stderr).
fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(bin())
        .args(args)
        .env_remove("RAMPART_CONFIG")
        .envs(env.iter().copied())
        .output()
        .expect("cannot run the rampart binary");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn secret_file(dir: &Path, name: &str, text: &str, mode: u32) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p.display().to_string()
}

/// A config with `site_extra` inside the one site and `rest` after it.
fn config(dir: &Path, site_extra: &str, rest: &str) -> String {
    let p = dir.join("rampart.toml");
    std::fs::write(
        &p,
        format!(
            "state_dir = {:?}\n\n[[site]]\nhosts = [\"erp.test\"]\n{site_extra}\n{rest}\n",
            dir.join("state").display().to_string()
        ),
    )
    .unwrap();
    p.display().to_string()
}

const S3_KEY: &str = "s3-secret-from-env-7f3a";
const PG_PASS: &str = "pg-pass-from-file-91c2";

#[test]
fn env_and_file_secrets_resolve_and_are_never_printed() {
    let dir = TempDir::new("secrets-print");
    let d = dir.path();
    // The file as systemd's LoadCredential= leaves it: 0400, newline-terminated.
    let pg = secret_file(
        d,
        "pg",
        &format!("postgresql://odoo:{PG_PASS}@db/\n"),
        0o400,
    );
    // A duration from a file: it parses only if the trailing newline is dropped.
    let timeout = secret_file(d, "timeout", "15m\r\n", 0o600);
    let cfg = config(
        d,
        &format!("timeout = {{ file = {timeout:?} }}"),
        &format!(
            "[backup]\npg = {{ file = {pg:?} }}\n\
             [[backup.target]]\nname = \"s3\"\nurl = \"s3://bucket/odoo\"\n\
             access_key_id = \"${{S3_ID}}\"\nsecret_access_key = \"${{S3_KEY}}\"\n\
             endpoint = \"https://$${{literal}}.example\"\n"
        ),
    );
    let env = [("S3_KEY", S3_KEY), ("S3_ID", "AKIAFROMENV")];
    let (code, out, err) = run(&["check", "--print", &cfg], &env);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains(S3_KEY) && !err.contains(S3_KEY), "{out}{err}");
    assert!(
        !out.contains(PG_PASS) && !err.contains(PG_PASS),
        "{out}{err}"
    );
    assert!(!out.contains("AKIAFROMENV"), "{out}");
    // Shown as written, so the printed config means the same thing.
    assert!(out.contains("secret_access_key = \"${S3_KEY}\""), "{out}");
    assert!(out.contains(&format!("file = {timeout:?}")), "{out}");
    assert!(out.contains("\"https://$${literal}.example\""), "{out}");
    let printed = dir.path().join("printed.toml");
    std::fs::write(&printed, &out).unwrap();
    let (code, again, err) = run(&["check", "--print", printed.to_str().unwrap()], &env);
    assert_eq!(code, 0, "the printed config does not check: {err}\n{out}");
    assert_eq!(again, out);

    let (code, out, err) = run(&["check", "--print", "--json", &cfg], &env);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains(S3_KEY) && !out.contains(PG_PASS), "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let site_timeout = &v["config"]["site"][0]["timeout"];
    assert_eq!(site_timeout["file"], timeout.as_str(), "{out}");
}

#[test]
fn unresolvable_references_name_file_line_key_and_cause() {
    let dir = TempDir::new("secrets-errors");
    let d = dir.path();
    let cases: Vec<(String, &str, Vec<&str>)> = vec![
        (
            "secret_access_key = \"${RAMPART_TEST_UNSET_VAR}\"".into(),
            "backup.target[0].secret_access_key",
            vec!["RAMPART_TEST_UNSET_VAR", "not set"],
        ),
        (
            "secret_access_key = \"${EMPTY_ONE}\"".into(),
            "backup.target[0].secret_access_key",
            vec!["EMPTY_ONE", "empty"],
        ),
        (
            "secret_access_key = \"${S3_KEY:-fallback}\"".into(),
            "backup.target[0].secret_access_key",
            vec!["$${"],
        ),
        (
            format!(
                "secret_access_key = {{ file = {:?} }}",
                secret_file(d, "open", "x\n", 0o644)
            ),
            "backup.target[0].secret_access_key",
            vec!["readable by every user", "/open"],
        ),
        (
            format!(
                "secret_access_key = {{ file = {:?} }}",
                secret_file(d, "big", &"x".repeat(70_000), 0o600)
            ),
            "backup.target[0].secret_access_key",
            vec!["too large", "/big"],
        ),
        (
            format!(
                "secret_access_key = {{ file = {:?} }}",
                secret_file(d, "blank", "\n\n", 0o600)
            ),
            "backup.target[0].secret_access_key",
            vec!["empty", "/blank"],
        ),
        (
            "secret_access_key = { file = \"missing-credential\" }".into(),
            "backup.target[0].secret_access_key",
            vec!["missing-credential", "No such file"],
        ),
    ];
    // A FIFO is refused at once, never waited on.
    let fifo = d.join("fifo");
    let st = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(st.success());
    std::fs::set_permissions(&fifo, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut cases = cases;
    cases.push((
        format!(
            "secret_access_key = {{ file = {:?} }}",
            fifo.display().to_string()
        ),
        "backup.target[0].secret_access_key",
        vec!["not a regular file"],
    ));
    for (line, key, wanted) in cases {
        let cfg = config(
            d,
            "",
            &format!("[[backup.target]]\nname = \"s3\"\nurl = \"s3://b/p\"\n{line}\n"),
        );
        let (code, out, err) = run(&["check", &cfg], &[("EMPTY_ONE", ""), ("S3_KEY", S3_KEY)]);
        assert_eq!(code, 2, "{line}: {out}{err}");
        // file:line: key: message, the line being the one written.
        let at = format!("{cfg}:9: {key}: ");
        assert!(err.contains(&at), "{line}: wanted {at:?} in\n{err}");
        for w in wanted {
            assert!(err.contains(w), "{line}: wanted {w:?} in\n{err}");
        }
        assert!(!err.contains(S3_KEY), "{line}: the value leaked\n{err}");
    }
}

#[test]
fn a_value_the_field_refuses_is_not_repeated_in_the_error() {
    let dir = TempDir::new("secrets-scrub");
    let d = dir.path();
    let leaked = "not-a-duration-hunter2";
    let cfg = config(d, "timeout = \"${SITE_TIMEOUT}\"", "");
    let (code, out, err) = run(&["check", &cfg], &[("SITE_TIMEOUT", leaked)]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("site[0].timeout"), "{err}");
    assert!(err.contains("invalid duration"), "{err}");
    assert!(!err.contains(leaked), "{err}");
    // The value was read (and masked), not the reference taken literally.
    assert!(err.contains("invalid duration \"********\""), "{err}");
    // A finding (not a parse error) too: a certificate path from the
    // environment that does not exist.
    let cfg = config(
        d,
        "tls = { cert = \"${CERT_PATH}\", key = \"/nonexistent/k.pem\" }",
        "",
    );
    let hidden = "/nonexistent/secret-dir-4411/fullchain.pem";
    let (code, out, err) = run(&["check", &cfg], &[("CERT_PATH", hidden)]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("site[0].tls"), "{err}");
    assert!(!err.contains("secret-dir-4411"), "{err}");
    assert!(err.contains("********"), "{err}");
}

#[tokio::test]
async fn serve_uses_values_from_the_environment() {
    let fixture = OdooFixture::start().await;
    let mut site = Site::new("${ERP_HOST}", &fixture);
    site.odoo = vec!["${ODOO_HTTP}".into()];
    let mut setup = Setup::site(site);
    setup.env = vec![
        ("ERP_HOST".into(), "erp.from-env.test".into()),
        ("ODOO_HTTP".into(), fixture.http_addr.to_string()),
    ];
    let r = Rampart::start(setup).await;
    let res = r.get("erp.from-env.test", "/web/login").await;
    assert_eq!(res.status, 200, "{}", res.text());
}

/// What `serve` and `check` print while starting never shows a value from
/// `${VAR}`: here an ACME directory URL with a password in it, refused when
/// the certificate store opens (serve's own error line), and one that is
/// accepted but unreachable (the error the ACME task logs, in both log
/// formats). Before scrub.rs, serve printed both URLs whole.
#[test]
fn errors_while_serve_starts_never_show_a_secret() {
    let dir = TempDir::new("secrets-serve");
    let d = dir.path();
    const PASSWORD: &str = "hunter2-acme-5eb1";
    let port = rampart_testkit::free_port();
    for (process, dir_url, wanted) in [
        (
            "",
            format!("ftp://acme:{PASSWORD}@127.0.0.1:{port}/dir"),
            "https:// URL",
        ),
        (
            "",
            format!("https://acme:{PASSWORD}@127.0.0.1:{port}/dir"),
            "cannot obtain a certificate",
        ),
        (
            "json",
            format!("https://acme:{PASSWORD}@127.0.0.1:{port}/dir"),
            "cannot obtain a certificate",
        ),
        // Not a URL the ACME client can parse: refused at start (its task
        // used to panic at the first renewal, after check said ok).
        (
            "",
            format!("https://acme:{PASSWORD}@[::1"),
            "not a valid URL",
        ),
    ] {
        let log = if process.is_empty() {
            String::new()
        } else {
            format!("[log]\nprocess = \"{process}\"\n")
        };
        let cfg = config(
            d,
            "tls = \"acme\"",
            &format!(
                "{log}[listen]\nhttps = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
                 [acme]\nemail = \"ops@example.com\"\ndirectory = \"${{ACME_DIR}}\"\n"
            ),
        );
        let env = [("ACME_DIR", dir_url.as_str())];
        // check: refused or accepted, never shown.
        let (code, out, err) = run(&["check", &cfg], &env);
        assert!(
            !out.contains(PASSWORD) && !err.contains(PASSWORD),
            "check:\n{out}{err}"
        );
        // check says what serve will refuse.
        let refused = wanted != "cannot obtain a certificate";
        assert_eq!(code != 0, refused, "check:\n{out}{err}");
        if refused {
            assert!(err.contains(wanted), "check:\n{out}{err}");
        }
        // serve: until it exits on its own or logs the ACME failure.
        let stderr_path = d.join("serve.err");
        let mut child = Command::new(bin())
            .args(["serve", "--config", &cfg])
            .env_remove("RAMPART_CONFIG")
            .envs(env)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .expect("cannot run the rampart binary");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let text = loop {
            let exited = child.try_wait().unwrap().is_some();
            let text = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            if exited || text.contains(wanted) {
                let _ = child.kill();
                let _ = child.wait();
                break std::fs::read_to_string(&stderr_path).unwrap_or_default();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no {wanted:?} within 30 s:\n{text}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        assert!(
            text.contains(wanted),
            "{process} {dir_url}: wanted {wanted:?} in\n{text}"
        );
        assert!(
            !text.contains(PASSWORD),
            "{process}: the password leaked:\n{text}"
        );
        assert!(text.contains("********"), "{process}: not masked:\n{text}");
    }
}
