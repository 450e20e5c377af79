//! ACME in a cluster (issue 13): one node orders, the others load.
//!
//! For a site that is due, a node first looks for a certificate another
//! node stored that is newer than its own and not due itself, and serves
//! that. Otherwise it takes the order lease: the holder orders (its
//! challenge answers published so any node can give them), stores the
//! result and gives the lease back; the others poll every few seconds, or
//! are woken when a certificate is stored, and load it. A failed order
//! keeps the lease for the backoff, so the cluster retries at one node's
//! pace; a node killed mid-order leaves a lease that expires.
//!
//! PostgreSQL away or slow never stops traffic: the node serves what it
//! has in `state_dir` and waits for PostgreSQL to return (the cluster
//! wakes it on reconnect); it orders alone only as the last resort, when
//! its certificate is within a sixth of its lifetime of expiry.

use std::sync::Arc;
use std::time::Duration;

use instant_acme::Account;

use crate::AcmeConfig;
use crate::acme::{ORDER_TIMEOUT, Step};
use crate::fsio;
use crate::local_ca::unix_now;
use crate::pem::load_pem;
use crate::shared::{SharedCert, SharedCerts, SharedChallenge, shared_key};
use crate::store::CertStore;
use crate::table::SiteCert;

/// How long one call to the cluster may take before the node goes on alone.
const CALL_DEADLINE: Duration = Duration::from_secs(5);
/// How long publishing a challenge waits for the other nodes to have it.
const PUBLISH_DEADLINE: Duration = Duration::from_secs(10);
/// The order lease: longer than an order may take.
const LEASE: Duration = Duration::from_secs(ORDER_TIMEOUT.as_secs() + 60);
/// While another node holds the lease: look for its result this often.
const WAIT_FOR_HOLDER: i64 = 2;
/// While PostgreSQL does not answer: look again this often (a reconnect
/// wakes the loop sooner).
const WAIT_FOR_PG: i64 = 60;

impl CertStore {
    /// Joins this store to a cluster: certificates, the account and orders
    /// go through `shared`. Set once, before the background work starts.
    pub fn set_shared(&self, shared: Arc<dyn SharedCerts>) {
        let _ = self.shared.set(shared);
    }

    pub(crate) fn shared(&self) -> Option<Arc<dyn SharedCerts>> {
        self.shared.get().cloned()
    }

    /// The challenge answers other nodes published (the whole current
    /// set): this node gives them too, whichever node the CA reaches.
    pub fn set_remote_challenges(&self, list: Vec<SharedChallenge>) {
        self.challenges.set_remote(list, &self.provider);
    }

    /// Asks the ACME work to look again now (a certificate another node
    /// stored, PostgreSQL back).
    pub fn wake_acme(&self) {
        self.wake.notify_one();
    }

