//! Issue 2, behaviours 7 and 8: static files from addons_path (caching,
//! ranges, types, no traversal) and X-Accel-Redirect filestore downloads.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Rampart, Setup, Site, TempDir, raw_status};
use rampart_testkit::{FixtureOptions, OdooFixture, raw_exchange};

const SECRET: &str = "TOP-SECRET-OUTSIDE-ADDONS";
/// Our own PNG bytes, different from the fixture's, so a fixture answer is recognisable.
const LOGO: &[u8] = b"\x89PNG\r\n\x1a\n-rampart-disk-logo-";

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn app_js() -> String {
    let mut s = String::from("/* served from disk by rampart */\n");
    for i in 0..200 {
        s.push_str(&format!(
            "odoo.define('m{i}', function () {{ return {i}; }});\n"
        ));
    }
    s
}

/// addons/web/static/{img/logo.png, src/app.js, link.txt -> ../../../secret.txt}, secret.txt outside.
fn addons(dir: &TempDir) -> std::path::PathBuf {
    let addons = dir.path().join("addons");
    write(&addons.join("web/static/img/logo.png"), LOGO);
    write(&addons.join("web/static/src/app.js"), app_js().as_bytes());
    write(
        &addons.join("web/static/src/style.css"),
        b"body { color: #333; }\n",
    );
    write(&dir.path().join("secret.txt"), SECRET.as_bytes());
    write(&addons.join("web/secret.txt"), SECRET.as_bytes());
    std::os::unix::fs::symlink(
        dir.path().join("secret.txt"),
        addons.join("web/static/link.txt"),
    )
    .unwrap();
    std::os::unix::fs::symlink(dir.path(), addons.join("web/static/linkdir")).unwrap();
    addons
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_files_are_served_from_addons_path() {
    let dir = TempDir::new("addons");
    let addons = addons(&dir);
    let fixture = OdooFixture::start().await;
    let site = Site::new("erp.test", &fixture).extra(&format!(
        "addons_path = [{:?}]",
        addons.display().to_string()
    ));
    let r = Rampart::start(Setup::site(site)).await;

    let res = r.get("erp.test", "/web/static/img/logo.png").await;
    assert_eq!(res.status, 200);
    assert_eq!(res.body, LOGO);
    assert_eq!(res.header("content-type"), Some("image/png"));
    assert_eq!(res.header("cache-control"), Some("public, max-age=604800"));
    assert!(
        res.header("content-security-policy")
            .is_some_and(|v| v.starts_with("default-src 'none'")),
        "{:?}",
        res.header("content-security-policy")
    );
    assert!(res.header("strict-transport-security").is_some());
    let etag = res.header("etag").expect("ETag").to_string();
    let last_modified = res
        .header("last-modified")
        .expect("Last-Modified")
        .to_string();

    let res = r
        .client
        .request(
            "GET",
            &r.url("erp.test", "/web/static/img/logo.png"),
            &[("if-none-match", &etag)],
            vec![],
        )
        .await;
    assert_eq!(res.status, 304);
    assert!(res.body.is_empty());
    let res = r
        .client
        .request(
            "GET",
            &r.url("erp.test", "/web/static/img/logo.png"),
            &[("if-modified-since", &last_modified)],
            vec![],
        )
        .await;
    assert_eq!(res.status, 304);
    let res = r
        .client
        .request(
            "GET",
            &r.url("erp.test", "/web/static/img/logo.png"),
            &[("if-none-match", "\"other\"")],
            vec![],
        )
        .await;
    assert_eq!(res.status, 200);

    let js = app_js();
    let res = r.get("erp.test", "/web/static/src/app.js").await;
    assert_eq!(res.status, 200);
    assert_eq!(res.text(), js);
    let ct = res.header("content-type").unwrap();
    assert!(
        ct.starts_with("text/javascript") || ct.starts_with("application/javascript"),
        "{ct}"
    );
    let res = r.get("erp.test", "/web/static/src/style.css").await;
    assert!(res.header("content-type").unwrap().starts_with("text/css"));

    // Range: 206 with exactly those bytes, never compressed.
    let res = r
        .client
        .request(
            "GET",
            &r.url("erp.test", "/web/static/src/app.js"),
            &[
                ("range", "bytes=10-29"),
                ("accept-encoding", "gzip, br, zstd"),
            ],
            vec![],
        )
        .await;
    assert_eq!(res.status, 206);
    assert_eq!(
        res.header("content-range"),
        Some(format!("bytes 10-29/{}", js.len()).as_str())
    );
    assert_eq!(res.body, &js.as_bytes()[10..30]);
    assert!(res.header("content-encoding").is_none());
    // Over HTTP/2 as well.
    let res = r
        .client
        .request_h2(
            "GET",
            &r.url("erp.test", "/web/static/src/app.js"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.text(), js);
    // HEAD: headers only.
    let res = r
        .client
        .request(
            "HEAD",
            &r.url("erp.test", "/web/static/img/logo.png"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(res.status, 200);
    assert!(res.body.is_empty());

    assert_eq!(
        fixture.count("/web/static"),
        0,
        "disk files reached Odoo: {:?}",
        fixture.requests()
    );

    // Missing on disk: Odoo answers.
    let res = r.get("erp.test", "/web/static/upstream-only.js").await;
    assert_eq!(res.status, 200);
    assert!(res.text().contains("UPSTREAM-REACHED"));
    assert_eq!(fixture.count("/web/static/upstream-only.js"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_paths_cannot_escape_addons_path() {
    let dir = TempDir::new("traversal");
    let addons = addons(&dir);
    let fixture = OdooFixture::start().await;
    let site = Site::new("erp.test", &fixture).extra(&format!(
        "addons_path = [{:?}]",
        addons.display().to_string()
    ));
    let r = Rampart::start(Setup::site(site)).await;
    let attempts = [
        "/web/static/../../../secret.txt",
        "/web/static/../secret.txt",
        "/web/static/%2e%2e/secret.txt",
        "/web/static/%2e%2e/%2e%2e/%2e%2e/secret.txt",
        "/web/static/%252e%252e/secret.txt",
        "/web/static/%252e%252e/%252e%252e/%252e%252e/secret.txt",
        "/web/static/..%2fsecret.txt",
        "/web/static/..%2f..%2f..%2fsecret.txt",
        "/web/static/..%5c..%5c..%5csecret.txt",
        "/web/static/..\\..\\..\\secret.txt",
        "/web/static/.%2e/.%2e/.%2e/secret.txt",
        "/web/static/link.txt",
        "/web/static/linkdir/secret.txt",
        "/web/static/src/../../secret.txt",
        "/web/static//..//..//secret.txt",
        "/web/static/%2fetc%2fpasswd",
        "/web/static//etc/passwd",
        "/web/static/..%00/secret.txt",
    ];
    // Control: the same raw request for a real file does return its bytes.
    let raw = raw_exchange(
        r.https,
        Some((&r.ca_path(), "erp.test")),
        b"GET /web/static/src/style.css HTTP/1.1\r\nHost: erp.test\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    assert!(String::from_utf8_lossy(&raw).contains("color: #333"));
    for target in attempts {
        let req = format!("GET {target} HTTP/1.1\r\nHost: erp.test\r\nConnection: close\r\n\r\n");
        let raw = raw_exchange(
            r.https,
            Some((&r.ca_path(), "erp.test")),
            req.as_bytes(),
            Duration::from_secs(10),
        )
        .await;
        let text = String::from_utf8_lossy(&raw);
        assert_ne!(raw_status(&raw), 0, "{target}: no answer");
        assert!(
            !text.contains(SECRET),
            "{target} served a file outside addons_path:\n{text}"
        );
        assert!(!text.contains("root:x:0:0"), "{target} served /etc/passwd");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_accel_redirect_serves_the_filestore_file() {
    let dir = TempDir::new("datadir");
    let data_dir = dir.path().join("odoo-data");
    let fixture = OdooFixture::start_with(FixtureOptions {
        filestore_dir: Some(data_dir.join("filestore")),
        ..FixtureOptions::default()
    })
    .await;
    let site = Site::new("erp.test", &fixture)
        .extra(&format!("data_dir = {:?}", data_dir.display().to_string()));
    let r = Rampart::start(Setup::site(site)).await;

    let content: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let (id, sha1) = fixture.add_attachment(&content);
    let res = r.get("erp.test", &format!("/web/content/{id}")).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert!(
        res.body == content,
        "attachment bytes differ ({} bytes)",
        res.body.len()
    );
    assert_eq!(res.header("content-type"), Some("application/octet-stream"));
    assert_eq!(
        res.header("content-disposition"),
        Some(format!("attachment; filename=attachment-{id}.bin").as_str())
    );
    assert!(res.header("x-accel-redirect").is_none());
    assert_eq!(
        res.header("strict-transport-security"),
        Some("max-age=31536000; includeSubDomains")
    );
    assert_eq!(res.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(res.header("server"), Some("rampart"));
    // Ranges on the download (resumable downloads).
    let res = r
        .client
        .request(
            "GET",
            &r.url("erp.test", &format!("/web/content/{id}")),
            &[("range", "bytes=0-99")],
            vec![],
        )
        .await;
    assert_eq!(res.status, 206);
    assert_eq!(res.body, &content[..100]);
    // Over HTTP/2.
    let res = r
        .client
        .request_h2(
            "GET",
            &r.url("erp.test", &format!("/web/content/{id}")),
            &[],
            vec![],
        )
        .await;
    assert_eq!(res.status, 200);
    assert!(res.body == content);

    // The internal path is not reachable from outside, however spelt.
    let internal = format!("/web/filestore/{}/{}/{sha1}", fixture.db(), &sha1[..2]);
    let before = fixture.requests().len();
    for target in [
        internal.clone(),
        internal.replace("/web/filestore", "/web/%66ilestore"),
        internal.replace("/web/filestore", "/WEB/FILESTORE"),
        internal.replace("/web/filestore", "//web//filestore"),
        internal.replace("/web/filestore", "/web/static/../filestore"),
    ] {
        let req = format!("GET {target} HTTP/1.1\r\nHost: erp.test\r\nConnection: close\r\n\r\n");
        let raw = raw_exchange(
            r.https,
            Some((&r.ca_path(), "erp.test")),
            req.as_bytes(),
            Duration::from_secs(10),
        )
        .await;
        // Dot segments are refused before routing (400), the rest is 404.
        let expected = if target.contains("..") { 400 } else { 404 };
        assert_eq!(
            raw_status(&raw),
            expected,
            "{target}: {}",
            String::from_utf8_lossy(&raw)
        );
        assert!(
            !raw.windows(100).any(|w| w == &content[..100]),
            "{target} served the file"
        );
    }
    assert_eq!(
        fixture.requests().len(),
        before,
        "internal paths reached Odoo"
    );
}

/// Issue 10, behaviour 5: a static file is compressed once per encoding
/// (and made again when the file changes); a precompressed `.gz` beside it
/// is sent as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_files_are_compressed_once_and_precompressed_files_used_as_they_are() {
    use std::io::{Read, Write};
    let dir = TempDir::new("addons-gz");
    let addons = addons(&dir);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(b"FROM THE PRECOMPRESSED FILE").unwrap();
    write(&addons.join("web/static/src/pre.js"), app_js().as_bytes());
    write(
        &addons.join("web/static/src/pre.js.gz"),
        &gz.finish().unwrap(),
    );
    let fixture = OdooFixture::start().await;
    let site = Site::new("erp.test", &fixture).extra(&format!(
        "addons_path = [{:?}]",
        addons.display().to_string()
    ));
    let r = Rampart::start(Setup::site(site)).await;
    let gunzip = |b: &[u8]| {
        let mut s = String::new();
        flate2::read::GzDecoder::new(b)
            .read_to_string(&mut s)
            .unwrap();
        s
    };
    let get = async |path: &str, h: &[(&str, &str)]| {
        r.client
            .request("GET", &r.url("erp.test", path), h, Vec::new())
            .await
    };
    let gzip = [("accept-encoding", "gzip")];
    let a = get("/web/static/src/app.js", &gzip).await;
    assert_eq!(a.header("content-encoding"), Some("gzip"));
    assert_eq!(gunzip(&a.body), app_js());
    let b = get("/web/static/src/app.js", &gzip).await;
    assert_eq!(a.body, b.body, "the same variant");
    let etag = a.header("etag").unwrap().to_string();
    assert!(etag.starts_with("W/"), "{etag}");
    let nm = get(
        "/web/static/src/app.js",
        &[("accept-encoding", "gzip"), ("if-none-match", &etag)],
    )
    .await;
    assert_eq!(nm.status, 304);
    // The module is upgraded: a new size and mtime, a new variant.
    let newer = app_js() + "// upgraded\n";
    write(&addons.join("web/static/src/app.js"), newer.as_bytes());
    let c = get("/web/static/src/app.js", &gzip).await;
    assert_eq!(gunzip(&c.body), newer);

    let p = get("/web/static/src/pre.js", &gzip).await;
    assert_eq!(p.header("content-encoding"), Some("gzip"));
    assert_eq!(gunzip(&p.body), "FROM THE PRECOMPRESSED FILE");
    assert_eq!(
        p.header("content-type"),
        Some("application/javascript; charset=utf-8")
    );
    // Without gzip accepted: the file itself.
    let plain = get("/web/static/src/pre.js", &[]).await;
    assert_eq!(plain.text(), app_js());
    assert_eq!(fixture.count("/web/static/"), 0);
}
