//! The fair queue in front of a pool's upstreams: who gets the next slot.
//! A slot freed by a lease goes straight to the next waiting client in
//! round-robin order (clients under their share first), so a client with
//! many requests waiting delays another's single request by at most one
//! of its own. Apart from the health check because it is the one place
//! that decides between clients.

use ipnet::IpNet;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rampart_guard::SessionKey;
use tokio::sync::oneshot;

use super::Upstream;

/// Who asks for a slot: the address, and the proven session the request
/// carries, if any (then the session is the client).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Client {
    /// The client address.
    pub addr: IpAddr,
    /// The proven session the request carries, if any.
    pub session: Option<SessionKey>,
}

impl Client {
    /// A client known by its address only.
    pub fn address(addr: IpAddr) -> Client {
        Client {
            addr,
            session: None,
        }
    }

    fn key(&self) -> QKey {
        match self.session {
            Some(s) => QKey::Session(s),
            None => QKey::Addr(rampart_guard::client_key(self.addr)),
        }
    }
}

impl From<IpAddr> for Client {
    fn from(addr: IpAddr) -> Client {
        Client::address(addr)
    }
}

/// A fair queue's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum QKey {
    /// The guard's unit: an IPv4 address or an IPv6 /64, so rotating
    /// through one's own /64 does not make fresh queues.
    Addr(IpNet),
    Session(SessionKey),
}

/// One request's claim on an upstream slot, until dropped.
pub struct Lease {
    /// The upstream the slot is on.
    pub upstream: Arc<Upstream>,
    /// None once disarmed (a lease that never reached its waiter).
    owner: Option<(Arc<Sched>, Client)>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some((sched, client)) = self.owner.take() {
            sched.release(&self.upstream, client);
        }
    }
}

/// Why no slot was given.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Every slot stayed taken for `queue_timeout`.
    QueueTimeout,
    /// This client already holds or waits for its share.
    ClientCap,
}

pub(super) struct Waiter {
    tx: oneshot::Sender<Lease>,
    avoid: Option<Arc<Upstream>>,
    client: Client,
}

#[derive(Default)]
pub(super) struct Queues {
    /// Slots held, per client.
    pub(super) held: HashMap<QKey, usize>,
    /// Slots held by proven sessions, per address they were used from.
    session_held: HashMap<IpNet, usize>,
    /// Waiting requests, per client, and the clients in serving order.
    pub(super) waiting: HashMap<QKey, VecDeque<Waiter>>,
    ring: VecDeque<QKey>,
}

impl Queues {
    fn hold(&mut self, c: &Client) {
        *self.held.entry(c.key()).or_insert(0) += 1;
        if c.session.is_some() {
            *self
                .session_held
                .entry(rampart_guard::client_key(c.addr))
                .or_insert(0) += 1;
        }
    }

    fn unhold(&mut self, c: &Client) {
        forget_one(&mut self.held, c.key());
        if c.session.is_some() {
            forget_one(&mut self.session_held, rampart_guard::client_key(c.addr));
        }
    }

    /// Whether `c` is under its share: its own, and for a session, its
    /// address's sessions' share.
    fn under_share(&self, c: &Client, per_client: usize, per_address: usize) -> bool {
        self.holds_under(&c.key(), per_client) && self.address_under(c, per_address)
    }

    /// Whether the client `key` holds fewer than `per_client` slots.
    fn holds_under(&self, key: &QKey, per_client: usize) -> bool {
        self.held.get(key).copied().unwrap_or(0) < per_client
    }

    /// Whether `c`, when it is a session, is under its address's sessions'
    /// share (an address-only client always is).
    fn address_under(&self, c: &Client, per_address: usize) -> bool {
        c.session.is_none()
            || self
                .session_held
                .get(&rampart_guard::client_key(c.addr))
                .copied()
                .unwrap_or(0)
                < per_address
    }
}

