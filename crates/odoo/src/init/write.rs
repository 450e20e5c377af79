//! What happens after generating: the files written into the output
//! directory ([`write_files`], the only part of `init` that touches the
//! disk, refusing to replace anything unless forced) and the steps the
//! user takes next. Apart from the generators, which are pure.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use super::{DATA_DIR, GenFile, InitOptions};
use crate::conf::ConfError;
use rampart_config::atomic::write_atomic;

/// What [`write_files`] did with each file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// It did not exist.
    Created(PathBuf),
    /// It existed and `--force` replaced it.
    Replaced(PathBuf),
    /// Kept because it holds secrets in use (`.env`).
    Kept(PathBuf),
}

/// Why `rampart init` wrote nothing, or stopped partway.
#[derive(Debug)]
pub enum InitError {
    /// Files exist and `--force` was not given; nothing was written.
    Exists(Vec<PathBuf>),
    /// A file could not be written: the file, and what the system said.
    Io(PathBuf, io::Error),
    /// The existing odoo.conf to edit is malformed.
    Conf(ConfError),
}

impl std::fmt::Display for InitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InitError::Exists(paths) => {
                let list: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
                write!(
                    f,
                    "{} already exist(s); nothing was written. Use --force to replace them (odoo.conf is then edited in place, keeping its comments and other keys)",
                    list.join(", ")
                )
            }
            InitError::Io(p, e) => write!(f, "cannot write {}: {e}", p.display()),
            InitError::Conf(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for InitError {}

/// Writes `files` into `dir`. Without `force`, any existing file (other
/// than kept ones) stops everything before a byte is written. Each file is
/// replaced atomically.
pub fn write_files(dir: &Path, files: &[GenFile], force: bool) -> Result<Vec<Written>, InitError> {
    if !force {
        let existing: Vec<PathBuf> = files
            .iter()
            .filter(|f| !f.keep_existing)
            .map(|f| dir.join(f.name))
            .filter(|p| p.exists())
            .collect();
        if !existing.is_empty() {
            return Err(InitError::Exists(existing));
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| InitError::Io(dir.to_path_buf(), e))?;
    let mut done = Vec::new();
    for f in files {
        let path = dir.join(f.name);
        let existed = path.exists();
        if existed && f.keep_existing {
            done.push(Written::Kept(path));
            continue;
        }
        write_atomic(&path, f.contents.as_bytes(), f.mode)
            .map_err(|e| InitError::Io(path.clone(), e))?;
        done.push(if existed {
            Written::Replaced(path)
        } else {
            Written::Created(path)
        });
    }
    Ok(done)
}

/// What to do after `init`, for a plain server and for compose.
pub fn next_steps(o: &InitOptions, dir: &Path) -> String {
    let d = dir.display();
    let mut s = String::new();
    let _ = writeln!(s, "Next steps on a server with systemd (files in {d}):");
    let steps = [
        format!("sudo -u postgres psql -f {d}/postgres-roles.sql"),
        "useradd --system --home /var/lib/odoo odoo; useradd --system --groups odoo rampart   (if they do not exist; in group odoo, rampart reads the filestore)".into(),
        "the binary at /usr/bin/rampart, where rampart.service runs it: the rampart .deb puts it there, else install -m 755 rampart /usr/bin/".into(),
        format!("install -d -o odoo -g odoo -m 750 {DATA_DIR} && install -o root -g odoo -m 640 {d}/odoo.conf /etc/odoo/odoo.conf"),
        format!(
            "sudo -u odoo odoo --config /etc/odoo/odoo.conf -d {} -i base --stop-after-init   (first start: creates the tables)",
            o.db
        ),
        format!("install -d /etc/rampart && install -o root -g rampart -m 640 {d}/rampart.toml /etc/rampart/rampart.toml"),
        "rampart check --config /etc/rampart/rampart.toml".into(),
        format!("install -m 644 {d}/odoo.service {d}/rampart.service /etc/systemd/system/ && systemctl daemon-reload"),
        "systemctl enable --now odoo rampart".into(),
        format!(
            "nft -c -f {d}/rampart.nft && nft -f {d}/rampart.nft   (firewall: 80/443 and SSH on {}; Odoo, PostgreSQL and the admin port from loopback only; see the file to keep it across reboots)",
            o.ssh_ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        format!(
            "point the DNS name {} at this server; ports 80 and 443 must reach it (ACME)",
            o.domain
        ),
        "rampart audit --odoo-conf /etc/odoo/odoo.conf --pg \"host=/run/postgresql user=postgres\" --config /etc/rampart/rampart.toml".into(),
        format!("rampart verify https://{}", o.domain),
    ];
    for (i, step) in steps.iter().enumerate() {
        let _ = writeln!(s, "  {:>2}. {step}", i + 1);
    }
    let _ = writeln!(
        s,
        "With containers instead: cd {d} && docker compose up -d   (then the audit and verify steps)"
    );
    s
}
