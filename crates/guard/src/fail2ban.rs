//! Filters and jails for those who also ban at the firewall with fail2ban
//! (`rampart fail2ban` prints them).
//!
//! Two sources: Odoo's own log (what Odoo's deployment guide sets up, with
//! the logger name of current versions and of old ones), and Rampart's ban
//! log (`<state_dir>/bans.log`), which carries the guard's verdicts,
//! including XML-RPC attempts that Odoo logs "from n/a" and fail2ban on
//! Odoo's log can never see. The Rampart jail reads that file rather than the
//! journal because only the guard writes it: no client-controlled text
//! (User-Agent, paths) can pose as a ban line there.

use std::fmt::Write;
use std::path::Path;

use crate::GuardConfig;
use crate::bans::MAX_BAN;

/// `/etc/fail2ban/filter.d/odoo-login.conf`.
pub fn odoo_filter() -> String {
    "\
# Odoo's failed logins, e.g.
#   2026-11-23 14:56:31,506 24849 INFO demo1 odoo.addons.base.models.res_users: Login failed for db:demo1 login:admin from 203.0.113.7
# The logger is odoo.addons.base.models.res_users (Odoo 11+) or
# odoo.addons.base.res.res_users (older). XML-RPC attempts are logged
# \"from n/a\": they carry no address and are invisible to this filter
# (Rampart's own guard counts them; see rampart-guard.conf).
# Anchored at the end of the line so a login name containing \" from <addr>\"
# cannot make fail2ban ban someone else.
[Definition]
failregex = ^.* odoo\\.addons\\.base\\.(?:models|res)\\.res_users: Login failed for db:.* login:.* from <ADDR>\\s*$
ignoreregex =
"
    .to_string()
}

/// `/etc/fail2ban/filter.d/rampart-guard.conf`.
pub fn rampart_filter() -> String {
    "\
# Rampart's ban log (<state_dir>/bans.log, written only by the guard), e.g.
#   2026-11-24T00:52:18Z rampart[guard]: ban 203.0.113.7 for 900s reason=\"10 failed logins in 1m\"
#   2026-11-24T00:53:02Z rampart[guard]: ban 2001:db8:1:2::/64 for 3600s reason=\"banned by an administrator\"
#   2026-11-24T01:07:18Z rampart[guard]: unban 203.0.113.7 reason=\"expired\"
# IPv6 clients are banned by /64, hence <SUBNET>.
[Definition]
failregex = ^\\s*rampart\\[guard\\]: ban <SUBNET> for \\d+s reason=\"[^\"]*\"\\s*$
ignoreregex =
"
    .to_string()
}

/// Where each jail reads from.
pub struct JailSources<'a> {
    /// Odoo's log file, read for "Login failed" lines.
    pub odoo_log: &'a Path,
    /// The guard's ban log, `<state_dir>/bans.log`.
    pub ban_log: &'a Path,
}

