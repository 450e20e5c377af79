//! Which address a request comes from, and how addresses are grouped.
//!
//! The guard must count the same address that Odoo logs and the access log
//! shows, or a ban lands on the wrong party (behind a misconfigured proxy,
//! fail2ban bans the proxy itself). X-Forwarded-For is only believed when the
//! socket peer is a trusted proxy, and then only as far back as the chain
//! stays within trusted proxies: anything left of the first untrusted hop was
//! written by the client and may be forged.

use std::net::{IpAddr, Ipv6Addr};

use ipnet::{IpNet, Ipv6Net};
use rampart_config::Cidr;

/// IPv4-mapped IPv6 (`::ffff:192.0.2.1`, what a dual-stack socket reports)
/// is the IPv4 address it carries, so both forms count as one client.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// The client: `peer` unless it is a trusted proxy, else the first untrusted
/// address of X-Forwarded-For read right to left (every header line, comma
/// lists). An unparsable entry stops the walk at the last good address, so a
/// garbage value can neither hide the client nor name an arbitrary one.
pub fn client_addr(trusted: &[Cidr], peer: IpAddr, headers: &http::HeaderMap) -> IpAddr {
    let peer = canonical_ip(peer);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    // Header lines in order; within a line, left to right; walk it all reversed.
    let mut entries: Vec<&str> = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        match value.to_str() {
            Ok(s) => entries.extend(s.split(',')),
            // Non-ASCII bytes: treat the line as one garbage entry.
            Err(_) => entries.push("\u{0}"),
        }
    }
    let mut last_good = peer;
    for raw in entries.iter().rev() {
        let Some(ip) = parse_forwarded_entry(raw) else {
            break;
        };
        last_good = ip;
        if !is_trusted(ip) {
            return ip;
        }
    }
    last_good
}

/// One X-Forwarded-For entry: `192.0.2.7`, `2001:db8::1`, and the forms some
/// balancers add: `192.0.2.7:5678`, `[2001:db8::1]`, `[2001:db8::1]:443`.
fn parse_forwarded_entry(raw: &str) -> Option<IpAddr> {
    let s = raw.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical_ip(ip));
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        return inside
            .parse::<Ipv6Addr>()
            .ok()
            .map(|v6| canonical_ip(IpAddr::V6(v6)));
    }
    let (host, port) = s.rsplit_once(':')?;
    if !is_port(port) {
        return None;
    }
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit())
}

/// The unit the guard counts by: an IPv4 address, or the /64 of an IPv6 one
/// (one subscriber gets a whole /64, so per-address counting would let a
/// single attacker rotate through 2^64 fresh identities).
pub fn client_key(ip: IpAddr) -> IpNet {
    match canonical_ip(ip) {
        IpAddr::V4(v4) => IpNet::from(IpAddr::V4(v4)),
        IpAddr::V6(v6) => IpNet::V6(Ipv6Net::new(v6, 64).expect("64 is a valid prefix").trunc()),
    }
}

/// The host entry for an address (/32 or /128).
pub fn host_net(ip: IpAddr) -> IpNet {
    IpNet::from(canonical_ip(ip))
}

/// Shown as `203.0.113.7` for a single address, `2001:db8:1:2::/64` for a net.
pub fn display_net(net: &IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.to_string()
    }
}

