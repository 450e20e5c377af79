//! ACME: account, orders, challenges, and the renewal loop.
//!
//! One background task handles every ACME site in turn (one account, no
//! two orders racing for it). A site is due when it serves a temporary
//! certificate, when its certificate is within `renew_before` of expiry
//! (default a third of its lifetime, minus a stable per-certificate jitter
//! so many certificates issued together do not renew in the same minute),
//! or when an admin asked. Failures are logged with the site and the CA's
//! own words, counted in a metric, and retried with exponential backoff;
//! the certificate in service stays until a new one is stored and loaded.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, ChallengeType, HttpClient,
    Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use rampart_config::chain::chain;
use tokio_util::sync::CancellationToken;

use crate::challenges::alpn_challenge_cert;
use crate::config::{eab_key, read_bundle};
use crate::local_ca::unix_now;
use crate::pem::load_pem;
use crate::shared::{SharedCert, SharedChallenge};
use crate::store::CertStore;
use crate::table::SiteCert;
use crate::{AcmeConfig, CertError, Challenge, TlsSource, fsio};

/// First retry after a failure; doubles up to `BACKOFF_MAX`.
const BACKOFF_MIN: i64 = 60;
const BACKOFF_MAX: i64 = 6 * 3600;
/// The loop looks at the table at least this often (expiry, reloads).
const MAX_SLEEP: i64 = 3600;
/// One order, from new-order to certificate, must finish within this.
pub(crate) const ORDER_TIMEOUT: Duration = Duration::from_secs(180);

/// What one attempt at a due site came to.
pub(crate) enum Step {
    /// The site serves a fresh certificate (ordered here or loaded).
    Done,
    /// Nothing to do until then (seconds): another node is ordering, or
    /// PostgreSQL is away and the certificate is not close to expiry.
    Wait(i64),
}

#[derive(Debug, Default, Clone, Copy)]
struct Backoff {
    failures: u32,
    next_try: i64,
}

impl CertStore {
    pub(crate) fn spawn_acme(self: &Arc<Self>, shutdown: CancellationToken) {
        if self.acme.is_none() {
            return;
        }
        let store = self.clone();
        tokio::spawn(async move { store.acme_loop(shutdown).await });
    }

    /// When the certificate a site serves should be renewed (unix secs).
    pub(crate) fn renew_at(&self, s: &SiteCert) -> Option<i64> {
        let acme = self.acme.as_ref()?;
        if s.source != TlsSource::Acme {
            return None;
        }
        if s.temporary {
            return Some(s.loaded.meta.not_before);
        }
        let meta = &s.loaded.meta;
        let lifetime = (meta.not_after - meta.not_before).max(0);
        let before = acme
            .renew_before
            .map(|d| d.get().as_secs() as i64)
            .unwrap_or(lifetime / 3);
        let spread = (lifetime / 50).clamp(1, 86_400);
        let jitter =
            (meta.not_after.unsigned_abs().wrapping_mul(2_654_435_761) % spread as u64) as i64;
        Some(meta.not_after - before - jitter)
    }

