//! The guard against a brute force on `object.execute_kw` (issue 4): Odoo
//! checks the password on every RPC call and logs nothing when it is
//! wrong, so neither its cooldown nor fail2ban sees it; Rampart reads the
//! refusal in the answer and counts it like a failed login.

mod common;

use common::{Rampart, Setup, Site, metric, start_guarded};
use rampart_testkit::{FixtureOptions, OdooFixture};

const HOST: &str = "erp.rpc.test";

async fn start(fixture: &OdooFixture) -> Rampart {
    // The harness's `listen` text closes [listen]; a [guard] table follows.
    Rampart::start(Setup {
        sites: vec![Site::new(HOST, fixture)],
        listen: "\n[guard]\nrate = { per_second = 5000, burst = 5000 }\n\
                 login_failures = { max = 3, within = \"60s\", ban = \"15m\", repeat_factor = 4 }\n"
            .into(),
        ..Setup::default()
    })
    .await
}

fn xml_execute_kw(password: &str) -> Vec<u8> {
    format!(
        "<?xml version='1.0'?>\n<methodCall>\n<methodName>execute_kw</methodName>\n<params>\n\
         <param><value><string>demo1</string></value></param>\n\
         <param><value><int>2</int></value></param>\n\
         <param><value><string>{password}</string></value></param>\n\
         <param><value><string>res.partner</string></value></param>\n\
         <param><value><string>search</string></value></param>\n\
         <param><value><array><data/></array></value></param>\n\
         </params>\n</methodCall>\n"
    )
    .into_bytes()
}

fn json_execute_kw(password: &str) -> Vec<u8> {
    serde_json::json!({"jsonrpc": "2.0", "method": "call", "id": 1, "params": {
        "service": "object", "method": "execute_kw",
        "args": ["demo1", 2, password, "res.partner", "search", [[]]]}})
    .to_string()
    .into_bytes()
}

