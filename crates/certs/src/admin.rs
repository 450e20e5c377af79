//! The admin API's certificate endpoints, for `rampart certs renew`.

use serde::Deserialize;
use serde_json::json;

use crate::TlsSource;
use crate::store::CertStore;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RenewRequest {
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    force: bool,
}

impl CertStore {
    /// `GET /v1/certs` lists certificates; `POST /v1/certs/renew` with an
    /// optional JSON body `{"host": "...", "force": true}` renews: local
    /// certificates are re-issued (when forced or due) and files re-read at
    /// once; ACME renewals are queued for the background task (202).
    /// Returns None for other paths.
    pub fn admin(&self, method: &str, path: &str, body: &[u8]) -> Option<(u16, String)> {
        let path = path.split('?').next().unwrap_or(path).trim_end_matches('/');
        match (method, path) {
            ("GET", "/v1/certs") => Some((
                200,
                json!({ "certificates": self.certificates() }).to_string(),
            )),
            ("POST", "/v1/certs/renew") => Some(self.admin_renew(body)),
            (_, "/v1/certs" | "/v1/certs/renew") => Some((
                405,
                json!({ "error": format!("{method} is not allowed on {path}") }).to_string(),
            )),
            _ => None,
        }
    }

    fn admin_renew(&self, body: &[u8]) -> (u16, String) {
        let req: RenewRequest = if body.iter().all(u8::is_ascii_whitespace) {
            RenewRequest::default()
        } else {
            match serde_json::from_slice(body) {
                Ok(r) => r,
                Err(e) => {
                    return (
                        400,
                        json!({ "error": format!("bad JSON body: {e}") }).to_string(),
                    );
                }
            }
        };
        let table = self.table();
        let positions = table.matching(req.host.as_deref());
        if positions.is_empty() {
            let host = req.host.unwrap_or_default();
            return (
                404,
                json!({ "error": format!("no site serves {host:?}") }).to_string(),
            );
        }
        let (mut done, mut queued, mut errors) = (Vec::new(), Vec::new(), Vec::new());
        for pos in positions {
            let s = &table.sites[pos];
            match &s.source {
                TlsSource::Local => {
                    let before = s.loaded.meta.not_after;
                    let errs = self.check_local_site(s.site, req.force);
                    if errs.is_empty() {
                        let renewed = self
                            .table()
                            .sites
                            .iter()
                            .any(|n| n.site == s.site && n.loaded.meta.not_after != before);
                        done.push(json!({ "site": s.site, "hosts": s.hosts, "renewed": renewed }));
                    }
                    errors.extend(
                        errs.into_iter()
                            .map(|e| json!({ "site": s.site, "error": e.to_string() })),
                    );
                }
                TlsSource::Files { .. } => match self.refresh_files(s.site) {
                    None => done.push(json!({ "site": s.site, "hosts": s.hosts, "renewed": true })),
                    Some(e) => errors.push(json!({ "site": s.site, "error": e.to_string() })),
                },
                TlsSource::Acme => {
                    self.renew_requests
                        .lock()
                        .unwrap()
                        .insert(s.site, req.force);
                    queued.push(json!({ "site": s.site, "hosts": s.hosts }));
                }
            }
        }
        if !queued.is_empty() {
            self.wake.notify_one();
        }
        let status = if !errors.is_empty() {
            500
        } else if !queued.is_empty() {
            202
        } else {
            200
        };
        (
            status,
            json!({ "done": done, "queued": queued, "errors": errors }).to_string(),
        )
    }
}
