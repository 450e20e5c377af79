//! The `[guard]` section of rampart.toml.

use std::num::NonZeroU32;
use std::path::PathBuf;

use rampart_config::{Cidr, Duration};
use serde::{Deserialize, Serialize};

/// `[guard]` in rampart.toml. Every key has a default, so an absent section
/// still guards: 20 req/s per client (burst 200), 10 logins a minute, a 15 min
/// ban after 10 failed logins in 60 s.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GuardConfig {
    /// Peers whose X-Forwarded-For (or PROXY header) is believed.
    #[serde(default)]
    pub trusted_proxies: Vec<Cidr>,
    /// Accept PROXY protocol v1/v2 from `trusted_proxies` (behind an L4 balancer).
    #[serde(default)]
    pub proxy_protocol: bool,
    /// Never rate-limited nor banned.
    #[serde(default)]
    pub allow: Vec<Cidr>,
    /// Requests per client, every path.
    #[serde(default)]
    pub rate: RateConfig,
    /// Login attempts per (address, login name), with a ceiling per address.
    #[serde(default)]
    pub login_rate: LoginRateConfig,
    /// Failed logins per address before it is banned.
    #[serde(default)]
    pub login_failures: LoginFailuresConfig,
    /// Odoo sessions seen logging in, each treated as its own client.
    #[serde(default)]
    pub sessions: SessionsConfig,
    /// Failed logins per login name, whatever address they come from.
    #[serde(default)]
    pub per_login_failures: PerLoginFailuresConfig,
    /// Odoo's log file, followed for "Login failed" lines (optional).
    #[serde(default)]
    pub odoo_log: Option<PathBuf>,
}

/// `rate = { per_second = 20, burst = 200 }`: every request, per client.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RateConfig {
    /// Requests a client may make per second, sustained.
    #[serde(default = "default_per_second")]
    pub per_second: NonZeroU32,
    /// Requests a client may make at once before `per_second` applies.
    #[serde(default = "default_burst")]
    pub burst: NonZeroU32,
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig {
            per_second: default_per_second(),
            burst: default_burst(),
        }
    }
}

/// `login_rate = { per_minute = 10, burst = 10, address_per_minute = 60,
/// address_burst = 60 }`: login attempts per (address, login name), under
/// a ceiling per address that a successful login gives its token back to.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LoginRateConfig {
    /// Attempts per (address, login name) per minute, sustained.
    #[serde(default = "default_login_per_minute")]
    pub per_minute: NonZeroU32,
    /// Attempts per (address, login name) allowed at once.
    #[serde(default = "default_login_burst")]
    pub burst: NonZeroU32,
    /// Attempts per address per minute, whatever the login names.
    #[serde(default = "default_address_login_per_minute")]
    pub address_per_minute: NonZeroU32,
    /// Attempts per address allowed at once.
    #[serde(default = "default_address_login_per_minute")]
    pub address_burst: NonZeroU32,
}

impl Default for LoginRateConfig {
    fn default() -> Self {
        LoginRateConfig {
            per_minute: default_login_per_minute(),
            burst: default_login_burst(),
            address_per_minute: default_address_login_per_minute(),
            address_burst: default_address_login_per_minute(),
        }
    }
}

/// `per_login_failures = { max = 20, within = "15m", delay = "1s" }`:
/// failed logins per login name across all addresses. From `max / 2`
/// failures on, attempts for that login from addresses it never logged in
/// from wait `delay` more each time; at `max` they are refused. `max = 0`
/// turns it off.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PerLoginFailuresConfig {
    /// Failures of one login that lock it (`0`: off); the delay starts at half.
    #[serde(default = "default_per_login_max")]
    pub max: u32,
    /// The window those failures are counted in.
    #[serde(default = "default_per_login_within")]
    pub within: Duration,
    /// The wait added per failure past `max / 2`, for unknown addresses.
    #[serde(default = "default_per_login_delay")]
    pub delay: Duration,
}

impl Default for PerLoginFailuresConfig {
    fn default() -> Self {
        PerLoginFailuresConfig {
            max: default_per_login_max(),
            within: default_per_login_within(),
            delay: default_per_login_delay(),
        }
    }
}

/// `sessions = { lifetime = "7d", max = 100000, per_address = 16 }`: Odoo
/// sessions seen logging in, each its own client (own `rate` budget, own
/// fair queue). `lifetime`: forgotten after this long unused (Odoo 18's
/// `sessions.max_inactivity_seconds`, 7 days by default). `max`: sessions
/// remembered (the least recently used go first). `per_address`: the
/// proven sessions used from one address together get at most this many
/// times `rate`, so minting sessions does not multiply an address's budget
/// without bound.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SessionsConfig {
    /// How long a session unused is remembered.
    #[serde(default = "default_session_lifetime")]
    pub lifetime: Duration,
    /// How many sessions are remembered at most.
    #[serde(default = "default_sessions_max")]
    pub max: NonZeroU32,
    /// The proven sessions of one address share this many times `rate`.
    #[serde(default = "default_sessions_per_address")]
    pub per_address: NonZeroU32,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        SessionsConfig {
            lifetime: default_session_lifetime(),
            max: default_sessions_max(),
            per_address: default_sessions_per_address(),
        }
    }
}

