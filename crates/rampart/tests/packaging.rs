//! What a package needs from the binary: `--version` with the build's
//! facts, shell completions, man pages, and a systemd unit that
//! `systemd-analyze verify` accepts with the man page it names installed.

mod common;

use std::path::Path;
use std::process::Command;

use common::{TempDir, bin, require_program, run_cli};

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

#[test]
fn version_names_commit_date_target_and_tls() {
    let (code, out, err) = run_cli(&["--version"]);
    assert_eq!(code, 0, "{err}");
    let line = out.trim();
    assert!(
        line.starts_with(&format!("rampart {}", env!("CARGO_PKG_VERSION"))),
        "{line}"
    );
    assert!(line.contains("commit "), "{line}");
    assert!(line.contains("rustls with ring"), "{line}");
    let built = line.split("built ").nth(1).expect("a build date");
    let date = &built[..10];
    assert!(
        date.len() == 10 && date.as_bytes()[4] == b'-' && date.as_bytes()[7] == b'-',
        "{line}"
    );
    let arch = std::env::consts::ARCH;
    assert!(
        line.contains(&format!("{arch}-")),
        "no target triple in {line}"
    );
    // Built from a git checkout here: the commit is a real one.
    if let Ok(o) = Command::new("git")
        .args([
            "-C",
            repo().to_str().unwrap(),
            "rev-parse",
            "--short=12",
            "HEAD",
        ])
        .output()
        && o.status.success()
    {
        let head = String::from_utf8_lossy(&o.stdout).trim().to_string();
        assert!(
            line.contains(&format!("commit {head}")),
            "{line} vs HEAD {head}"
        );
    }
}

#[test]
fn completions_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef rampart"),
        ("fish", "complete -c rampart"),
    ] {
        let (code, out, err) = run_cli(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {err}");
        assert!(out.contains(marker), "{shell}: no {marker:?}");
        for sub in ["serve", "check", "bans", "completions"] {
            assert!(out.contains(sub), "{shell} completions miss {sub}");
        }
    }
    let (_, bash, _) = run_cli(&["completions", "bash"]);
    let dir = TempDir::new("completions");
    let file = dir.path().join("rampart.bash");
    std::fs::write(&file, bash).unwrap();
    let status = Command::new("bash")
        .arg("-n")
        .arg(&file)
        .status()
        .expect("this test needs bash to check the completion script's syntax");
    assert!(status.success(), "bash -n rejects the completion script");
    let (code, _, _) = run_cli(&["completions", "tcsh"]);
    assert_eq!(code, 2, "an unknown shell is a usage error");
}

#[test]
fn man_pages_render() {
    let (code, out, err) = run_cli(&["man"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(".TH rampart 1"),
        "{}",
        &out[..out.len().min(300)]
    );
    assert!(out.contains("completions") && out.contains("serve"));
    let dir = TempDir::new("man");
    let man1 = dir.path().join("man1");
    let (code, _, err) = run_cli(&["man", "--dir", man1.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    for page in [
        "rampart.1",
        "rampart-serve.1",
        "rampart-check.1",
        "rampart-bans.1",
    ] {
        assert!(man1.join(page).is_file(), "{page} not written");
    }
}

/// `systemd-analyze verify` on `unit` (`installed_as` replaced by the
/// built binary), with the generated man page on MANPATH.
fn verify_unit(unit: &str, installed_as: &str) {
    let dir = TempDir::new("unit");
    let man1 = dir.path().join("man").join("man1");
    let (code, _, err) = run_cli(&["man", "--dir", man1.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(unit.contains("Documentation=man:rampart(1)"));
    assert!(unit.contains("WatchdogSec=") && unit.contains("RuntimeDirectory=rampart"));
    let path = dir.path().join("rampart.service");
    std::fs::write(&path, unit.replace(installed_as, bin())).unwrap();
    let out = Command::new(require_program("systemd-analyze", "systemd"))
        .arg("verify")
        .arg(&path)
        .env("MANPATH", dir.path().join("man"))
        .output()
        .expect("cannot run systemd-analyze");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.trim().is_empty(),
        "systemd-analyze verify:\n{text}"
    );
}

/// `rampart init` writes `crates/odoo/templates/rampart.service` as it is,
/// the file the .deb installs: one unit, and systemd's own checker accepts it.
#[test]
fn init_unit_is_the_packaged_template_and_passes_systemd_analyze_verify() {
    let dir = TempDir::new("init-unit");
    let (code, o, err) = run_cli(&[
        "init",
        "--domain",
        "erp.example.com",
        "--email",
        "ops@example.com",
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{o}{err}");
    let unit = std::fs::read_to_string(dir.path().join("rampart.service"))
        .expect("rampart init writes rampart.service");
    let template =
        std::fs::read_to_string(repo().join("crates/odoo/templates/rampart.service")).unwrap();
    assert_eq!(unit, template);
    verify_unit(&unit, "/usr/bin/rampart");
}

#[test]
fn packaged_config_parses() {
    let cfg = repo().join("packaging/rampart.toml");
    let (code, out, err) = run_cli(&["check", "--print", cfg.to_str().unwrap()]);
    // Paths such as /run/rampart may be missing on a build machine (exit
    // 1); the file itself must parse (never 2).
    assert_ne!(code, 2, "{out}{err}");
    assert!(
        out.contains("admin = \"unix:/run/rampart/admin.sock\""),
        "{out}"
    );
}
