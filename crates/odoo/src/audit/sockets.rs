//! Live sockets: Odoo's, PostgreSQL's and Rampart's admin ports listening on
//! an address other than loopback, read from `/proc/net/tcp` and `tcp6`
//! (what is listening now, not what a config file says: an odoo.conf
//! overridden on the command line, a container publishing a port, a
//! PostgreSQL with `listen_addresses = '*'`).
//!
//! The kernel's table is parsed by hand: it is a fixed text format (one
//! socket a line, addresses as hex words in the kernel's byte order) and
//! `ss` may not be installed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{Finding, Severity};

/// A port `audit` watches and what it belongs to.
#[derive(Debug, Clone)]
pub struct WatchedPort {
    /// The TCP port.
    pub port: u16,
    /// e.g. "Odoo's HTTP port (http_port)".
    pub what: String,
    /// Whose port it is, which decides the advice given.
    pub kind: PortKind,
}

/// Whose a watched port is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortKind {
    /// Odoo's HTTP or evented port.
    Odoo,
    /// PostgreSQL.
    Postgres,
    /// Rampart's admin listener.
    Admin,
}

/// Listening TCP sockets in `/proc/net/tcp` + `/proc/net/tcp6` text.
pub fn listening(tables: &[&str]) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for table in tables {
        for line in table.lines().skip(1) {
            let mut f = line.split_whitespace();
            let (Some(_), Some(local), Some(_), Some(state)) =
                (f.next(), f.next(), f.next(), f.next())
            else {
                continue;
            };
            // 0A: TCP_LISTEN.
            if state != "0A" {
                continue;
            }
            if let Some(a) = parse_addr(local) {
                out.push(a);
            }
        }
    }
    out
}

/// `0100007F:1F90` or 32 hex digits `:port`; each 32-bit word is printed
/// from the kernel's memory as a native integer, so native-endian bytes
/// give back the address bytes.
fn parse_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |h: &str| u32::from_str_radix(h, 16).ok().map(u32::to_ne_bytes);
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(ip)?)),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(ip.get(i * 8..i * 8 + 8)?)?);
            }
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

fn loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Reads the live tables (Linux).
pub fn read_live() -> std::io::Result<Vec<SocketAddr>> {
    let v4 = std::fs::read_to_string("/proc/net/tcp")?;
    // No IPv6 in the kernel: no tcp6 table.
    let v6 = std::fs::read_to_string("/proc/net/tcp6").unwrap_or_default();
    Ok(listening(&[&v4, &v6]))
}

/// One finding per watched port with a listener off loopback.
pub fn audit_sockets(listeners: &[SocketAddr], watched: &[WatchedPort]) -> Vec<Finding> {
    let mut out = Vec::new();
    for w in watched {
        let mut public: Vec<String> = listeners
            .iter()
            .filter(|a| a.port() == w.port && !loopback(a.ip()))
            .map(|a| match a.ip() {
                IpAddr::V4(v) if v.is_unspecified() => format!("{a} (every IPv4 address)"),
                IpAddr::V6(v) if v.is_unspecified() => format!("{a} (every address)"),
                _ => a.to_string(),
            })
            .collect();
        public.sort();
        public.dedup();
        if public.is_empty() {
            continue;
        }
        let (id, severity, why, fix) = match w.kind {
            PortKind::Odoo => (
                "odoo-port-public",
                Severity::High,
                "whoever reaches this address talks to Odoo directly, around Rampart: no TLS, no \
                 login limits, no database-manager block, a spoofable X-Forwarded-For",
                "http_interface = 127.0.0.1 in odoo.conf (it also binds the evented port), or \
                 firewall the port (rampart init writes rampart.nft)",
            ),
            PortKind::Postgres => (
                "postgres-port-public",
                Severity::Medium,
                "PostgreSQL accepts connections from the network: only pg_hba.conf stands between \
                 the database and password guessing",
                "listen_addresses = 'localhost' in postgresql.conf when Odoo runs on this machine; \
                 otherwise let only Odoo's hosts reach the port (firewall, rampart.nft)",
            ),
            PortKind::Admin => (
                "admin-port-public",
                Severity::High,
                "Rampart's admin listener (status, bans, reload) is reachable from the network",
                "listen.admin = \"127.0.0.1:9180\" or a unix: socket in rampart.toml, reached \
                 through an SSH tunnel; set admin_token_file",
            ),
        };
        out.push(
            Finding::new(
                id,
                severity,
                format!("{} listens on {}", w.what, public.join(", ")),
            )
            .why(why)
            .fix(fix)
            .at(format!("live socket port {}", w.port)),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An address as the kernel prints it: each 32-bit word of the address
    /// bytes as a native integer, in hex.
    fn kernel_hex(ip: IpAddr) -> String {
        let bytes = match ip {
            IpAddr::V4(v) => v.octets().to_vec(),
            IpAddr::V6(v) => v.octets().to_vec(),
        };
        bytes
            .chunks(4)
            .map(|w| format!("{:08X}", u32::from_ne_bytes(w.try_into().unwrap())))
            .collect()
    }

    fn table(rows: &[(&str, u16, &str)]) -> String {
        let mut t = String::from("  sl  local_address rem_address   st tx_queue rx_queue\n");
        for (i, (ip, port, state)) in rows.iter().enumerate() {
            let ip: IpAddr = ip.parse().unwrap();
            t.push_str(&format!(
                "   {i}: {}:{port:04X} {}:0000 {state} 00000000:00000000 00:00000000 0 0 {i}\n",
                kernel_hex(ip),
                kernel_hex(ip)
            ));
        }
        t
    }

    #[test]
    fn listeners_from_the_kernel_tables() {
        // On a little-endian machine 127.0.0.1 reads 0100007F, as in the real file.
        if cfg!(target_endian = "little") {
            assert_eq!(kernel_hex("127.0.0.1".parse().unwrap()), "0100007F");
        }
        let tcp = table(&[
            ("127.0.0.1", 8069, "0A"),
            ("0.0.0.0", 5432, "0A"),
            // An established connection, not a listener.
            ("127.0.0.1", 8069, "01"),
        ]);
        let tcp6 = table(&[
            ("::1", 9180, "0A"),
            ("::", 8072, "0A"),
            ("::ffff:127.0.0.1", 8069, "0A"),
        ]);
        let l = listening(&[&tcp, &tcp6]);
        let shown: Vec<String> = l.iter().map(|a| a.to_string()).collect();
        assert_eq!(
            shown,
            [
                "127.0.0.1:8069",
                "0.0.0.0:5432",
                "[::1]:9180",
                "[::]:8072",
                "[::ffff:127.0.0.1]:8069"
            ]
        );
        let watched = |port, kind| WatchedPort {
            port,
            what: format!("port {port}"),
            kind,
        };
        let f = audit_sockets(
            &l,
            &[
                watched(8069, PortKind::Odoo),
                watched(8072, PortKind::Odoo),
                watched(5432, PortKind::Postgres),
                watched(9180, PortKind::Admin),
            ],
        );
        let ids: Vec<_> = f.iter().map(|f| (f.id, f.what.as_str())).collect();
        assert_eq!(
            ids,
            [
                (
                    "odoo-port-public",
                    "port 8072 listens on [::]:8072 (every address)"
                ),
                (
                    "postgres-port-public",
                    "port 5432 listens on 0.0.0.0:5432 (every IPv4 address)"
                ),
            ]
        );
    }
}
