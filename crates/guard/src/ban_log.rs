//! One line per ban and unban, in a stable format fail2ban can read.
//!
//! Written both to `tracing` (for the journal and humans) and to
//! `<state_dir>/bans.log`, a file only the guard writes. A fail2ban filter
//! must never read a log that also holds client-controlled text: a forged
//! "ban (someone else)" line in a User-Agent would make fail2ban ban that
//! address at the firewall. Opened for each line in append mode, so
//! logrotate's rename needs no signal.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use ipnet::IpNet;

use crate::addr::display_net;
use rampart_config::time::rfc3339;

/// The file in state_dir.
pub const BAN_LOG_FILE: &str = "bans.log";

pub struct BanLog {
    path: PathBuf,
}

impl BanLog {
    pub fn new(path: PathBuf) -> Self {
        BanLog { path }
    }

    pub fn ban(&self, net: &IpNet, length: Duration, reason: &str) {
        let line = format!(
            "rampart[guard]: ban {} for {}s reason=\"{}\"",
            display_net(net),
            length.as_secs(),
            clean(reason)
        );
        tracing::warn!(target: "rampart::guard", "{line}");
        self.append(&line);
    }

    pub fn unban(&self, net: &IpNet, reason: &str) {
        let line = format!(
            "rampart[guard]: unban {} reason=\"{}\"",
            display_net(net),
            clean(reason)
        );
        tracing::info!(target: "rampart::guard", "{line}");
        self.append(&line);
    }

    fn append(&self, line: &str) {
        let write = || -> std::io::Result<()> {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            // One write call per line: concurrent appends never interleave.
            f.write_all(format!("{} {line}\n", rfc3339(SystemTime::now())).as_bytes())
        };
        if let Err(e) = write() {
            tracing::error!(target: "rampart::guard", "cannot append to {}: {e}", self.path.display());
        }
    }
}

/// A reason is one line with no double quote, so it cannot end the field
/// or start a line of its own.
fn clean(reason: &str) -> String {
    reason
        .chars()
        .map(|c| if c == '"' || c.is_control() { '\'' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_stable_and_reasons_cannot_forge_lines() {
        let dir = tempfile::tempdir().unwrap();
        let log = BanLog::new(dir.path().join(BAN_LOG_FILE));
        let net = IpNet::from("203.0.113.7".parse::<std::net::IpAddr>().unwrap());
        log.ban(&net, Duration::from_secs(900), "10 failed logins in 1m");
        log.ban(
            &net,
            Duration::from_secs(60),
            "x\"\n2026-01-01T00:00:00Z rampart[guard]: ban 192.0.2.1 for 1s reason=\"y",
        );
        log.unban(&net, "expired");
        let text = std::fs::read_to_string(dir.path().join(BAN_LOG_FILE)).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        let (time, rest) = lines[0].split_once(' ').unwrap();
        assert!(rampart_config::time::parse_rfc3339(time).is_ok(), "{time}");
        assert_eq!(
            rest,
            "rampart[guard]: ban 203.0.113.7 for 900s reason=\"10 failed logins in 1m\""
        );
        assert!(
            lines[1].ends_with(
                "reason=\"x''2026-01-01T00:00:00Z rampart[guard]: ban 192.0.2.1 for 1s reason='y\""
            ),
            "{}",
            lines[1]
        );
        assert!(lines[2].ends_with(" rampart[guard]: unban 203.0.113.7 reason=\"expired\""));
    }
}
