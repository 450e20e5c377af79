//! Red team 5: attacks found against a real Odoo 18 (workers = 2) through
//! `rampart serve`, each reproduced here against the fixture (scripts and
//! figures in /work/redteam5).

mod common;
mod slots_common;

use std::time::Duration;

use common::{Rampart, Setup, Site};
use rampart_testkit::OdooFixture;
use slots_common::{Client, HOST, ip};

/// F6: an upload sent fast and then kept at just over the minimum rate
/// held its spool share for (what is left) / `client_body_min_rate`:
/// with the defaults, four addresses sending 4 × 256 MiB and then 16 KiB/s
/// between them kept the whole 4 GiB spool for 16 hours, and every other
/// upload over 64 KiB got 507. A body must now be complete within
/// `client_body_deadline`, however it is paced.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn f6_a_body_kept_at_the_minimum_rate_loses_its_spool_share_at_the_deadline() {
    let fixture = OdooFixture::start().await;
    let mut setup = Setup::site(Site::new(HOST, &fixture).extra("max_body = \"1MiB\""));
    // The defaults scaled down: spool_max 4 GiB with max_body 256 MiB,
    // the deadline 1 h for a tail that would take hours.
    setup.listen = "spool_max = \"2MiB\"\nclient_body_min_rate = \"1KiB\"\n\
                    client_body_grace = \"1s\"\nclient_body_deadline = \"3s\""
        .into();
    let r = Rampart::start(setup).await;
    let c = Client::new(&r);
    const LEN: usize = 1024 * 1024;
    const TAIL: usize = 64 * 1024;
    let mut held = Vec::new();
    for src in ["127.0.0.10", "127.0.0.11"] {
        held.push(
            slots_common::Upload::start(&c, ip(src), "/upload", LEN, &vec![b'u'; LEN - TAIL]).await,
        );
    }
    // 1.5 KiB a second: above the minimum rate on average and in every
    // window, so only a deadline ends it (the tail would take 43 s).
    for _ in 0..6 {
        for u in held.iter_mut() {
            let _sent = u.send(&[b'u'; 1536]).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let victim = c
        .send(ip("127.0.0.3"), "POST", "/upload", vec![b'v'; 200 * 1024])
        .await;
    assert_ne!(
        victim.status,
        507,
        "another user's upload was refused: two addresses trickling at the minimum rate held \
         the spool past the deadline: {}",
        victim.text()
    );
    assert_eq!(victim.status, 200, "{}", victim.text());
    for u in held.iter_mut() {
        let (status, text) = u.answer().await;
        assert_eq!(status, 408, "{text}");
    }
    assert_eq!(
        fixture.count("/upload"),
        1,
        "only the victim's upload reached Odoo"
    );
}
