//! Test support for Rampart.
//!
//! - [`OdooFixture`]: an upstream that behaves like Odoo 18 at the HTTP edge (werkzeug's HTTP/1.0
//!   answers, login redirects and cookie rotation, Odoo-format log lines, X-Accel-Redirect, the
//!   websocket port split), recording every request so tests can assert what reached Odoo.
//! - [`TestClient`], [`raw_exchange`], [`tls_handshake_info`], [`websocket_echo`]: clients that hit
//!   Rampart by made-up host names on loopback, trusting exactly the CA a test created.
//! - [`Browser`]: headless Chromium through chromedriver (W3C WebDriver), for the browser tests.
//! - [`oracle`]: the differential tests' generator and Python-oracle runner.
//!
//! ```no_run
//! # async fn demo() {
//! let odoo = rampart_testkit::OdooFixture::start().await;
//! // ...start Rampart in front of it, send requests, then:
//! assert!(odoo.requests().iter().all(|r| r.target != "/web/database/manager"));
//! # }
//! ```

mod client;
mod fixture;
pub mod oracle;
mod util;
mod webdriver;

pub use client::{
    H2Connection, TestClient, TestResponse, free_port, raw_exchange, tls_handshake_info,
    wait_for_port, websocket_echo,
};
pub use fixture::{FixtureOptions, OdooFixture, Port, SeenRequest};
pub use webdriver::{Browser, BrowserOptions};

/// The text `/already-gzipped` serves gzip-encoded, so tests can check it arrives unchanged.
pub const ALREADY_GZIPPED_TEXT: &str =
    "<!DOCTYPE html>\n<html><body><p>UPSTREAM-REACHED already gzipped</p></body></html>\n";
