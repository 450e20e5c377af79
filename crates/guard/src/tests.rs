//! Behaviour of the whole guard, as the edge drives it.

use std::net::IpAddr;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use super::*;
use crate::banning::ban_length;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn cfg(text: &str) -> GuardConfig {
    #[derive(serde::Deserialize)]
    struct Top {
        guard: GuardConfig,
    }
    rampart_config::from_str::<Top>(Path::new("test.toml"), &format!("[guard]\n{text}"))
        .unwrap()
        .guard
}

fn fail(g: &Guard, addr: &str) -> bool {
    match g.begin_login(ip(addr)) {
        Some(a) => {
            a.finish(LoginOutcome::Failure);
            true
        }
        None => false,
    }
}

#[test]
fn zero_leak_under_200_concurrent_failed_logins() {
    let dir = tempfile::tempdir().unwrap();
    let g = Guard::open(&GuardConfig::default(), dir.path()).unwrap();
    let max = GuardConfig::default().login_failures.max.get() as usize;
    let barrier = Arc::new(Barrier::new(200));
    let reached_odoo = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let threads: Vec<_> = (0..200)
        .map(|_| {
            let (g, barrier, reached) = (g.clone(), barrier.clone(), reached_odoo.clone());
            std::thread::spawn(move || {
                barrier.wait();
                if let Some(attempt) = g.begin_login(ip("203.0.113.7")) {
                    reached.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    // Odoo hashes the password meanwhile; others arrive.
                    std::thread::sleep(Duration::from_millis(20));
                    attempt.finish(LoginOutcome::Failure);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let reached = reached_odoo.load(std::sync::atomic::Ordering::SeqCst);
    // Every attempt let through failed, and refusals only start once failures
    // plus attempts in flight reach max: so exactly max reached Odoo.
    assert_eq!(
        reached, max,
        "{reached} attempts reached Odoo, max is {max}"
    );
    // Once the failures are in, the address is banned and nothing more gets through.
    assert!(matches!(
        g.admit(ip("203.0.113.7"), true),
        Admission::Banned { .. }
    ));
    assert!(g.begin_login(ip("203.0.113.7")).is_none());
    // Other clients are not affected.
    assert!(g.begin_login(ip("203.0.113.8")).is_some());
}

#[test]
fn exactly_max_sequential_failures_ban() {
    let dir = tempfile::tempdir().unwrap();
    let g = Guard::open(&cfg("login_failures = { max = 3 }"), dir.path()).unwrap();
    assert!(fail(&g, "198.51.100.4"));
    assert!(fail(&g, "198.51.100.4"));
    assert_eq!(g.admit(ip("198.51.100.4"), true), Admission::Admitted);
    assert!(fail(&g, "198.51.100.4"));
    assert!(matches!(
        g.admit(ip("198.51.100.4"), false),
        Admission::Banned { .. }
    ));
    let bans = g.bans();
    assert_eq!(bans.len(), 1);
    assert_eq!(bans[0].addr, "198.51.100.4");
    assert_eq!(bans[0].reason, "3 failed logins in 1m");
    assert_eq!(bans[0].count, 1);
}

#[test]
fn success_forgets_nothing_and_unknown_or_dropped_attempts_do_not_count() {
    let dir = tempfile::tempdir().unwrap();
    let g = Guard::open(&cfg("login_failures = { max = 3 }"), dir.path()).unwrap();
    // A working account's login between guesses at another (red team 4).
    let b = "198.51.100.6";
    fail(&g, b);
    fail(&g, b);
    g.begin_login(ip(b)).unwrap().finish(LoginOutcome::Success);
    fail(&g, b);
    assert!(matches!(g.admit(ip(b), false), Admission::Banned { .. }));
    let a = "198.51.100.5";
    fail(&g, a);
    fail(&g, a);
    g.begin_login(ip(a)).unwrap().finish(LoginOutcome::Success);
    for _ in 0..20 {
        g.begin_login(ip(a)).unwrap().finish(LoginOutcome::Unknown);
        drop(g.begin_login(ip(a)).unwrap());
    }
    assert_eq!(g.admit(ip(a), false), Admission::Admitted);
    assert_eq!(g.bans().len(), 1, "only {b}");
}

#[test]
fn ipv6_clients_are_counted_and_banned_by_64() {
    let dir = tempfile::tempdir().unwrap();
    let g = Guard::open(&cfg("login_failures = { max = 3 }"), dir.path()).unwrap();
    fail(&g, "2001:db8:5:6::1");
    fail(&g, "2001:db8:5:6::2");
    fail(&g, "2001:db8:5:6:ffff::3");
    assert!(matches!(
        g.admit(ip("2001:db8:5:6::99"), false),
        Admission::Banned { .. }
    ));
    assert_eq!(g.admit(ip("2001:db8:5:7::1"), false), Admission::Admitted);
    assert_eq!(g.bans()[0].addr, "2001:db8:5:6::/64");
    assert!(
        g.unban(ip("2001:db8:5:6::42")).unwrap(),
        "unban by any address of the /64"
    );
    assert_eq!(g.admit(ip("2001:db8:5:6::99"), false), Admission::Admitted);
}

#[test]
fn repeat_offenders_get_longer_bans() {
    assert_eq!(
        ban_length(Duration::from_secs(900), 4, 0),
        Duration::from_secs(900)
    );
    assert_eq!(
        ban_length(Duration::from_secs(900), 4, 1),
        Duration::from_secs(3600)
    );
    assert_eq!(
        ban_length(Duration::from_secs(900), 4, 2),
        Duration::from_secs(14400)
    );
    assert_eq!(
        ban_length(Duration::from_secs(900), 4, 40),
        MAX_BAN,
        "capped"
    );
    assert_eq!(
        ban_length(Duration::from_secs(900), 1, 9),
        Duration::from_secs(900)
    );

    // Through the guard: a 1 s ban, served; the next one is 4 s.
    let dir = tempfile::tempdir().unwrap();
    let g = Guard::open(
        &cfg("login_failures = { max = 2, ban = \"1s\" }"),
        dir.path(),
    )
    .unwrap();
    let a = "192.0.2.50";
    fail(&g, a);
    fail(&g, a);
    assert_eq!(g.bans()[0].count, 1);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        g.admit(ip(a), true),
        Admission::Admitted,
        "the first ban expired"
    );
    g.housekeeping();
    fail(&g, a);
    fail(&g, a);
    let b = &g.bans()[0];
    assert_eq!(b.count, 2);
    let until = rampart_config::time::parse_rfc3339(&b.until).unwrap();
    let left = until.duration_since(SystemTime::now()).unwrap_or_default();
    assert!(
        left > Duration::from_secs(2),
        "second ban is ban × 4 = 4 s, {left:?} left"
    );
}

#[test]
fn bans_survive_a_restart_and_a_corrupt_table_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    {
        let g = Guard::open(&cfg("login_failures = { max = 1 }"), dir.path()).unwrap();
        fail(&g, "203.0.113.9"); // automatic: written on housekeeping or drop
        g.ban(ip("203.0.113.10"), Duration::from_secs(3600), "manual")
            .unwrap();
    }
    let g = Guard::open(&GuardConfig::default(), dir.path()).unwrap();
    assert!(matches!(
        g.admit(ip("203.0.113.9"), false),
        Admission::Banned { .. }
    ));
    assert!(matches!(
        g.admit(ip("203.0.113.10"), false),
        Admission::Banned { .. }
    ));
    assert_eq!(g.bans().len(), 2);
    drop(g);

    std::fs::write(dir.path().join("bans.json"), "not json").unwrap();
    let err = Guard::open(&GuardConfig::default(), dir.path())
        .err()
        .unwrap();
    assert!(err.to_string().contains("bans.json"), "{err}");
}

#[test]
fn bans_expire_on_time() {
    let dir = tempfile::tempdir().unwrap();
    let g = Guard::open(&GuardConfig::default(), dir.path()).unwrap();
    g.ban(ip("203.0.113.11"), Duration::from_millis(300), "short")
        .unwrap();
    assert!(matches!(
        g.admit(ip("203.0.113.11"), false),
        Admission::Banned { .. }
    ));
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(g.admit(ip("203.0.113.11"), false), Admission::Admitted);
    g.housekeeping();
    assert!(g.bans().is_empty());
}

#[test]
fn allow_list_is_never_limited_nor_banned() {
    let dir = tempfile::tempdir().unwrap();
    let g = Guard::open(
        &cfg("allow = [\"10.0.0.0/8\"]\nlogin_failures = { max = 2 }"),
        dir.path(),
    )
    .unwrap();
    for _ in 0..1000 {
        assert_eq!(g.admit(ip("10.1.2.3"), true), Admission::Admitted);
    }
    for _ in 0..50 {
        assert!(fail(&g, "10.1.2.3"));
    }
    assert!(g.bans().is_empty());
    assert!(matches!(
        g.ban(ip("10.1.2.3"), Duration::from_secs(60), "x"),
        Err(GuardError::Allowed(_))
    ));
    let (status, _) = g
        .admin(
            "POST",
            "/v1/bans",
            br#"{"addr": "::ffff:10.9.9.9", "for": "1h"}"#,
        )
        .unwrap();
    assert_eq!(status, 409);
}

#[test]
fn rate_limits_answer_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let g = Guard::open(&GuardConfig::default(), dir.path()).unwrap();
    let a = ip("203.0.113.20");
    for i in 0..200 {
        assert_eq!(
            g.admit(a, false),
            Admission::Admitted,
            "request {i} within the burst"
        );
    }
    let verdict = g.admit(a, false);
    let Admission::Limited { retry_after } = verdict else {
        panic!("{verdict:?}")
    };
    assert!(
        retry_after > Duration::ZERO && retry_after <= Duration::from_millis(50),
        "{retry_after:?}"
    );
    assert_eq!(verdict.retry_after_secs(), Some(1));

    // Login routes: 10 a minute.
    let b = ip("203.0.113.21");
    for _ in 0..10 {
        assert_eq!(g.admit(b, true), Admission::Admitted);
    }
    let verdict = g.admit(b, true);
    let Admission::Limited { retry_after } = verdict else {
        panic!("{verdict:?}")
    };
    assert!(
        retry_after > Duration::from_secs(5) && retry_after <= Duration::from_secs(6),
        "{retry_after:?}"
    );
    assert_eq!(
        g.admit(b, false),
        Admission::Admitted,
        "other routes keep the general limit"
    );

    // IPv6 by /64: two addresses of one /64 share the budget.
    let mut admitted = 0;
    for i in 0..400u32 {
        let addr = IpAddr::V6(std::net::Ipv6Addr::new(
            0x2001, 0xdb8, 9, 9, 0, 0, 0, i as u16,
        ));
        if g.admit(addr, false) == Admission::Admitted {
            admitted += 1;
        }
    }
    assert!((200..=202).contains(&admitted), "{admitted}");
}

#[test]
fn reconfigure_keeps_bans_and_applies_new_limits() {
    let dir = tempfile::tempdir().unwrap();
    let g = Guard::open(&GuardConfig::default(), dir.path()).unwrap();
    g.ban(ip("203.0.113.30"), Duration::from_secs(600), "x")
        .unwrap();
    g.reconfigure(&cfg(
        "rate = { per_second = 1, burst = 2 }\nallow = [\"192.0.2.0/24\"]",
    ));
    assert!(matches!(
        g.admit(ip("203.0.113.30"), false),
        Admission::Banned { .. }
    ));
    let a = ip("198.51.100.30");
    assert_eq!(g.admit(a, false), Admission::Admitted);
    assert_eq!(g.admit(a, false), Admission::Admitted);
    assert!(matches!(g.admit(a, false), Admission::Limited { .. }));
    for _ in 0..10 {
        assert_eq!(g.admit(ip("192.0.2.1"), false), Admission::Admitted);
    }
}

#[test]
fn memory_stays_bounded_under_a_million_rotating_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let g = Guard::open(&GuardConfig::default(), dir.path()).unwrap();
    let cap = limits::DEFAULT_MAX_KEYS;
    let mut most = 0;
    for n in 0..1_000_000u32 {
        let a = IpAddr::V4((0x6400_0000 + n).into());
        assert_eq!(g.admit(a, false), Admission::Admitted);
        if n % 1024 == 0 {
            most = most.max(g.rate_keys());
        }
    }
    most = most.max(g.rate_keys());
    assert!(most <= cap, "{most} keys, cap {cap}");
}

#[test]
fn admin_api() {
    let dir = tempfile::tempdir().unwrap();
    let g = Guard::open(&GuardConfig::default(), dir.path()).unwrap();
    assert_eq!(
        g.admin("GET", "/v1/bans", b"").unwrap(),
        (200, "[]".to_string())
    );
    let (status, body) = g
        .admin(
            "POST",
            "/v1/bans",
            admin_ban_body("203.0.113.40", "1h".parse().unwrap(), Some("scanner")).as_bytes(),
        )
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let info: BanInfo = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (info.addr.as_str(), info.reason.as_str(), info.count),
        ("203.0.113.40", "scanner", 1)
    );
    let (_, list) = g.admin("GET", "/v1/bans", b"").unwrap();
    assert_eq!(parse_bans_json(&list).unwrap(), vec![info]);
    assert!(matches!(
        g.admit(ip("203.0.113.40"), false),
        Admission::Banned { .. }
    ));

    let (status, body) = g
        .admin(
            "POST",
            "/v1/bans",
            br#"{"addr": "203.0.113.41", "for": "soon"}"#,
        )
        .unwrap();
    assert_eq!(status, 400);
    assert!(admin_error(&body).unwrap().contains("soon"), "{body}");
    assert_eq!(admin_error("<html>404</html>"), None);
    let (status, _) = g
        .admin(
            "POST",
            "/v1/bans",
            br#"{"addr": "10.0.0.0/8", "for": "1h"}"#,
        )
        .unwrap();
    assert_eq!(status, 400);

    let (status, _) = g
        .admin(
            "POST",
            "/v1/bans",
            br#"{"addr": "2001:db8:7:7::/64", "for": "1h"}"#,
        )
        .unwrap();
    assert_eq!(status, 200);
    assert!(matches!(
        g.admit(ip("2001:db8:7:7::5"), false),
        Admission::Banned { .. }
    ));
    assert_eq!(
        g.admin("DELETE", "/v1/bans/2001:db8:7:7::%2F64", b"")
            .unwrap()
            .0,
        200
    );
    assert_eq!(g.admit(ip("2001:db8:7:7::5"), false), Admission::Admitted);

    assert_eq!(
        g.admin("DELETE", "/v1/bans/203.0.113.40", b"").unwrap().0,
        200
    );
    assert_eq!(
        g.admin("DELETE", "/v1/bans/203.0.113.40", b"").unwrap().0,
        404
    );
    assert_eq!(g.admin("PUT", "/v1/bans", b"").unwrap().0, 405);
    assert!(g.admin("GET", "/v1/status", b"").is_none());
    // Written through: a restart sees the unban.
    drop(g);
    let g = Guard::open(&GuardConfig::default(), dir.path()).unwrap();
    assert!(g.bans().is_empty());
}

