//! Stamps `rampart --version` with the commit, build date and target.
//! From a git checkout the commit comes from `git`; from a release
//! tarball (no .git, or no git installed) it is `RAMPART_COMMIT` if set,
//! else "unknown" -- the build never fails for want of git. The date
//! honours SOURCE_DATE_EPOCH so package builds are reproducible.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RAMPART_COMMIT");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let commit = std::env::var("RAMPART_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| {
            let c = git(&["rev-parse", "--short=12", "HEAD"])?;
            // Rebuild the stamp when HEAD moves (a commit, a checkout).
            for p in ["HEAD", "packed-refs"] {
                if let Some(path) = git(&["rev-parse", "--git-path", p]) {
                    println!("cargo:rerun-if-changed={path}");
                }
            }
            if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"])
                && let Some(path) = git(&["rev-parse", "--git-path", &r])
            {
                println!("cargo:rerun-if-changed={path}");
            }
            Some(c)
        })
        .unwrap_or_else(|| "unknown".into());
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0)
        });
    let date = jiff::Timestamp::from_second(secs)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .strftime("%Y-%m-%d");
    println!("cargo:rustc-env=RAMPART_COMMIT={commit}");
    println!("cargo:rustc-env=RAMPART_BUILD_DATE={date}");
    println!(
        "cargo:rustc-env=RAMPART_TARGET={}",
        std::env::var("TARGET").unwrap_or_else(|_| "unknown".into())
    );
}
