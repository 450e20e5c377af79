//! A SIGHUP that moves a site from the local CA to ACME (issue 16: the
//! mutant `o.source == s.source` → `!=` in `CertStore::build` survived every
//! certificate test). The reload must not reuse the local entry for a site
//! whose source changed: the site then serves a temporary certificate, the
//! ACME loop (woken by the reload) orders at once, and the site ends up on
//! the CA's certificate. Real `rampart serve`, real pebble, HTTP-01 answered
//! on Rampart's own plain-HTTP listener.

mod acme_common;
mod common;

use std::time::Duration;

use acme_common::{
    HOST, ISSUE_WAIT, Pebble, Serve, loopback, pem_to_der, require_pebble, served_chain, wait_for,
};
use common::{TempDir, wait_line};
use rampart_testkit::{OdooFixture, TestClient, free_port};

fn config_text(
    state: &std::path::Path,
    listen: [std::net::SocketAddr; 3],
    pebble: &Pebble,
    odoo: &OdooFixture,
    tls: &str,
) -> String {
    let [http, https, admin] = listen;
    format!(
        "state_dir = {state:?}\n\n[listen]\nhttp = \"{http}\"\nhttps = \"{https}\"\nadmin = \"{admin}\"\n\n\
         [acme]\nemail = \"ops@example.com\"\ndirectory = \"{directory}\"\nca_bundle = {bundle:?}\nchallenge = \"http-01\"\n\n\
         [[site]]\nhosts = [\"{HOST}\"]\ntls = {tls}\nodoo = [\"{odoo_http}\"]\nwebsocket = [\"{odoo_ws}\"]\n",
        state = state.display().to_string(),
        directory = pebble.directory(),
        bundle = pebble.bundle().display().to_string(),
        odoo_http = odoo.http_addr,
        odoo_ws = odoo.ws_addr,
    )
}

/// The certificates in service, as the running server lists them (`GET /v1/certs`).
async fn live_certs(admin: std::net::SocketAddr) -> serde_json::Value {
    let r = TestClient::new_plain()
        .get(&format!("http://{admin}/v1/certs"))
        .await;
    assert_eq!(r.status, 200, "/v1/certs: {}", r.text());
    let v: serde_json::Value = serde_json::from_str(&r.text()).expect("/v1/certs is JSON");
    v["certificates"].clone()
}

async fn local_then_acme() {
    let tmp = TempDir::new("acme-reload");
    let odoo = OdooFixture::start().await;
    let listen = [
        loopback(free_port()),
        loopback(free_port()),
        loopback(free_port()),
    ];
    let [http, https, admin] = listen;
    let mut pebble = Pebble::prepare(tmp.path().join("pebble"), http.port(), 1);
    pebble.start().await;
    let pebble_root = tmp.path().join("pebble-root.pem");
    std::fs::write(&pebble_root, pebble.management_pem("/roots/0").await).unwrap();
    let intermediate = pem_to_der(&pebble.management_pem("/intermediates/0").await);
    let state = tmp.path().join("state");
    let config = tmp.path().join("rampart.toml");
    std::fs::write(
        &config,
        config_text(&state, listen, &pebble, &odoo, "\"local\""),
    )
    .unwrap();
    let serve = Serve::start(&config, tmp.path().join("stderr.log"), &listen).await;

    // Before: the site is on the local CA and nothing was ordered.
    let local_root = state.join("ca").join("root.pem");
    let before = served_chain(https, &local_root).await.unwrap_or_else(|e| {
        panic!(
            "the local certificate before the reload: {e}\n{}",
            serve.log()
        )
    });
    assert!(served_chain(https, &pebble_root).await.is_err());
    assert_eq!(pebble.orders(), 0, "an order for a local site");

    // The same site, same hosts, now on ACME; SIGHUP.
    std::fs::write(
        &config,
        config_text(&state, listen, &pebble, &odoo, "\"acme\""),
    )
    .unwrap();
    serve.signal("HUP");
    wait_line(&serve.stderr, &["config reloaded"]).await;
    let served = live_certs(admin).await;
    assert_eq!(
        served[0]["source"], "acme",
        "after the reload the site still has its local entry: {served}"
    );
    // (Temporary or already pebble's: the woken ACME loop may be that quick.)

    // It ends up on pebble's certificate, without a restart or an admin request.
    let issued = wait_for(ISSUE_WAIT, || async {
        served_chain(https, &pebble_root).await.ok()
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "{HOST} does not serve pebble's certificate {ISSUE_WAIT:?} after the reload\nrampart:\n{}\npebble:\n{}",
            serve.log(),
            pebble.log()
        )
    });
    assert_eq!(
        issued.get(1),
        Some(&intermediate),
        "the chain names pebble's intermediate"
    );
    assert_ne!(issued[0], before[0]);
    assert!(pebble.orders() >= 1, "pebble saw no order");
    let health = format!("https://{HOST}:{}/web/health", https.port());
    assert_eq!(TestClient::new(&pebble_root).get(&health).await.status, 200);
    let served = live_certs(admin).await;
    assert_eq!(served[0]["source"], "acme", "{served}");
    assert_eq!(served[0]["temporary"], false, "{served}");
    assert!(
        served[0]["issuer"]
            .as_str()
            .unwrap_or("")
            .contains("Pebble"),
        "{served}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reload_from_local_to_acme_orders_the_certificate() {
    require_pebble();
    tokio::time::timeout(Duration::from_secs(240), local_then_acme())
        .await
        .expect("the test did not finish within 240 s");
}