/// `login_failures = { max = 10, within = "60s", ban = "15m", repeat_factor = 4 }`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LoginFailuresConfig {
    /// Failed logins (plus attempts in flight) allowed within `within`.
    #[serde(default = "default_max")]
    pub max: NonZeroU32,
    /// The window failures are counted in.
    #[serde(default = "default_within")]
    pub within: Duration,
    /// First ban length; the n-th ban of the same address lasts
    /// `ban × repeat_factor^(n-1)`, capped at 7 days.
    #[serde(default = "default_ban")]
    pub ban: Duration,
    /// How much longer each repeated ban of the same address lasts.
    #[serde(default = "default_repeat_factor")]
    pub repeat_factor: NonZeroU32,
}

impl Default for LoginFailuresConfig {
    fn default() -> Self {
        LoginFailuresConfig {
            max: default_max(),
            within: default_within(),
            ban: default_ban(),
            repeat_factor: default_repeat_factor(),
        }
    }
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("default is non-zero")
}
fn default_per_second() -> NonZeroU32 {
    nz(20)
}
fn default_burst() -> NonZeroU32 {
    nz(200)
}
fn default_login_per_minute() -> NonZeroU32 {
    nz(10)
}
fn default_login_burst() -> NonZeroU32 {
    nz(10)
}
fn default_per_login_max() -> u32 {
    20
}
fn default_per_login_within() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_per_login_delay() -> Duration {
    Duration::from_secs(1)
}
fn default_address_login_per_minute() -> NonZeroU32 {
    nz(60)
}
fn default_session_lifetime() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}
fn default_sessions_max() -> NonZeroU32 {
    nz(crate::sessions::DEFAULT_MAX_SESSIONS as u32)
}
fn default_sessions_per_address() -> NonZeroU32 {
    nz(16)
}
fn default_max() -> NonZeroU32 {
    nz(10)
}
fn default_within() -> Duration {
    Duration::from_secs(60)
}
fn default_ban() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_repeat_factor() -> NonZeroU32 {
    nz(4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Top {
        #[serde(default)]
        guard: GuardConfig,
    }

    #[test]
    fn absent_section_gives_issue_defaults() {
        let top: Top = rampart_config::from_str(Path::new("r.toml"), "").unwrap();
        let g = top.guard;
        assert_eq!(g, GuardConfig::default());
        assert_eq!(g.rate.per_second.get(), 20);
        assert_eq!(g.rate.burst.get(), 200);
        assert_eq!(g.login_rate.per_minute.get(), 10);
        assert_eq!(g.login_rate.burst.get(), 10);
        assert_eq!(g.login_failures.max.get(), 10);
        assert_eq!(g.login_failures.within, Duration::from_secs(60));
        assert_eq!(g.login_failures.ban, Duration::from_secs(900));
        assert_eq!(g.login_failures.repeat_factor.get(), 4);
        assert!(g.trusted_proxies.is_empty() && g.allow.is_empty() && !g.proxy_protocol);
        assert_eq!(g.odoo_log, None);
    }

    #[test]
    fn full_section_from_the_issue_parses() {
        let text = r#"
[guard]
trusted_proxies = ["192.0.2.0/24"]
proxy_protocol = true
allow = ["10.0.0.0/8"]
rate = { per_second = 5, burst = 50 }
login_rate = { per_minute = 3 }
login_failures = { max = 5, within = "2m", ban = "1h", repeat_factor = 2 }
odoo_log = "/var/log/odoo/odoo.log"
"#;
        let g = rampart_config::from_str::<Top>(Path::new("r.toml"), text)
            .unwrap()
            .guard;
        assert!(g.allow[0].contains("10.9.8.7".parse().unwrap()));
        assert_eq!(g.rate.per_second.get(), 5);
        assert_eq!(g.login_rate.per_minute.get(), 3);
        assert_eq!(
            g.login_rate.burst.get(),
            10,
            "unset keys inside a table keep defaults"
        );
        assert_eq!(g.login_failures.within, Duration::from_secs(120));
        assert_eq!(
            g.odoo_log.as_deref(),
            Some(Path::new("/var/log/odoo/odoo.log"))
        );
    }

    #[test]
    fn mistakes_are_named_with_line_and_key() {
        let text = "[guard]\nlogin_failures = { max = 0 }\n";
        let err = rampart_config::from_str::<Top>(Path::new("r.toml"), text).unwrap_err();
        assert_eq!(err.line, Some(2), "{err}");
        assert!(err.to_string().contains("login_failures.max"), "{err}");

        let text = "[guard]\nallow = [\"10.0.0.0/33\"]\n";
        let err = rampart_config::from_str::<Top>(Path::new("r.toml"), text).unwrap_err();
        assert!(err.to_string().contains("10.0.0.0/33"), "{err}");

        let text = "[guard]\nrate = { per_sec = 5 }\n";
        let err = rampart_config::from_str::<Top>(Path::new("r.toml"), text).unwrap_err();
        assert!(err.to_string().contains("per_sec"), "{err}");
    }
}
