//! Issue 10, behaviours 4 and 6: the edge cache of Odoo's immutable
//! public answers, through the real binary in front of the fixture (which
//! answers bundles and images with the headers a real Odoo 18 sends, and
//! counts what reaches it).

mod common;

use std::io::Read;
use std::sync::Arc;

use common::{Rampart, Setup, Site, metric, run_cli};
use rampart_testkit::{OdooFixture, TestResponse};

const HOST: &str = "erp.test";
const BUNDLE: &str = "/web/assets/4f0358a/web.assets_web.min.js";

/// The rate limit out of the way: these tests send thousands of requests.
async fn start(fixture: &OdooFixture, extra: &str) -> Rampart {
    let site = Site::new(HOST, fixture).extra(extra);
    let setup = Setup {
        sites: vec![site],
        listen: "\n[guard]\nrate = { per_second = 100000, burst = 100000 }\n".into(),
        ..Setup::default()
    };
    Rampart::start(setup).await
}

async fn get(r: &Rampart, path: &str, headers: &[(&str, &str)], h2: bool) -> TestResponse {
    let url = r.url(HOST, path);
    if h2 {
        r.client.request_h2("GET", &url, headers, Vec::new()).await
    } else {
        r.client.request("GET", &url, headers, Vec::new()).await
    }
}

