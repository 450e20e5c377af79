//! The status page on the admin listener (`/`) and its JSON
//! (`/v1/status`), with a live upstream, a dead one and a ban, through
//! the real binary.

mod common;

use std::time::{Duration, Instant};

use common::{Rampart, Setup, Site, run_cli};
use rampart_testkit::OdooFixture;

const FAST_CHECKS: &str = "[site.health_check]\ninterval = \"1s\"\ntimeout = \"1s\"\nfall = 1";

#[tokio::test]
async fn status_page_shows_what_an_operator_looks_for() {
    let fixture = OdooFixture::start().await;
    let setup = Setup {
        sites: vec![
            Site::new("erp.test", &fixture).extra(FAST_CHECKS),
            Site::unreachable("dead.test").extra(FAST_CHECKS),
        ],
        ..Setup::default()
    };
    let r = Rampart::start(setup).await;
    let cfg = r.config_path.to_str().unwrap();
    let (code, out, err) = run_cli(&[
        "bans",
        "--config",
        cfg,
        "ban",
        "198.51.100.23",
        "--for",
        "2h",
        "--reason",
        "<script>alert(1)</script>",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    for _ in 0..20 {
        assert_eq!(r.get("erp.test", "/web/login").await.status, 200);
    }
    // Wait for the dead upstream's check and one 10 s traffic sample.
    let deadline = Instant::now() + Duration::from_secs(40);
    let status = loop {
        let s = r.admin_get("/v1/status").await;
        assert_eq!(s.status, 200, "{}", s.text());
        let v: serde_json::Value = serde_json::from_str(&s.text()).expect("JSON");
        let dead_down = v["sites"][1]["upstreams"][0]["healthy"] == false;
        let traffic = v["sites"][0]["history"]
            .as_array()
            .is_some_and(|h| h.iter().any(|p| p["rps"].as_f64().unwrap_or(0.0) > 0.0));
        if dead_down && traffic {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "status never showed the dead upstream and traffic: {v:#}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(status["sites"][0]["name"], "erp.test");
    assert_eq!(status["sites"][0]["upstreams"][0]["healthy"], true);
    assert_eq!(status["sites"][0]["upstreams"][1]["role"], "websocket");
    assert!(
        status["version"].as_str().unwrap().contains("commit"),
        "{status:#}"
    );
    assert!(status["uptime_secs"].as_u64().is_some());
    let certs = status["certificates"].as_array().unwrap();
    assert_eq!(certs.len(), 2);
    assert!(certs[0]["days_left"].as_i64().unwrap() > 0);
    assert_eq!(status["guard"]["active_bans"][0]["addr"], "198.51.100.23");
    assert!(
        status["backups"]["note"]
            .as_str()
            .unwrap()
            .contains("[backup]")
    );

    let page = r.admin_get("/").await;
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .unwrap_or_default()
            .starts_with("text/html")
    );
    let html = page.text();
    for wanted in [
        "<meta http-equiv=\"refresh\"",
        "Site erp.test",
        "Site dead.test",
        "healthy",
        "DOWN",
        "198.51.100.23",
        "&lt;script&gt;alert(1)&lt;/script&gt;",
        "<svg",
        "<polyline",
        "Certificates",
        "Days left",
        "Active bans: 1",
        "commit",
    ] {
        assert!(html.contains(wanted), "{wanted:?} not on the page:\n{html}");
    }
    assert!(
        !html.contains("<script"),
        "the page runs script or echoes it unescaped"
    );
    for external in ["src=\"http", "href=\"http", "@import", "url("] {
        assert!(
            !html.contains(external),
            "an external asset ({external}):\n{html}"
        );
    }
}

#[tokio::test]
async fn status_shows_refusals_of_a_banned_client() {
    let fixture = OdooFixture::start().await;
    let r = Rampart::start(Setup::site(Site::new("erp.test", &fixture))).await;
    let cfg = r.config_path.to_str().unwrap();
    let (code, out, err) = run_cli(&["bans", "--config", cfg, "ban", "127.0.0.1", "--for", "1h"]);
    assert_eq!(code, 0, "{out}{err}");
    for _ in 0..3 {
        assert_eq!(r.get("erp.test", "/web/login").await.status, 403);
    }
    let v: serde_json::Value =
        serde_json::from_str(&r.admin_get("/v1/status").await.text()).unwrap();
    assert_eq!(v["guard"]["top_refused"][0]["addr"], "127.0.0.1", "{v:#}");
    assert_eq!(v["guard"]["top_refused"][0]["count"], 3);
    assert_eq!(v["guard"]["recent_refusals"][0]["reason"], "banned");
}
