//! Client address, rate limits, login failures and bans (the guard issue).

use serde::Deserialize;

/// `[guard]` in rampart.toml.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GuardConfig {}
