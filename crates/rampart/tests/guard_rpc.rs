//! The guard against a brute force on `object.execute_kw` (issue 4): Odoo
//! checks the password on every RPC call and logs nothing when it is
//! wrong, so neither its cooldown nor fail2ban sees it; Rampart reads the
//! refusal in the answer and counts it like a failed login.

mod common;

use common::{Rampart, Setup, Site};
use rampart_testkit::OdooFixture;

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
    r.client
        .request("POST", &r.url(HOST, path), &[("content-type", ct)], body)
        .await
        .status
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
