-- PostgreSQL roles for Odoo on {{domain}} (policy: {{policy}}), written by `rampart init`.
-- Run it as a superuser; it can be run again (it also repairs an existing role):
--     sudo -u postgres psql -f postgres-roles.sql
-- Odoo connects over the local socket as the OS user "{{role}}" (peer authentication,
-- no password). For TCP connections (compose), put a password in ODOO_DB_PASSWORD.
\set ON_ERROR_STOP on

-- Odoo's role is never a superuser: a superuser runs programs on the server
-- (COPY ... PROGRAM), so one SQL injection would become a shell.
SELECT 'CREATE ROLE {{role}} LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{{role}}') \gexec
{{policy_part}}
