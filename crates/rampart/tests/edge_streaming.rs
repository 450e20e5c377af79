//! Issue 2, behaviour 6 (streaming) and 9 (max_body): a 2 GB download and a
//! 500 MB upload pass with the rampart process's memory flat; a body over
//! max_body is refused with 413 before Odoo sees it.
//!
//! curl is the client here: the test's own clients keep bodies in memory.

mod common;

use std::process::Command;

use common::{Rampart, Setup, Site, require_program};
use rampart_testkit::OdooFixture;

const DOWNLOAD_BYTES: u64 = 2 * 1024 * 1024 * 1024;
const UPLOAD_BYTES: u64 = 500 * 1024 * 1024;
/// The peak RSS may grow by at most this while a transfer runs: buffers,
/// not bodies.
const RSS_GROWTH_LIMIT_KIB: u64 = 64 * 1024;

fn curl(r: &Rampart, args: &[&str]) -> (String, String) {
    let resolve = format!("erp.test:{}:127.0.0.1", r.https.port());
    let out = Command::new("curl")
        .args(["-sS", "--http1.1", "--max-time", "170", "--cacert"])
        .arg(r.ca_path())
        .args(["--resolve", &resolve])
        .args(args)
        .output()
        .expect("curl");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// curl, required: a missing one fails the test by name.
fn need_curl() {
    require_program("curl", "curl");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gigabyte_download_streams_with_flat_memory() {
    need_curl();
    let fixture = OdooFixture::start().await;
    let r = Rampart::start(Setup::site(Site::new("erp.test", &fixture))).await;
    // Warm up: the first TLS connection and pools allocate once.
    assert_eq!(r.get("erp.test", "/web/login").await.status, 200);
    let before = r.vm_hwm_kib();
    let url = r.url("erp.test", &format!("/download?bytes={DOWNLOAD_BYTES}"));
    let started = std::time::Instant::now();
    let (out, err) = tokio::task::block_in_place(|| {
        curl(
            &r,
            &[
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{size_download}",
                &url,
            ],
        )
    });
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(out, format!("200 {DOWNLOAD_BYTES}"), "curl: {err}");
    let after = r.vm_hwm_kib();
    println!(
        "2 GiB download: {:.1} s ({:.0} MB/s); rampart VmHWM {before} kB -> {after} kB",
        secs,
        DOWNLOAD_BYTES as f64 / secs / 1e6
    );
    assert!(
        after.saturating_sub(before) < RSS_GROWTH_LIMIT_KIB,
        "rampart's peak RSS grew from {before} kB to {after} kB during a 2 GiB download"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_megabyte_upload_streams_with_flat_memory() {
    need_curl();
    let fixture = OdooFixture::start().await;
    let site = Site::new("erp.test", &fixture).extra("max_body = \"1GiB\"");
    let r = Rampart::start(Setup::site(site)).await;
    assert_eq!(r.get("erp.test", "/web/login").await.status, 200);
    // A sparse file: the upload's bytes cost no disk.
    let file = r.dir.path().join("upload.bin");
    std::fs::File::create(&file)
        .unwrap()
        .set_len(UPLOAD_BYTES)
        .unwrap();
    let url = r.url("erp.test", "/upload");
    let before = r.vm_hwm_kib();

    // With Content-Length.
    let started = std::time::Instant::now();
    let (out, err) = tokio::task::block_in_place(|| {
        curl(
            &r,
            &[
                "-X",
                "POST",
                "-H",
                "Content-Type: application/octet-stream",
                "-T",
                file.to_str().unwrap(),
                &url,
            ],
        )
    });
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(
        out.trim(),
        format!("{{\"received\":{UPLOAD_BYTES}}}"),
        "curl: {err}"
    );
    println!("500 MiB upload (Content-Length): {secs:.1} s");

    // Chunked (curl reads stdin, so it cannot know the length).
    let mut head = Command::new("head")
        .args(["-c", &UPLOAD_BYTES.to_string(), "/dev/zero"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let resolve = format!("erp.test:{}:127.0.0.1", r.https.port());
    let started = std::time::Instant::now();
    let out = tokio::task::block_in_place(|| {
        Command::new("curl")
            .args(["-sS", "--http1.1", "--max-time", "170", "--cacert"])
            .arg(r.ca_path())
            .args([
                "--resolve",
                &resolve,
                "-X",
                "POST",
                "-H",
                "Content-Type: application/octet-stream",
                "-T",
                "-",
                &url,
            ])
            .stdin(head.stdout.take().unwrap())
            .output()
            .unwrap()
    });
    let _ = head.wait();
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{{\"received\":{UPLOAD_BYTES}}}"),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("500 MiB upload (chunked): {secs:.1} s");
    let seen = fixture.requests();
    let uploads: Vec<_> = seen.iter().filter(|s| s.target == "/upload").collect();
    assert_eq!(uploads.len(), 2);
    assert!(
        uploads.iter().all(|u| u.body_len == UPLOAD_BYTES),
        "{uploads:?}"
    );

    let after = r.vm_hwm_kib();
    println!("rampart VmHWM {before} kB -> {after} kB over two 500 MiB uploads");
    assert!(
        after.saturating_sub(before) < RSS_GROWTH_LIMIT_KIB,
        "rampart's peak RSS grew from {before} kB to {after} kB during 500 MiB uploads"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_max_body_gets_413_before_odoo_sees_it() {
    let fixture = OdooFixture::start().await;
    let site = Site::new("erp.test", &fixture).extra("max_body = \"1MiB\"");
    let r = Rampart::start(Setup::site(site)).await;
    let res = r
        .client
        .request(
            "POST",
            &r.url("erp.test", "/upload"),
            &[("content-type", "application/octet-stream")],
            vec![b'x'; 2 * 1024 * 1024],
        )
        .await;
    assert_eq!(res.status, 413, "{}", res.text());
    assert!(res.text().contains("max_body"), "{}", res.text());
    assert!(
        res.text().contains("1MiB") || res.text().contains("1 MiB"),
        "{}",
        res.text()
    );
    assert_eq!(fixture.count("/upload"), 0);
    // Just under the limit passes whole.
    let res = r
        .client
        .request(
            "POST",
            &r.url("erp.test", "/upload"),
            &[],
            vec![b'x'; 1024 * 1024 - 10],
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.text(), format!("{{\"received\":{}}}", 1024 * 1024 - 10));
    // Over HTTP/2 too.
    let res = r
        .client
        .request_h2(
            "POST",
            &r.url("erp.test", "/upload"),
            &[],
            vec![b'x'; 2 * 1024 * 1024],
        )
        .await;
    assert_eq!(res.status, 413, "{}", res.text());
    assert_eq!(fixture.count("/upload"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gigabyte_http2_download_streams_with_flat_memory() {
    need_curl();
    let bytes: u64 = 1024 * 1024 * 1024;
    let fixture = OdooFixture::start().await;
    let r = Rampart::start(Setup::site(Site::new("erp.test", &fixture))).await;
    assert_eq!(r.get("erp.test", "/web/login").await.status, 200);
    let before = r.vm_hwm_kib();
    let url = r.url("erp.test", &format!("/download?bytes={bytes}"));
    let (out, err) = tokio::task::block_in_place(|| {
        curl(
            &r,
            &[
                "--http2",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{size_download} %{http_version}",
                &url,
            ],
        )
    });
    assert_eq!(out, format!("200 {bytes} 2"), "curl: {err}");
    let after = r.vm_hwm_kib();
    println!("1 GiB h2 download: rampart VmHWM {before} kB -> {after} kB");
    assert!(
        after.saturating_sub(before) < RSS_GROWTH_LIMIT_KIB,
        "rampart's peak RSS grew from {before} kB to {after} kB during a 1 GiB HTTP/2 download"
    );
}
