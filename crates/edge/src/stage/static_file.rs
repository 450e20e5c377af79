//! 5 static: Odoo's `/<module>/static/<file>` answered from the addons
//! paths without an Odoo worker, as Odoo would answer it (its
//! Cache-Control), compressed once per encoding (`static_variants`).

use http::{HeaderMap, HeaderValue, Request, Response, header};
use hyper::body::Incoming;

use crate::body::Body;
use crate::files;
use crate::stage::compress;
use crate::state::{Shared, SiteRuntime};

/// 5 static: `/<module>/static/<file>` from the first addons_path entry
/// that has it; compressed once per encoding (`static_variants`).
pub(crate) async fn static_file(
    site: &SiteRuntime,
    module: &str,
    file: &str,
    req: &Request<Incoming>,
    shared: &Shared,
) -> Option<Response<Body>> {
    for root in &site.config.addons_path {
        let dir = root.join(module).join("static");
        if let Some((path, meta)) = files::resolve_under(&dir, file).await {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(files::content_type(&path)),
            );
            // Odoo's own answer for static files.
            headers.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=604800"),
            );
            let accepted = site
                .config
                .compression
                .then(|| compress::negotiate(req.headers().get(header::ACCEPT_ENCODING)))
                .flatten();
            let variants = &shared.static_variants;
            if let Some(r) = variants
                .serve(
                    &path,
                    &meta,
                    req.method(),
                    req.headers(),
                    headers.clone(),
                    accepted,
                )
                .await
            {
                return Some(r);
            }
            return Some(files::serve(&path, &meta, req.method(), req.headers(), headers).await);
        }
    }
    None
}