    async fn acme_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let mut account: Option<Account> = None;
        let mut backoff: HashMap<Vec<String>, Backoff> = HashMap::new();
        loop {
            let now = unix_now();
            let requests = std::mem::take(&mut *self.renew_requests.lock().unwrap());
            let mut wake_at = now + MAX_SLEEP;
            let table = self.table();
            for s in table.sites.iter().filter(|s| s.source == TlsSource::Acme) {
                let Some(due_at) = self.renew_at(s) else {
                    continue;
                };
                let b = backoff.get(&s.hosts).copied().unwrap_or_default();
                let asked = requests.get(&s.site).copied();
                let due = asked == Some(true)
                    || (now >= due_at && (asked.is_some() || now >= b.next_try));
                if !due {
                    wake_at = wake_at.min(due_at.max(b.next_try));
                    continue;
                }
                let result = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    r = self.attempt(&mut account, s, b.failures) => r,
                };
                match result {
                    Ok(Step::Done) => {
                        backoff.remove(&s.hosts);
                    }
                    Ok(Step::Wait(secs)) => {
                        wake_at = wake_at.min(unix_now() + secs);
                    }
                    Err(detail) => {
                        let failures = b.failures + 1;
                        let delay = (BACKOFF_MIN << (failures - 1).min(16)).min(BACKOFF_MAX);
                        let delay = delay + jitter(delay / 4);
                        let next_try = unix_now() + delay;
                        backoff.insert(s.hosts.clone(), Backoff { failures, next_try });
                        *self.failures.lock().unwrap().entry(s.site).or_default() += 1;
                        tracing::error!(
                            site = s.site,
                            hosts = ?s.hosts,
                            directory = %self.acme.as_ref().map(|a| a.directory.as_str()).unwrap_or(""),
                            retry_in_secs = delay,
                            "cannot obtain a certificate, keeping the one in service: {detail}"
                        );
                        wake_at = wake_at.min(next_try);
                        self.hold_lease(s, delay).await;
                        // The account may be what failed (CA restarted, key revoked): fetch it again next time.
                        account = None;
                    }
                }
            }
            let sleep = Duration::from_secs((wake_at - unix_now()).clamp(1, MAX_SLEEP) as u64);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }

    /// [`Self::obtain`] within `ORDER_TIMEOUT`.
    pub(crate) async fn obtain_timed(
        &self,
        account: &mut Option<Account>,
        s: &SiteCert,
        attempt: u32,
        alone: bool,
    ) -> Result<SharedCert, String> {
        tokio::time::timeout(ORDER_TIMEOUT, self.obtain(account, s, attempt, alone))
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "no certificate within {}s",
                    ORDER_TIMEOUT.as_secs()
                ))
            })
    }

    /// Orders, validates, stores and swaps in a certificate for one site;
    /// returns it (for the cluster). `alone`: without the cluster (the
    /// last resort while PostgreSQL is away), so with the local account.
    async fn obtain(
        &self,
        account: &mut Option<Account>,
        s: &SiteCert,
        attempt: u32,
        alone: bool,
    ) -> Result<SharedCert, String> {
        let cfg = self.acme.as_ref().ok_or("no [acme] section")?;
        if account.is_none() {
            *account = Some(self.account(cfg, alone).await?);
        }
        let account = account.as_ref().expect("set above");
        tracing::info!(site = s.site, hosts = ?s.hosts, "ordering a certificate");
        let ids: Vec<Identifier> = s.hosts.iter().map(|h| Identifier::Dns(h.clone())).collect();
        let mut order = account
            .new_order(&NewOrder::new(&ids))
            .await
            .map_err(|e| format!("new order: {}", chain(&e)))?;
        let mut pending = Pending {
            store: self,
            tokens: Vec::new(),
            names: Vec::new(),
            published: Vec::new(),
        };
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(|e| format!("authorization: {}", chain(&e)))?;
            let name = authz.identifier().to_string();
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => return Err(format!("authorization for {name} is {other:?}")),
            }
            let offered: Vec<ChallengeType> =
                authz.challenges.iter().map(|c| c.r#type.clone()).collect();
            let kind = choose(cfg.challenge, attempt, &offered).ok_or_else(|| {
                format!("the CA offers no usable challenge for {name} (offered: {offered:?})")
            })?;
            let mut challenge = authz.challenge(kind.clone()).ok_or("challenge vanished")?;
            let key_auth = challenge.key_authorization();
            let answer = match kind {
                ChallengeType::Http01 => {
                    self.challenges
                        .add_http01(challenge.token.clone(), key_auth.as_str().to_string());
                    pending.tokens.push(challenge.token.clone());
                    SharedChallenge::Http01 {
                        token: challenge.token.clone(),
                        key_authorization: key_auth.as_str().to_string(),
                    }
                }
                _ => {
                    let cert =
                        alpn_challenge_cert(&name, key_auth.digest().as_ref(), &self.provider)?;
                    let name = crate::names::normalise(&name);
                    self.challenges.add_alpn01(name.clone(), cert);
                    pending.names.push(name.clone());
                    SharedChallenge::TlsAlpn01 {
                        name,
                        digest: key_auth.digest().as_ref().to_vec(),
                    }
                }
            };
            // The CA may reach any node: the others answer it too.
            self.publish(&answer).await;
            pending.published.push(answer);
            tracing::debug!(site = s.site, name, challenge = ?kind, "challenge ready");
            challenge
                .set_ready()
                .await
                .map_err(|e| format!("challenge for {name}: {}", chain(&e)))?;
        }
        let retry = RetryPolicy::new().timeout(Duration::from_secs(90));
        let status = order
            .poll_ready(&retry)
            .await
            .map_err(|e| format!("waiting for validation: {}", chain(&e)))?;
        if status != OrderStatus::Ready {
            return Err(self.validation_errors(&mut order, status).await);
        }
        let key_pem = order
            .finalize()
            .await
            .map_err(|e| format!("finalize: {}", chain(&e)))?;
        let chain_pem = order
            .poll_certificate(&retry)
            .await
            .map_err(|e| format!("certificate: {}", chain(&e)))?;
        drop(pending);

        let (cert_path, key_path) = self.acme_cert_paths(&s.hosts);
        let loaded = load_pem(
            chain_pem.as_bytes(),
            key_pem.as_bytes(),
            &cert_path,
            &key_path,
            &self.provider,
        )
        .map_err(|e| format!("the CA's certificate is unusable: {e}"))?;
        let days = loaded.secs_left(unix_now()) / 86_400;
        self.install(
            s,
            &key_path,
            &cert_path,
            &key_pem,
            &chain_pem,
            Arc::new(loaded),
        )?;
        tracing::info!(site = s.site, hosts = ?s.hosts, days, path = %cert_path.display(), "new certificate in service");
        Ok(SharedCert { chain_pem, key_pem })
    }

    /// Writes a certificate and its key to `state_dir` and serves it for
    /// the site, unless the site's names or source changed meanwhile
    /// (a reload). Shared by a node's own orders and the certificates it
    /// adopts from the cluster.
    pub(crate) fn install(
        &self,
        s: &SiteCert,
        key_path: &std::path::Path,
        cert_path: &std::path::Path,
        key_pem: &str,
        chain_pem: &str,
        loaded: Arc<crate::pem::Loaded>,
    ) -> Result<(), String> {
        // Key first: a crash between the two writes leaves a mismatch, read as "no certificate yet".
        fsio::write_atomic(key_path, key_pem.as_bytes(), fsio::PRIVATE)
            .map_err(|e| e.to_string())?;
        fsio::write_atomic(cert_path, chain_pem.as_bytes(), fsio::PUBLIC)
            .map_err(|e| e.to_string())?;
        self.swap(s.site, |cur| {
            (cur.hosts == s.hosts && cur.source == TlsSource::Acme).then(|| SiteCert {
                loaded: loaded.clone(),
                temporary: false,
                path: Some(cert_path.to_path_buf()),
                ..cur.clone()
            })
        });
        Ok(())
    }

    /// The CA's reasons an order did not become ready, per name.
    async fn validation_errors(
        &self,
        order: &mut instant_acme::Order,
        status: OrderStatus,
    ) -> String {
        let mut reasons = Vec::new();
        let mut authorizations = order.authorizations();
        while let Some(Ok(mut authz)) = authorizations.next().await {
            let name = authz.identifier().to_string();
            if let Ok(state) = authz.refresh().await {
                for c in &state.challenges {
                    if let Some(p) = &c.error {
                        reasons.push(format!("{name} ({:?}): {p}", c.r#type));
                    }
                }
            }
        }
        if reasons.is_empty() {
            format!("order is {status:?}")
        } else {
            format!("validation failed: {}", reasons.join("; "))
        }
    }

    /// The stored account for this directory, or a new one (saved 0600).
    async fn account(&self, cfg: &AcmeConfig, alone: bool) -> Result<Account, String> {
        let path = self.acme_dir().join("account.json");
        let http = http_client(cfg).map_err(|e| e.to_string())?;
        // In a cluster the shared account comes first; without an answer,
        // the local copy. One the cluster lacks is stored there.
        let (shared, upload) = if alone {
            (None, false)
        } else {
            self.shared_account(cfg, &path).await?
        };
        if let Some(bytes) = shared.or_else(|| std::fs::read(&path).ok()) {
            if upload {
                self.upload_account(cfg, &bytes).await;
            }
            let creds: AccountCredentials = serde_json::from_slice(&bytes)
                .map_err(|e| format!("{}: not an ACME account file: {e}", path.display()))?;
            return Account::builder_with_http(http)
                .from_credentials(creds)
                .await
                .map_err(|e| format!("directory {}: {}", cfg.directory, chain(&e)));
        }
        let mailto = format!("mailto:{}", cfg.email);
        let contact: Vec<&str> = if cfg.email.is_empty() {
            vec![]
        } else {
            vec![mailto.as_str()]
        };
        let eab = cfg
            .eab
            .as_ref()
            .map(eab_key)
            .transpose()
            .map_err(|e| e.to_string())?;
        let new = NewAccount {
            contact: &contact,
            terms_of_service_agreed: true,
            only_return_existing: false,
        };
        let (account, creds) = Account::builder_with_http(http)
            .create(&new, cfg.directory.clone(), eab.as_ref())
            .await
            .map_err(|e| format!("creating an account at {}: {}", cfg.directory, chain(&e)))?;
        let json = serde_json::to_vec(&creds).map_err(|e| e.to_string())?;
        fsio::write_atomic(&path, &json, fsio::PRIVATE).map_err(|e| e.to_string())?;
        tracing::info!(directory = %cfg.directory, id = account.id(), "created an ACME account");
        if upload {
            self.upload_account(cfg, &json).await;
        }
        Ok(account)
    }
}

/// Removes challenge answers when an attempt ends, however it ends.
struct Pending<'a> {
    store: &'a CertStore,
    tokens: Vec<String>,
    names: Vec<String>,
    /// Answers published to the other nodes.
    published: Vec<SharedChallenge>,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.store.challenges.remove(&self.tokens, &self.names);
        self.store.withdraw(std::mem::take(&mut self.published));
    }
}

