//! Memory for RPC bodies the guard reads whole (stage 5), bounded per
//! client address and overall: without it one address opening 40
//! connections of 7 MiB each held 300 MB.
//!
//! Such a body is first received like any upload (`request_body::receive`:
//! memory, then the spool, at the minimum pace), and only once it is
//! complete is it loaded here for reading, charged with its real length.
//! A reservation taken on the declared length before any byte came let 8
//! addresses sending nothing hold the whole budget (red team 3). A body
//! that would go over either budget is answered 503.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, OnceLock};

use bytes::Bytes;
use ipnet::IpNet;

use crate::stage::request_body::Received;

/// Bytes of inspected bodies one client address may hold at once.
pub const PER_CLIENT: u64 = 32 * 1024 * 1024;
/// Bytes of inspected bodies all clients together may hold at once.
pub const TOTAL: u64 = 256 * 1024 * 1024;

#[derive(Default)]
struct Held {
    by_client: HashMap<IpNet, u64>,
    total: u64,
}

/// Bytes of bodies the guard reads, per client address and in all.
pub struct Budget {
    held: Mutex<Held>,
    per_client: u64,
    total: u64,
}

/// Bytes held for one request; given back when dropped.
pub struct Reservation {
    budget: &'static Budget,
    client: IpNet,
    bytes: u64,
}

impl Budget {
    /// `per_client` bytes per address, `total` for all together.
    pub fn new(per_client: u64, total: u64) -> Budget {
        Budget {
            held: Mutex::new(Held {
                by_client: HashMap::new(),
                total: 0,
            }),
            per_client,
            total,
        }
    }

    /// The process-wide budget.
    pub fn global() -> &'static Budget {
        static GLOBAL: OnceLock<Budget> = OnceLock::new();
        GLOBAL.get_or_init(|| Budget::new(PER_CLIENT, TOTAL))
    }

    /// Holds `bytes` for `client`, or None when either budget would be exceeded.
    pub fn reserve(&'static self, client: IpAddr, bytes: u64) -> Option<Reservation> {
        let client = rampart_guard::client_key(client);
        let mut h = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let mine = h.by_client.get(&client).copied().unwrap_or(0);
        if mine + bytes > self.per_client || h.total + bytes > self.total {
            return None;
        }
        *h.by_client.entry(client).or_default() += bytes;
        h.total += bytes;
        Some(Reservation {
            budget: self,
            client,
            bytes,
        })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut h = self.budget.held.lock().unwrap_or_else(|e| e.into_inner());
        h.total = h.total.saturating_sub(self.bytes);
        if let Some(n) = h.by_client.get_mut(&self.client) {
            *n = n.saturating_sub(self.bytes);
            if *n == 0 {
                h.by_client.remove(&self.client);
            }
        }
    }
}

/// A received body's bytes, in memory while the guard reads them.
pub struct Loaded {
    /// The body.
    pub bytes: Bytes,
    _held: Option<Reservation>,
}

/// Why a body could not be loaded for reading.
pub enum LoadError {
    /// Over the client's or the process's budget.
    Busy,
    /// Reading the spool file failed.
    Io(std::io::Error),
}

/// The bytes of a received body for the guard to read, or None when it is
/// longer than `limit` (too large to read here). A body kept in memory is
/// already charged to its client's memory share; a spooled one is read
/// back and charged here while it is read.
pub async fn load(
    received: &Received,
    client: IpAddr,
    limit: usize,
) -> Result<Option<Loaded>, LoadError> {
    load_with(Budget::global(), received, client, limit).await
}

