//! ACME issue and renewal (phase 2).

use tokio_util::sync::CancellationToken;

use crate::store::CertStore;

impl CertStore {
    pub(crate) fn spawn_acme(self: &std::sync::Arc<Self>, _shutdown: CancellationToken) {}
}
