//! Stage 5: where a request goes, decided on the canonical path.

use super::normalize::CanonicalPath;

/// Where a request goes, by its canonical path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/web/database*`: Odoo's database manager (create, drop, backup,
    /// restore with the master password). Blocked unless allow-listed.
    DatabaseManager,
    /// XML-RPC `db` service (`/xmlrpc/db`, `/xmlrpc/2/db`): the same
    /// powers as the manager, without a screen.
    DatabaseRpc,
    /// `/jsonrpc`: may carry the `db` service; the body decides
    /// (`rampart_guard::classify`, with the one RPC reader).
    JsonRpc,
    /// `/websocket` (16+): Odoo's evented worker, as a websocket.
    Websocket,
    /// `/longpolling/*` (before 16): plain HTTP to the evented worker.
    Longpolling,
    /// `/<module>/static/<file>`: from addons_path when the file is there.
    Static {
        /// The module's directory name.
        module: String,
        /// The path under its `static/`.
        file: String,
    },
    /// `/web/filestore/*` is X-Accel-Redirect's internal namespace; never
    /// reachable from outside.
    Internal,
    /// Everything else: Odoo's HTTP workers.
    Odoo,
}

/// The route of `p`.
pub fn route(p: &CanonicalPath) -> Route {
    let l = p.lower.as_str();
    if l.starts_with("/web/database") {
        return Route::DatabaseManager;
    }
    if l.starts_with("/web/filestore") {
        return Route::Internal;
    }
    if l == "/xmlrpc/db"
        || l == "/xmlrpc/2/db"
        || l.starts_with("/xmlrpc/db/")
        || l.starts_with("/xmlrpc/2/db/")
    {
        return Route::DatabaseRpc;
    }
    if l == "/jsonrpc" {
        return Route::JsonRpc;
    }
    if l == "/websocket" || l.starts_with("/websocket/") {
        return Route::Websocket;
    }
    if l.starts_with("/longpolling/") || l == "/longpolling" {
        return Route::Longpolling;
    }
    // The file Odoo's `/<module>/static/<path>` names: werkzeug's reading.
    let mut parts = p.path.splitn(4, '/');
    parts.next();
    if let (Some(module), Some(static_), Some(file)) = (parts.next(), parts.next(), parts.next())
        && static_ == "static"
        && !module.is_empty()
        && module
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !file.is_empty()
    {
        return Route::Static {
            module: module.to_string(),
            file: file.to_string(),
        };
    }
    Route::Odoo
}

#[cfg(test)]
mod tests {
    use super::super::normalize::canonical_path;
    use super::*;

    fn r(p: &str) -> Route {
        route(&canonical_path(p).unwrap())
    }

    #[test]
    fn routes() {
        assert_eq!(r("/web/database/manager"), Route::DatabaseManager);
        assert_eq!(r("/web/database/selector"), Route::DatabaseManager);
        assert_eq!(r("/web/DATABASE/list"), Route::DatabaseManager);
        assert_eq!(r("/xmlrpc/2/db"), Route::DatabaseRpc);
        assert_eq!(r("/xmlrpc//db"), Route::DatabaseRpc);
        assert_eq!(r("/jsonrpc"), Route::JsonRpc);
        assert_eq!(r("/websocket"), Route::Websocket);
        assert_eq!(r("/longpolling/poll"), Route::Longpolling);
        assert_eq!(r("/web/filestore/db/ab/abc"), Route::Internal);
        assert_eq!(
            r("/web/static/img/logo.png"),
            Route::Static {
                module: "web".into(),
                file: "img/logo.png".into()
            }
        );
        assert_eq!(r("/web/static/"), Route::Odoo);
        assert_eq!(r("/web/login"), Route::Odoo);
        assert_eq!(r("/odoo"), Route::Odoo);
    }

    #[test]
    fn anything_below_the_db_service_is_the_db_service() {
        for p in [
            "/xmlrpc/db",
            "/xmlrpc/db/",
            "/xmlrpc/db/x",
            "/xmlrpc/2/db/x",
            "/XMLRPC/2/DB/list",
            "/xmlrpc/2/db;x/y",
        ] {
            assert_eq!(r(p), Route::DatabaseRpc, "{p}");
        }
        // Names that only start like it are other services.
        assert_eq!(r("/xmlrpc/2/dbx"), Route::Odoo);
        assert_eq!(r("/xmlrpc/2/object"), Route::Odoo);
    }

    #[test]
    fn static_files_only_for_module_names_odoo_can_have() {
        // Module names are Python identifiers: `_` is in many of them.
        assert_eq!(
            r("/web_editor/static/src/js/editor.js"),
            Route::Static {
                module: "web_editor".into(),
                file: "src/js/editor.js".into()
            }
        );
        // Anything else would be joined to addons_path as a directory
        // name: left to Odoo, never looked up on disk.
        for p in ["/a.b/static/x.js", "/a-b/static/x.js", "/a%20b/static/x.js"] {
            assert_eq!(r(p), Route::Odoo, "{p}");
        }
    }
}
