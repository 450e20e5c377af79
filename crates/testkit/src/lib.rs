//! Test support: an upstream that behaves like Odoo at the HTTP edge, and clients for the tests.