fn decode(enc: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match enc {
        None => out.extend_from_slice(body),
        Some("gzip") => {
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .unwrap();
        }
        Some("br") => {
            brotli_decompressor::Decompressor::new(body, 4096)
                .read_to_end(&mut out)
                .unwrap();
        }
        Some("zstd") => out = zstd::decode_all(body).unwrap(),
        Some(other) => panic!("unexpected Content-Encoding {other}"),
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bundle_is_fetched_from_odoo_once_across_a_thousand_requests() {
    let fixture = OdooFixture::start().await;
    let r = Arc::new(start(&fixture, "").await);
    let (sid, _) = fixture.login_form_session();
    let cookie = Arc::new(format!("session_id={sid}"));
    let want = OdooFixture::bundle_body(BUNDLE);
    let mut tasks = Vec::new();
    for t in 0..20 {
        let (r, cookie, want) = (r.clone(), cookie.clone(), want.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..50 {
                let enc = ["gzip", "br", "zstd", "identity"][(t + i) % 4];
                let h = [("cookie", cookie.as_str()), ("accept-encoding", enc)];
                let res = get(&r, BUNDLE, &h, (t + i) % 2 == 0).await;
                assert_eq!(res.status, 200, "{}", res.text());
                assert!(res.header("set-cookie").is_none());
                assert_eq!(decode(res.header("content-encoding"), &res.body), want);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(fixture.count(BUNDLE), 1, "Odoo was asked more than once");
    // A request without any cookie gets the same public bundle, and no
    // session cookie that Odoo gave someone else.
    let res = get(&r, BUNDLE, &[], false).await;
    assert_eq!(res.status, 200);
    assert!(res.header("set-cookie").is_none());
    assert_eq!(res.body, want);
    assert_eq!(
        res.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert!(res.header("etag").is_some() && res.header("last-modified").is_some());
    // Security headers as on any answer.
    assert!(res.header("strict-transport-security").is_some());
    assert_eq!(fixture.count(BUNDLE), 1);

    let m = r.metrics().await;
    let site = format!("{{site=\"{HOST}\"}}");
    assert_eq!(
        metric(&m, &format!("rampart_cache_hits_total{site}")),
        1000.0
    );
    assert_eq!(
        metric(&m, &format!("rampart_cache_misses_total{site}")),
        1.0
    );
    assert_eq!(metric(&m, &format!("rampart_cache_entries{site}")), 1.0);
    assert!(metric(&m, &format!("rampart_cache_bytes{site}")) >= want.len() as f64);
    assert!(metric(&m, &format!("rampart_cache_odoo_seconds_saved_total{site}")) > 0.0);
    r.wait_access_line(&[BUNDLE, "cache=hit"]).await;
    r.wait_access_line(&[BUNDLE, "cache=miss"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_that_are_private_no_store_with_a_cookie_or_errors_are_never_kept() {
    let fixture = OdooFixture::start().await;
    let r = start(&fixture, "").await;
    let (sid, _) = fixture.login_form_session();
    let cookie = format!("session_id={sid}");
    for (name, status) in [
        ("nostore", 200),
        ("private", 200),
        ("cookie", 200),
        ("error", 500),
        ("missing", 404),
    ] {
        let path = format!("/web/assets/77aa11/{name}.min.js");
        for _ in 0..3 {
            let res = get(&r, &path, &[("cookie", &cookie)], false).await;
            assert_eq!(res.status, status, "{path}");
        }
        assert_eq!(fixture.count(&path), 3, "{path} was kept");
    }
    // Without a session cookie, Odoo answers every request with a new
    // session_id cookie: such answers are not kept either, and each client
    // gets its own cookie.
    let path = "/web/assets/77aa11/anonymous.min.js";
    let mut cookies = Vec::new();
    for _ in 0..3 {
        let res = get(&r, path, &[], false).await;
        assert_eq!(res.status, 200);
        cookies.push(res.header("set-cookie").expect("Odoo's cookie").to_string());
    }
    assert_eq!(fixture.count(path), 3);
    cookies.dedup();
    assert_eq!(
        cookies.len(),
        3,
        "one client's session cookie went to another"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_image_is_never_shared_between_sessions() {
    let fixture = OdooFixture::start().await;
    let r = start(&fixture, "").await;
    let path = "/web/image/res.partner/3/avatar_128?unique=1764547642000";
    let (a, b) = (fixture.logged_in_session(), fixture.logged_in_session());
    for sid in [&a, &b, &a, &b] {
        let res = get(&r, path, &[("cookie", &format!("session_id={sid}"))], true).await;
        assert_eq!(res.status, 200);
        let mine = format!("session:{}", &sid[..8]);
        assert!(
            String::from_utf8_lossy(&res.body).contains(&mine),
            "a session got another session's private image"
        );
        assert!(res.header("cache-control").unwrap().contains("private"));
    }
    assert_eq!(fixture.count("/web/image/res.partner/3/"), 4);

    // The company logo as the anonymous visitor sees it is public: kept.
    let logo = "/web/image/res.company/1/logo?unique=5";
    let (anon, _) = fixture.login_form_session();
    for _ in 0..3 {
        let res = get(
            &r,
            logo,
            &[("cookie", &format!("session_id={anon}"))],
            false,
        )
        .await;
        assert_eq!(res.status, 200);
    }
    assert_eq!(fixture.count("/web/image/res.company/1/logo"), 1);
    // Without `unique` Odoo says no-cache: never kept.
    for _ in 0..2 {
        get(
            &r,
            "/web/image/res.company/1/logo",
            &[("cookie", &format!("session_id={anon}"))],
            false,
        )
        .await;
    }
    assert_eq!(fixture.count("/web/image/res.company/1/logo"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_and_range_requests_are_answered_from_the_cache() {
    let fixture = OdooFixture::start().await;
    let r = start(&fixture, "").await;
    let (sid, _) = fixture.login_form_session();
    let cookie = format!("session_id={sid}");
    let want = OdooFixture::bundle_body(BUNDLE);
    let first = get(&r, BUNDLE, &[("cookie", &cookie)], false).await;
    assert_eq!(first.status, 200);
    let etag = first.header("etag").unwrap().to_string();
    for h2 in [false, true] {
        let res = get(&r, BUNDLE, &[("if-none-match", &etag)], h2).await;
        assert_eq!(res.status, 304, "h2={h2}");
        assert!(res.body.is_empty());
        // The weak validator of a compressed copy matches too.
        let weak = format!("W/{etag}");
        assert_eq!(
            get(&r, BUNDLE, &[("if-none-match", &weak)], h2)
                .await
                .status,
            304
        );
        let lm = first.header("last-modified").unwrap();
        assert_eq!(
            get(&r, BUNDLE, &[("if-modified-since", lm)], h2)
                .await
                .status,
            304
        );

        let res = get(&r, BUNDLE, &[("range", "bytes=10-19")], h2).await;
        assert_eq!(res.status, 206, "h2={h2}");
        assert_eq!(res.body, &want[10..20]);
        assert_eq!(
            res.header("content-range"),
            Some(format!("bytes 10-19/{}", want.len()).as_str())
        );
        let res = get(&r, BUNDLE, &[("range", "bytes=-5")], h2).await;
        assert_eq!(res.body, &want[want.len() - 5..]);
        let res = get(&r, BUNDLE, &[("range", "bytes=99999999-")], h2).await;
        assert_eq!(res.status, 416);
        assert_eq!(
            res.header("content-range"),
            Some(format!("bytes */{}", want.len()).as_str())
        );
        let head = r
            .client
            .request("HEAD", &r.url(HOST, BUNDLE), &[], Vec::new())
            .await;
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty());
    }
    assert_eq!(fixture.count(BUNDLE), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_through_the_admin_api_and_the_cli() {
    let fixture = OdooFixture::start().await;
    let r = start(&fixture, "").await;
    let (sid, _) = fixture.login_form_session();
    let cookie = format!("session_id={sid}");
    let other = "/web/assets/99bb22/web.assets_frontend.min.css";
    for _ in 0..2 {
        get(&r, BUNDLE, &[("cookie", &cookie)], false).await;
        get(&r, other, &[("cookie", &cookie)], false).await;
    }
    assert_eq!((fixture.count(BUNDLE), fixture.count(other)), (1, 1));

    let cfg = r.config_path.display().to_string();
    let (code, out, err) = run_cli(&["-c", &cfg, "cache", "stats", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("\"entries\":2"), "{out}");
    let (code, out, err) = run_cli(&[
        "-c",
        &cfg,
        "cache",
        "purge",
        "--site",
        HOST,
        "/web/assets/4f0358a/",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("purged 1 entries"), "{out}");
    let (code, _, err) = run_cli(&["-c", &cfg, "cache", "purge", "--site", "nope.test"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no site named"), "{err}");

    get(&r, BUNDLE, &[("cookie", &cookie)], false).await;
    get(&r, other, &[("cookie", &cookie)], false).await;
    assert_eq!((fixture.count(BUNDLE), fixture.count(other)), (2, 1));

    // The admin API's rules hold for purge: JSON only.
    let url = format!("http://{}/v1/cache/purge", r.admin);
    let res = rampart_testkit::TestClient::new_plain()
        .request(
            "POST",
            &url,
            &[("content-type", "text/plain")],
            b"{}".to_vec(),
        )
        .await;
    assert_eq!(res.status, 415);
    get(&r, other, &[("cookie", &cookie)], false).await;
    assert_eq!(fixture.count(other), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poisoning_attempts_neither_store_nor_serve_another_answer() {
    let fixture = OdooFixture::start().await;
    let site_extra = "\n[site.cache]\nmax_entry = \"16KiB\"\n";
    let mut setup_site = Site::new(HOST, &fixture).extra(site_extra);
    setup_site.hosts.push("other.test".into());
    let r = Rampart::start(Setup {
        sites: vec![setup_site],
        listen: "\n[guard]\nrate = { per_second = 100000, burst = 100000 }\n".into(),
        ..Setup::default()
    })
    .await;
    let (sid, _) = fixture.login_form_session();
    let c = format!("session_id={sid}");
    let cookie = [("cookie", c.as_str())];
    let small = "/web/image/res.company/1/logo?unique=9";

    // HEAD first: its empty body must not become the entry.
    let head = r
        .client
        .request("HEAD", &r.url(HOST, small), &cookie, Vec::new())
        .await;
    assert_eq!(head.status, 200);
    let full = get(&r, small, &cookie, false).await;
    let again = get(&r, small, &cookie, true).await;
    assert!(!full.body.is_empty());
    assert_eq!(again.body, full.body);
    assert_eq!(fixture.count(small), 2, "HEAD, then one GET that filled");

    // A Range request first: its part must not become the entry.
    let logo2 = "/web/image/res.company/1/logo?unique=10";
    let part = get(&r, logo2, &[("cookie", &c), ("range", "bytes=0-3")], false).await;
    assert!(part.status == 200 || part.status == 206);
    let a = get(&r, logo2, &cookie, false).await;
    let b = get(&r, logo2, &cookie, false).await;
    assert_eq!(a.body, b.body);
    assert_eq!(a.body, full.body);
    assert_eq!(fixture.count(logo2), 2);

    // Another host name of the same site is another key (Odoo's dbfilter
    // may pick another database by it).
    let logo3 = "/web/image/res.company/1/logo?unique=11";
    for host in [HOST, HOST, "other.test", "other.test"] {
        r.client
            .request("GET", &r.url(host, logo3), &cookie, Vec::new())
            .await;
    }
    assert_eq!(fixture.count(logo3), 2);

    // Other spellings of a kept target are neither served from its entry
    // nor kept under their own.
    get(&r, small, &cookie, false).await;
    assert_eq!(fixture.count(small), 2);
    for odd in [
        "/web/image/res.company/1//logo?unique=9",
        "/web/image/res.company/1/%6cogo?unique=9",
        "/web/image/res.company/1/logo/?unique=9",
    ] {
        for _ in 0..2 {
            assert_eq!(get(&r, odd, &cookie, false).await.status, 200, "{odd}");
        }
        assert_eq!(fixture.count(odd), 2, "{odd}");
    }
    assert_eq!(fixture.count(small), 2);

    // Credentials other than the session cookie: never answered from or kept in the cache.
    for _ in 0..2 {
        get(
            &r,
            small,
            &[("cookie", &c), ("authorization", "Basic YWRtaW46YWRtaW4=")],
            false,
        )
        .await;
    }
    assert_eq!(fixture.count(small), 4);

    // A bundle larger than max_entry: passed through whole, every time.
    let want = OdooFixture::bundle_body(BUNDLE);
    for _ in 0..2 {
        let res = get(&r, BUNDLE, &cookie, false).await;
        assert_eq!(res.body, want);
    }
    assert_eq!(fixture.count(BUNDLE), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_disk_tier_keeps_entries_across_a_restart() {
    use std::os::unix::fs::PermissionsExt;
    let fixture = OdooFixture::start().await;
    let mut r = start(&fixture, "\n[site.cache]\ndisk = \"64MiB\"\n").await;
    let (sid, _) = fixture.login_form_session();
    let c = format!("session_id={sid}");
    let want = OdooFixture::bundle_body(BUNDLE);
    assert_eq!(get(&r, BUNDLE, &[("cookie", &c)], false).await.body, want);
    let dir = r.state_dir.join("cache");
    // Written off the request's path: wait for the file.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let file = loop {
        let files: Vec<_> = std::fs::read_dir(&dir)
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        if let [f] = files.as_slice()
            && !f.file_name().unwrap().to_string_lossy().starts_with('.')
        {
            break f.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no cache file in {}",
            dir.display()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // A half-written file left by a crash is removed at start.
    std::fs::write(dir.join(".tmp-crashed"), b"rampart-cache 1\n{").unwrap();

    r.restart().await;
    for h2 in [false, true] {
        let res = get(&r, BUNDLE, &[("cookie", &c)], h2).await;
        assert_eq!(res.body, want);
    }
    assert_eq!(fixture.count(BUNDLE), 1, "fetched again after the restart");
    assert!(!dir.join(".tmp-crashed").exists());

    // A body damaged on disk is never served: fetched from Odoo again.
    r.restart().await;
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x20;
    std::fs::write(&file, bytes).unwrap();
    assert_eq!(get(&r, BUNDLE, &[("cookie", &c)], false).await.body, want);
    assert_eq!(fixture.count(BUNDLE), 2);
}
