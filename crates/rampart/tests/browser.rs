//! A real browser through `rampart serve` (issue 9): headless Chromium, driven over WebDriver, in
//! front of the Odoo fixture, over HTTP/2 and over HTTP/1.1. It opens /web/login, logs in through
//! the form (the fixture enforces Odoo's CSRF rule, so a session cookie damaged on the way fails
//! here as it does in front of a real Odoo), checks the web client loads with no 4xx and no console
//! error and that its bus websocket connects, uploads a 20 MB attachment and downloads it back
//! through X-Accel-Redirect, and logs out. The protocol used is read from Rampart's access log.
//! A failed step saves a screenshot under the target dir and prints its path.
//!
//! The status page (issue 15) is read in the same browser over a live upstream, a dead one, a ban
//! and a stale backup, asserting what a person looks for; its screenshot is always kept.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{Rampart, Setup, Site, TempDir, run_cli};
use rampart_testkit::{Browser, BrowserOptions, FixtureOptions, OdooFixture};
use serde_json::{Value, json};

const HOST: &str = "erp.browser.test";
const UPLOAD_BYTES: usize = 20 * 1024 * 1024;
const STEP_LIMIT: Duration = Duration::from_secs(20);

struct Run {
    browser: Browser,
    rampart: Rampart,
    name: &'static str,
}

impl Run {
    /// Panics with `what`, after saving a screenshot and the page's text.
    async fn fail<T>(&self, what: String) -> T {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser-failures");
        let _ = std::fs::create_dir_all(&dir);
        let shot = dir.join(format!("{}-{}.png", self.name, std::process::id()));
        let saved = match self.browser.screenshot(&shot).await {
            Ok(p) => format!("screenshot: {}", p.display()),
            Err(e) => format!("no screenshot ({e})"),
        };
        let url = self.browser.current_url().await;
        let page = self
            .browser
            .execute(
                "return document.body ? document.body.innerText : ''",
                vec![],
            )
            .await;
        panic!(
            "{}: {what}\n{saved}\nurl: {url}\npage text: {}\naccess log (tail):\n{}\nrampart stderr (tail):\n{}",
            self.name,
            page.as_str()
                .unwrap_or_default()
                .chars()
                .take(600)
                .collect::<String>(),
            tail(&self.rampart.access_log_text(), 12),
            tail(&self.rampart.stderr(), 20)
        );
    }

    async fn element(&self, css: &str) -> String {
        match self.browser.wait_for(css, STEP_LIMIT).await {
            Ok(el) => el,
            Err(e) => self.fail(e).await,
        }
    }

    async fn ensure(&self, ok: bool, what: impl Fn() -> String) {
        if !ok {
            self.fail::<()>(what()).await;
        }
    }

