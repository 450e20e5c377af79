//! Config primitives shared by every section of `rampart.toml`.
//!
//! Each crate owns its own section as a serde type with defaults; this crate
//! holds the value types they have in common (human durations and sizes,
//! address ranges) and the loader that turns a TOML file into any of those
//! types with errors that name the file, line and key — an administrator
//! editing a config at 3 a.m. should never have to guess.
//!
//! Being the crate every other one already depends on, it also holds the
//! few helpers they share so that each exists once: [`atomic`] file
//! replacement, error [`chain`]s for logs, and [`time`] stamps.

#![warn(missing_docs)]

pub mod atomic;
pub mod chain;
mod load;
mod resolve;
pub mod secret;
pub mod time;
mod values;

pub use load::{ConfigError, from_str, from_str_with_secrets, load};
pub use resolve::{MAX_SECRET_FILE, read_secret_file};
pub use secret::Secrets;
pub use values::{ByteSize, Cidr, Duration, canonical_ip};
