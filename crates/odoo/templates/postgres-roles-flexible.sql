-- Flexible: it may create databases (the database manager, `odoo -d NAME -i base`),
-- and owns the ones it creates; still no superuser and no role creation.
ALTER ROLE {{role}} LOGIN NOSUPERUSER CREATEDB NOCREATEROLE NOREPLICATION;
\getenv odoo_password ODOO_DB_PASSWORD
\if :{?odoo_password}
ALTER ROLE {{role}} PASSWORD :'odoo_password';
\endif