    /// Console entries at level SEVERE (JS errors, failed loads) since the last call.
    async fn console_errors(&self) -> Vec<Value> {
        self.browser
            .console()
            .await
            .into_iter()
            .filter(|e| e["level"] == "SEVERE")
            .collect()
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Deterministic bytes that no compression or sniffing shortcut can fake.
fn upload_content() -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..UPLOAD_BYTES)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

const UPLOAD_AND_DOWNLOAD: &str = r#"
const done = arguments[arguments.length - 1];
(async () => {
    const up = await fetch('/web/binary/upload_attachment', {method: 'POST', body: new FormData(document.getElementById('upload'))});
    const text = await up.text();
    let list;
    try { list = JSON.parse(text); } catch (e) { return done({upload_status: up.status, upload_body: text.slice(0, 300)}); }
    const id = list[0].id;
    const down = await fetch('/web/content/' + id + '?download=true');
    const buf = await down.arrayBuffer();
    const digest = await crypto.subtle.digest('SHA-1', buf);
    const hex = Array.from(new Uint8Array(digest)).map(b => b.toString(16).padStart(2, '0')).join('');
    done({upload_status: up.status, id: id, size: list[0].size, download_status: down.status,
          length: buf.byteLength, sha1: hex, accel: down.headers.get('x-accel-redirect')});
})().catch(e => done({error: String(e)}));
"#;

async fn browse(name: &'static str, http1_only: bool) {
    let dir = TempDir::new("browser");
    let data_dir = dir.path().join("odoo-data");
    let fixture = OdooFixture::start_with(FixtureOptions {
        filestore_dir: Some(data_dir.join("filestore")),
        ..FixtureOptions::default()
    })
    .await;
    let site = Site::new(HOST, &fixture)
        .extra(&format!("data_dir = {:?}", data_dir.display().to_string()));
    let rampart = Rampart::start(Setup::site(site)).await;
    let browser = Browser::start(BrowserOptions {
        hosts: vec![HOST.to_string()],
        disable_http2: http1_only,
    })
    .await;
    let run = Run {
        browser,
        rampart,
        name,
    };
    let b = &run.browser;
    let protocol = if http1_only { "HTTP/1.1" } else { "HTTP/2.0" };

    // 1. The login page, and the form posted as a user would.
    b.goto(&run.rampart.url(HOST, "/web/login")).await;
    let login = run.element("input[name=login]").await;
    b.send_keys(&login, "admin").await;
    let password = run.element("input[name=password]").await;
    b.send_keys(&password, "admin").await;
    let submit = run.element("button[type=submit]").await;
    b.click(&submit).await;

    // 2. The web client: the page, then its bus websocket.
    let status = run.element("#bus-status").await;
    let deadline = tokio::time::Instant::now() + STEP_LIMIT;
    let mut bus = b.text(&status).await;
    while !bus.starts_with("bus connected") && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        bus = b.text(&status).await;
    }
    run.ensure(bus.starts_with("bus connected"), || {
        format!("the bus websocket did not connect: {bus:?}")
    })
    .await;
    let errors = run.console_errors().await;
    run.ensure(errors.is_empty(), || {
        format!("console errors while logging in: {errors:?}")
    })
    .await;
    let login_line = run
        .rampart
        .wait_access_line(&["\"POST /web/login ", "\" 303 "])
        .await;
    run.ensure(
        login_line.contains(&format!("\"POST /web/login {protocol}\" 303 ")),
        || format!("the login was not over {protocol}: {login_line}"),
    )
    .await;

    // 3. 20 MB up through the form's CSRF token, and back through X-Accel-Redirect.
    let content = upload_content();
    let file = dir.path().join("attachment.bin");
    std::fs::write(&file, &content).unwrap();
    let input = run.element("#ufile").await;
    b.send_keys(&input, &file.display().to_string()).await;
    let got = b.execute_async(UPLOAD_AND_DOWNLOAD, vec![]).await;
    run.ensure(
        got["upload_status"] == 200 && got["download_status"] == 200,
        || format!("upload/download failed: {got}"),
    )
    .await;
    run.ensure(
        got["size"] == json!(UPLOAD_BYTES) && got["length"] == json!(UPLOAD_BYTES),
        || format!("sizes differ from {UPLOAD_BYTES}: {got}"),
    )
    .await;
    let stored = fixture.attachments();
    run.ensure(stored.len() == 1, || {
        format!("the fixture stored {stored:?}")
    })
    .await;
    let (id, sha1) = &stored[0];
    let on_disk = data_dir
        .join("filestore")
        .join(fixture.db())
        .join(&sha1[..2])
        .join(sha1);
    let disk = std::fs::read(&on_disk).unwrap_or_default();
    run.ensure(disk == content, || {
        format!("{} differs from the uploaded file", on_disk.display())
    })
    .await;
    run.ensure(got["sha1"] == sha1.as_str() && got["id"] == *id, || {
        format!("the download is not the uploaded file (sha1 {sha1}, id {id}): {got}")
    })
    .await;
    run.ensure(got["accel"].is_null(), || {
        format!("X-Accel-Redirect leaked to the browser: {got}")
    })
    .await;
    let content_seen = fixture
        .requests()
        .into_iter()
        .filter(|r| r.path == format!("/web/content/{id}"))
        .count();
    run.ensure(content_seen == 1, || {
        format!("the download did not go through Odoo's X-Accel-Redirect answer ({content_seen} requests)")
    })
    .await;

    // 4. Log out: back to the login form.
    let logout = run.element("#logout").await;
    b.click(&logout).await;
    run.element("input[name=login]").await;
    let url = b.current_url().await;
    run.ensure(url.contains("/web/login"), || {
        format!("logout ended on {url}")
    })
    .await;