#[test]
fn metrics_are_exported() {
    let dir = tempfile::tempdir().unwrap();
    let g = Guard::open(
        &cfg("login_failures = { max = 1 }\nrate = { per_second = 1, burst = 1 }"),
        dir.path(),
    )
    .unwrap();
    let mut registry = prometheus_client::registry::Registry::default();
    g.register_metrics(&mut registry);
    fail(&g, "203.0.113.50");
    g.admit(ip("203.0.113.51"), false);
    g.admit(ip("203.0.113.51"), false);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    for line in [
        "rampart_guard_bans_active 1",
        "rampart_guard_bans_total 1",
        "rampart_guard_login_failures_total 1",
        "rampart_guard_rate_limited_total 1",
    ] {
        assert!(text.contains(line), "{line} missing in\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_follower_counts_failures_across_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("odoo.log");
    std::fs::write(&log, "").unwrap();
    let g = Guard::open(&cfg("login_failures = { max = 4 }"), dir.path()).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = g.spawn_follower_every(log.clone(), Duration::from_millis(10), async move {
        let _ = stop_rx.await;
    });
    let n = std::sync::atomic::AtomicU32::new(0);
    let line = |addr: &str| {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!(
            "2026-11-23 14:56:{i:02},506 24849 INFO demo1 odoo.addons.base.models.res_users: Login failed for db:demo1 login:user{i} from {addr}\n"
        )
    };
    let append = |path: &Path, text: &str| {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    };
    let wait_for = |what: &str, cond: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let a = "203.0.113.60";
    // Let the follower open the file (it starts at the end).
    wait_for("the follower to start", &|| g.core.failures.len() == 0);
    tokio::time::sleep(Duration::from_millis(100)).await;
    append(&log, &line(a));
    append(&log, &line("n/a"));
    append(&log, &line(a));
    wait_for("two failures", &|| g.core.metrics.login_failures.get() == 2);
    // logrotate's rename, then Odoo's new file.
    std::fs::rename(&log, dir.path().join("odoo.log.1")).unwrap();
    append(&log, &line(a));
    wait_for("the third failure", &|| {
        g.core.metrics.login_failures.get() == 3
    });
    // copytruncate.
    std::fs::write(&log, "").unwrap();
    append(&log, &line(a));
    wait_for("the ban", &|| {
        matches!(g.admit(ip(a), false), Admission::Banned { .. })
    });
    stop_tx.send(()).unwrap();
    task.await.unwrap();
}

#[test]
fn spawn_log_follower_needs_odoo_log() {
    let dir = tempfile::tempdir().unwrap();
    let g = Guard::open(&GuardConfig::default(), dir.path()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { assert!(g.spawn_log_follower(async {}).is_none()) });
}

#[test]
fn proxy_header_expected_only_from_trusted_proxies_when_enabled() {
    let dir = tempfile::tempdir().unwrap();
    let g = Guard::open(&cfg("trusted_proxies = [\"192.0.2.10\"]"), dir.path()).unwrap();
    assert!(
        !g.expects_proxy_header(ip("192.0.2.10")),
        "proxy_protocol is off by default"
    );
    g.reconfigure(&cfg(
        "trusted_proxies = [\"192.0.2.10\"]\nproxy_protocol = true",
    ));
    assert!(g.expects_proxy_header(ip("192.0.2.10")));
    assert!(g.expects_proxy_header(ip("::ffff:192.0.2.10")));
    assert!(
        !g.expects_proxy_header(ip("203.0.113.7")),
        "a client cannot claim another address"
    );
}
