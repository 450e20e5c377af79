//! Issue 10 §3, "a client is a proven session where there is one": a
//! session the guard saw log in is its own client (own `rate` budget, own
//! fair queue), so thirty colleagues behind one office NAT are thirty
//! clients; requests without one stay grouped by address, and login
//! budgets stay per address (and per login), so brute force gains nothing.
//!
//! Every test here sends from 127.0.0.x source addresses, each a browser
//! on its own HTTP/2 connection with its own cookie jar.

mod common;
mod slots_common;

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use common::{Rampart, Setup, Site};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rampart_testkit::{FixtureOptions, OdooFixture};
use slots_common::{CALL_LIMIT, Client, HOST, Resp, ip, metric};

/// A browser: one HTTP/2 connection from `src`, and its session cookie.
struct Browser {
    send: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    port: u16,
    cookie: Option<String>,
}

impl Browser {
    async fn open(c: &Client, src: IpAddr) -> Browser {
        let tls = c.tls(src, true).await;
        let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .handshake(TokioIo::new(tls))
            .await
            .expect("HTTP/2 handshake");
        tokio::spawn(conn);
        Browser {
            send,
            port: c.https.port(),
            cookie: None,
        }
    }

    fn with_cookie(&self, cookie: &str) -> Browser {
        Browser {
            send: self.send.clone(),
            port: self.port,
            cookie: Some(cookie.to_string()),
        }
    }

    async fn call(&mut self, method: &str, path: &str, ctype: Option<&str>, body: Vec<u8>) -> Resp {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("https://{HOST}:{}{path}", self.port));
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c.as_str());
        }
        if let Some(t) = ctype {
            req = req.header("content-type", t);
        }
        let req = req.body(Full::new(Bytes::from(body))).unwrap();
        let mut send = self.send.clone();
        let res = tokio::time::timeout(CALL_LIMIT, async move {
            let res = send.send_request(req).await.expect("a response");
            let (parts, body) = res.into_parts();
            let body = body.collect().await.expect("the body").to_bytes();
            Resp {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no answer to {method} {path} within {CALL_LIMIT:?}"));
        if let Some(sid) = res
            .headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter(|v| v.starts_with("session_id="))
            .filter_map(|v| v.split(';').next())
            .next_back()
        {
            self.cookie = Some(sid.to_string());
        }
        res
    }

    async fn get(&mut self, path: &str) -> Resp {
        self.call("GET", path, None, vec![]).await
    }

    /// The login form, then the login; the status of the POST.
    async fn login(&mut self, login: &str, password: &str) -> u16 {
        let page = self.get("/web/login").await;
        assert_eq!(page.status, 200, "GET /web/login: {}", page.text());
        let html = page.text();
        let token = html
            .split(r#"name="csrf_token" value=""#)
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_else(|| panic!("no csrf_token in the login form:\n{html}"))
            .to_string();
        let body = format!("csrf_token={token}&login={login}&password={password}&redirect=%2Fodoo");
        self.call(
            "POST",
            "/web/login",
            Some("application/x-www-form-urlencoded"),
            body.into_bytes(),
        )
        .await
        .status
    }
}

fn users(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("user{i}"), format!("pw-{i}")))
        .collect()
}

fn setup(fixture: &OdooFixture, site: &str, guard: &str) -> Setup {
    let mut s = Setup::site(Site::new(HOST, fixture).extra(site));
    s.extra = format!("\n[guard]\n{guard}\n");
    s
}

/// Thirty people log in from one address, one after the other within a
/// minute (the morning wave behind an office NAT): none is refused
/// because colleagues logged in before. Default limits.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_users_log_in_from_one_address_within_a_minute() {
    let fixture = OdooFixture::start_with(FixtureOptions {
        users: users(30),
        ..FixtureOptions::default()
    })
    .await;
    let r = Rampart::start(setup(&fixture, "", "")).await;
    let c = Client::new(&r);
    let office = ip("127.0.0.2");
    let mut statuses = Vec::new();
    for (login, pw) in users(30) {
        let mut b = Browser::open(&c, office).await;
        statuses.push(b.login(&login, &pw).await);
    }
    assert!(
        statuses.iter().all(|s| *s == 303),
        "every login succeeds: {statuses:?}"
    );
}

/// A correct login is not refused for colleagues' logins, but guessing
/// is still bounded: one login from one address keeps its per-login
/// budget, and the address's ceiling counts every attempt that did not
/// succeed, whatever login it names.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn login_budgets_still_bound_guessing_from_one_address() {
    let fixture = OdooFixture::start().await;
    let r = Rampart::start(setup(
        &fixture,
        "",
        "login_failures = { max = 1000 }\nlogin_rate = { per_minute = 3, burst = 3, address_per_minute = 5, address_burst = 5 }",
    ))
    .await;
    let c = Client::new(&r);
    let a = ip("127.0.0.3");
    let mut b = Browser::open(&c, a).await;
    // One login guessed: its own bucket of 3.
    let one: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(b.login("admin", "wrong").await);
        }
        v
    };
    assert_eq!(one, [200, 200, 200, 429], "per (address, login)");
    // Other names from the same address: the address ceiling (5) is spent
    // by failures only, so two more, then refused.
    let mut others = Vec::new();
    for name in ["x1", "x2", "x3", "x4"] {
        others.push(b.login(name, "wrong").await);
    }
    assert_eq!(others, [200, 200, 429, 429], "address ceiling");
    // Another address is not affected.
    let mut other = Browser::open(&c, ip("127.0.0.4")).await;
    assert_eq!(other.login("admin", "admin").await, 303);
}