pub(super) struct Sched {
    upstreams: Vec<Arc<Upstream>>,
    cap: usize,
    per_client: usize,
    /// What the proven sessions of one address hold together.
    per_address: usize,
    /// `per_client` is a hard limit (websocket tunnels live for hours):
    /// beyond it, refused at once even when slots are free.
    hard: bool,
    pub(super) queues: Mutex<Queues>,
}

impl Sched {
    /// A slot on `up` was freed by `client`'s lease: hand it to the next
    /// waiting client in turn (clients under their share first), else let
    /// it go.
    fn release(self: &Arc<Self>, up: &Arc<Upstream>, client: Client) {
        let mut guard = self.queues.lock().expect("pool lock");
        let q = &mut *guard;
        q.unhold(&client);
        for under_share_only in [true, false] {
            for _ in 0..q.ring.len() {
                let Some(next) = q.ring.pop_front() else {
                    break;
                };
                let mut given = None;
                if let Some(mut list) = q.waiting.remove(&next) {
                    list.retain(|w| !w.tx.is_closed());
                    // Every waiter in the list is the client `next`: what it
                    // holds is read once, not once per waiter (a client over
                    // its share with hundreds waiting cost a hash lookup
                    // for each of them at every release).
                    let may_take = !under_share_only || q.holds_under(&next, self.per_client);
                    if may_take
                        && let Some(i) = list.iter().position(|w| {
                            w.avoid.as_ref().is_none_or(|a| !Arc::ptr_eq(a, up))
                                && (!under_share_only
                                    || q.address_under(&w.client, self.per_address))
                        })
                    {
                        given = list.remove(i);
                    }
                    if !list.is_empty() {
                        q.waiting.insert(next, list);
                        q.ring.push_back(next);
                    }
                }
                if let Some(w) = given {
                    q.hold(&w.client);
                    let lease = Lease {
                        upstream: up.clone(),
                        owner: Some((self.clone(), w.client)),
                    };
                    match w.tx.send(lease) {
                        // The slot moves on: `active` is unchanged.
                        Ok(()) => return,
                        Err(mut back) => {
                            back.owner = None;
                            q.unhold(&w.client);
                        }
                    }
                }
            }
        }
        up.active.fetch_sub(1, Ordering::Relaxed);
    }

    /// The least-busy usable upstream with a free slot, counted as taken.
    fn take_free(&self, avoid: Option<&Arc<Upstream>>, start: usize) -> Option<Arc<Upstream>> {
        let n = self.upstreams.len();
        let usable = |u: &&Arc<Upstream>| avoid.is_none_or(|a| !Arc::ptr_eq(a, u));
        let any_healthy = self.upstreams.iter().filter(usable).any(|u| u.is_healthy());
        let chosen = (0..n)
            .map(|i| &self.upstreams[(start + i) % n])
            .filter(usable)
            .filter(|u| u.is_healthy() || !any_healthy)
            .filter(|u| u.active() < self.cap)
            .min_by_key(|u| u.active())?
            .clone();
        chosen.active.fetch_add(1, Ordering::Relaxed);
        Some(chosen)
    }
}

/// Requests one client may have waiting; more are refused at once.
const WAITING_PER_CLIENT: usize = 1024;

fn forget_one<K: std::hash::Hash + Eq>(held: &mut HashMap<K, usize>, client: K) {
    if let Some(n) = held.get_mut(&client) {
        *n -= 1;
        if *n == 0 {
            held.remove(&client);
        }
    }
}

/// A site's upstreams of one kind, with the fair queues in front of them.
pub struct Pool {
    /// The upstreams, in config order.
    pub upstreams: Vec<Arc<Upstream>>,
    pub(super) sched: Arc<Sched>,
    next: AtomicUsize,
    queue_timeout: Duration,
}

