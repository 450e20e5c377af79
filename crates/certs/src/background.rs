//! Work that runs while the server does: watching certificate files,
//! re-issuing local leaves before they expire, ACME issue and renewal.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::store::CertStore;

/// How often certificate files are checked for changes. Polling the
/// metadata of a handful of files is cheaper and more portable than an
/// inotify dependency, and catches editors that replace files by rename.
const FILE_POLL: Duration = Duration::from_secs(5);

impl CertStore {
    /// Starts the background work on the current tokio runtime: file
    /// watching, local leaf re-issue, and ACME issue/renewal. Everything
    /// stops when `shutdown` is cancelled.
    pub fn spawn_background(self: &Arc<Self>, shutdown: CancellationToken) {
        let store = self.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FILE_POLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let s = store.clone();
                // File reads and key generation block: keep them off the async workers.
                let _ = tokio::task::spawn_blocking(move || {
                    s.check_files();
                    s.check_local();
                })
                .await;
            }
        });
        self.spawn_acme(shutdown);
    }
}