/// `/etc/fail2ban/jail.d/rampart.local`: thresholds from `[guard]`, and
/// `repeat_factor` as fail2ban's ban-time multipliers.
pub fn jails(cfg: &GuardConfig, src: &JailSources) -> String {
    let lf = &cfg.login_failures;
    let ban = lf.ban.get().as_secs().max(1);
    let mut multipliers = Vec::new();
    let mut m: u64 = 1;
    while multipliers.len() < 8 {
        multipliers.push(m.to_string());
        if ban.saturating_mul(m) >= MAX_BAN.as_secs() || lf.repeat_factor.get() == 1 {
            break;
        }
        m = m.saturating_mul(u64::from(lf.repeat_factor.get()));
    }
    // Never ban a trusted proxy: behind one, every client would be locked out.
    let ignore: Vec<String> = std::iter::once("127.0.0.1/8 ::1".to_string())
        .chain(
            cfg.allow
                .iter()
                .chain(&cfg.trusted_proxies)
                .map(|c| c.to_string()),
        )
        .collect();
    let mut out = String::new();
    let common = |out: &mut String| {
        let _ = writeln!(out, "port = http,https");
        let _ = writeln!(out, "usedns = no");
        let _ = writeln!(out, "ignoreip = {}", ignore.join(" "));
        let _ = writeln!(out, "bantime = {ban}");
        let _ = writeln!(out, "bantime.increment = true");
        let _ = writeln!(out, "bantime.multipliers = {}", multipliers.join(" "));
        let _ = writeln!(out, "bantime.maxtime = {}", MAX_BAN.as_secs());
    };
    let _ = writeln!(
        out,
        "# Odoo's log: {} failures in {} ban for {}.",
        lf.max, lf.within, lf.ban
    );
    let _ = writeln!(out, "[odoo-login]");
    let _ = writeln!(out, "enabled = true");
    let _ = writeln!(out, "filter = odoo-login");
    let _ = writeln!(out, "logpath = {}", src.odoo_log.display());
    let _ = writeln!(out, "maxretry = {}", lf.max);
    let _ = writeln!(out, "findtime = {}", lf.within.get().as_secs().max(1));
    common(&mut out);
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "# Rampart's own bans, mirrored at the firewall: one line is enough."
    );
    let _ = writeln!(out, "[rampart-guard]");
    let _ = writeln!(out, "enabled = true");
    let _ = writeln!(out, "filter = rampart-guard");
    let _ = writeln!(out, "logpath = {}", src.ban_log.display());
    let _ = writeln!(out, "maxretry = 1");
    let _ = writeln!(out, "findtime = 3600");
    common(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipnet::IpNet;
    use std::process::Command;
    use std::time::Duration;

    /// Runs fail2ban's own matcher over `log` with `filter`; returns the matched lines.
    fn fail2ban_matches(filter: &str, log: &str) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let filter_path = dir.path().join("filter.conf");
        let log_path = dir.path().join("test.log");
        std::fs::write(&filter_path, filter).unwrap();
        std::fs::write(&log_path, log).unwrap();
        let out = Command::new("fail2ban-regex")
            .args(["--print-all-matched", "--raw"])
            .arg(&log_path)
            .arg(&filter_path)
            .output()
            .expect("fail2ban-regex (Debian package fail2ban, installed by scripts/test.sh)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .skip_while(|l| !l.starts_with("|- Matched line(s):"))
            .skip(1)
            .take_while(|l| l.starts_with("|  "))
            .map(|l| l.trim_start_matches("|  ").trim().to_string())
            .collect()
    }

    #[test]
    fn odoo_filter_matches_current_and_old_loggers_only() {
        let log = "\
2026-11-23 14:56:31,506 24849 INFO demo1 odoo.addons.base.models.res_users: Login failed for db:demo1 login:admin from 203.0.113.7
2019-03-01 10:00:00,000 1200 INFO prod odoo.addons.base.res.res_users: Login failed for db:prod login:bob from 198.51.100.2
2026-11-23 14:56:32,506 24849 INFO demo1 odoo.addons.base.models.res_users: Login failed for db:demo1 login:admin from n/a
2026-11-23 14:56:33,506 24849 INFO demo1 odoo.addons.base.models.res_users: Login failed for db:demo1 login:x from 192.0.2.99 from n/a
2026-11-23 14:56:34,506 24849 INFO demo1 odoo.addons.base.models.res_users: Login successful for db:demo1 login:admin from 203.0.113.8
2026-11-23 14:56:35,506 24849 INFO demo1 odoo.addons.evil.models.res_users: Login failed for db:demo1 login:admin from 192.0.2.1
";
        let matched = fail2ban_matches(&odoo_filter(), log);
        assert_eq!(matched.len(), 2, "{matched:#?}");
        assert!(matched[0].ends_with("from 203.0.113.7"));
        assert!(matched[1].ends_with("from 198.51.100.2"));
    }

    #[test]
    fn rampart_filter_matches_the_ban_lines_the_guard_logs() {
        // Written by the guard itself, so the test reads what it really writes.
        let dir = tempfile::tempdir().unwrap();
        let log = crate::ban_log::BanLog::new(dir.path().join("bans.log"));
        let v4: IpNet = "203.0.113.7/32".parse().unwrap();
        let v6: IpNet = "2001:db8:1:2::/64".parse().unwrap();
        log.ban(&v4, Duration::from_secs(900), "10 failed logins in 1m");
        log.ban(&v6, Duration::from_secs(3600), "banned by an administrator");
        log.unban(&v4, "expired");
        let mut text = std::fs::read_to_string(dir.path().join("bans.log")).unwrap();
        // Not a guard line: text before the marker.
        text.push_str(
            "2026-11-24T00:52:21Z GET /x rampart[guard]: ban 192.0.2.1 for 1s reason=\"x\"\n",
        );
        let matched = fail2ban_matches(&rampart_filter(), &text);
        assert_eq!(matched.len(), 2, "{matched:#?}");
        assert!(
            matched[0].contains("ban 203.0.113.7 for 900s"),
            "{matched:#?}"
        );
        assert!(
            matched[1].contains("ban 2001:db8:1:2::/64 for 3600s"),
            "{matched:#?}"
        );
    }

    #[test]
    fn jails_follow_the_guard_config() {
        let cfg = GuardConfig {
            trusted_proxies: vec!["192.0.2.10".parse().unwrap()],
            allow: vec!["10.0.0.0/8".parse().unwrap()],
            ..Default::default()
        };
        let text = jails(
            &cfg,
            &JailSources {
                odoo_log: Path::new("/var/log/odoo/odoo.log"),
                ban_log: Path::new("/var/lib/rampart/bans.log"),
            },
        );
        for line in [
            "logpath = /var/log/odoo/odoo.log",
            "maxretry = 10",
            "findtime = 60",
            "bantime = 900",
            "bantime.multipliers = 1 4 16 64 256 1024",
            "logpath = /var/lib/rampart/bans.log",
            "ignoreip = 127.0.0.1/8 ::1 10.0.0.0/8 192.0.2.10/32",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
    }

    #[test]
    fn fail2ban_accepts_the_printed_filters_and_jails() {
        // Debian's stock configuration plus ours, checked by fail2ban-client -t.
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("fail2ban");
        let cp = Command::new("cp")
            .arg("-r")
            .arg("/etc/fail2ban")
            .arg(&conf)
            .status()
            .unwrap();
        assert!(
            cp.success(),
            "copying /etc/fail2ban (Debian package fail2ban)"
        );
        for entry in std::fs::read_dir(conf.join("jail.d")).unwrap() {
            std::fs::remove_file(entry.unwrap().path()).unwrap(); // distribution jails need their own logs
        }
        let odoo_log = dir.path().join("odoo.log");
        let ban_log = dir.path().join("bans.log");
        std::fs::write(&odoo_log, "").unwrap();
        std::fs::write(&ban_log, "").unwrap();
        std::fs::write(conf.join("filter.d/odoo-login.conf"), odoo_filter()).unwrap();
        std::fs::write(conf.join("filter.d/rampart-guard.conf"), rampart_filter()).unwrap();
        let sources = JailSources {
            odoo_log: &odoo_log,
            ban_log: &ban_log,
        };
        std::fs::write(
            conf.join("jail.d/rampart.local"),
            jails(&GuardConfig::default(), &sources),
        )
        .unwrap();
        let out = Command::new("fail2ban-client")
            .arg("-c")
            .arg(&conf)
            .arg("-d")
            .output()
            .unwrap();
        let dump = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}{dump}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(dump.contains("['add', 'odoo-login', 'auto']"), "{dump}");
        assert!(dump.contains("['add', 'rampart-guard', 'auto']"), "{dump}");
        assert!(
            dump.contains("['set', 'rampart-guard', 'maxretry', 1]"),
            "{dump}"
        );
    }
}