async fn load_with(
    budget: &'static Budget,
    received: &Received,
    client: IpAddr,
    limit: usize,
) -> Result<Option<Loaded>, LoadError> {
    if received.len() > limit as u64 {
        return Ok(None);
    }
    match received {
        Received::Memory(b, _) => Ok(Some(Loaded {
            bytes: b.clone(),
            _held: None,
        })),
        Received::Spooled(f) => {
            let held = budget.reserve(client, f.len()).ok_or(LoadError::Busy)?;
            let len = usize::try_from(f.len()).expect("at most the inspection limit");
            let bytes = f.reader().read_at(0, len).await.map_err(LoadError::Io)?;
            if bytes.len() != len {
                return Err(LoadError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            Ok(Some(Loaded {
                bytes,
                _held: Some(held),
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_client_and_total_budgets_hold_and_release() {
        let budget: &'static Budget = Box::leak(Box::new(Budget::new(10, 25)));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let c: IpAddr = "192.0.2.3".parse().unwrap();
        let r1 = budget.reserve(a, 7).unwrap();
        assert!(budget.reserve(a, 4).is_none(), "over a's budget");
        let r2 = budget.reserve(a, 3).unwrap();
        let _r3 = budget.reserve(b, 10).unwrap();
        assert!(budget.reserve(c, 6).is_none(), "over the total");
        assert!(budget.reserve(c, 5).is_some(), "exactly the total fits");
        drop(r1);
        assert!(budget.reserve(c, 6).is_some());
        assert!(
            budget.reserve(a, 8).is_none(),
            "a still holds 3 of its 10 after giving 7 back"
        );
        drop(r2);
        assert!(
            !budget
                .held
                .lock()
                .unwrap()
                .by_client
                .contains_key(&rampart_guard::client_key(a))
        );
    }

    #[test]
    fn the_process_wide_budget_is_what_the_readme_states() {
        // README: "bounded to 32 MiB per client address and 256 MiB in all".
        let g = Budget::global();
        assert_eq!((g.per_client, g.total), (32 << 20, 256 << 20));
    }

    #[test]
    fn one_ipv6_slash_64_is_one_client() {
        let budget: &'static Budget = Box::leak(Box::new(Budget::new(10, 100)));
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::2".parse().unwrap();
        let other: IpAddr = "2001:db8:0:1::1".parse().unwrap();
        let _r = budget.reserve(a, 8).unwrap();
        assert!(budget.reserve(b, 8).is_none(), "same /64, same budget");
        assert!(budget.reserve(other, 8).is_some());
    }

    #[tokio::test]
    async fn a_spooled_body_is_charged_only_while_loaded() {
        let state = std::env::temp_dir().join(format!("rampart-inspect-{}", std::process::id()));
        let spool = crate::spool::Spool::open(
            &state,
            1 << 20,
            1 << 20,
            crate::body_memory::BodyMemory::new(1 << 20, 1 << 20),
            16,
        )
        .unwrap();
        let budget: &'static Budget = Box::leak(Box::new(Budget::new(10, 25)));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let mut f = spool.create(a).await.unwrap();
        f.append(Bytes::from_static(b"0123456789")).await.unwrap();
        let body = Received::Spooled(f);
        assert_eq!(
            budget.held.lock().unwrap().total,
            0,
            "nothing held while it arrived"
        );
        let loaded = load_with(budget, &body, a, 16)
            .await
            .ok()
            .flatten()
            .unwrap();
        assert_eq!(&loaded.bytes[..], b"0123456789");
        assert!(matches!(
            load_with(budget, &body, a, 16).await,
            Err(LoadError::Busy)
        ));
        drop(loaded);
        assert_eq!(budget.held.lock().unwrap().total, 0);
        assert!(
            matches!(load_with(budget, &body, a, 9).await, Ok(None)),
            "over the limit"
        );
        let at_limit = load_with(budget, &body, a, 10).await.ok().flatten();
        assert_eq!(
            at_limit.map(|l| l.bytes),
            Some(Bytes::from_static(b"0123456789")),
            "a body of exactly the limit is read"
        );
        let mem = Received::Memory(Bytes::from_static(b"abc"), None);
        let l = load_with(budget, &mem, a, 16).await.ok().flatten().unwrap();
        assert_eq!(&l.bytes[..], b"abc");
        // The process-wide entry point the pipeline calls.
        let l = load(&mem, a, 16).await.ok().flatten().unwrap();
        assert_eq!(&l.bytes[..], b"abc");
        assert!(matches!(load(&mem, a, 2).await, Ok(None)));
        std::fs::remove_dir_all(state).unwrap();
    }
}