/// Parses what an administrator types: a single address, or an IPv6 /64
/// (the unit the guard bans IPv6 clients by).
pub fn parse_ban_target(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(host_net(ip));
    }
    match s.parse::<IpNet>() {
        Ok(net) if net.prefix_len() == net.max_prefix_len() => Ok(host_net(net.addr())),
        Ok(IpNet::V6(v6)) if v6.prefix_len() == 64 => Ok(IpNet::V6(v6.trunc())),
        Ok(_) => Err(format!(
            "cannot ban {s:?}: give one address (203.0.113.7, 2001:db8::1) or an IPv6 /64"
        )),
        Err(_) => Err(format!("{s:?} is not an IP address")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn xff(lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append("x-forwarded-for", l.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_claims() {
        let trusted = cidrs(&["10.0.0.0/8"]);
        let h = xff(&["198.51.100.9"]);
        assert_eq!(
            client_addr(&trusted, ip("203.0.113.7"), &h),
            ip("203.0.113.7")
        );
        assert_eq!(
            client_addr(&[], ip("10.0.0.1"), &h),
            ip("10.0.0.1"),
            "no trusted proxies"
        );
    }

    #[test]
    fn trusted_peer_hands_over_the_rightmost_untrusted_hop() {
        let trusted = cidrs(&["10.0.0.0/8", "192.0.2.1"]);
        let h = xff(&["203.0.113.7, 192.0.2.1"]);
        assert_eq!(client_addr(&trusted, ip("10.0.0.2"), &h), ip("203.0.113.7"));
        // Two header lines are one list, in order.
        let h = xff(&["203.0.113.7", "192.0.2.1"]);
        assert_eq!(client_addr(&trusted, ip("10.0.0.2"), &h), ip("203.0.113.7"));
        // No header from a trusted peer: the peer itself.
        assert_eq!(
            client_addr(&trusted, ip("10.0.0.2"), &HeaderMap::new()),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn spoofed_entries_left_of_the_client_are_ignored() {
        let trusted = cidrs(&["10.0.0.0/8"]);
        // The attacker sent "X-Forwarded-For: 1.1.1.1, 10.9.9.9"; our proxy appended its peer.
        let h = xff(&["1.1.1.1, 10.9.9.9, 203.0.113.7"]);
        assert_eq!(client_addr(&trusted, ip("10.0.0.2"), &h), ip("203.0.113.7"));
    }

    #[test]
    fn garbage_stops_the_walk_at_the_last_good_hop() {
        let trusted = cidrs(&["10.0.0.0/8"]);
        let h = xff(&["203.0.113.7, not-an-ip, 10.1.1.1"]);
        assert_eq!(client_addr(&trusted, ip("10.0.0.2"), &h), ip("10.1.1.1"));
        let h = xff(&["203.0.113.7, unknown"]);
        assert_eq!(client_addr(&trusted, ip("10.0.0.2"), &h), ip("10.0.0.2"));
        let h = xff(&["", ""]);
        assert_eq!(client_addr(&trusted, ip("10.0.0.2"), &h), ip("10.0.0.2"));
    }

    #[test]
    fn all_trusted_chain_gives_the_leftmost() {
        let trusted = cidrs(&["10.0.0.0/8"]);
        let h = xff(&["10.3.3.3, 10.2.2.2"]);
        assert_eq!(client_addr(&trusted, ip("10.0.0.2"), &h), ip("10.3.3.3"));
    }

    #[test]
    fn ipv6_and_ports_and_mapped_addresses() {
        let trusted = cidrs(&["2001:db8:ffff::/48", "127.0.0.1"]);
        let h = xff(&["[2001:db8:1::5]:443, 2001:db8:ffff::2"]);
        assert_eq!(
            client_addr(&trusted, ip("2001:db8:ffff::1"), &h),
            ip("2001:db8:1::5")
        );
        // A dual-stack socket reports ::ffff:127.0.0.1 for a trusted IPv4 proxy.
        let h = xff(&["203.0.113.7:5678"]);
        assert_eq!(
            client_addr(&trusted, ip("::ffff:127.0.0.1"), &h),
            ip("203.0.113.7")
        );
        let h = xff(&["::ffff:203.0.113.8"]);
        assert_eq!(
            client_addr(&trusted, ip("127.0.0.1"), &h),
            ip("203.0.113.8")
        );
        let h = xff(&["[2001:db8::1]x"]);
        assert_eq!(client_addr(&trusted, ip("127.0.0.1"), &h), ip("127.0.0.1"));
    }

    #[test]
    fn ipv6_is_counted_by_64() {
        assert_eq!(
            client_key(ip("2001:db8:1:2:aaaa::1")),
            client_key(ip("2001:db8:1:2:bbbb::9"))
        );
        assert_ne!(
            client_key(ip("2001:db8:1:2::1")),
            client_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            display_net(&client_key(ip("2001:db8:1:2::7"))),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            display_net(&client_key(ip("::ffff:192.0.2.1"))),
            "192.0.2.1"
        );
    }

    #[test]
    fn ban_targets() {
        assert_eq!(
            display_net(&parse_ban_target("203.0.113.7").unwrap()),
            "203.0.113.7"
        );
        assert_eq!(
            display_net(&parse_ban_target("2001:db8::1/128").unwrap()),
            "2001:db8::1"
        );
        assert_eq!(
            display_net(&parse_ban_target("2001:db8:0:1:5::/64").unwrap()),
            "2001:db8:0:1::/64"
        );
        assert!(
            parse_ban_target("10.0.0.0/8")
                .unwrap_err()
                .contains("one address")
        );
        assert!(parse_ban_target("nope").unwrap_err().contains("not an IP"));
    }
}
