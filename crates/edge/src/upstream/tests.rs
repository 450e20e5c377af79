use super::*;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