    /// One attempt at a due site: alone, or as one node of a cluster.
    pub(crate) async fn attempt(
        &self,
        account: &mut Option<Account>,
        s: &SiteCert,
        failures: u32,
    ) -> Result<Step, String> {
        let Some(shared) = self.shared() else {
            return self
                .obtain_timed(account, s, failures, true)
                .await
                .map(|_| Step::Done);
        };
        let key = self.key_of(s);
        match call(shared.load_cert(&key)).await {
            Ok(found) => {
                if self.adopt(s, found.as_ref())? {
                    return Ok(Step::Done);
                }
            }
            Err(e) => return self.alone(account, s, failures, &e).await,
        }
        match call(shared.try_lease(&key, LEASE)).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!(site = s.site, hosts = ?s.hosts, "another node is ordering this certificate: waiting for it");
                return Ok(Step::Wait(WAIT_FOR_HOLDER));
            }
            Err(e) => return self.alone(account, s, failures, &e).await,
        }
        // The previous holder may have stored its result just now.
        if let Ok(found) = call(shared.load_cert(&key)).await
            && self.adopt(s, found.as_ref())?
        {
            let _ = call(shared.release(&key)).await;
            return Ok(Step::Done);
        }
        let cert = self.obtain_timed(account, s, failures, false).await?;
        let not_after = self.table_not_after(s);
        if let Err(e) = call(shared.save_cert(&key, &cert, not_after)).await {
            tracing::error!(site = s.site, hosts = ?s.hosts, "the new certificate is in service here but could not be stored for the other nodes: {e}");
        }
        if let Err(e) = call(shared.release(&key)).await {
            tracing::warn!(
                site = s.site,
                "could not give the order lease back (it expires by itself): {e}"
            );
        }
        Ok(Step::Done)
    }

    /// After a failed order: keep the lease over the backoff, so the other
    /// nodes do not each try the CA in turn.
    pub(crate) async fn hold_lease(&self, s: &SiteCert, delay: i64) {
        if let Some(shared) = self.shared() {
            let key = self.key_of(s);
            let _ = call(shared.try_lease(&key, Duration::from_secs(delay.max(1) as u64))).await;
        }
    }

    /// PostgreSQL did not answer: serve what we have, order alone only
    /// when the certificate is close to expiry.
    async fn alone(
        &self,
        account: &mut Option<Account>,
        s: &SiteCert,
        failures: u32,
        why: &str,
    ) -> Result<Step, String> {
        let meta = &s.loaded.meta;
        let now = unix_now();
        let lifetime = (meta.not_after - meta.not_before).max(0);
        if s.temporary || meta.not_after - now > lifetime / 6 {
            tracing::warn!(
                site = s.site,
                hosts = ?s.hosts,
                "certificate due but the cluster's certificate store cannot be used ({why}): \
                 serving the one in service, trying again when PostgreSQL answers"
            );
            return Ok(Step::Wait(WAIT_FOR_PG));
        }
        tracing::warn!(
            site = s.site,
            hosts = ?s.hosts,
            days_left = (meta.not_after - now) / 86_400,
            "the cluster's certificate store cannot be used ({why}) and the certificate is close to expiry: \
             ordering on this node alone (last resort)"
        );
        // The account cached from before may be the cluster's: fine, it
        // is the same account; otherwise the local copy.
        self.obtain_timed(account, s, failures, true)
            .await
            .map(|_| Step::Done)
    }

    /// Serves `found` when it covers the site's names, is newer than what
    /// is served and is not itself due; writes it to `state_dir` too.
    fn adopt(&self, s: &SiteCert, found: Option<&SharedCert>) -> Result<bool, String> {
        let Some(found) = found else {
            return Ok(false);
        };
        let (cert_path, key_path) = self.acme_cert_paths(&s.hosts);
        let loaded = match load_pem(
            found.chain_pem.as_bytes(),
            found.key_pem.as_bytes(),
            &cert_path,
            &key_path,
            &self.provider,
        ) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(
                    site = s.site,
                    "the certificate stored by another node is unusable: {e}"
                );
                return Ok(false);
            }
        };
        let now = unix_now();
        let covers = s.hosts.iter().all(|h| loaded.meta.names.contains(h));
        let newer = s.temporary || loaded.meta.not_after > s.loaded.meta.not_after;
        let candidate = SiteCert {
            loaded: Arc::new(loaded),
            temporary: false,
            ..s.clone()
        };
        let fresh = self.renew_at(&candidate).is_some_and(|at| at > now);
        if !(covers && newer && fresh) {
            return Ok(false);
        }
        let loaded = candidate.loaded.clone();
        self.install(
            s,
            &key_path,
            &cert_path,
            &found.key_pem,
            &found.chain_pem,
            loaded.clone(),
        )?;
        tracing::info!(
            site = s.site,
            hosts = ?s.hosts,
            days = (loaded.meta.not_after - now) / 86_400,
            "certificate stored by another node in service"
        );
        Ok(true)
    }

    /// The not_after of what the site serves now (just swapped in).
    fn table_not_after(&self, s: &SiteCert) -> i64 {
        self.table()
            .sites
            .iter()
            .find(|c| c.site == s.site && c.hosts == s.hosts)
            .map(|c| c.loaded.meta.not_after)
            .unwrap_or(0)
    }

    fn key_of(&self, s: &SiteCert) -> String {
        let directory = self
            .acme
            .as_ref()
            .map(|a| a.directory.as_str())
            .unwrap_or("");
        shared_key(directory, &s.hosts)
    }

    /// The cluster's account for this CA (also written to `path`), and
    /// whether the cluster answered that it has none (so ours is stored).
    /// An error (PostgreSQL gone since the lease, a wrong key) ends the
    /// attempt: never a second account beside the cluster's.
    pub(crate) async fn shared_account(
        &self,
        cfg: &AcmeConfig,
        path: &std::path::Path,
    ) -> Result<(Option<Vec<u8>>, bool), String> {
        let Some(shared) = self.shared() else {
            return Ok((None, false));
        };
        match call(shared.load_account(&cfg.directory)).await {
            Ok(Some(bytes)) => {
                if std::fs::read(path).ok().as_ref() != Some(&bytes)
                    && let Err(e) = fsio::write_atomic(path, &bytes, fsio::PRIVATE)
                {
                    tracing::warn!("cannot keep a local copy of the cluster's ACME account: {e}");
                }
                Ok((Some(bytes), false))
            }
            Ok(None) => Ok((None, true)),
            Err(e) => Err(format!("the cluster's ACME account cannot be used: {e}")),
        }
    }

    pub(crate) async fn upload_account(&self, cfg: &AcmeConfig, credentials: &[u8]) {
        if let Some(shared) = self.shared()
            && let Err(e) = call(shared.save_account(&cfg.directory, credentials)).await
        {
            tracing::error!("cannot store the ACME account for the other nodes: {e}");
        }
    }

    /// Publishes a challenge answer to the other nodes (best effort: the
    /// CA may well reach this node anyway).
    pub(crate) async fn publish(&self, answer: &SharedChallenge) {
        let Some(shared) = self.shared() else { return };
        let ttl = LEASE;
        match tokio::time::timeout(PUBLISH_DEADLINE, shared.publish_challenge(answer, ttl)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("challenge answer not shared with the other nodes: {e}"),
            Err(_) => tracing::warn!(
                "challenge answer not acknowledged by every node within {PUBLISH_DEADLINE:?}"
            ),
        }
    }

    /// Withdraws published answers (from a `Drop`: in a task of its own).
    pub(crate) fn withdraw(&self, answers: Vec<SharedChallenge>) {
        let Some(shared) = self.shared() else { return };
        if answers.is_empty() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            for a in &answers {
                let _ = call(shared.withdraw_challenge(a)).await;
            }
        });
    }
}

/// One call to the cluster under `CALL_DEADLINE`.
async fn call<T>(f: impl Future<Output = Result<T, String>>) -> Result<T, String> {
    tokio::time::timeout(CALL_DEADLINE, f)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {CALL_DEADLINE:?}")))
}
