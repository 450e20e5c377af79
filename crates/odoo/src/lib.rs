//! What Rampart knows about Odoo: odoo.conf, sizing, master password hash, dbfilter, PostgreSQL roles, audit rules.
