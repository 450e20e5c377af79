//! Certificates and the ACME account through PostgreSQL (issue 13 §5):
//! the cluster's side of [`rampart_certs::SharedCerts`].
//!
//! - the account and certificates are rows; their private keys are sealed
//!   with the node's `secret_key_file` (`sealed`), the chain is public;
//! - one order per certificate: a lease row (holder, until), taken with
//!   one statement that succeeds only when it is free, expired, or ours;
//!   a node killed mid-order leaves it to expire;
//! - challenge answers are rows too: the ordering node inserts one,
//!   NOTIFYs, and waits until every live node (a heartbeat within three
//!   intervals) has loaded it and said so, before telling the CA to look;
//!   so whichever node the CA reaches answers.
//!
//! Every call fails fast when there is no connection; the store then
//! carries on with what it has in `state_dir`.

use std::sync::Arc;
use std::time::Duration;

use rampart_certs::{BoxFuture, CertStore, SharedCert, SharedCerts, SharedChallenge};
use tokio_postgres::Client;

use crate::sealed::SecretKey;
use crate::{Cluster, error_text};

/// How often the publisher looks whether the other nodes have its answer.
const ACK_POLL: Duration = Duration::from_millis(100);

impl Cluster {
    /// Joins `certs` to the cluster: shared account, certificates, order
    /// leases and challenge answers. Call before [`Cluster::start`].
    pub fn join_certs(self: &Arc<Self>, certs: Arc<CertStore>) {
        certs.set_shared(self.clone());
        let _ = self.certs.set(certs);
    }

    fn client(&self) -> Result<Arc<crate::Link>, String> {
        self.link()
            .ok_or_else(|| "not connected to the cluster's PostgreSQL".to_string())
    }

    fn secret(&self) -> Result<&SecretKey, String> {
        self.secret.as_ref().ok_or_else(|| {
            "[cluster] has no secret_key_file: private keys cannot be stored or read".to_string()
        })
    }

    /// A NOTIFY on `rampart_challenges` (or a reconnect): load the other
    /// nodes' current answers into the store, then acknowledge them.
    pub(crate) async fn sync_challenges(&self, client: &Client) -> Result<(), String> {
        let Some(certs) = self.certs.get() else {
            return Ok(());
        };
        let rows = client
            .query(
                "SELECT kind, key, value FROM rampart.challenges WHERE expires > now() AND by_node <> $1",
                &[&self.node],
            )
            .await
            .map_err(|e| error_text(&e))?;
        let mut list = Vec::new();
        let (mut kinds, mut keys) = (Vec::<String>::new(), Vec::<String>::new());
        for r in rows {
            let (kind, key, value): (String, String, String) = (r.get(0), r.get(1), r.get(2));
            let c = match kind.as_str() {
                "http-01" => SharedChallenge::Http01 {
                    token: key.clone(),
                    key_authorization: value,
                },
                "tls-alpn-01" => match unhex(&value) {
                    Some(digest) => SharedChallenge::TlsAlpn01 {
                        name: key.clone(),
                        digest,
                    },
                    None => continue,
                },
                _ => continue,
            };
            list.push(c);
            kinds.push(kind);
            keys.push(key);
        }
        let n = list.len();
        certs.set_remote_challenges(list);
        if n > 0 {
            client
                .execute(
                    "INSERT INTO rampart.challenge_acks (kind, key, node)
                     SELECT k, c, $3 FROM unnest($1::text[], $2::text[]) AS t(k, c)
                     ON CONFLICT DO NOTHING",
                    &[&kinds, &keys, &self.node],
                )
                .await
                .map_err(|e| error_text(&e))?;
            tracing::debug!(target: "rampart::cluster", answers = n, "challenge answers of other nodes loaded");
        }
        Ok(())
    }

    /// A NOTIFY on `rampart_certs`: another node stored a certificate.
    pub(crate) fn cert_stored(&self) {
        if let Some(certs) = self.certs.get() {
            certs.wake_acme();
        }
    }
}

