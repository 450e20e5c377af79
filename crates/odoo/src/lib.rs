//! What Rampart knows about Odoo.
//!
//! Most of a safe Odoo deployment is settings people get wrong: worker
//! counts and memory limits, the master password, `list_db`, `dbfilter`,
//! `proxy_mode`, a superuser database role, demo data on a public server.
//! This crate holds that knowledge as small, tested units the CLI wires up:
//!
//! - [`conf`]: odoo.conf read and edited without losing comments or keys;
//! - [`sizing`]: the deployment guide's worker and memory formulas;
//! - [`passwd`]: the master password hash in passlib's format;
//! - [`dbfilter`]: which databases Odoo serves for a host, as Odoo computes it;
//! - [`init`]: the files `rampart init` writes, from [`template`]'s files;
//! - [`audit`]: the rules `rampart audit` checks.

#![warn(missing_docs)]

pub mod audit;
pub mod conf;
pub mod dbfilter;
pub mod firewall;
pub mod init;
pub mod passwd;
pub mod sizing;
pub mod template;