/// Thirty logged-in sessions behind one address load the web client at
/// once (six parallel requests each: 180 requests, more than one
/// address's burst): no 429, because each proven session has its own
/// budget. An anonymous flood from the same address is still limited,
/// and a forged session id is grouped with its address.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_sessions_behind_one_address_are_thirty_clients() {
    let fixture = OdooFixture::start_with(FixtureOptions {
        users: users(30),
        ..FixtureOptions::default()
    })
    .await;
    // Logins are not what this test is about: a login budget main also has.
    let r = Rampart::start(setup(
        &fixture,
        "",
        "rate = { per_second = 5, burst = 100 }\nlogin_rate = { per_minute = 100, burst = 100 }",
    ))
    .await;
    let c = Client::new(&r);
    let office = ip("127.0.0.5");
    let mut browsers = Vec::new();
    for (login, pw) in users(30) {
        let mut b = Browser::open(&c, office).await;
        assert_eq!(b.login(&login, &pw).await, 303);
        browsers.push(b);
    }
    let page = [
        "/odoo",
        "/web/assets/1a2b3c/web.assets_web.min.js",
        "/web/image/res.users/2/avatar_128",
        "/echo/session_info",
        "/echo/load_menus",
        "/echo/call_kw",
    ];
    let mut calls = Vec::new();
    for b in &browsers {
        for p in page {
            let mut b = b.with_cookie(b.cookie.as_deref().unwrap());
            calls.push(tokio::spawn(async move { b.get(p).await.status }));
        }
    }
    let mut statuses = Vec::new();
    for t in calls {
        statuses.push(t.await.unwrap());
    }
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(limited, 0, "{} requests: {statuses:?}", statuses.len());
    assert!(statuses.iter().all(|s| *s < 400), "{statuses:?}");

    // The same address without a session (and with a forged one): one
    // budget of 100 between them, so a flood of 150 is limited.
    let anon = Browser::open(&c, office).await;
    let forged = anon.with_cookie("session_id=forged-00000000000000000000000000000000000000000000000000000000000000000000000000000");
    let mut flood = Vec::new();
    for i in 0..150 {
        let mut b = if i % 2 == 0 {
            anon.with_cookie("a=1")
        } else {
            forged.with_cookie(forged.cookie.as_deref().unwrap())
        };
        flood.push(tokio::spawn(
            async move { b.get("/echo/flood").await.status },
        ));
    }
    let mut limited = 0;
    for t in flood {
        limited += usize::from(t.await.unwrap() == 429);
    }
    assert!(limited > 0, "the anonymous flood is limited");
    // The sessions still have their own budgets.
    let mut s0 = browsers[0].with_cookie(browsers[0].cookie.as_deref().unwrap());
    assert_eq!(s0.get("/echo/after").await.status, 200);
    let m = r.metrics().await;
    // Five of the six page requests per session queue for Odoo; the
    // bundle comes from the edge cache after the first fetch.
    assert!(
        metric(
            &m,
            "rampart_upstream_queue_seconds_count{site=\"erp.slots.test\",class=\"session\"}"
        ) >= 150.0,
        "queue waits are counted per class:\n{m}"
    );
    assert!(metric(&m, "rampart_guard_proven_sessions") >= 0.0);
}

/// One session's many requests do not push a colleague's single request
/// (same address, own session) behind them: the bound asserted is the
/// one per client of the fair queue, at most two of the other session's
/// requests (the one in flight and the one whose turn came first) go
/// before it once it waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_busy_session_cannot_push_a_colleague_behind_its_queue() {
    let fixture = OdooFixture::start_with(FixtureOptions {
        workers: Some(1),
        users: users(2),
        ..FixtureOptions::default()
    })
    .await;
    let r = Rampart::start(setup(
        &fixture,
        "workers = 1\nmax_conns_per_client = 100\nqueue_timeout = \"60s\"",
        "",
    ))
    .await;
    let c = Client::new(&r);
    let office = ip("127.0.0.6");
    let mut heavy = Browser::open(&c, office).await;
    assert_eq!(heavy.login("user0", "pw-0").await, 303);
    let mut light = Browser::open(&c, office).await;
    assert_eq!(light.login("user1", "pw-1").await, 303);
    let mut calls = Vec::new();
    for i in 0..20 {
        let mut b = heavy.with_cookie(heavy.cookie.as_deref().unwrap());
        calls.push(tokio::spawn(async move {
            b.get(&format!("/slow?secs=0.2&n={i}")).await.status
        }));
    }
    let deadline = tokio::time::Instant::now() + CALL_LIMIT;
    while fixture.count("/slow") == 0 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let served_before = fixture.count("/slow");
    assert_eq!(light.get("/slow?secs=0.2&light=1").await.status, 200);
    let order: Vec<String> = fixture
        .requests()
        .into_iter()
        .filter(|s| s.target.starts_with("/slow"))
        .map(|s| s.target)
        .collect();
    let at = order
        .iter()
        .position(|t| t.contains("light"))
        .expect("the light request reached Odoo");
    assert!(
        at <= served_before + 2,
        "the light session's request waited behind {at} of the busy session's ({served_before} seen when it was sent): {order:?}"
    );
    for t in calls {
        assert_eq!(t.await.unwrap(), 200);
    }
}

