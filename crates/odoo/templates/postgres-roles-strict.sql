-- Strict: it cannot create databases or roles either.
ALTER ROLE {{role}} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION;
\getenv odoo_password ODOO_DB_PASSWORD
\if :{?odoo_password}
ALTER ROLE {{role}} PASSWORD :'odoo_password';
\endif

-- The database belongs to an administrator role, so Odoo cannot drop it
-- (dropping needs ownership); Odoo gets connect, temp and schema rights.
SELECT 'CREATE ROLE {{owner}} NOLOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{{owner}}') \gexec
ALTER ROLE {{owner}} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
-- As Odoo creates its databases: UTF-8, C collation, from template0.
SELECT 'CREATE DATABASE "{{db}}" OWNER {{owner}} ENCODING ''UTF8'' LC_COLLATE ''C'' TEMPLATE template0'
    WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{{db}}') \gexec
ALTER DATABASE "{{db}}" OWNER TO {{owner}};
REVOKE ALL ON DATABASE "{{db}}" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE "{{db}}" TO {{role}};
\connect "{{db}}"
-- Odoo creates and alters its own tables in schema public.
GRANT USAGE, CREATE ON SCHEMA public TO {{role}};
-- Extensions Odoo uses when present; its role may not create them.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS unaccent;