impl Pool {
    /// A pool over `addrs`: `max_conns` requests at once per upstream, `per_client`
    /// slots per client while others wait, at most `queue_timeout` in the queue.
    pub fn new(
        addrs: &[String],
        max_conns: usize,
        per_client: usize,
        queue_timeout: Duration,
    ) -> Pool {
        let upstreams: Vec<Arc<Upstream>> = addrs
            .iter()
            .map(|a| {
                Arc::new(Upstream {
                    addr: a.clone(),
                    active: AtomicUsize::new(0),
                    healthy: AtomicBool::new(true),
                    fails: AtomicU32::new(0),
                    oks: AtomicU32::new(0),
                })
            })
            .collect();
        Pool {
            sched: Arc::new(Sched {
                upstreams: upstreams.clone(),
                cap: max_conns,
                per_client,
                per_address: per_client.max(max_conns.div_ceil(2)),
                hard: false,
                queues: Mutex::default(),
            }),
            upstreams,
            next: AtomicUsize::new(0),
            queue_timeout,
        }
    }

    /// The same pool, where `per_client` is a hard limit.
    pub fn hard_per_client(mut self) -> Pool {
        Arc::get_mut(&mut self.sched).expect("not shared yet").hard = true;
        self
    }

    /// A slot for `client`: least connections among healthy upstreams
    /// (round-robin on ties), else a turn in the fair queue.
    pub async fn acquire(&self, client: impl Into<Client>) -> Result<Lease, Refused> {
        self.acquire_avoiding(client.into(), None)
            .await
            .ok_or(Refused::QueueTimeout)?
    }

    /// The same, never choosing `avoid` (the upstream that just refused a
    /// connection). `None` when no other upstream exists.
    pub async fn acquire_avoiding(
        &self,
        client: Client,
        avoid: Option<&Arc<Upstream>>,
    ) -> Option<Result<Lease, Refused>> {
        if let Some(a) = avoid
            && self.upstreams.iter().all(|u| Arc::ptr_eq(u, a))
        {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut rx = {
            let mut guard = self.sched.queues.lock().expect("pool lock");
            let q = &mut *guard;
            let key = client.key();
            let held = q.held.get(&key).copied().unwrap_or(0);
            let address_full = client.session.is_some()
                && q.session_held
                    .get(&rampart_guard::client_key(client.addr))
                    .copied()
                    .unwrap_or(0)
                    >= self.sched.per_address;
            if self.sched.hard && (held >= self.sched.per_client || address_full) {
                return Some(Err(Refused::ClientCap));
            }
            // Over its share, a client takes a free slot only when nobody
            // else waits; otherwise it queues behind the others' turns.
            let under = q.under_share(&client, self.sched.per_client, self.sched.per_address);
            if (under || q.waiting.is_empty())
                && let Some(up) = self.sched.take_free(avoid, start)
            {
                q.hold(&client);
                return Some(Ok(Lease {
                    upstream: up,
                    owner: Some((self.sched.clone(), client)),
                }));
            }
            let list = q.waiting.entry(key).or_default();
            list.retain(|w| !w.tx.is_closed());
            if list.len() >= WAITING_PER_CLIENT {
                return Some(Err(Refused::ClientCap));
            }
            let (tx, rx) = oneshot::channel();
            list.push_back(Waiter {
                tx,
                avoid: avoid.cloned(),
                client,
            });
            if list.len() == 1 && !q.ring.contains(&key) {
                q.ring.push_back(key);
            }
            rx
        };
        tokio::select! {
            got = &mut rx => return Some(got.map_err(|_| Refused::QueueTimeout)),
            _ = tokio::time::sleep(self.queue_timeout) => {}
        }
        // Timed out: close first, so a slot handed over meanwhile is seen.
        rx.close();
        if let Ok(lease) = rx.try_recv() {
            return Some(Ok(lease));
        }
        let mut q = self.sched.queues.lock().expect("pool lock");
        let key = client.key();
        if let Some(list) = q.waiting.get_mut(&key) {
            list.retain(|w| !w.tx.is_closed());
            if list.is_empty() {
                q.waiting.remove(&key);
            }
        }
        Some(Err(Refused::QueueTimeout))
    }
}
