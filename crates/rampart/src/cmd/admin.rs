//! A small client for the running server's admin listener (TCP or Unix
//! socket), used by `rampart bans`, `rampart cache`, `rampart certs renew` and
//! `rampart reload`. It sends what the listener requires of a change: a Host naming
//! it, `Content-Type: application/json`, and the token from
//! `admin_token_file` when one is set.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use rampart_edge::admin::AdminAddr;

use crate::config::Config;

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

/// Sends one request to the admin listener named in the config; returns
/// the status and body.
pub fn call(
    config: &Config,
    method: &str,
    path: &str,
    body: Option<String>,
) -> Result<(u16, String), String> {
    let addr = config
        .listen
        .admin
        .as_ref()
        .ok_or("the admin listener is off (listen.admin): cannot reach the running server")?;
    let auth = match &config.listen.admin_token_file {
        None => String::new(),
        Some(p) => {
            let t = std::fs::read_to_string(p).map_err(|e| {
                format!(
                    "admin_token_file {}: {e} (run this as the user that runs rampart serve)",
                    p.display()
                )
            })?;
            format!("Authorization: Bearer {}\r\n", t.trim())
        }
    };
    let unreachable = |e: std::io::Error| {
        format!(
            "cannot reach the running server's admin listener at {addr}: {e} (is `rampart serve` running?)"
        )
    };
    let (mut s, host): (Box<dyn Stream>, String) = match addr {
        AdminAddr::Tcp(a) => {
            let s = TcpStream::connect_timeout(a, Duration::from_secs(3)).map_err(unreachable)?;
            s.set_read_timeout(Some(Duration::from_secs(60))).ok();
            (Box::new(s), a.to_string())
        }
        AdminAddr::Unix(p) => {
            let s = UnixStream::connect(p).map_err(unreachable)?;
            s.set_read_timeout(Some(Duration::from_secs(60))).ok();
            (Box::new(s), "localhost".to_string())
        }
    };
    let body = body.unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())
        .map_err(|e| format!("admin listener {addr}: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("admin listener {addr}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .ok_or("admin listener: malformed answer")?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("admin listener: malformed status line")?;
    if status == 401 {
        return Err(format!(
            "the admin listener at {addr} wants the admin token: set admin_token_file in [listen] to the file `rampart serve` uses"
        ));
    }
    Ok((status, rest.to_string()))
}
