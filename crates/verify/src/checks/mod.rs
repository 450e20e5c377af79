//! The checks, grouped by what they look at. Each group returns its lines
//! in a fixed order; `Site` holds how to reach the target.

mod app;
mod dbmanager;
mod headers;
mod transport;

use std::sync::Arc;

use rustls::ClientConfig;

use crate::http1::{self, Request, Response};
use crate::report::Check;
use crate::target::{Target, tcp};
use crate::tls::TlsSetup;

pub(crate) struct Site {
    target: Target,
    tls: TlsSetup,
    /// TLS 1.2+1.3, ALPN http/1.1: what the raw HTTP/1.1 checks use.
    h1_config: Arc<ClientConfig>,
}

impl Site {
    pub fn new(target: Target, tls: TlsSetup) -> Site {
        let h1_config = tls.config(rustls::DEFAULT_VERSIONS, &[b"http/1.1"]);
        Site {
            target,
            tls,
            h1_config,
        }
    }

    pub async fn run_all(&self) -> Vec<Check> {
        let mut out = Vec::new();
        out.extend(transport::redirect(self).await);
        out.extend(transport::tls(self).await);
        out.extend(app::http2(self).await);
        out.extend(headers::checks(self).await);
        out.extend(dbmanager::checks(self).await);
        out.extend(app::websocket(self).await);
        out.extend(app::health(self).await);
        out.extend(app::compression(self).await);
        out
    }

    /// One request on the URL's port (over TLS for https).
    pub async fn request(&self, req: &Request<'_>) -> Result<Response, String> {
        let bytes = req.to_bytes(&self.target.host_header());
        if self.target.https {
            let hs = self
                .tls
                .connect(&self.target, self.h1_config.clone())
                .await?;
            http1::exchange(hs.stream, &bytes).await
        } else {
            http1::exchange(tcp(self.target.addr).await?, &bytes).await
        }
    }

    /// One request on the plain-HTTP port.
    pub async fn request_plain(&self, req: &Request<'_>) -> Result<Response, String> {
        let bytes = req.to_bytes(&self.target.http_host_header());
        http1::exchange(tcp(self.target.http_addr).await?, &bytes).await
    }
}