fn kind_key(c: &SharedChallenge) -> (&'static str, &str, String) {
    match c {
        SharedChallenge::Http01 {
            token,
            key_authorization,
        } => ("http-01", token, key_authorization.clone()),
        SharedChallenge::TlsAlpn01 { name, digest } => (
            "tls-alpn-01",
            name,
            digest.iter().map(|b| format!("{b:02x}")).collect(),
        ),
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok())
        .collect()
}

/// The row name a sealed ACME account is bound to (its associated data):
/// sealing and opening must name it the same way.
fn account_row(directory: &str) -> String {
    format!("account {directory}")
}

/// The row name a sealed certificate key is bound to.
fn cert_row(key: &str) -> String {
    format!("cert {key}")
}

impl SharedCerts for Cluster {
    fn load_account<'a>(
        &'a self,
        directory: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, String>> {
        Box::pin(async move {
            let link = self.client()?;
            let row = link
                .client
                .query_opt(
                    "SELECT credentials FROM rampart.acme_accounts WHERE directory = $1",
                    &[&directory],
                )
                .await
                .map_err(|e| error_text(&e))?;
            match row {
                None => Ok(None),
                Some(r) => {
                    let sealed: Vec<u8> = r.get(0);
                    self.secret()?
                        .open(&account_row(directory), &sealed)
                        .map(Some)
                }
            }
        })
    }

