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
    systemd_analyze_verify(&path, &dir.path().join("man"));
}

/// `systemd-analyze verify UNIT` prints nothing and succeeds.
fn systemd_analyze_verify(unit: &Path, manpath: &Path) {
    let out = Command::new(require_program("systemd-analyze", "systemd"))
        .arg("verify")
        .arg(unit)
        .env("MANPATH", manpath)
        .output()
        .expect("cannot run systemd-analyze");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.trim().is_empty(),
        "systemd-analyze verify {}:\n{text}",
        unit.display()
    );
}

/// The odoo.service `rampart init` writes (its template) passes too, with
/// Odoo's program (absent here) played by `true`.
#[test]
fn init_odoo_unit_passes_systemd_analyze_verify() {
    let dir = TempDir::new("init-odoo-unit");
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
    let unit = std::fs::read_to_string(dir.path().join("odoo.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/odoo "), "{unit}");
    let truth = require_program("true", "coreutils");
    let path = dir.path().join("odoo-check.service");
    std::fs::write(
        &path,
        unit.replace("/usr/bin/odoo", truth.to_str().unwrap()),
    )
    .unwrap();
    systemd_analyze_verify(&path, dir.path());
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

/// `dpkg-deb ARGS`' stdout; a failure fails the test with its stderr.
fn dpkg_deb(args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new(require_program("dpkg-deb", "dpkg"))
        .args(args)
        .output()
        .expect("cannot run dpkg-deb");
    assert!(
        out.status.success(),
        "dpkg-deb {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The .deb as `packaging/build-deb.sh` makes it (cargo-deb with the
/// metadata in crates/rampart/Cargo.toml), from the binary under test
/// instead of a release build: its control data, its files and their
/// modes, the maintainer scripts, and the unit it installs, checked by
/// `systemd-analyze verify` with the package's own binary and man pages.
#[test]
fn deb_package_has_the_binary_unit_config_user_and_docs() {
    let cargo_deb = common::find_program("cargo-deb").unwrap_or_else(|| {
        panic!(
            "cargo-deb is not on PATH: cargo install --debug --locked --no-default-features --version 3.8.0 cargo-deb (scripts/test.sh does it)"
        )
    });
    let root = repo();
    // Man pages and completions, generated by the binary as build-deb.sh does.
    let gen_dir = root.join("packaging/generated");
    let _ = std::fs::remove_dir_all(&gen_dir);
    let man = gen_dir.join("man");
    let (code, _, err) = run_cli(&["man", "--dir", man.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    for page in std::fs::read_dir(&man).unwrap() {
        let st = Command::new("gzip")
            .args(["-9n"])
            .arg(page.unwrap().path())
            .status()
            .expect("cannot run gzip");
        assert!(st.success());
    }
    let completions = gen_dir.join("completions");
    std::fs::create_dir_all(&completions).unwrap();
    for (shell, file) in [
        ("bash", "rampart.bash"),
        ("zsh", "_rampart"),
        ("fish", "rampart.fish"),
    ] {
        let (code, out, err) = run_cli(&["completions", shell]);
        assert_eq!(code, 0, "{err}");
        std::fs::write(completions.join(file), out).unwrap();
    }

    // The binary under test: target/debug/rampart (or another profile's dir).
    let profile_dir = Path::new(bin()).parent().unwrap();
    let target_dir = profile_dir.parent().unwrap();
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    let out_dir = TempDir::new("deb");
    let out = Command::new(cargo_deb)
        .args(["deb", "--no-build", "-p", "rampart", "--profile", profile])
        .args(["--fast", "--strip", "--quiet", "-o"])
        .arg(out_dir.path())
        .env("CARGO_TARGET_DIR", target_dir)
        .current_dir(root)
        .output()
        .expect("cannot run cargo-deb");
    assert!(
        out.status.success(),
        "cargo deb: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&gen_dir).unwrap();
    let deb = std::fs::read_dir(out_dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .expect("cargo deb wrote no .deb");

    let info = dpkg_deb(&["-I".as_ref(), deb.as_os_str()]);
    for want in [
        "Package: rampart",
        "Section: httpd",
        "adduser",
        "conffiles",
        "postinst",
        "prerm",
        "postrm",
    ] {
        assert!(info.contains(want), "no {want:?} in dpkg-deb -I:\n{info}");
    }
    let listing = dpkg_deb(&["-c".as_ref(), deb.as_os_str()]);
    let mode_of = |path: &str| -> &str {
        listing
            .lines()
            .find(|l| l.ends_with(&format!(" .{path}")))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("{path} is not in the package:\n{listing}"))
    };
    for (path, mode) in [
        ("/usr/bin/rampart", "-rwxr-xr-x"),
        ("/etc/rampart/rampart.toml", "-rw-r-----"),
        ("/etc/logrotate.d/rampart", "-rw-r--r--"),
        ("/usr/lib/systemd/system/rampart.service", "-rw-r--r--"),
        ("/usr/share/man/man1/rampart.1.gz", "-rw-r--r--"),
        ("/usr/share/man/man1/rampart-serve.1.gz", "-rw-r--r--"),
        (
            "/usr/share/bash-completion/completions/rampart",
            "-rw-r--r--",
        ),
        ("/usr/share/zsh/vendor-completions/_rampart", "-rw-r--r--"),
        (
            "/usr/share/fish/vendor_completions.d/rampart.fish",
            "-rw-r--r--",
        ),
    ] {
        assert_eq!(mode_of(path), mode, "{path}");
    }

    // What it installs, unpacked.
    let unpacked = TempDir::new("deb-x");
    let root_fs = unpacked.path().join("root");
    let control = unpacked.path().join("control");
    dpkg_deb(&["-x".as_ref(), deb.as_os_str(), root_fs.as_os_str()]);
    dpkg_deb(&["-e".as_ref(), deb.as_os_str(), control.as_os_str()]);
    let read =
        |p: &Path| std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let conffiles = read(&control.join("conffiles"));
    assert!(
        conffiles.contains("/etc/rampart/rampart.toml")
            && conffiles.contains("/etc/logrotate.d/rampart"),
        "{conffiles}"
    );
    let postinst = read(&control.join("postinst"));
    for want in [
        "adduser --system --group --home /var/lib/rampart",
        "install -d -o rampart -g rampart -m 0700 /var/lib/rampart",
        "deb-systemd-helper enable rampart.service",
    ] {
        assert!(
            postinst.contains(want),
            "no {want:?} in postinst:\n{postinst}"
        );
    }
    let logrotate = read(&root_fs.join("etc/logrotate.d/rampart"));
    assert!(
        logrotate.contains("--signal=USR1") && logrotate.contains("/var/log/rampart/"),
        "{logrotate}"
    );
    // The unit is init's template, verified with the packaged binary and man pages.
    let unit = read(&root_fs.join("usr/lib/systemd/system/rampart.service"));
    assert_eq!(
        unit,
        read(&root.join("crates/odoo/templates/rampart.service"))
    );
    let packaged_bin = root_fs.join("usr/bin/rampart");
    let v = Command::new(&packaged_bin)
        .arg("--version")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&v.stdout).starts_with("rampart "),
        "the packaged binary does not run"
    );
    let unit_path = unpacked.path().join("rampart.service");
    std::fs::write(
        &unit_path,
        unit.replace("/usr/bin/rampart", packaged_bin.to_str().unwrap()),
    )
    .unwrap();
    systemd_analyze_verify(&unit_path, &root_fs.join("usr/share/man"));
    // The packaged config parses (paths like /run/rampart may be missing here).
    let (code, out, err) = run_cli(&[
        "check",
        "--config",
        root_fs.join("etc/rampart/rampart.toml").to_str().unwrap(),
    ]);
    assert_ne!(code, 2, "{out}{err}");
}
