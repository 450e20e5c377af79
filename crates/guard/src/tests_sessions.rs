//! Proven sessions and per-login budgets, attacked through the guard's API
//! as the edge drives it.

use std::net::IpAddr;

use super::*;

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

fn cookie(sid: &str) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert(
        http::header::COOKIE,
        format!("session_id={sid}").parse().unwrap(),
    );
    h
}

fn set_cookie(sid: &str) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert(
        http::header::SET_COOKIE,
        format!("session_id={sid}; Max-Age=604800; HttpOnly; Path=/")
            .parse()
            .unwrap(),
    );
    h
}

/// A login of `route` from `addr` that Odoo answered with `outcome`,
/// setting `sid`.
fn login(g: &Guard, addr: &str, route: LoginRoute, outcome: LoginOutcome, sid: &str) {
    g.begin_check(ip(addr), route, None)
        .unwrap()
        .finish_answer(outcome, &set_cookie(sid));
}

#[test]
fn only_sessions_seen_logging_in_are_proven() {
    let dir = tempfile::tempdir().unwrap();
    let g = Guard::open(&GuardConfig::default(), dir.path()).unwrap();
    assert_eq!(g.proven_session(&cookie("forged")), None, "unknown id");
    login(
        &g,
        "203.0.113.1",
        LoginRoute::WebLogin,
        LoginOutcome::Failure,
        "failed",
    );
    assert_eq!(
        g.proven_session(&cookie("failed")),
        None,
        "a failed login's"
    );
    login(
        &g,
        "203.0.113.1",
        LoginRoute::XmlRpcCommon,
        LoginOutcome::Success,
        "rpc",
    );
    assert_eq!(
        g.proven_session(&cookie("rpc")),
        None,
        "XML-RPC has no session"
    );
    for (route, sid) in [
        (LoginRoute::WebLogin, "form"),
        (LoginRoute::WebLoginTotp, "totp"),
        (LoginRoute::SessionAuthenticate, "json"),
    ] {
        login(&g, "203.0.113.1", route, LoginOutcome::Success, sid);
        let k = g.proven_session(&cookie(sid)).expect(sid);
        // The id is the key, wherever it is used from; a reload keeps it.
        g.reconfigure(&cfg("rate = { per_second = 5 }"));
        assert_eq!(g.proven_session(&cookie(sid)), Some(k));
        g.end_session(k);
        assert_eq!(g.proven_session(&cookie(sid)), None, "logout forgets");
    }
    // A cookie with two ids: the first is the one Odoo reads.
    login(
        &g,
        "203.0.113.1",
        LoginRoute::WebLogin,
        LoginOutcome::Success,
        "good",
    );
    let mut two = http::HeaderMap::new();
    two.insert(
        http::header::COOKIE,
        "session_id=forged; session_id=good".parse().unwrap(),
    );
    assert_eq!(g.proven_session(&two), None);
}

#[test]
fn one_cookie_used_from_many_addresses_has_one_budget() {
    let dir = tempfile::tempdir().unwrap();
    let g = Guard::open(&cfg("rate = { per_second = 1, burst = 10 }"), dir.path()).unwrap();
    login(
        &g,
        "203.0.113.1",
        LoginRoute::WebLogin,
        LoginOutcome::Success,
        "stolen",
    );
    let s = g.proven_session(&cookie("stolen")).unwrap();
    for n in 0..10 {
        let from = ip(&format!("198.51.100.{n}"));
        assert_eq!(g.admit_request(from, Some(s)), Admission::Admitted);
    }
    assert!(matches!(
        g.admit_request(ip("198.51.100.99"), Some(s)),
        Admission::Limited { .. }
    ));
    // Each of those addresses still has its own anonymous budget.
    assert_eq!(
        g.admit_request(ip("198.51.100.99"), None),
        Admission::Admitted
    );
}

#[test]
fn minted_sessions_do_not_multiply_an_address_budget_without_bound() {
    let dir = tempfile::tempdir().unwrap();
    let g = Guard::open(
        &cfg("rate = { per_second = 1, burst = 5 }\nsessions = { per_address = 3 }"),
        dir.path(),
    )
    .unwrap();
    let a = ip("203.0.113.5");
    let mut admitted = 0;
    for n in 0..10 {
        let sid = format!("minted-{n}");
        login(
            &g,
            "203.0.113.5",
            LoginRoute::WebLogin,
            LoginOutcome::Success,
            &sid,
        );
        let s = g.proven_session(&cookie(&sid)).unwrap();
        for _ in 0..5 {
            admitted += usize::from(g.admit_request(a, Some(s)) == Admission::Admitted);
        }
    }
    assert_eq!(
        admitted, 15,
        "per_address × burst for the address's sessions"
    );
}

#[test]
fn successes_refill_the_address_ceiling_but_not_one_login_s_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let g = Guard::open(
        &cfg(
            "login_rate = { per_minute = 3, burst = 3, address_per_minute = 5, address_burst = 5 }",
        ),
        dir.path(),
    )
    .unwrap();
    let a = ip("203.0.113.9");
    // Thirty colleagues, each logging in once: all admitted.
    for n in 0..30 {
        let name = format!("user{n}");
        assert_eq!(g.admit_login(a, Some(&name)), Admission::Admitted, "{name}");
        login(
            &g,
            "203.0.113.9",
            LoginRoute::WebLogin,
            LoginOutcome::Success,
            &name,
        );
    }
    // One login minting sessions: its own bucket, refunds or not.
    for _ in 0..3 {
        assert_eq!(g.admit_login(a, Some("Mallory ")), Admission::Admitted);
        login(
            &g,
            "203.0.113.9",
            LoginRoute::WebLogin,
            LoginOutcome::Success,
            "m",
        );
    }
    assert!(matches!(
        g.admit_login(a, Some("mallory")),
        Admission::Limited { .. }
    ));
    // Failures spend the ceiling, whatever name they use.
    for n in 0..5 {
        assert_eq!(
            g.admit_login(a, Some(&format!("guess{n}"))),
            Admission::Admitted
        );
        login(
            &g,
            "203.0.113.9",
            LoginRoute::WebLogin,
            LoginOutcome::Failure,
            "x",
        );
    }
    assert!(matches!(
        g.admit_login(a, Some("guess9")),
        Admission::Limited { .. }
    ));
    assert!(matches!(g.admit_login(a, None), Admission::Limited { .. }));
}

#[test]
fn failed_object_calls_for_one_uid_share_one_budget_across_addresses() {
    // Odoo checks (db, uid, password) on every execute_kw: guessing uid 2's
    // password one call per address is held to per_login_failures like
    // guessing a login's.
    let dir = tempfile::tempdir().unwrap();
    let g = Guard::open(
        &cfg(r#"per_login_failures = { max = 2, within = "1h", delay = "1ms" }"#),
        dir.path(),
    )
    .unwrap();
    for (addr, route) in [
        ("203.0.113.1", LoginRoute::XmlRpcCall),
        ("203.0.113.2", LoginRoute::JsonRpcCall),
    ] {
        g.begin_check_as(ip(addr), route, None, Some("2"))
            .unwrap()
            .finish_answer(LoginOutcome::Failure, &http::HeaderMap::new());
    }
    assert!(matches!(
        g.begin_check_as(ip("203.0.113.3"), LoginRoute::XmlRpcCall, None, Some("2")),
        Err(Refused::LoginLocked)
    ));
    // Another uid has its own budget.
    assert!(
        g.begin_check_as(ip("203.0.113.3"), LoginRoute::XmlRpcCall, None, Some("7"))
            .is_ok()
    );
}