/// Brute force gains nothing from sessions: a session (a portal user's,
/// say) does not lift its address's login budgets, and a logout forgets
/// the session, which is then grouped with its address again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_do_not_lift_login_budgets_and_logout_forgets() {
    let fixture = OdooFixture::start_with(FixtureOptions {
        users: users(1),
        ..FixtureOptions::default()
    })
    .await;
    let r = Rampart::start(setup(
        &fixture,
        "",
        "rate = { per_second = 1, burst = 20 }\nlogin_failures = { max = 3 }",
    ))
    .await;
    let c = Client::new(&r);
    let a = ip("127.0.0.7");
    let mut b = Browser::open(&c, a).await;
    assert_eq!(b.login("user0", "pw-0").await, 303);
    let session = b.cookie.clone().unwrap();
    // Guessing admin's password with the session's cookie: the address's
    // failure budget (3) applies, then the address is banned.
    let mut guesses = Vec::new();
    for _ in 0..5 {
        let page = b.get("/web/login").await;
        let html = page.text();
        let token = html
            .split(r#"name="csrf_token" value=""#)
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("none")
            .to_string();
        let body = format!("csrf_token={token}&login=admin&password=wrong");
        b.cookie = Some(session.clone());
        let s = b
            .call(
                "POST",
                "/web/login",
                Some("application/x-www-form-urlencoded"),
                body.into_bytes(),
            )
            .await
            .status;
        guesses.push(s);
        b.cookie = Some(session.clone());
    }
    assert_eq!(&guesses[..3], [200, 200, 200], "{guesses:?}");
    assert!(guesses[3..].iter().all(|s| *s == 403), "{guesses:?}");

    // A fresh address, a fresh session: its requests have their own budget
    // (20) beside the address's, until it logs out.
    let other = ip("127.0.0.8");
    let mut s = Browser::open(&c, other).await;
    assert_eq!(s.login("user0", "pw-0").await, 303);
    let cookie = s.cookie.clone().unwrap();
    let mut anon = Browser::open(&c, other).await;
    let mut n = 0;
    while anon.get("/echo/spend").await.status != 429 {
        n += 1;
        assert!(n < 100, "the address's budget never ran out");
    }
    let mut own = s.with_cookie(&cookie);
    assert_eq!(
        own.get("/echo/mine").await.status,
        200,
        "the session's own budget"
    );
    own.get("/web/session/logout").await;
    // The address's budget refills at one a second: of three quick
    // requests with the old id, one at least finds it spent.
    let mut after = Vec::new();
    for _ in 0..3 {
        after.push(
            s.with_cookie(&cookie)
                .get("/echo/after-logout")
                .await
                .status,
        );
    }
    assert!(
        after.contains(&429),
        "after logout the old id is the address's again: {after:?}"
    );
}

/// Issue 13 §4: thirty wrong passwords for `admin` from thirty addresses
/// (one each: no address reaches its own budget) are still bounded, by
/// the per-login budget (default 20 failures plus attempts in flight),
/// while the real user, from the address they logged in from before,
/// still gets in. Default limits.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_botnet_spreading_guesses_over_addresses_is_bounded_per_login() {
    let fixture = OdooFixture::start().await;
    let r = Rampart::start(setup(&fixture, "", "")).await;
    let c = Client::new(&r);
    let home = ip("127.0.0.20");
    let mut real = Browser::open(&c, home).await;
    assert_eq!(real.login("admin", "admin").await, 303);
    let posts = || {
        fixture
            .requests()
            .into_iter()
            .filter(|s| s.method == "POST" && s.path == "/web/login")
            .count()
    };
    let before = posts();
    let mut bots = Vec::new();
    for n in 1..=30 {
        let c = c.clone();
        bots.push(tokio::spawn(async move {
            let mut b = Browser::open(&c, ip(&format!("127.0.1.{n}"))).await;
            b.login("admin", "guess").await
        }));
    }
    let mut statuses = Vec::new();
    for t in bots {
        statuses.push(t.await.unwrap());
    }
    let reached = posts() - before;
    assert!(
        reached <= 20,
        "{reached} guesses reached Odoo: {statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 403).count(),
        30 - reached,
        "{statuses:?}"
    );
    // The real user, from home, still gets in.
    let mut again = Browser::open(&c, home).await;
    assert_eq!(again.login("admin", "admin").await, 303);
}
