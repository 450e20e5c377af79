//! A small client for the running server's admin listener, used by
//! `rampart bans`, `rampart certs renew` and `rampart reload`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::config::Config;

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
        .ok_or("the admin listener is off (listen.admin): cannot reach the running server")?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .map_err(|e| format!("cannot reach the running server's admin listener at {addr}: {e} (is `rampart serve` running?)"))?;
    s.set_read_timeout(Some(Duration::from_secs(60))).ok();
    let body = body.unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
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
    Ok((status, rest.to_string()))
}
