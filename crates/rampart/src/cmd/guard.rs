//! `rampart bans`, `rampart fail2ban`.
//!
//! `bans` talks to the running server through its admin listener, so a ban
//! takes effect at once and is persisted by the server (never by editing
//! bans.json behind its back).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use rampart_guard::fail2ban::{self, JailSources};

use super::{CmdError, EXIT_FAILURE, EXIT_FINDINGS, EXIT_USAGE, Outcome};

#[derive(clap::Args)]
pub struct BansArgs {
    #[command(subcommand)]
    action: BansAction,
}

#[derive(clap::Subcommand)]
enum BansAction {
    /// Active bans, soonest to end first.
    List {
        /// The server's JSON as is.
        #[arg(long)]
        json: bool,
    },
    /// Ban an address (or an IPv6 /64) now.
    Ban {
        /// 203.0.113.7, 2001:db8::1 or 2001:db8:1:2::/64.
        addr: String,
        /// How long: 30m, 1h, 7d (at most 7 days).
        #[arg(long = "for", value_name = "DURATION")]
        for_: rampart_config::Duration,
        /// Why, for the ban log and `rampart bans list`.
        #[arg(long)]
        reason: Option<String>,
        /// The server's JSON as is.
        #[arg(long)]
        json: bool,
    },
    /// Lift a ban (and forget the address's failures and ban history).
    Unban {
        /// The banned address or IPv6 /64, as `rampart bans list` shows it.
        addr: String,
        /// The server's JSON as is.
        #[arg(long)]
        json: bool,
    },
}

pub fn bans(config: Option<&Path>, a: BansArgs) -> Outcome {
    let cfg = super::load_config(config)?;
    let (method, path, body, json) = match &a.action {
        BansAction::List { json } => ("GET", "/v1/bans".to_string(), None, *json),
        BansAction::Ban {
            addr,
            for_,
            reason,
            json,
        } => (
            "POST",
            "/v1/bans".to_string(),
            Some(rampart_guard::admin_ban_body(
                addr,
                *for_,
                reason.as_deref(),
            )),
            *json,
        ),
        BansAction::Unban { addr, json } => (
            "DELETE",
            format!("/v1/bans/{}", addr.replace('/', "%2F")),
            None,
            *json,
        ),
    };
    let (status, answer) =
        super::admin::call(&cfg, method, &path, body).map_err(CmdError::failure)?;
    if !(200..300).contains(&status) {
        let Some(message) = rampart_guard::admin_error(&answer) else {
            return Err(CmdError::failure(format!(
                "the server on listen.admin answered {status} to {method} {path}, not as Rampart's guard \
                 (an older rampart, or another program on that address?)"
            )));
        };
        let code = match status {
            404 => EXIT_FINDINGS, // unban of an address that is not banned
            400..=499 => EXIT_USAGE,
            _ => EXIT_FAILURE,
        };
        if json {
            println!("{}", answer.trim());
            return Ok(ExitCode::from(code));
        }
        return Err(CmdError { code, msg: message });
    }
    if json {
        println!("{}", answer.trim());
        return Ok(ExitCode::SUCCESS);
    }
    match &a.action {
        BansAction::List { .. } => {
            let list = rampart_guard::parse_bans_json(&answer).map_err(CmdError::failure)?;
            print!("{}", bans_table(&list));
        }
        BansAction::Ban { .. } => match serde_json_ban(&answer) {
            Some(b) => println!(
                "banned {} until {} (ban #{} of this address)",
                b.addr, b.until, b.count
            ),
            None => println!("banned"),
        },
        BansAction::Unban { addr, .. } => println!("unbanned {addr}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn serde_json_ban(answer: &str) -> Option<rampart_guard::BanInfo> {
    rampart_guard::parse_bans_json(&format!("[{answer}]"))
        .ok()?
        .pop()
}

/// Aligned columns for a terminal; an explicit line when there is nothing.
fn bans_table(list: &[rampart_guard::BanInfo]) -> String {
    if list.is_empty() {
        return "no active bans\n".to_string();
    }
    let w = list
        .iter()
        .map(|b| b.addr.len())
        .max()
        .unwrap_or(0)
        .max("ADDRESS".len());
    let mut out = format!(
        "{:<w$}  {:<20}  {:>5}  REASON\n",
        "ADDRESS", "UNTIL (UTC)", "COUNT"
    );
    for b in list {
        out.push_str(&format!(
            "{:<w$}  {:<20}  {:>5}  {}\n",
            b.addr, b.until, b.count, b.reason
        ));
    }
    out
}

#[derive(clap::Args)]
pub struct Fail2banArgs {
    /// Odoo's log file for the odoo-login jail (default: [guard].odoo_log,
    /// else /var/log/odoo/odoo.log).
    #[arg(long, value_name = "PATH")]
    odoo_log: Option<PathBuf>,
    /// The guard's ban log for the rampart-guard jail (default:
    /// <state_dir>/bans.log, which only the guard writes).
    #[arg(long, value_name = "PATH")]
    ban_log: Option<PathBuf>,
}

pub fn fail2ban(config: Option<&Path>, a: Fail2banArgs) -> Outcome {
    let cfg = super::load_config(config)?;
    let odoo_log = a
        .odoo_log
        .or_else(|| cfg.guard.odoo_log.clone())
        .unwrap_or_else(|| PathBuf::from("/var/log/odoo/odoo.log"));
    let ban_log = a
        .ban_log
        .unwrap_or_else(|| cfg.state_dir.join(rampart_guard::BAN_LOG_FILE));
    let sources = JailSources {
        odoo_log: &odoo_log,
        ban_log: &ban_log,
    };
    print!(
        "\
# fail2ban for Odoo behind Rampart. Rampart's guard already refuses brute force at
# the threshold (counting attempts in flight, XML-RPC included); these mirror its
# verdicts at the firewall and watch Odoo's log for logins that bypass Rampart.
# Requires proxy_mode = True in odoo.conf so Odoo logs the real client address.

# ---- /etc/fail2ban/filter.d/odoo-login.conf ----
{}
# ---- /etc/fail2ban/filter.d/rampart-guard.conf ----
{}
# ---- /etc/fail2ban/jail.d/rampart.local ----
{}",
        fail2ban::odoo_filter(),
        fail2ban::rampart_filter(),
        fail2ban::jails(&cfg.guard, &sources)
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_lists_bans_in_columns() {
        assert_eq!(bans_table(&[]), "no active bans\n");
        let list = vec![rampart_guard::BanInfo {
            addr: "2001:db8:1:2::/64".into(),
            until: "2026-11-24T01:07:18Z".into(),
            reason: "10 failed logins in 1m".into(),
            count: 2,
        }];
        let t = bans_table(&list);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("ADDRESS"), "{t}");
        assert!(
            lines[1].starts_with("2001:db8:1:2::/64  2026-11-24T01:07:18Z"),
            "{t}"
        );
        assert!(lines[1].ends_with("2  10 failed logins in 1m"), "{t}");
    }
}