/// `auto` alternates between TLS-ALPN-01 (the HTTPS listener always
/// exists) and HTTP-01 from one failed attempt to the next, so a blocked
/// port 443 or port 80 alone does not stop issuance.
fn choose(wanted: Challenge, attempt: u32, offered: &[ChallengeType]) -> Option<ChallengeType> {
    let order = match wanted {
        Challenge::Http01 => vec![ChallengeType::Http01],
        Challenge::TlsAlpn01 => vec![ChallengeType::TlsAlpn01],
        Challenge::Auto if attempt.is_multiple_of(2) => {
            vec![ChallengeType::TlsAlpn01, ChallengeType::Http01]
        }
        Challenge::Auto => vec![ChallengeType::Http01, ChallengeType::TlsAlpn01],
    };
    order.into_iter().find(|t| offered.contains(t))
}

/// HTTPS for the ACME directory: ring, the system's roots plus `ca_bundle`.
fn http_client(cfg: &AcmeConfig) -> Result<Box<dyn HttpClient>, CertError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let extra = match &cfg.ca_bundle {
        Some(path) => read_bundle(path)?,
        None => Vec::new(),
    };
    let acme_err = |e: String| CertError::Acme {
        site: None,
        detail: e,
    };
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
            .map_err(|e| acme_err(format!("cannot set up certificate verification: {e}")))?;
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| acme_err(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, BodyWrapper<Bytes>>(https);
    Ok(Box::new(client))
}

fn jitter(max: i64) -> i64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    (u64::from_le_bytes(b) % max.max(1) as u64) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_alternates_challenges_between_attempts() {
        let both = [ChallengeType::Http01, ChallengeType::TlsAlpn01];
        assert_eq!(
            choose(Challenge::Auto, 0, &both),
            Some(ChallengeType::TlsAlpn01)
        );
        assert_eq!(
            choose(Challenge::Auto, 1, &both),
            Some(ChallengeType::Http01)
        );
        assert_eq!(
            choose(Challenge::TlsAlpn01, 1, &[ChallengeType::Http01]),
            None
        );
    }
}
