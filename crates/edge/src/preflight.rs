//! `rampart check`: what `serve` would refuse or trip over in the edge's
//! sections, found without binding anything (the only write is a probe file, removed at once).

use std::net::ToSocketAddrs;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use crate::admin_addr::AdminAddr;
use crate::admin_token::AdminToken;
use crate::headers::security::HeaderSet;
use crate::state::EdgeConfig;

pub use rampart_certs::Problem;

fn problem(key: impl Into<String>, message: impl Into<String>, fatal: bool) -> Problem {
    Problem {
        key: key.into(),
        message: message.into(),
        fatal,
    }
}

/// What `serve` would refuse or trip over in the edge's sections, for `rampart check`.
pub fn preflight(cfg: &EdgeConfig) -> Vec<Problem> {
    let mut out = Vec::new();
    if let Some(p) = &cfg.listen.admin_token_file
        && let Err(e) = AdminToken::load(p)
    {
        out.push(problem("listen.admin_token_file", e, true));
    }
    if let Some(AdminAddr::Unix(path)) = &cfg.listen.admin {
        let key = "listen.admin";
        match path.parent() {
            Some(dir) if !dir.is_dir() => out.push(problem(
                key,
                format!("the directory {} does not exist", dir.display()),
                true,
            )),
            _ => {}
        }
        if let Ok(m) = std::fs::symlink_metadata(path)
            && !m.file_type().is_socket()
        {
            out.push(problem(
                key,
                format!("{} exists and is not a socket", path.display()),
                true,
            ));
        }
    }
    let access = cfg.log.access.as_str();
    if !matches!(access, "-" | "off") {
        writable_file("log.access", Path::new(access), &mut out);
    }
    for (i, s) in cfg.sites.iter().enumerate() {
        if let Err(e) = HeaderSet::new(&s.headers) {
            out.push(problem(
                format!("site[{i}].{e}"),
                "invalid header value",
                true,
            ));
        }
        for (field, list) in [("odoo", &s.odoo), ("websocket", &s.websocket)] {
            for a in list {
                let found = match a.to_socket_addrs().map(|mut it| it.next()) {
                    Ok(Some(_)) => None,
                    Ok(None) => Some("resolves to no address".to_string()),
                    Err(e) => Some(format!("does not resolve: {e}")),
                };
                if let Some(why) = found {
                    out.push(problem(
                        format!("site[{i}].{field}"),
                        format!("{a:?} {why}"),
                        true,
                    ));
                }
            }
        }
        for (j, p) in s.addons_path.iter().enumerate() {
            if !p.is_dir() {
                out.push(problem(
                    format!("site[{i}].addons_path[{j}]"),
                    format!(
                        "{} is not a directory: static files go to Odoo instead",
                        p.display()
                    ),
                    false,
                ));
            }
        }
        if let Some(d) = &s.data_dir
            && !d.join("filestore").is_dir()
        {
            out.push(problem(
                format!("site[{i}].data_dir"),
                format!(
                    "{} has no filestore directory: X-Accel-Redirect downloads would fail",
                    d.display()
                ),
                false,
            ));
        }
    }
    out
}

/// A file `serve` will append to: it exists and opens for writing, or its
/// directory exists and takes a new file.
pub fn writable_file(key: &str, path: &Path, out: &mut Vec<Problem>) {
    if path.exists() {
        if let Err(e) = std::fs::OpenOptions::new().append(true).open(path) {
            out.push(problem(key, format!("{}: {e}", path.display()), true));
        }
        return;
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Err(e) = writable_dir(dir) {
        out.push(problem(key, format!("{}: {e}", path.display()), true));
    }
}

/// Whether a new file can be made in `dir`: tried with a probe file that
/// is removed at once (permission bits alone miss ACLs, read-only mounts
/// and root).
pub fn writable_dir(dir: &Path) -> Result<(), String> {
    if !dir.is_dir() {
        return Err(format!("the directory {} does not exist", dir.display()));
    }
    let probe = dir.join(format!(".rampart-check.{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(format!("cannot write in {}: {e}", dir.display())),
    }
}
