//! `rampart check` says what `serve` would do: certificate files loaded,
//! paths and permissions checked, upstream names resolved; `--print`
//! shows the effective config with every default (secrets masked) and
//! `--json` the findings. Through the real binary.

mod common;

use std::path::Path;
use std::process::Command;

use common::{TempDir, run_cli};

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn config(dir: &Path, extra_site: &str, rest: &str) -> String {
    write(
        dir,
        "rampart.toml",
        &format!(
            "state_dir = {:?}\n{rest}\n[[site]]\nhosts = [\"erp.test\"]\n{extra_site}\n",
            dir.join("state").display().to_string()
        ),
    )
}

/// A self-signed certificate and its key for `host`, by openssl(1).
fn openssl_pair(dir: &Path, stem: &str, host: &str) -> (String, String) {
    let cert = dir.join(format!("{stem}.crt"));
    let key = dir.join(format!("{stem}.key"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "30",
        ])
        .arg("-subj")
        .arg(format!("/CN={host}"))
        .arg("-addext")
        .arg(format!("subjectAltName=DNS:{host}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("this test needs openssl(1) to make a certificate (apt-get install openssl)");
    assert!(
        status.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    (cert.display().to_string(), key.display().to_string())
}

#[test]
fn check_refuses_certificate_files_serve_would_refuse() {
    let dir = TempDir::new("check-certs");
    let d = dir.path();
    // Missing files.
    let cfg = config(
        d,
        "tls = { cert = \"/nonexistent/fullchain.pem\", key = \"/nonexistent/key.pem\" }",
        "",
    );
    let (code, out, err) = run_cli(&["check", &cfg]);
    assert_eq!(code, 1, "missing certificate files: {out}{err}");
    assert!(
        err.contains("site[0].tls") && err.contains("/nonexistent/fullchain.pem"),
        "{err}"
    );
    // Not PEM at all.
    let junk = write(d, "junk.pem", "not a certificate\n");
    let cfg = config(
        d,
        &format!("tls = {{ cert = {junk:?}, key = {junk:?} }}"),
        "",
    );
    let (code, out, err) = run_cli(&["check", &cfg]);
    assert_eq!(code, 1, "junk PEM: {out}{err}");
    // A real certificate with another certificate's key.
    let (cert_a, _) = openssl_pair(d, "a", "erp.test");
    let (_, key_b) = openssl_pair(d, "b", "erp.test");
    let cfg = config(
        d,
        &format!("tls = {{ cert = {cert_a:?}, key = {key_b:?} }}"),
        "",
    );
    let (code, out, err) = run_cli(&["check", &cfg]);
    assert_eq!(code, 1, "mismatched key: {out}{err}");
    assert!(err.contains("site[0].tls"), "{err}");
    // The right pair is fine; one that does not cover the host warns.
    let (cert, key) = openssl_pair(d, "good", "erp.test");
    let cfg = config(
        d,
        &format!("tls = {{ cert = {cert:?}, key = {key:?} }}"),
        "",
    );
    let (code, out, err) = run_cli(&["check", &cfg]);
    assert_eq!(code, 0, "a good pair: {out}{err}");
    assert!(out.contains(": ok"), "{out}");
    let (cert, key) = openssl_pair(d, "other", "other.test");
    let cfg = config(
        d,
        &format!("tls = {{ cert = {cert:?}, key = {key:?} }}"),
        "",
    );
    let (code, out, err) = run_cli(&["check", &cfg]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("warning") && err.contains("erp.test"), "{err}");
}

#[test]
fn check_resolves_upstreams_and_checks_paths() {
    let dir = TempDir::new("check-paths");
    let d = dir.path();
    let cfg = config(d, "odoo = [\"no-such-host.invalid:8069\"]", "");
    let (code, out, err) = run_cli(&["check", &cfg]);
    assert_eq!(code, 1, "unresolvable upstream: {out}{err}");
    assert!(
        err.contains("site[0].odoo") && err.contains("no-such-host.invalid"),
        "{err}"
    );
    // A state dir serve cannot create.
    let text = format!(
        "state_dir = \"/proc/rampart-state\"\n[log]\naccess = {:?}\n[[site]]\nhosts = [\"erp.test\"]\n",
        d.join("no-such-dir/access.log").display().to_string()
    );
    let cfg = write(d, "paths.toml", &text);
    let (code, out, err) = run_cli(&["check", &cfg]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("error: state_dir"), "{err}");
    assert!(err.contains("error: log.access"), "{err}");
    // A world-readable admin token.
    let token = write(d, "admin.token", "0123456789abcdef0123456789abcdef\n");
    let mode = std::os::unix::fs::PermissionsExt::from_mode(0o644);
    std::fs::set_permissions(&token, mode).unwrap();
    let cfg = config(d, "", &format!("[listen]\nadmin_token_file = {token:?}"));
    let (code, out, err) = run_cli(&["check", &cfg]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("listen.admin_token_file") && err.contains("chmod 600"),
        "{err}"
    );
}

#[test]
fn check_json_lists_findings() {
    let dir = TempDir::new("check-json");
    let d = dir.path();
    let cfg = config(d, "odoo = [\"no-such-host.invalid:8069\"]", "");
    let (code, out, err) = run_cli(&["check", "--json", &cfg]);
    assert_eq!(code, 1, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON on stdout");
    assert_eq!(v["ok"], false);
    let f = &v["findings"][0];
    assert_eq!(
        (f["severity"].as_str(), f["key"].as_str()),
        (Some("error"), Some("site[0].odoo"))
    );
    // A file that does not parse: exit 2, still JSON.
    let bad = write(d, "bad.toml", "[listen]\nhttps = 5\n");
    let (code, out, _) = run_cli(&["check", "--json", &bad]);
    assert_eq!(code, 2);
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON on stdout");
    assert_eq!(v["ok"], false);
}

#[test]
fn check_print_shows_every_default_and_masks_secrets() {
    let dir = TempDir::new("check-print");
    let d = dir.path();
    let rest = "[backup]\npg = \"postgresql://odoo:pg-hunter2@db/\"\n\
                [[backup.target]]\nname = \"s3\"\nurl = \"s3://bucket/odoo\"\n\
                access_key_id = \"AKIAEXAMPLE\"\nsecret_access_key = \"s3-hunter2\"\n\
                [acme]\nemail = \"ops@example.com\"\neab = { kid = \"kid-1\", hmac_key = \"aHVudGVyMi1obWFjLWtleS0xMjM0NTY3ODkw\" }\n";
    let cfg = config(d, "", rest);
    let (code, out, err) = run_cli(&["check", "--print", &cfg]);
    assert_eq!(code, 0, "{out}{err}");
    for default in [
        "admin = \"127.0.0.1:9180\"",
        "max_conns = 256",
        "timeout = \"12m\"",
        "[site.health_check]",
        "path = \"/web/health\"",
        "zstd_level = 3",
        "access_key_id = \"AKIAEXAMPLE\"",
    ] {
        assert!(
            out.contains(default),
            "{default} missing from --print:\n{out}"
        );
    }
    for secret in [
        "pg-hunter2",
        "s3-hunter2",
        "aHVudGVyMi1obWFjLWtleS0xMjM0NTY3ODkw",
    ] {
        assert!(!out.contains(secret), "{secret} printed:\n{out}");
    }
    assert_eq!(out.matches("********").count(), 3, "{out}");
    // What it prints (without secrets) is a config that means the same thing.
    let cfg = config(
        d,
        "odoo = [\"127.0.0.1:18069\"]",
        "[guard]\nallow = [\"10.0.0.0/8\"]",
    );
    let (code, out, err) = run_cli(&["check", "--print", &cfg]);
    assert_eq!(code, 0, "{out}{err}");
    let printed = write(d, "printed.toml", &out);
    let (code, again, err) = run_cli(&["check", "--print", &printed]);
    assert_eq!(code, 0, "the printed config does not check: {err}\n{out}");
    assert_eq!(again, out);
}
