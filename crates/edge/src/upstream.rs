//! Upstream pools: Odoo's HTTP workers and its evented worker(s).
//!
//! Odoo runs a fixed number of worker processes, so each upstream has a
//! concurrency cap (`max_conns`, alias `workers`); requests over it wait
//! in Rampart (up to `queue_timeout`, then 503) instead of piling onto a
//! server that can only queue them anyway. Waiting requests sit in one
//! queue per client (a proven session, else an address: thirty people
//! behind one office NAT are thirty clients once logged in), and a freed
//! slot goes to the next client in
//! round-robin order: one client with sixty requests in the queue delays
//! another's single request by at most one of its own. A client holding
//! its share (`per_client` slots) gets no more while others wait, so two
//! addresses cannot fill a busy pool; when nobody else waits it may use
//! what is free (an idle Odoo serves one user's page load at full speed).
//! The proven sessions used from one address together hold at most half
//! the pool while others wait, so minting sessions cannot fill it.
//! A client with `WAITING_PER_CLIENT` requests waiting is refused at once.
//! Among healthy upstreams the one
//! with the fewest requests in flight is chosen. An active check takes a
//! failing upstream out after `fall` failures and puts it back after
//! `rise` successes; when every upstream is out, requests still try them
//! (a fresh 502 beats a guess).

use ipnet::IpNet;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rampart_guard::SessionKey;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// One Odoo worker address, with its slots in use and its health.
pub struct Upstream {
    /// `host:port` as configured.
    pub addr: String,
    active: AtomicUsize,
    healthy: AtomicBool,
    fails: AtomicU32,
    oks: AtomicU32,
}

impl Upstream {
    /// Whether it passes its health check now.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
    /// Requests holding a slot on it now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Records a check or request outcome; returns Some(new state) when it flips.
    pub fn record(&self, ok: bool, fall: u32, rise: u32) -> Option<bool> {
        if ok {
            self.fails.store(0, Ordering::Relaxed);
            let oks = self.oks.fetch_add(1, Ordering::Relaxed) + 1;
            if !self.is_healthy() && oks >= rise {
                self.healthy.store(true, Ordering::Relaxed);
                return Some(true);
            }
        } else {
            self.oks.store(0, Ordering::Relaxed);
            let fails = self.fails.fetch_add(1, Ordering::Relaxed) + 1;
            if self.is_healthy() && fails >= fall {
                self.healthy.store(false, Ordering::Relaxed);
                return Some(false);
            }
        }
        None
    }
}

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
enum QKey {
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

struct Waiter {
    tx: oneshot::Sender<Lease>,
    avoid: Option<Arc<Upstream>>,
    client: Client,
}

#[derive(Default)]
struct Queues {
    /// Slots held, per client.
    held: HashMap<QKey, usize>,
    /// Slots held by proven sessions, per address they were used from.
    session_held: HashMap<IpNet, usize>,
    /// Waiting requests, per client, and the clients in serving order.
    waiting: HashMap<QKey, VecDeque<Waiter>>,
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
        self.held.get(&c.key()).copied().unwrap_or(0) < per_client
            && (c.session.is_none()
                || self
                    .session_held
                    .get(&rampart_guard::client_key(c.addr))
                    .copied()
                    .unwrap_or(0)
                    < per_address)
    }
}

