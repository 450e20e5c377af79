//! The nftables ruleset `rampart init` writes (`rampart.nft`), as Odoo's
//! deployment guide and Auto Odoo ask: only HTTP and HTTPS (and SSH, so the
//! administrator keeps their way in) reach the server; Odoo's own ports,
//! PostgreSQL's and Rampart's admin listener answer on loopback only, so a
//! mistaken `0.0.0.0` in odoo.conf or postgresql.conf is not a public door.
//!
//! It owns one table (`inet rampart`) and replaces only that table when
//! loaded, never `flush ruleset`: Docker's, fail2ban's or the distribution's
//! own rules stay as they are. Forwarded (container) traffic is not touched.

/// Odoo's HTTP and evented ports, PostgreSQL's, Rampart's admin listener.
pub const ODOO_HTTP_PORT: u16 = 8069;
/// Odoo's evented (websocket, longpolling) port.
pub const ODOO_EVENTED_PORT: u16 = 8072;
/// PostgreSQL's port.
pub const POSTGRES_PORT: u16 = 5432;
/// Rampart's admin listener's port.
pub const ADMIN_PORT: u16 = 9180;

/// The `Port` lines of an sshd_config (default 22 when there are none).
pub fn ssh_ports(sshd_config: &str) -> Vec<u16> {
    let mut ports: Vec<u16> = sshd_config
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            match (w.next(), w.next()) {
                (Some(k), Some(v)) if k.eq_ignore_ascii_case("port") => v.parse().ok(),
                _ => None,
            }
        })
        .filter(|p| *p != 0)
        .collect();
    if ports.is_empty() {
        ports.push(22);
    }
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// `rampart.nft` for a server whose sshd listens on `ssh_ports`
/// (`templates/rampart.nft`).
pub fn nftables(domain: &str, ssh_ports: &[u16]) -> String {
    let ssh_list = ssh_ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    crate::template::render(
        crate::template::RAMPART_NFT,
        &[
            ("domain", domain),
            ("ssh_list", &ssh_list),
            (
                "private_ports",
                &set(&[POSTGRES_PORT, ODOO_HTTP_PORT, ODOO_EVENTED_PORT, ADMIN_PORT]),
            ),
            ("ssh_ports", &set(ssh_ports)),
        ],
    )
}

fn set(ports: &[u16]) -> String {
    match ports {
        [one] => one.to_string(),
        many => format!(
            "{{ {} }}",
            many.iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_ports_from_sshd_config() {
        assert_eq!(ssh_ports("# Port 2222\nPermitRootLogin no\n"), vec![22]);
        assert_eq!(ssh_ports("Port 2222\nport 22\nPort 2222\n"), vec![22, 2222]);
        assert_eq!(ssh_ports("Port nope\n"), vec![22]);
    }

    #[test]
    fn ruleset_opens_only_web_and_ssh() {
        let r = nftables("erp.example.com", &[2222]);
        assert!(r.contains("tcp dport 2222 accept"), "{r}");
        assert!(r.contains("tcp dport { 80, 443 } accept"), "{r}");
        assert!(
            r.contains("tcp dport { 5432, 8069, 8072, 9180 } drop"),
            "{r}"
        );
        assert!(r.contains("policy drop"), "{r}");
        assert!(!r.contains("flush ruleset"), "{r}");
        // The private ports are dropped before anything is accepted.
        assert!(r.find("9180 } drop").unwrap() < r.find("2222 accept").unwrap());
    }
}