    fn save_account<'a>(
        &'a self,
        directory: &'a str,
        credentials: &'a [u8],
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let link = self.client()?;
            let sealed = self.secret()?.seal(&account_row(directory), credentials);
            // The first account stored wins: a second node that raced to
            // create one keeps using the stored one next time.
            link.client
                .execute(
                    "INSERT INTO rampart.acme_accounts (directory, credentials, updated, by_node)
                     VALUES ($1, $2, now(), $3) ON CONFLICT (directory) DO NOTHING",
                    &[&directory, &sealed, &self.node],
                )
                .await
                .map(|_| ())
                .map_err(|e| error_text(&e))
        })
    }

    fn load_cert<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<SharedCert>, String>> {
        Box::pin(async move {
            let link = self.client()?;
            let row = link
                .client
                .query_opt(
                    "SELECT chain, private_key FROM rampart.certs WHERE key = $1",
                    &[&key],
                )
                .await
                .map_err(|e| error_text(&e))?;
            let Some(r) = row else { return Ok(None) };
            let sealed: Vec<u8> = r.get(1);
            let key_pem = self.secret()?.open(&cert_row(key), &sealed)?;
            Ok(Some(SharedCert {
                chain_pem: r.get(0),
                key_pem: String::from_utf8(key_pem)
                    .map_err(|_| format!("cert {key}: the stored key is not PEM"))?,
            }))
        })
    }

    fn save_cert<'a>(
        &'a self,
        key: &'a str,
        cert: &'a SharedCert,
        not_after: i64,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let link = self.client()?;
            let sealed = self.secret()?.seal(&cert_row(key), cert.key_pem.as_bytes());
            link.client
                .execute(
                    "WITH s AS (
                        INSERT INTO rampart.certs AS c (key, chain, private_key, not_after, updated, by_node)
                        VALUES ($1, $2, $3, to_timestamp($4::float8), now(), $5)
                        ON CONFLICT (key) DO UPDATE SET chain = EXCLUDED.chain,
                            private_key = EXCLUDED.private_key, not_after = EXCLUDED.not_after,
                            updated = now(), by_node = EXCLUDED.by_node
                        WHERE c.not_after <= EXCLUDED.not_after
                        RETURNING 1)
                     SELECT pg_notify('rampart_certs', $1) FROM s",
                    &[&key, &cert.chain_pem, &sealed, &(not_after as f64), &self.node],
                )
                .await
                .map(|_| ())
                .map_err(|e| error_text(&e))
        })
    }

    fn try_lease<'a>(
        &'a self,
        key: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(async move {
            let link = self.client()?;
            let rows = link
                .client
                .query(
                    "INSERT INTO rampart.order_leases AS l (key, holder, until)
                     VALUES ($1, $2, now() + $3::float8 * interval '1 second')
                     ON CONFLICT (key) DO UPDATE SET holder = EXCLUDED.holder, until = EXCLUDED.until
                     WHERE l.until < now() OR l.holder = EXCLUDED.holder
                     RETURNING 1",
                    &[&key, &self.node, &lease.as_secs_f64()],
                )
                .await
                .map_err(|e| error_text(&e))?;
            Ok(!rows.is_empty())
        })
    }

    fn release<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let link = self.client()?;
            link.client
                .execute(
                    "DELETE FROM rampart.order_leases WHERE key = $1 AND holder = $2",
                    &[&key, &self.node],
                )
                .await
                .map(|_| ())
                .map_err(|e| error_text(&e))
        })
    }

    fn publish_challenge<'a>(
        &'a self,
        challenge: &'a SharedChallenge,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let link = self.client()?;
            let (kind, key, value) = kind_key(challenge);
            link.client
                .execute(
                    "INSERT INTO rampart.challenges (kind, key, value, expires, by_node)
                     VALUES ($1, $2, $3, now() + $4::float8 * interval '1 second', $5)
                     ON CONFLICT (kind, key) DO UPDATE SET value = EXCLUDED.value,
                         expires = EXCLUDED.expires, by_node = EXCLUDED.by_node",
                    &[&kind, &key, &value, &ttl.as_secs_f64(), &self.node],
                )
                .await
                .map_err(|e| error_text(&e))?;
            // An answer re-published with a new value needs fresh acks.
            link.client
                .execute(
                    "DELETE FROM rampart.challenge_acks WHERE kind = $1 AND key = $2",
                    &[&kind, &key],
                )
                .await
                .map_err(|e| error_text(&e))?;
            link.client
                .execute("SELECT pg_notify('rampart_challenges', $1)", &[&kind])
                .await
                .map_err(|e| error_text(&e))?;
            let live = (self.cfg.heartbeat.get() * 3).as_secs_f64();
            loop {
                let missing: Vec<String> = link
                    .client
                    .query(
                        "SELECT n.name FROM rampart.nodes n
                         WHERE n.name <> $1 AND n.last_seen > now() - $2::float8 * interval '1 second'
                           AND NOT EXISTS (SELECT 1 FROM rampart.challenge_acks a
                                           WHERE a.kind = $3 AND a.key = $4 AND a.node = n.name)",
                        &[&self.node, &live, &kind, &key],
                    )
                    .await
                    .map_err(|e| error_text(&e))?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                if missing.is_empty() {
                    return Ok(());
                }
                tracing::trace!(target: "rampart::cluster", ?missing, "waiting for nodes to load a challenge answer");
                tokio::time::sleep(ACK_POLL).await;
            }
        })
    }

    fn withdraw_challenge<'a>(
        &'a self,
        challenge: &'a SharedChallenge,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let link = self.client()?;
            let (kind, key, _) = kind_key(challenge);
            // Not a transaction: the connection is shared by every task.
            let q = |e: tokio_postgres::Error| error_text(&e);
            link.client
                .execute(
                    "DELETE FROM rampart.challenges WHERE kind = $1 AND key = $2 AND by_node = $3",
                    &[&kind, &key, &self.node],
                )
                .await
                .map_err(q)?;
            link.client
                .execute(
                    "DELETE FROM rampart.challenge_acks WHERE kind = $1 AND key = $2",
                    &[&kind, &key],
                )
                .await
                .map_err(q)?;
            link.client
                .execute("SELECT pg_notify('rampart_challenges', $1)", &[&kind])
                .await
                .map_err(q)?;
            Ok(())
        })
    }
}