struct Sched {
    upstreams: Vec<Arc<Upstream>>,
    cap: usize,
    per_client: usize,
    /// What the proven sessions of one address hold together.
    per_address: usize,
    /// `per_client` is a hard limit (websocket tunnels live for hours):
    /// beyond it, refused at once even when slots are free.
    hard: bool,
    queues: Mutex<Queues>,
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
                    if let Some(i) = list.iter().position(|w| {
                        w.avoid.as_ref().is_none_or(|a| !Arc::ptr_eq(a, up))
                            && (!under_share_only
                                || q.under_share(&w.client, self.per_client, self.per_address))
                    }) {
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
    sched: Arc<Sched>,
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

/// How an upstream is checked.
#[derive(Clone)]
pub enum Check {
    /// GET this path; healthy on 2xx.
    Http(String),
    /// A TCP connect (the evented worker has no cheap HTTP answer before 16).
    Tcp,
}

/// How and how often one pool's upstreams are checked.
pub struct CheckSettings {
    /// What a check does.
    pub check: Check,
    /// Time between two checks.
    pub interval: Duration,
    /// How long one check may take.
    pub timeout: Duration,
    /// Consecutive failures that take an upstream out.
    pub fall: u32,
    /// Consecutive successes that put it back.
    pub rise: u32,
}

/// Told (site, upstream, healthy) after every check.
pub type HealthObserver = Arc<dyn Fn(&str, &str, bool) + Send + Sync>;

/// Runs the active health check for every upstream of a pool until
/// `stop` is cancelled (on reload or shutdown).
pub fn spawn_checks(
    site: String,
    pool: &Pool,
    settings: Arc<CheckSettings>,
    stop: CancellationToken,
    on_change: HealthObserver,
) {
    for up in &pool.upstreams {
        let up = up.clone();
        let settings = settings.clone();
        let stop = stop.clone();
        let on_change = on_change.clone();
        let site = site.clone();
        tokio::spawn(async move {
            loop {
                let ok = tokio::select! {
                    _ = stop.cancelled() => return,
                    ok = check_once(&up.addr, &settings) => ok,
                };
                if let Some(now) = up.record(ok, settings.fall, settings.rise) {
                    if now {
                        tracing::info!(site = %site, upstream = %up.addr, "upstream healthy again: back in rotation");
                    } else {
                        tracing::warn!(site = %site, upstream = %up.addr, "upstream failed its health check: taken out of rotation");
                    }
                }
                on_change(&site, &up.addr, up.is_healthy());
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(settings.interval) => {}
                }
            }
        });
    }
}

async fn check_once(addr: &str, s: &CheckSettings) -> bool {
    let fut = async {
        let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let Check::Http(path) = &s.check else {
            return Some(true);
        };
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut send, conn) =
            hyper::client::conn::http1::handshake::<_, http_body_util::Empty<bytes::Bytes>>(io)
                .await
                .ok()?;
        tokio::spawn(conn);
        let req = http::Request::get(path.as_str())
            .header(http::header::HOST, addr)
            .header(http::header::USER_AGENT, "rampart-health-check")
            .body(http_body_util::Empty::new())
            .ok()?;
        let res = send.send_request(req).await.ok()?;
        Some(res.status().is_success())
    };
    tokio::time::timeout(s.timeout, fut)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: Client = Client {
        addr: IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)),
        session: None,
    };

    #[tokio::test]
    async fn least_connections_and_health() {
        let pool = Pool::new(
            &["a:1".into(), "b:1".into()],
            2,
            99,
            Duration::from_millis(50),
        );
        let l1 = pool.acquire(C).await.unwrap();
        let l2 = pool.acquire(C).await.unwrap();
        assert_ne!(l1.upstream.addr, l2.upstream.addr, "spread over both");
        // Take b out: everything goes to a.
        let b = pool.upstreams[1].clone();
        assert_eq!(b.record(false, 2, 1), None);
        assert_eq!(b.record(false, 2, 1), Some(false));
        drop((l1, l2));
        let l3 = pool.acquire(C).await.unwrap();
        assert_eq!(l3.upstream.addr, "a:1");
        let l4 = pool.acquire(C).await.unwrap();
        assert_eq!(l4.upstream.addr, "a:1");
        // a is at its cap of 2: the queue times out.
        assert!(pool.acquire(C).await.is_err());
        drop(l3);
        assert!(pool.acquire(C).await.is_ok());
        assert_eq!(b.record(true, 2, 1), Some(true));
    }

    #[test]
    fn taken_out_after_exactly_fall_failures_back_after_exactly_rise_successes() {
        let pool = Pool::new(&["a:1".into()], 2, 99, Duration::from_millis(50));
        let u = pool.upstreams[0].clone();
        let (fall, rise) = (3, 2);
        // A success in between starts the count of failures again.
        assert_eq!(u.record(false, fall, rise), None);
        assert_eq!(u.record(false, fall, rise), None);
        assert_eq!(u.record(true, fall, rise), None, "healthy stays healthy");
        assert_eq!(u.record(false, fall, rise), None);
        assert_eq!(u.record(false, fall, rise), None);
        assert_eq!(
            u.record(false, fall, rise),
            Some(false),
            "the third in a row"
        );
        assert!(!u.is_healthy());
        assert_eq!(u.record(false, fall, rise), None, "out stays out");
        // A failure in between starts the count of successes again.
        assert_eq!(u.record(true, fall, rise), None);
        assert_eq!(u.record(false, fall, rise), None);
        assert_eq!(u.record(true, fall, rise), None);
        assert_eq!(
            u.record(true, fall, rise),
            Some(true),
            "the second in a row"
        );
        assert!(u.is_healthy());
        assert_eq!(u.record(true, fall, rise), None);
    }

    #[tokio::test]
    async fn avoiding_picks_another_or_none() {
        let pool = Pool::new(
            &["a:1".into(), "b:1".into()],
            4,
            99,
            Duration::from_millis(50),
        );
        let a = pool.upstreams[0].clone();
        for _ in 0..4 {
            let l = pool.acquire_avoiding(C, Some(&a)).await.unwrap().unwrap();
            assert_eq!(l.upstream.addr, "b:1");
        }
        let single = Pool::new(&["a:1".into()], 4, 99, Duration::from_millis(50));
        let only = single.upstreams[0].clone();
        assert!(single.acquire_avoiding(C, Some(&only)).await.is_none());
    }

    #[tokio::test]
    async fn over_its_share_a_client_waits_while_others_are_served() {
        let pool = Arc::new(Pool::new(&["a:1".into()], 2, 1, Duration::from_secs(5)));
        let other = Client::address(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2)));
        // Nobody else waits: the client may use the whole idle pool.
        let l1 = pool.acquire(C).await.unwrap();
        let l2 = pool.acquire(C).await.unwrap();
        // Both wait; C queued first, but C is over its share.
        let p = pool.clone();
        let mine = tokio::spawn(async move { p.acquire(C).await.map(|l| l.upstream.addr.clone()) });
        while pool.sched.queues.lock().unwrap().waiting.is_empty() {
            tokio::task::yield_now().await;
        }
        let p = pool.clone();
        let theirs = tokio::spawn(async move { p.acquire(other).await });
        while pool.sched.queues.lock().unwrap().waiting.len() < 2 {
            tokio::task::yield_now().await;
        }
        drop(l1);
        let l3 = theirs
            .await
            .unwrap()
            .expect("the other client gets the freed slot");
        assert!(!mine.is_finished());
        drop(l2);
        assert!(mine.await.unwrap().is_ok());
        drop(l3);
        // A timed-out wait leaves nothing behind.
        let full = Pool::new(&["a:1".into()], 1, 1, Duration::from_millis(20));
        let held = full.acquire(other).await.unwrap();
        assert_eq!(full.acquire(C).await.err(), Some(Refused::QueueTimeout));
        drop(held);
        assert_eq!(full.upstreams[0].active(), 0);
        assert!(full.sched.queues.lock().unwrap().waiting.is_empty());
        assert!(full.sched.queues.lock().unwrap().held.is_empty());
    }

    #[tokio::test]
    async fn freed_slots_go_round_robin_between_clients() {
        let pool = Arc::new(Pool::new(&["a:1".into()], 1, 100, Duration::from_secs(10)));
        let heavy = C;
        let light = Client::address(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2)));
        let first = pool.acquire(heavy).await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (i, who) in (0..20).map(|i| (i, heavy)).chain([(99, light)]) {
            let (p, order) = (pool.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let l = p.acquire(who).await.unwrap();
                order.lock().unwrap().push(i);
                tokio::task::yield_now().await;
                drop(l);
            }));
            // Queue in this order.
            while pool
                .sched
                .queues
                .lock()
                .unwrap()
                .waiting
                .values()
                .map(VecDeque::len)
                .sum::<usize>()
                < tasks.len()
            {
                tokio::task::yield_now().await;
            }
        }
        drop(first);
        for t in tasks {
            t.await.unwrap();
        }
        let order = order.lock().unwrap();
        let light_at = order.iter().position(|&i| i == 99).unwrap();
        assert!(
            light_at <= 1,
            "the light client's request waited behind {light_at}: {order:?}"
        );
        assert_eq!(pool.upstreams[0].active(), 0);
        assert!(pool.sched.queues.lock().unwrap().held.is_empty());
    }

    #[tokio::test]
    async fn sessions_are_clients_under_a_bound_for_their_address() {
        let session = |addr: IpAddr, n: u8| Client {
            addr,
            session: Some([n; 16]),
        };
        let office = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 9));
        // Websocket tunnels (hard caps): one per session, and one address's
        // sessions together hold at most half of the 8.
        let ws = Pool::new(&["a:1".into()], 8, 1, Duration::from_millis(20)).hard_per_client();
        let mut held = Vec::new();
        for n in 0..4 {
            held.push(ws.acquire(session(office, n)).await.unwrap());
        }
        assert_eq!(
            ws.acquire(session(office, 0)).await.err(),
            Some(Refused::ClientCap)
        );
        assert_eq!(
            ws.acquire(session(office, 9)).await.err(),
            Some(Refused::ClientCap)
        );
        assert!(ws.acquire(office).await.is_ok(), "the address's own share");
        let elsewhere = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 10));
        assert!(ws.acquire(session(elsewhere, 9)).await.is_ok());
        drop(held);
        assert!(ws.acquire(session(office, 9)).await.is_ok());
    }

    #[tokio::test]
    async fn one_ipv6_slash_64_is_one_client() {
        // Rotating through one's own /64 must not make fresh shares.
        let ws = Pool::new(&["a:1".into()], 8, 1, Duration::from_millis(20)).hard_per_client();
        let a: IpAddr = "2001:db8:1:2::a".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::b".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::a".parse().unwrap();
        let _held = ws.acquire(a).await.unwrap();
        assert_eq!(ws.acquire(b).await.err(), Some(Refused::ClientCap));
        assert!(
            ws.acquire(other).await.is_ok(),
            "another /64 is another client"
        );
        let session = |addr: IpAddr, n: u8| Client {
            addr,
            session: Some([n; 16]),
        };
        let mut held = Vec::new();
        for n in 0..4u8 {
            let addr: IpAddr = format!("2001:db8:9:9::{n}").parse().unwrap();
            held.push(ws.acquire(session(addr, n)).await.unwrap());
        }
        let fifth: IpAddr = "2001:db8:9:9::ff".parse().unwrap();
        assert_eq!(
            ws.acquire(session(fifth, 9)).await.err(),
            Some(Refused::ClientCap),
            "the /64's sessions share one address's bound"
        );
    }

    #[tokio::test]
    async fn all_down_still_tries() {
        let pool = Pool::new(&["a:1".into()], 4, 99, Duration::from_millis(50));
        pool.upstreams[0].record(false, 1, 1);
        assert!(pool.acquire(C).await.is_ok());
    }
}