    // 5. No console error, no 4xx/5xx anywhere, the protocol as asked.
    let errors = run.console_errors().await;
    run.ensure(errors.is_empty(), || format!("console errors: {errors:?}"))
        .await;
    let log = run.rampart.access_log_text();
    let bad: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.split("\" ")
                .nth(1)
                .and_then(|rest| rest.split(' ').next())
                .and_then(|s| s.parse::<u16>().ok())
                .is_none_or(|s| s >= 400)
        })
        .collect();
    run.ensure(bad.is_empty(), || format!("failed requests: {bad:#?}"))
        .await;
    let pages: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"GET /odoo ") || l.contains("\"GET /web/login"))
        .collect();
    run.ensure(
        !pages.is_empty() && pages.iter().all(|l| l.contains(&format!(" {protocol}\" "))),
        || format!("pages not all over {protocol}: {pages:#?}"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_logs_in_uploads_and_downloads_over_http2() {
    browse("h2", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_logs_in_uploads_and_downloads_over_http1() {
    browse("h1", true).await;
}

/// Issue 10: a second visitor's page load (a fresh browser, so nothing
/// comes from the browser's own cache) gets every asset bundle from
/// Rampart's edge cache; none reaches Odoo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_page_load_sends_no_asset_request_to_odoo() {
    let fixture = OdooFixture::start().await;
    let mut rampart = Rampart::start(Setup::site(Site::new(HOST, &fixture))).await;
    let mut cold = 0;
    for visitor in ["first", "second"] {
        let browser = Browser::start(BrowserOptions {
            hosts: vec![HOST.to_string()],
            disable_http2: false,
        })
        .await;
        let run = Run {
            browser,
            rampart,
            name: visitor,
        };
        run.browser.goto(&run.rampart.url(HOST, "/web/login")).await;
        run.element("input[name=login]").await;
        // Every stylesheet applied (loaded, from wherever).
        let deadline = tokio::time::Instant::now() + STEP_LIMIT;
        let mut sheets = 0;
        while tokio::time::Instant::now() < deadline {
            sheets = run
                .browser
                .execute("return document.styleSheets.length", vec![])
                .await
                .as_u64()
                .unwrap_or(0);
            if sheets >= 60 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        run.ensure(sheets >= 60, || format!("{sheets} stylesheets loaded"))
            .await;
        let asked = fixture.count("/web/assets/");
        if visitor == "first" {
            run.ensure(asked == 60, || {
                format!("the first page load asked Odoo for {asked} bundles, not 60")
            })
            .await;
            cold = asked;
        } else {
            run.ensure(asked == cold, || {
                format!(
                    "the second page load asked Odoo for {} bundles",
                    asked - cold
                )
            })
            .await;
            run.rampart
                .wait_access_line(&["/web/assets/", "cache=hit"])
                .await;
        }
        rampart = run.rampart;
    }
}

/// What a person reads on the status page, gathered in the browser: each table row's cells and
/// the colour each is painted in.
const STATUS_ROWS: &str = r#"
return Array.from(document.querySelectorAll('tr')).map(tr => {
    const cells = Array.from(tr.children);
    return {cells: cells.map(c => c.innerText.trim()), colors: cells.map(c => getComputedStyle(c).color)};
});
"#;

/// Red, as `.bad` paints it (#b00020).
const RED: &str = "rgb(176, 0, 32)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_a_person_what_is_wrong() {
    let dir = TempDir::new("status-browser");
    // Two backup targets: one written to a minute ago, one not since 2020.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let snapshot = |target: &str, secs: u64, db: &str| {
        let index = dir.path().join(target).join("index");
        std::fs::create_dir_all(&index).unwrap();
        let out = std::process::Command::new("date")
            .args(["-u", "-d", &format!("@{secs}"), "+%Y%m%dT%H%M%SZ"])
            .output()
            .unwrap();
        let stamp = String::from_utf8(out.stdout).unwrap();
        let id = format!("{}-{db}-a1b2c3", stamp.trim());
        std::fs::write(
            index.join(format!("{id}.json")),
            json!({"format": 1, "id": id, "db": db, "time": "", "dump_size": 0,
                   "blobs": [], "filestore_bytes": 0})
            .to_string(),
        )
        .unwrap();
    };
    snapshot("fresh", now - 60, "odoo");
    snapshot("offsite", 1_577_836_800, "odoo");
    // An hourly run 45 minutes ago: past its grace, so the 2020 snapshot is overdue.
    let minute = (now / 60 + 15) % 60;
    let fixture = OdooFixture::start().await;
    let checks = "[site.health_check]\ninterval = \"1s\"\ntimeout = \"1s\"\nfall = 1";
    let setup = Setup {
        sites: vec![
            Site::new(HOST, &fixture).extra(checks),
            Site::unreachable("dead.browser.test").extra(checks),
        ],
        extra: format!(
            "\n[backup]\nschedule = \"hourly :{minute:02}\"\n\
             [[backup.target]]\nname = \"fresh\"\nurl = \"file://{}\"\n\
             [[backup.target]]\nname = \"offsite\"\nurl = \"file://{}\"\n",
            dir.path().join("fresh").display(),
            dir.path().join("offsite").display()
        ),
        ..Setup::default()
    };
    let rampart = Rampart::start(setup).await;
    let cfg = rampart.config_path.to_str().unwrap();
    let (code, out, err) = run_cli(&[
        "bans",
        "--config",
        cfg,
        "ban",
        "198.51.100.23",
        "--for",
        "2h",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let dead = rampart.setup.sites[1].odoo[0].clone();
    let browser = Browser::start(BrowserOptions::default()).await;
    let run = Run {
        browser,
        rampart,
        name: "status",
    };
    let b = &run.browser;
    let url = format!("http://{}/", run.rampart.admin);

    // The page refreshes itself; reload until the dead upstream's check has failed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let rows = loop {
        b.goto(&url).await;
        let rows = b.execute(STATUS_ROWS, vec![]).await;
        let rows = rows.as_array().cloned().unwrap_or_default();
        let down = rows.iter().any(|r| {
            r["cells"][0] == dead.as_str() && r["cells"][2] == "DOWN" && r["colors"][2] == RED
        });
        if down || tokio::time::Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let shown = format!("{rows:#?}");
    let row = |first: &str| rows.iter().find(|r| r["cells"][0] == first).cloned();
    // The dead upstream: DOWN, in red; the live one healthy, not red.
    let dead_row = row(&dead);
    run.ensure(
        dead_row
            .as_ref()
            .is_some_and(|r| r["cells"][2] == "DOWN" && r["colors"][2] == RED),
        || format!("the dead upstream {dead} is not shown DOWN in red: {shown}"),
    )
    .await;
    let live = fixture.http_addr.to_string();
    run.ensure(
        row(&live).is_some_and(|r| r["cells"][2] == "healthy" && r["colors"][2] != RED),
        || format!("the live upstream {live} is not shown healthy: {shown}"),
    )
    .await;
    // The ban's address is listed.
    run.ensure(row("198.51.100.23").is_some(), || {
        format!("the banned address is not listed: {shown}")
    })
    .await;
    // The stale backup is marked overdue in red; the fresh one is not.
    let offsite = row("offsite");
    run.ensure(
        offsite.as_ref().is_some_and(|r| {
            r["colors"][3] == RED
                && r["cells"][3].as_str().unwrap_or("").contains("OVERDUE")
                && r["cells"][2]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("20200101T000000Z-odoo-")
        }),
        || format!("the 2020 backup is not marked overdue in red: {shown}"),
    )
    .await;
    run.ensure(
        row("fresh").is_some_and(|r| {
            r["colors"][3] != RED && r["cells"][3].as_str().unwrap_or("").ends_with("min")
        }),
        || format!("the fresh backup is not shown fresh: {shown}"),
    )
    .await;

    // The picture a person saw, kept as a CI artefact.
    let shots = std::env::var_os("CI_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots"));
    std::fs::create_dir_all(&shots).unwrap();
    let height = b
        .execute("return document.documentElement.scrollHeight", vec![])
        .await
        .as_u64()
        .unwrap_or(2000);
    b.set_window_size(1280, (height as u32 + 150).min(6000))
        .await;
    let shot = b
        .screenshot(&shots.join("status-page.png"))
        .await
        .unwrap_or_else(|e| panic!("no screenshot of the status page: {e}"));
    let len = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(len > 1000, "{} is {len} bytes", shot.display());
    println!("status page screenshot: {}", shot.display());
}
