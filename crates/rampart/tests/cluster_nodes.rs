//! Issue 13: three `rampart serve` nodes (127.0.0.1, .2, .3) act as one
//! through a real PostgreSQL: the schema and status, budgets that hold
//! across nodes, bans pushed to every node, and PostgreSQL going away
//! without a failed request.

mod cluster_common;
mod common;
#[path = "../../backup/tests/common/mod.rs"]
mod pg;
mod slots_common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster_common::*;
use common::{TempDir, run_cli};
use rampart_testkit::OdooFixture;
use slots_common::{ip, metric};

fn cli(config: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["--config", config.to_str().unwrap()];
    all.extend_from_slice(args);
    run_cli(&all)
}

/// `rampart cluster init` creates the schema once (a second run has
/// nothing to do); `status` lists the three nodes with their heartbeat,
/// version and config hash, exit 0; a node whose config differs makes it
/// warn and exit 1; before init it says what to run, exit 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn init_is_idempotent_and_status_lists_nodes_and_config_drift() {
    let pg = start_pg();
    let dir = TempDir::new("cluster-cli");
    let conf = cli_config(dir.path(), &pg);
    let (code, _, err) = cli(&conf, &["cluster", "status"]);
    assert_eq!(code, 3, "status before init: {err}");
    assert!(err.contains("rampart cluster init"), "{err}");
    let (code, out, err) = cli(&conf, &["cluster", "init"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("version 2 (was 0)"), "{out}");
    let (code, out, _) = cli(&conf, &["cluster", "init"]);
    assert_eq!(code, 0);
    assert!(out.contains("nothing to do"), "{out}");

    let fixture = OdooFixture::start().await;
    let nodes = start_nodes(&fixture, "", Some(&pg)).await;
    nodes.wait_up().await;
    let (code, out, err) = cli(&conf, &["cluster", "status", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    for n in ["front-1", "front-2", "front-3"] {
        assert!(names.contains(&n), "{names:?}");
    }
    assert_eq!(v["configs_differ"], false, "{out}");

    // Node 3 gets another [guard] (a reload): status warns, exit 1.
    let r3 = &nodes.nodes[2];
    let mut setup = r3.setup.clone();
    setup.extra = setup
        .extra
        .replace("[guard]\n", "[guard]\nlogin_failures = { max = 99 }\n");
    r3.write_config(&setup);
    r3.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, out, err) = cli(&conf, &["cluster", "status"]);
        if code == 1 {
            assert!(err.contains("configs differ"), "{out}{err}");
            assert!(out.contains("front-3"), "{out}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no drift seen: {code} {out}{err}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// 200 failed logins from one address, round-robin over the three nodes,
/// 50 at a time: at most `login_failures.max` (10) reach Odoo in total.
/// Without `[cluster]` the same burst gets up to three times that through
/// (the control: this test fails on main, where nodes share nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_login_burst_over_three_nodes_reaches_odoo_at_most_max_times() {
    let attacker = ip("127.0.0.50");

    let alone = Arc::new(OdooFixture::start().await);
    let nodes = start_nodes(&alone, "", None).await;
    let statuses = burst(&nodes, &alone, 200, 50, "admin", |_| attacker).await;
    let without = logins_reached(&alone);
    assert!(
        statuses.iter().all(|s| [200, 403, 429].contains(s)),
        "{statuses:?}"
    );
    for r in &nodes.nodes {
        println!(
            "without [cluster]: node {} peak RSS {} KiB",
            r.https,
            r.vm_hwm_kib()
        );
    }
    drop(nodes);

    let pg = start_pg();
    let dir = TempDir::new("cluster-burst");
    let conf = cli_config(dir.path(), &pg);
    assert_eq!(cli(&conf, &["cluster", "init"]).0, 0);
    let fixture = Arc::new(OdooFixture::start().await);
    let nodes = start_nodes(&fixture, "", Some(&pg)).await;
    nodes.wait_up().await;
    // The figure: one reservation round trip on an idle cluster, from 30
    // sequential logins (each from its own address).
    for n in 0..30 {
        let src = ip(&format!("127.0.6.{}", n + 1));
        assert_eq!(
            post_login(&nodes.clients[n % 3], &fixture, src, "admin", "admin").await,
            303
        );
    }
    let (mut sum, mut count) = (0.0, 0.0);
    for r in &nodes.nodes {
        let m = r.metrics().await;
        sum += metric(&m, "rampart_cluster_reserve_seconds_sum");
        count += metric(&m, "rampart_cluster_reserve_seconds_count");
    }
    assert_eq!(count, 30.0, "one reservation per login attempt");
    println!(
        "idle cluster: reservation round trip mean {:.2} ms",
        sum / count * 1000.0
    );
    let before = logins_reached(&fixture);
    let started = Instant::now();
    let statuses = burst(&nodes, &fixture, 200, 50, "admin", |_| attacker).await;
    let took = started.elapsed();
    let with = logins_reached(&fixture) - before;
    println!(
        "burst of 200 over 3 nodes: {with} reached Odoo with [cluster], {without} without ({took:?})"
    );
    assert!(
        statuses.iter().all(|s| [200, 403, 429].contains(s)),
        "{statuses:?}"
    );
    assert!(
        with <= 10,
        "{with} failed logins reached Odoo: {statuses:?}"
    );
    assert!(without > 10, "the control let only {without} through");
    // The address is banned on every node (the ban went through the cluster).
    for c in &nodes.clients {
        let deadline = Instant::now() + Duration::from_secs(5);
        while get_status(c, attacker).await != 403 {
            assert!(
                Instant::now() < deadline,
                "{} did not ban {attacker}",
                c.https
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let (mut sum, mut count) = (0.0, 0.0);
    for r in &nodes.nodes {
        let m = r.metrics().await;
        sum += metric(&m, "rampart_cluster_reserve_seconds_sum");
        count += metric(&m, "rampart_cluster_reserve_seconds_count");
        println!("node {} peak RSS {} KiB", r.https, r.vm_hwm_kib());
    }
    assert!(count > 0.0, "no reservation was made in PostgreSQL");
    println!(
        "cluster reservation (idle + burst): {count} round trips, mean {:.2} ms",
        sum / count * 1000.0
    );
}

/// A ban typed on node 1 is enforced by node 3 within one second, and
/// `rampart bans list` on node 3 shows it; lifted on node 2, node 3 lets
/// the address in again, and a stale NOTIFY sent afterwards (or a forged
/// one full of SQL) does not bring it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ban_on_node_1_is_enforced_by_node_3_within_a_second() {
    let pg = start_pg();
    let dir = TempDir::new("cluster-ban");
    let conf = cli_config(dir.path(), &pg);
    assert_eq!(cli(&conf, &["cluster", "init"]).0, 0);
    let fixture = OdooFixture::start().await;
    let nodes = start_nodes(&fixture, "", Some(&pg)).await;
    nodes.wait_up().await;
    let victim = ip("127.0.0.60");
    let c3 = &nodes.clients[2];
    assert_eq!(get_status(c3, victim).await, 200);

    let (code, out, err) = cli(
        &nodes.nodes[0].config_path,
        &[
            "bans",
            "ban",
            "127.0.0.60",
            "--for",
            "1h",
            "--reason",
            "typed on node 1",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let banned_at = Instant::now();
    while get_status(c3, victim).await != 403 {
        assert!(
            banned_at.elapsed() < Duration::from_secs(1),
            "node 3 did not enforce the ban within 1 s:\n{}",
            nodes.nodes[2].stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("ban enforced by node 3 after {:?}", banned_at.elapsed());
    let (_, out, _) = cli(&nodes.nodes[2].config_path, &["bans", "list", "--json"]);
    assert!(
        out.contains("127.0.0.60") && out.contains("typed on node 1"),
        "{out}"
    );

    let (code, out, err) = cli(
        &nodes.nodes[1].config_path,
        &["bans", "unban", "127.0.0.60"],
    );
    assert_eq!(code, 0, "{out}{err}");
    let deadline = Instant::now() + Duration::from_secs(1);
    while get_status(c3, victim).await != 200 {
        assert!(Instant::now() < deadline, "node 3 kept the lifted ban");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Stale and forged notifications: re-read, never believed.
    pg.psql("rampart", "SELECT pg_notify('rampart_bans', '127.0.0.60')");
    pg.psql(
        "rampart",
        "SELECT pg_notify('rampart_bans', $$127.0.0.61'; DELETE FROM rampart.bans; --$$)",
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    for c in &nodes.clients {
        assert_eq!(get_status(c, victim).await, 200, "{} re-banned", c.https);
    }
    assert_eq!(pg.psql("rampart", "SELECT count(*) FROM rampart.bans"), "1");
}

/// PostgreSQL stops in the middle of traffic: no request fails (pages
/// and logins go on, on local state), the nodes say so in their metrics,
/// a ban typed on node 1 while it is away reaches node 3 once it is back,
/// and a ban lifted meanwhile is not resurrected by a node that missed it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgresql_stopped_during_traffic_fails_no_request_and_resyncs() {
    let pg = start_pg();
    let dir = TempDir::new("cluster-fault");
    let conf = cli_config(dir.path(), &pg);
    assert_eq!(cli(&conf, &["cluster", "init"]).0, 0);
    let fixture = Arc::new(OdooFixture::start().await);
    let nodes = Arc::new(start_nodes(&fixture, "", Some(&pg)).await);
    nodes.wait_up().await;
    // A ban everyone has, to be lifted while PostgreSQL is away.
    let old = ip("127.0.0.62");
    assert_eq!(
        cli(
            &nodes.nodes[0].config_path,
            &["bans", "ban", "127.0.0.62", "--for", "1h"]
        )
        .0,
        0
    );
    let deadline = Instant::now() + Duration::from_secs(2);
    while get_status(&nodes.clients[2], old).await != 403 {
        assert!(Instant::now() < deadline, "node 3 never got the first ban");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let (nodes, fixture, stop) = (nodes.clone(), fixture.clone(), stop.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut i = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                let c = &nodes.clients[i % 3];
                let src = ip(&format!("127.0.3.{}", i % 200 + 1));
                seen.push(("GET", get_status(c, src).await));
                if i.is_multiple_of(4) {
                    // The real user logs in (each time from a new address:
                    // login_rate is per address and login).
                    let src = ip(&format!("127.0.4.{}", (i / 4) % 250 + 1));
                    seen.push((
                        "login",
                        post_login(c, &fixture, src, "admin", "admin").await,
                    ));
                }
                i += 1;
            }
            seen
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    pg_ctl(&pg, "stop");
    let down = Instant::now();
    // Node 1 notices and says so.
    loop {
        let m = nodes.nodes[0].metrics().await;
        if m.lines().any(|l| l == "rampart_cluster_up 0") {
            break;
        }
        assert!(
            down.elapsed() < Duration::from_secs(10),
            "node 1 never noticed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Decided while away: a new ban on node 1, the old one lifted on node 2.
    let new = ip("127.0.0.61");
    assert_eq!(
        cli(
            &nodes.nodes[0].config_path,
            &["bans", "ban", "127.0.0.61", "--for", "1h"]
        )
        .0,
        0
    );
    assert_eq!(
        cli(
            &nodes.nodes[1].config_path,
            &["bans", "unban", "127.0.0.62"]
        )
        .0,
        0
    );
    // A login attempt while away is decided locally (and counted).
    assert_eq!(
        post_login(
            &nodes.clients[0],
            &fixture,
            ip("127.0.0.63"),
            "admin",
            "nope"
        )
        .await,
        200
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    pg_ctl(&pg, "start");
    let back = Instant::now();
    let deadline = back + Duration::from_secs(20);
    loop {
        let banned = get_status(&nodes.clients[2], new).await == 403;
        let lifted = get_status(&nodes.clients[2], old).await == 200;
        if banned && lifted {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 3 did not resync (new banned {banned}, old lifted {lifted}):\n{}",
            nodes.nodes[2].stderr()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("resynced {:?} after PostgreSQL came back", back.elapsed());
    stop.store(true, std::sync::atomic::Ordering::Release);
    let seen = traffic.await.unwrap();
    let failed: Vec<_> = seen
        .iter()
        .filter(|(what, s)| !matches!((*what, *s), ("GET", 200) | ("login", 303)))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}",
        failed.len(),
        seen.len()
    );
    println!("{} requests during the outage, none failed", seen.len());
    let m = nodes.nodes[0].metrics().await;
    assert!(metric(&m, "rampart_cluster_fallbacks_total") >= 1.0, "{m}");
    nodes.wait_up().await;
    for n in &nodes.nodes {
        let m = n.metrics().await;
        assert!(metric(&m, "rampart_cluster_bans_pending") == 0.0, "{m}");
    }
}

/// Issue 13 §4 across nodes: 500 addresses (127.1.x.y) each guess once
/// for `admin`, round-robin over the nodes: at most `per_login_failures.max`
/// (20) reach Odoo in total, while the real user, who logged in through
/// node 1 before, still gets in through nodes 2 and 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_botnet_of_500_addresses_is_bounded_per_login_across_nodes() {
    let pg = start_pg();
    let dir = TempDir::new("cluster-per-login");
    let conf = cli_config(dir.path(), &pg);
    assert_eq!(cli(&conf, &["cluster", "init"]).0, 0);
    let fixture = Arc::new(OdooFixture::start().await);
    let nodes = start_nodes(
        &fixture,
        "per_login_failures = { max = 20, delay = \"50ms\" }",
        Some(&pg),
    )
    .await;
    nodes.wait_up().await;
    let home = ip("127.0.0.20");
    assert_eq!(
        post_login(&nodes.clients[0], &fixture, home, "admin", "admin").await,
        303
    );
    let before = logins_reached(&fixture);
    let statuses = burst(&nodes, &fixture, 500, 60, "admin", |n| {
        ip(&format!("127.1.{}.{}", n / 250, n % 250 + 1))
    })
    .await;
    let reached = logins_reached(&fixture) - before;
    println!("500 addresses over 3 nodes: {reached} guesses reached Odoo");
    assert!(reached <= 20, "{reached} guesses reached Odoo");
    assert_eq!(
        statuses.iter().filter(|s| **s == 403).count(),
        500 - reached,
        "{statuses:?}"
    );
    for c in &nodes.clients[1..] {
        assert_eq!(
            post_login(c, &fixture, home, "admin", "admin").await,
            303,
            "the real user via {}",
            c.https
        );
    }
}

/// PostgreSQL hangs (SIGSTOP: connections open, nothing answers): login
/// attempts wait at most the reservation deadline and are decided on each
/// node alone, so a failed-login burst gets at most `max × nodes` (30)
/// through and real logins all succeed; the nodes reconnect once it
/// answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgresql_that_hangs_leaves_each_node_on_its_own_budget() {
    let pg = start_pg();
    let dir = TempDir::new("cluster-hang");
    let conf = cli_config(dir.path(), &pg);
    assert_eq!(cli(&conf, &["cluster", "init"]).0, 0);
    let fixture = Arc::new(OdooFixture::start().await);
    let nodes = start_nodes(&fixture, "", Some(&pg)).await;
    nodes.wait_up().await;
    pg_signal(&pg, "STOP");
    let statuses = burst(&nodes, &fixture, 200, 50, "admin", |_| ip("127.0.0.70")).await;
    let reached = logins_reached(&fixture);
    let mut real = Vec::new();
    for n in 0..9 {
        let src = ip(&format!("127.0.5.{}", n + 1));
        real.push(post_login(&nodes.clients[n % 3], &fixture, src, "admin", "admin").await);
    }
    pg_signal(&pg, "CONT");
    println!("PostgreSQL hung: {reached} of a 200-login burst reached Odoo");
    assert!(
        statuses.iter().all(|s| [200, 403, 429].contains(s)),
        "{statuses:?}"
    );
    assert!(reached <= 30, "{reached} reached Odoo");
    assert!(real.iter().all(|s| *s == 303), "{real:?}");
    let mut fallbacks = 0.0;
    for r in &nodes.nodes {
        fallbacks += metric(&r.metrics().await, "rampart_cluster_fallbacks_total");
    }
    assert!(fallbacks >= 1.0, "no decision was counted as taken alone");
    nodes.wait_up().await;
}

/// A sticky balancer sends a whole botnet to node 2, whose own count
/// then locks `admin`; the real user, who logged in through node 1, comes
/// back through node 2 from the same address and still gets in (the
/// cluster knows the address), while a new address is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_login_locked_on_one_node_still_admits_an_address_known_to_the_cluster() {
    let pg = start_pg();
    let dir = TempDir::new("cluster-known");
    let conf = cli_config(dir.path(), &pg);
    assert_eq!(cli(&conf, &["cluster", "init"]).0, 0);
    let fixture = Arc::new(OdooFixture::start().await);
    let nodes = start_nodes(
        &fixture,
        "per_login_failures = { max = 20, delay = \"10ms\" }",
        Some(&pg),
    )
    .await;
    nodes.wait_up().await;
    let home = ip("127.0.0.21");
    assert_eq!(
        post_login(&nodes.clients[0], &fixture, home, "admin", "admin").await,
        303
    );
    let node2 = Nodes {
        nodes: Vec::new(),
        clients: vec![nodes.clients[1].clone()],
    };
    let statuses = burst(&node2, &fixture, 40, 10, "admin", |n| {
        ip(&format!("127.2.0.{}", n + 1))
    })
    .await;
    assert!(
        statuses.iter().filter(|s| **s == 403).count() >= 20,
        "{statuses:?}"
    );
    assert_eq!(
        post_login(
            &nodes.clients[1],
            &fixture,
            ip("127.2.1.1"),
            "admin",
            "admin"
        )
        .await,
        403,
        "a new address is refused while admin is under attack"
    );
    assert_eq!(
        post_login(&nodes.clients[1], &fixture, home, "admin", "admin").await,
        303
    );
}
