//! Header handling, one job per file (after rpxy's `header_ops`).

pub mod cookies;
pub mod detach;
pub mod forwarded;
pub mod hop;
pub mod request;
pub mod request_id;
pub mod security;