async fn post(r: &Rampart, path: &str, ct: &str, body: Vec<u8>) -> u16 {
    r.post(HOST, path, ct, body).await.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_on_execute_kw_lead_to_a_ban() {
    let fixture = OdooFixture::start().await;
    let r = start(&fixture).await;

    // Integrations' calls with the right password are never counted.
    for _ in 0..10 {
        assert_eq!(
            post(&r, "/xmlrpc/2/object", "text/xml", xml_execute_kw("admin")).await,
            200
        );
        assert_eq!(
            post(&r, "/jsonrpc", "application/json", json_execute_kw("admin")).await,
            200
        );
    }
    assert_eq!(r.get(HOST, "/web/health").await.status, 200);

    // Three refusals (max = 3), over XML-RPC and JSON-RPC: banned.
    assert_eq!(
        post(&r, "/xmlrpc/2/object", "text/xml", xml_execute_kw("guess1")).await,
        200
    );
    assert_eq!(
        post(
            &r,
            "/jsonrpc",
            "application/json",
            json_execute_kw("guess2")
        )
        .await,
        200
    );
    assert_eq!(
        post(&r, "/xmlrpc/object", "text/xml", xml_execute_kw("guess3")).await,
        200
    );
    let seen = fixture.count("/xmlrpc") + fixture.count("/jsonrpc");
    let status = post(&r, "/xmlrpc/2/object", "text/xml", xml_execute_kw("guess4")).await;
    assert_eq!(status, 403, "the fourth guess is refused by Rampart");
    assert_eq!(
        fixture.count("/xmlrpc") + fixture.count("/jsonrpc"),
        seen,
        "a banned client's call never reaches Odoo"
    );
    let bans = r.admin_get("/v1/bans").await;
    assert!(bans.text().contains("127.0.0.1"), "{}", bans.text());
    assert!(bans.text().contains("3 failed logins"), "{}", bans.text());
}

// ---- issue 9: bodies read as Odoo reads them ------------------------------

fn xml_authenticate(method_element: &str, password: &str) -> String {
    format!(
        "<?xml version='1.0'?>\n<methodCall>\n{method_element}\n<params>\n\
         <param><value><string>demo1</string></value></param>\n\
         <param><value><string>admin</string></value></param>\n\
         <param><value><string>{password}</string></value></param>\n\
         <param><value><struct></struct></value></param>\n</params>\n</methodCall>\n"
    )
}

fn utf16le_with_bom(text: &str) -> Vec<u8> {
    let mut out = b"\xFF\xFE".to_vec();
    out.extend(text.encode_utf16().flat_map(|u| u.to_le_bytes()));
    out
}

/// Each spelling that walked past the substring reader against real Odoo
/// 18 is now a counted login attempt, and they add up to a ban.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_spellings_python_reads_are_counted_and_banned() {
    let fixture = OdooFixture::start().await;
    let spellings: Vec<(&str, &str, Vec<u8>)> = vec![
        // (The fixture reads bodies with a substring search too: a comment
        // naming a method it does not know makes it answer a fault.)
        ("comment", "/xmlrpc/2/common", xml_authenticate("<!-- <methodName>nope</methodName> --><methodName>authenticate</methodName>", "g1").into_bytes()),
        ("split by a comment", "/xmlrpc/2/common", xml_authenticate("<methodName>auth<!-- x -->enticate</methodName>", "g1b").into_bytes()),
        ("character reference", "/xmlrpc/2/common", xml_authenticate("<methodName>&#97;uthenticate</methodName>", "g2").into_bytes()),
        ("CDATA", "/xmlrpc/2/common", xml_authenticate("<methodName><![CDATA[authenticate]]></methodName>", "g3").into_bytes()),
        ("whitespace in tags", "/xmlrpc/common", xml_authenticate("<methodName >login</methodName\n>", "g4").into_bytes()),
        ("UTF-16", "/xmlrpc/2/common", utf16le_with_bom(&xml_authenticate("<methodName>authenticate</methodName>", "g5").replace("<?xml version='1.0'?>", "<?xml version='1.0' encoding='UTF-16'?>"))),
        ("JSON pairs", "/jsonrpc", br#"{"jsonrpc":"2.0","method":"call","id":1,"params":[["service","common"],["method","login"],["args",["demo1","admin","g6"]]]}"#.to_vec()),
        ("JSON 2-key objects", "/jsonrpc", br#"{"jsonrpc":"2.0","method":"call","id":1,"params":[{"service":0,"common":1},{"method":0,"login":1},["args",["demo1","admin","g7"]]]}"#.to_vec()),
    ];
    let max = spellings.len() as u32;
    let r = start_guarded(&fixture, HOST, max, "").await;
    for (i, (what, path, body)) in spellings.into_iter().enumerate() {
        let ct = if path == "/jsonrpc" {
            "application/json"
        } else {
            "text/xml"
        };
        let res = r.post(HOST, path, ct, body).await;
        assert_eq!(res.status, 200, "{what}: {}", res.text());
        let failures = metric(&r.metrics().await, "rampart_guard_login_failures_total");
        assert_eq!(
            failures,
            (i + 1) as f64,
            "{what} was not counted as a failed login"
        );
    }
    let seen = fixture.count("/xmlrpc") + fixture.count("/jsonrpc");
    let res = r
        .post(
            HOST,
            "/xmlrpc/2/common",
            "text/xml",
            xml_authenticate("<methodName>authenticate</methodName>", "g8").into_bytes(),
        )
        .await;
    assert_eq!(res.status, 403, "banned after {max} failures");
    assert_eq!(fixture.count("/xmlrpc") + fixture.count("/jsonrpc"), seen);
    assert!(r.admin_get("/v1/bans").await.text().contains("127.0.0.1"));
}

/// `params` as pairs (and the other shapes `dict()` takes) reach the `db`
/// service for Odoo: refused before the fixture sees them, as are bodies
/// Python reads but serde_json cannot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_service_in_any_params_shape_never_reaches_odoo() {
    let fixture = OdooFixture::start().await;
    let r = start_guarded(&fixture, HOST, 10, "").await;
    for body in [
        r#"{"jsonrpc":"2.0","method":"call","id":1,"params":[["service","db"],["method","list"],["args",[]]]}"#,
        r#"{"jsonrpc":"2.0","method":"call","id":1,"params":[{"service":1,"db":2},{"method":1,"list":2},["args",[]]]}"#,
        r#"{"jsonrpc":"2.0","method":"call","id":1,"params":{"service":"common","method":"list","args":[],"service":"db"}}"#,
        r#"{"jsonrpc":"2.0","method":"call","id":1,"params":[["service","\u0064b"],["method","list"],["args",[]]]}"#,
        r#"{"jsonrpc":"2.0","method":"call","id":1,"x":NaN,"params":[["service","db"],["method","list"],["args",[]]]}"#,
        r#"{"jsonrpc":"2.0","method":"call","id":1,"params":[["service","db"],["method","dump"],["args",["guess","demo1","zip"]]]}"#,
    ] {
        let res = r
            .post(
                HOST,
                "/jsonrpc",
                "application/json",
                body.as_bytes().to_vec(),
            )
            .await;
        assert_eq!(res.status, 403, "{body}: {}", res.text());
    }
    assert_eq!(fixture.count("/jsonrpc"), 0, "the db service was reached");
    // Other services still pass.
    let version = r#"{"jsonrpc":"2.0","method":"call","id":1,"params":[["service","common"],["method","version"],["args",[]]]}"#;
    let res = r
        .post(
            HOST,
            "/jsonrpc",
            "application/json",
            version.as_bytes().to_vec(),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
}

/// A burst of concurrent wrong `execute_kw` calls: each takes a slot of
/// the login budget before it is forwarded, so at most `max` password
/// checks reach Odoo; the right password, once proven, is not throttled.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_wrong_execute_kw_put_at_most_max_checks_before_odoo() {
    const MAX: u32 = 10;
    const BURST: usize = 100;
    let fixture = OdooFixture::start().await;
    let r = start_guarded(&fixture, HOST, MAX, "").await;
    let client = std::sync::Arc::new(rampart_testkit::TestClient::new(&r.ca_path()));
    let url = r.url(HOST, "/xmlrpc/2/object");

    // An integration: one call proves the password, then a burst passes.
    assert_eq!(
        post(&r, "/xmlrpc/2/object", "text/xml", xml_execute_kw("admin")).await,
        200
    );
    let good = burst(&client, &url, xml_execute_kw("admin"), BURST).await;
    assert!(
        good.iter().all(|s| *s == 200),
        "good password throttled: {good:?}"
    );
    let before = fixture.count("/xmlrpc/2/object");

    let statuses = burst(&client, &url, xml_execute_kw("guess"), BURST).await;
    let reached = fixture.count("/xmlrpc/2/object") - before;
    assert!(
        (1..=MAX as usize).contains(&reached),
        "{reached} password checks reached Odoo (max {MAX}); answers {statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), reached);
    assert!(
        statuses.iter().all(|s| [200, 403, 429].contains(s)),
        "{statuses:?}"
    );
    let bans = r.admin_get("/v1/bans").await.text();
    assert!(bans.contains("127.0.0.1"), "{bans}");
}

async fn burst(
    client: &std::sync::Arc<rampart_testkit::TestClient>,
    url: &str,
    body: Vec<u8>,
    n: usize,
) -> Vec<u16> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (client, url, body) = (client.clone(), url.to_string(), body.clone());
            tokio::spawn(async move {
                client
                    .request("POST", &url, &[("content-type", "text/xml")], body)
                    .await
                    .status
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await.expect("client task"));
    }
    out
}

/// 2FA codes on /web/login/totp are login attempts. The codes go where a browser sends them:
/// after the password step, with that session's cookie and the CSRF token of the code form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totp_codes_are_counted_and_banned() {
    let fixture = OdooFixture::start_with(FixtureOptions {
        totp_secret: Some(b"12345678901234567890".to_vec()),
        ..FixtureOptions::default()
    })
    .await;
    let r = start_guarded(&fixture, HOST, 3, "").await;
    let (cookie, token) = r.login_form(HOST).await;
    let headers = [
        ("content-type", "application/x-www-form-urlencoded"),
        ("cookie", cookie.as_str()),
    ];
    let res = r
        .client
        .request(
            "POST",
            &r.url(HOST, "/web/login"),
            &headers,
            format!("csrf_token={token}&login=admin&password=admin").into_bytes(),
        )
        .await;
    assert_eq!(res.status, 303, "{}", res.text());
    assert_eq!(res.header("location"), Some("/web/login/totp"));
    let page = r
        .client
        .request(
            "GET",
            &r.url(HOST, "/web/login/totp"),
            &headers[1..],
            vec![],
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.text());
    let html = page.text();
    let token = html
        .split(r#"name="csrf_token" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a CSRF token in the code form");
    // Three codes that are not the current one (nor its neighbours, but for a 1e-5 chance).
    let right: u32 = fixture.totp_code().parse().unwrap();
    for offset in [111_111, 222_222, 333_333] {
        let code = format!("{:06}", (right + offset) % 1_000_000);
        let res = r
            .client
            .request(
                "POST",
                &r.url(HOST, "/web/login/totp"),
                &headers,
                format!("csrf_token={token}&totp_token={code}").into_bytes(),
            )
            .await;
        assert_eq!(res.status, 200, "{}", res.text());
        assert!(res.text().contains("Verification failed"), "{}", res.text());
    }
    let seen = fixture.count("/web/login/totp");
    let res = r
        .client
        .request(
            "POST",
            &r.url(HOST, "/web/login/totp"),
            &headers,
            format!("csrf_token={token}&totp_token={}", fixture.totp_code()).into_bytes(),
        )
        .await;
    assert_eq!(res.status, 403, "banned after three wrong codes");
    assert_eq!(fixture.count("/web/login/totp"), seen);
}

/// Master-password guesses from allow-listed clients (the database
/// manager's forms and the `db` service) and wrong API keys on Odoo 19's
/// /json/2 are counted like failed logins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_password_and_api_key_guesses_are_counted() {
    let fixture = OdooFixture::start().await;
    let r = start_guarded(
        &fixture,
        HOST,
        3,
        "[site.database_manager]\nallow = [\"127.0.0.1/32\"]",
    )
    .await;
    let res = r
        .post(
            HOST,
            "/web/database/drop",
            "application/x-www-form-urlencoded",
            b"master_pwd=guess&name=demo1".to_vec(),
        )
        .await;
    assert_eq!(res.status, 200);
    assert!(res.text().contains("Access Denied"));
    let body = r#"{"jsonrpc":"2.0","method":"call","id":1,"params":{"service":"db","method":"dump","args":["guess2","demo1","zip"]}}"#;
    let res = r
        .post(
            HOST,
            "/jsonrpc",
            "application/json",
            body.as_bytes().to_vec(),
        )
        .await;
    assert_eq!(res.status, 200);
    let res = r
        .client
        .request(
            "POST",
            &r.url(HOST, "/json/2/res.partner/search"),
            &[
                ("content-type", "application/json"),
                ("authorization", "bearer guess3"),
            ],
            b"{}".to_vec(),
        )
        .await;
    assert_eq!(res.status, 401);
    let failures = metric(&r.metrics().await, "rampart_guard_login_failures_total");
    assert_eq!(failures, 3.0);
    let res = r
        .post(
            HOST,
            "/web/database/drop",
            "application/x-www-form-urlencoded",
            b"master_pwd=guess4&name=demo1".to_vec(),
        )
        .await;
    assert_eq!(res.status, 403, "banned after three guesses");
}

/// An object call too large to read whole (an attachment through
/// execute_kw) still goes through, counted as a password check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_call_larger_than_the_inspection_limit_passes_and_counts() {
    let fixture = OdooFixture::start().await;
    let r = start_guarded(&fixture, HOST, 10, "max_body = \"64MiB\"").await;
    let mut body = String::from_utf8(xml_execute_kw("guess")).unwrap();
    body = body.replace(
        "<string>search</string>",
        &format!("<string>{}</string>", "A".repeat(9 * 1024 * 1024)),
    );
    let status = post(&r, "/xmlrpc/2/object", "text/xml", body.into_bytes()).await;
    assert_eq!(status, 200);
    assert_eq!(fixture.count("/xmlrpc/2/object"), 1);
    let failures = metric(&r.metrics().await, "rampart_guard_login_failures_total");
    assert_eq!(failures, 1.0, "the refusal was counted");
}
