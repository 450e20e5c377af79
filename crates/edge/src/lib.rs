//! The HTTPS front for Odoo: listeners, the request pipeline, upstream
//! pools, the websocket tunnel, static and filestore files, the access
//! log and metrics.
//!
//! Start at [`pipeline`]: it is the one place that puts the stages in
//! order. [`server`] accepts connections and hands requests to it;
//! [`state`] holds what they share; [`refusal`] lists every answer Rampart
//! gives instead of Odoo.

#![warn(missing_docs)]

pub mod access_log;
pub mod admin;
pub mod admin_addr;
pub mod admin_token;
pub mod body;
pub mod body_memory;
pub mod cache;
pub mod config;
pub mod conn_cap;
mod deflate_fixed;
pub mod encoding;
pub mod error;
pub mod files;
pub mod framing;
pub mod headers;
pub mod io;
pub mod metrics;
pub mod pages;
pub mod pipeline;
pub mod preflight;
pub mod refusal;
pub mod response_buffer;
pub mod server;
pub mod site_matcher;
pub mod socket;
pub mod spool;
pub mod stage;
pub mod state;
pub mod static_variants;
pub mod upstream;
pub mod websocket;

pub use error::EdgeError;
pub use server::{Edge, EdgeHandle};
pub use state::{AdminHook, EdgeConfig};
