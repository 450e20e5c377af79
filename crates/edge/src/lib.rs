//! The HTTPS front for Odoo.

pub mod config;
