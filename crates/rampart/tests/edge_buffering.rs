//! Issue 10 §1-2 and issue 9 finding 4: Odoo's few workers are never held
//! by a slow client. Request bodies are received whole (memory, then a
//! private spool file) before Odoo is asked; Odoo's answers are read as
//! fast as Odoo writes them and the slot is freed then; a client that
//! takes no bytes loses its stream after `send_timeout`.

mod common;
mod slots_common;

use std::time::Duration;

use common::{Rampart, Setup, Site};
use rampart_testkit::{FixtureOptions, OdooFixture};
use slots_common::{CALL_LIMIT, Client, HOST, Upload, ip, metric};
use tokio::io::AsyncReadExt;

fn site(fixture: &OdooFixture, extra: &str) -> Setup {
    Setup::site(Site::new(HOST, fixture).extra(extra))
}

fn spool_entries(r: &Rampart) -> Vec<String> {
    match std::fs::read_dir(r.state_dir.join("spool")) {
        Ok(d) => d
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) => panic!("no spool directory in state_dir: {e}"),
    }
}

/// The spool files rampart has open (unlinked, so only /proc shows them).
fn open_spool_files(r: &Rampart) -> usize {
    let spool = r.state_dir.join("spool");
    std::fs::read_dir(format!("/proc/{}/fd", r.pid))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|t| t.starts_with(&spool))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_uploads_do_not_hold_odoo_workers() {
    let fixture = OdooFixture::start_with(FixtureOptions {
        workers: Some(2),
        ..FixtureOptions::default()
    })
    .await;
    let r = Rampart::start(site(&fixture, "")).await;
    let c = Client::new(&r);
    const LEN: usize = 200 * 1024;
    // Three uploads from three addresses: the first 70 KiB at once, then
    // 10 bytes a second.
    let mut uploads = Vec::new();
    for src in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
        uploads.push(Upload::start(&c, ip(src), "/upload", LEN, &vec![b'u'; 70 * 1024]).await);
    }
    let trickle = async {
        for _ in 0..15 {
            for u in uploads.iter_mut() {
                u.send(&[b'u'; 10]).await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(1000)).await;
        }
    };
    let login = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        c.try_send(ip("127.0.0.5"), "GET", "/web/login", vec![])
            .await
    };
    let ((), login) = tokio::join!(trickle, login);
    let login = login.unwrap_or_else(|e| {
        panic!("another client's login was not answered while slow uploads ran: {e}")
    });
    assert_eq!(login.status, 200, "{}", login.text());
    assert_eq!(
        fixture.count("/upload"),
        0,
        "Odoo saw an upload before its body was complete: {:?}",
        fixture.requests()
    );
    // The uploads complete and reach Odoo whole.
    for u in uploads.iter_mut() {
        u.send(&vec![b'u'; LEN - 70 * 1024 - 150]).await.unwrap();
    }
    for u in uploads.iter_mut() {
        let (status, text) = u.answer().await;
        assert_eq!(status, 200, "{text}");
        assert!(text.ends_with(&format!("{{\"received\":{LEN}}}")), "{text}");
    }
    let seen: Vec<_> = fixture
        .requests()
        .into_iter()
        .filter(|s| s.target == "/upload")
        .collect();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|s| s.body_len == LEN as u64), "{seen:?}");
    assert!(
        seen.iter()
            .all(|s| s.header("content-length") == Some("204800")),
        "{seen:?}"
    );
    assert!(metric(&r.metrics().await, "rampart_spooled_bytes") >= 3.0 * LEN as f64);
    assert!(spool_entries(&r).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crawling_upload_gets_408_and_never_reaches_odoo() {
    let fixture = OdooFixture::start().await;
    let mut setup = site(&fixture, "");
    setup.listen = "client_body_min_rate = \"1KiB\"\nclient_body_grace = \"1s\"".into();
    let r = Rampart::start(setup).await;
    let c = Client::new(&r);
    // Small body (kept in memory): 10 bytes every 100 ms, never silent long
    // enough for client_body_timeout.
    let mut u = Upload::start(&c, ip("127.0.0.2"), "/upload", 4096, b"x").await;
    let crawl = async {
        for _ in 0..100 {
            if u.send(&[b'a'; 10]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(8), crawl)
        .await
        .ok();
    let (status, text) = u.answer().await;
    assert_eq!(status, 408, "{text}");
    assert!(text.contains("too slowly"), "{text}");
    assert_eq!(fixture.count("/upload"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn spool_files_are_private_unlinked_and_cleaned_after_kill_9() {
    let fixture = OdooFixture::start().await;
    let mut r = Rampart::start(site(&fixture, "")).await;
    let c = Client::new(&r);
    let spool = r.state_dir.join("spool");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&spool).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "spool dir mode {mode:o}");
    // A 1 MiB upload, half sent: spooled, open, and already unlinked.
    const LEN: usize = 1024 * 1024;
    let mut u = Upload::start(&c, ip("127.0.0.2"), "/upload", LEN, &vec![b's'; LEN / 2]).await;
    let deadline = tokio::time::Instant::now() + CALL_LIMIT;
    while open_spool_files(&r) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no spool file opened"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(spool_entries(&r).is_empty(), "{:?}", spool_entries(&r));
    u.send(&vec![b's'; LEN / 2]).await.unwrap();
    let (status, text) = u.answer().await;
    assert_eq!(status, 200, "{text}");
    assert!(text.ends_with(&format!("{{\"received\":{LEN}}}")), "{text}");
    assert!(spool_entries(&r).is_empty());
    let deadline = tokio::time::Instant::now() + CALL_LIMIT;
    while open_spool_files(&r) != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "spool file still open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // kill -9 mid-upload, with a file a crash left between create and
    // unlink: the restarted process starts with an empty spool.
    let mut u = Upload::start(&c, ip("127.0.0.2"), "/upload", LEN, &vec![b's'; LEN / 2]).await;
    while open_spool_files(&r) == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    r.signal("KILL");
    r.wait_exit(Duration::from_secs(10)).expect("killed");
    drop(u.send(b"x").await);
    std::fs::write(spool.join("4242-7"), b"left by a crash").unwrap();
    restart(&mut r).await;
    assert!(spool_entries(&r).is_empty(), "{:?}", spool_entries(&r));
    assert_eq!(
        fixture.count("/upload"),
        1,
        "the killed upload never reached Odoo"
    );
}

async fn restart(r: &mut Rampart) {
    let stderr = std::fs::OpenOptions::new()
        .append(true)
        .open(&r.stderr_path)
        .unwrap();
    let child = std::process::Command::new(common::bin())
        .arg("serve")
        .arg("--config")
        .arg(&r.config_path)
        .env("RAMPART_LOG", "info")
        .env_remove("RAMPART_CONFIG")
        .current_dir(r.dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("cannot start rampart again");
    r.pid = child.id();
    r.child = Some(child);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(r.https).await.is_err() {
        if let Some(s) = r.child.as_mut().unwrap().try_wait().unwrap() {
            panic!("rampart exited ({s}) on restart:\n{}", r.stderr());
        }
        assert!(tokio::time::Instant::now() < deadline, "no restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_spool_is_507_and_a_broken_one_503_and_odoo_sees_nothing() {
    let fixture = OdooFixture::start().await;
    let mut setup = site(&fixture, "");
    setup.listen = "spool_max = \"256KiB\"".into();
    let r = Rampart::start(setup).await;
    let c = Client::new(&r);
    let res = c
        .send(ip("127.0.0.2"), "POST", "/upload", vec![b'f'; 1024 * 1024])
        .await;
    assert_eq!(res.status, 507, "{}", res.text());
    assert!(res.text().contains("spool is full"), "{}", res.text());
    // Under the budget passes.
    let res = c
        .send(ip("127.0.0.2"), "POST", "/upload", vec![b'f'; 200 * 1024])
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(fixture.count("/upload"), 1);
    // The spool directory replaced by a file: every create fails.
    let spool = r.state_dir.join("spool");
    std::fs::remove_dir_all(&spool).unwrap();
    std::fs::write(&spool, b"not a directory").unwrap();
    let res = c
        .send(ip("127.0.0.2"), "POST", "/upload", vec![b'f'; 100 * 1024])
        .await;
    assert_eq!(res.status, 503, "{}", res.text());
    assert!(res.headers.contains_key("retry-after"));
    assert!(res.text().contains("could not be stored"), "{}", res.text());
    assert_eq!(
        fixture.count("/upload"),
        1,
        "no half-sent body reached Odoo"
    );
    // Small bodies never touch the spool.
    let res = c
        .send(ip("127.0.0.2"), "POST", "/upload", vec![b'f'; 1000])
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn listed_paths_still_stream_their_bodies() {
    let fixture = OdooFixture::start().await;
    let r = Rampart::start(site(&fixture, "request_streaming = [\"/upload\"]")).await;
    let c = Client::new(&r);
    const LEN: usize = 200 * 1024;
    let mut u = Upload::start(&c, ip("127.0.0.2"), "/upload", LEN, &vec![b'u'; 100 * 1024]).await;
    let deadline = tokio::time::Instant::now() + CALL_LIMIT;
    while fixture.count("/upload") == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a request_streaming path did not stream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    u.send(&vec![b'u'; LEN - 100 * 1024]).await.unwrap();
    let (status, text) = u.answer().await;
    assert_eq!(status, 200, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn zero_window_http2_clients_do_not_hold_odoo_slots() {
    let fixture = OdooFixture::start().await;
    // The pool and each address's share as large as the attack: only
    // response buffering can keep a slot free here.
    let r = Rampart::start(site(
        &fixture,
        "max_conns = 256\nmax_conns_per_client = 256\nqueue_timeout = \"3s\"",
    ))
    .await;
    let c = Client::new(&r);
    let path = "/download?bytes=1048576";
    let (a, b) = tokio::join!(
        c.zero_window_h2(ip("127.0.0.2"), path, 128),
        c.zero_window_h2(ip("127.0.0.3"), path, 128)
    );
    let held: Vec<_> = a
        .responses
        .iter()
        .chain(b.responses.iter())
        .map(|r| r.status())
        .collect();
    assert_eq!(held.len(), 256);
    assert!(held.iter().all(|s| *s == 200), "{held:?}");
    let login = c
        .try_send(ip("127.0.0.4"), "GET", "/web/login", vec![])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        login.status,
        200,
        "with 256 downloads never read, another client got: {}",
        login.text()
    );
    assert!(metric(&r.metrics().await, "rampart_spooled_bytes") > 0.0);
    drop((a, b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_takes_no_bytes_loses_its_stream_after_send_timeout() {
    let fixture = OdooFixture::start().await;
    let mut setup = site(&fixture, "");
    setup.listen = "send_timeout = \"1s\"".into();
    let r = Rampart::start(setup).await;
    let c = Client::new(&r);
    const LEN: usize = 64 * 1024 * 1024;
    let mut s = c.tls(ip("127.0.0.2"), false).await;
    let head = format!(
        "GET /download?bytes={LEN} HTTP/1.1\r\nHost: {HOST}:{}\r\n\r\n",
        r.https.port()
    );
    tokio::io::AsyncWriteExt::write_all(&mut s, head.as_bytes())
        .await
        .unwrap();
    // Read nothing for a while: the socket buffers fill and rampart waits.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut got = 0usize;
    let mut buf = vec![0u8; 256 * 1024];
    let read_all = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
    };
    tokio::time::timeout(CALL_LIMIT, read_all)
        .await
        .expect("rampart closed the stalled connection");
    assert!(
        got < LEN,
        "the whole {LEN}-byte answer arrived after a 4 s stall with send_timeout 1s ({got} bytes)"
    );
    // The spool is freed with it.
    let deadline = tokio::time::Instant::now() + CALL_LIMIT;
    while open_spool_files(&r) != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "spool file still open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stderr = r.stderr();
    assert!(stderr.contains("send_timeout"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_http2_connection_whose_streams_all_stall_is_closed() {
    let fixture = OdooFixture::start().await;
    let mut setup = site(&fixture, "");
    setup.listen = "send_timeout = \"1s\"".into();
    let r = Rampart::start(setup).await;
    let c = Client::new(&r);
    let held = c
        .zero_window_h2(ip("127.0.0.2"), "/download?bytes=1048576", 16)
        .await;
    assert!(held.responses.iter().all(|r| r.status() == 200));
    tokio::time::timeout(CALL_LIMIT, held.conn)
        .await
        .expect("rampart closed the HTTP/2 connection whose every stream stalled")
        .unwrap();
    let deadline = tokio::time::Instant::now() + CALL_LIMIT;
    while open_spool_files(&r) != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "spool files still open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop((held.responses, held.sender));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_address_cannot_fill_the_spool_for_everyone() {
    let fixture = OdooFixture::start().await;
    let mut setup = site(&fixture, "");
    setup.listen = "spool_max = \"1MiB\"\nspool_per_client = \"256KiB\"".into();
    let r = Rampart::start(setup).await;
    let c = Client::new(&r);
    let (a, b) = (ip("127.0.0.2"), ip("127.0.0.3"));
    const LEN: usize = 200 * 1024;
    // A's first upload, nearly complete, holds 190 KiB of A's share.
    let mut first = Upload::start(&c, a, "/upload", LEN, &vec![b'a'; 190 * 1024]).await;
    let deadline = tokio::time::Instant::now() + CALL_LIMIT;
    while open_spool_files(&r) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no spool file opened"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let res = c.send(a, "POST", "/upload", vec![b'a'; LEN]).await;
    assert_eq!(res.status, 507, "A's second upload: {}", res.text());
    let res = c.send(b, "POST", "/upload", vec![b'b'; LEN]).await;
    assert_eq!(res.status, 200, "another address: {}", res.text());
    first.send(&vec![b'a'; 10 * 1024]).await.unwrap();
    let (status, text) = first.answer().await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(fixture.count("/upload"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unread_http2_answers_keep_at_most_the_clients_memory_share() {
    // Red team 2: 200 KB answers on streams whose window never opens kept
    // every answer in memory; from one address that was 256 KiB a stream.
    let fixture = OdooFixture::start().await;
    let mut setup = site(
        &fixture,
        "max_conns = 256\nmax_conns_per_client = 256\nqueue_timeout = \"3s\"",
    );
    setup.listen = "buffer_memory_per_client = \"1MiB\"".into();
    let r = Rampart::start(setup).await;
    let c = Client::new(&r);
    let held = c
        .zero_window_h2(ip("127.0.0.2"), "/download?bytes=200000", 64)
        .await;
    assert_eq!(held.responses.len(), 64);
    assert!(held.responses.iter().all(|r| r.status() == 200));
    // Every answer is drained (the fixture's slots come back) ...
    let deadline = tokio::time::Instant::now() + CALL_LIMIT;
    loop {
        let m = r.metrics().await;
        if metric(&m, "rampart_spooled_bytes") >= (64 * 200_000 - (2 << 20)) as f64 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the answers were not drained: spooled {}",
            metric(&m, "rampart_spooled_bytes")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ... and what stays in memory is the client's share, not 64 answers.
    let in_memory = metric(&r.metrics().await, "rampart_buffered_memory_bytes");
    assert!(
        in_memory <= (1 << 20) as f64,
        "64 unread answers keep {in_memory} bytes in memory"
    );
    assert!(in_memory > 0.0, "nothing counted: {in_memory}");
    // Another address is served from memory as usual.
    let res = c
        .try_send(ip("127.0.0.3"), "GET", "/download?bytes=100000", vec![])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status, 200);
    drop((held.responses, held.sender));
}

/// An unread HTTP/2 stream whose answer is compressed as it streams held
/// its encoder (about 200 KB of zlib state, allocated before a byte is
/// sent) counted nowhere: 6,400 such streams from one address took Rampart
/// to 1.1 GB. The encoders are now charged to the client's memory share
/// (1 MiB here: three gzip encoders); past it answers go uncompressed.
/// (What an unread stream holds besides is the same with or without
/// compression.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unread_compressed_answers_hold_their_encoders_within_the_clients_memory_share() {
    let fixture = OdooFixture::start().await;
    let mut setup = site(
        &fixture,
        "max_conns = 256\nmax_conns_per_client = 256\nqueue_timeout = \"3s\"",
    );
    setup.listen = "buffer_memory_per_client = \"1MiB\"".into();
    let r = Rampart::start(setup).await;
    let c = Client::new(&r);
    // Warm up (TLS, HTTP/2, a streamed gzip answer) before the baseline.
    let warm = c
        .zero_window_h2_with(
            ip("127.0.0.2"),
            "/big.html?bytes=400000",
            2,
            &[("accept-encoding", "gzip")],
        )
        .await;
    drop((warm.responses, warm.sender));
    let before = r.vm_hwm_kib();
    // Past the one-shot size (256 KiB): streamed through an encoder.
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(
            c.zero_window_h2_with(
                ip("127.0.0.2"),
                "/big.html?bytes=400000",
                100,
                &[("accept-encoding", "gzip")],
            )
            .await,
        );
    }
    let responses: Vec<_> = held.iter().flat_map(|h| &h.responses).collect();
    assert!(responses.iter().all(|r| r.status() == 200));
    // Measured (debug build): 96 MB with an encoder each; 25 MB for the
    // same streams uncompressed, and 21 MB now.
    let grown = r.vm_hwm_kib().saturating_sub(before);
    assert!(
        grown < 48 * 1024,
        "200 unread compressed answers grew Rampart's peak memory by {grown} KiB"
    );
    let compressed = responses
        .iter()
        .filter(|r| r.headers().contains_key("content-encoding"))
        .count();
    assert!(
        (1..=3).contains(&compressed),
        "{compressed} of 200 unread answers compressed with a 1 MiB share"
    );
    // Another address has its own share.
    let other = c
        .zero_window_h2_with(
            ip("127.0.0.3"),
            "/big.html?bytes=400000",
            1,
            &[("accept-encoding", "gzip")],
        )
        .await;
    assert_eq!(other.responses[0].headers()["content-encoding"], "gzip");
    drop(held);
}

/// HTTP/2 keeps a piece of an answer whole until the client's window lets
/// it go, and what hyper holds is counted nowhere: streams that open one
/// byte of window (so Rampart hands each answer over) made every answer one
/// uncounted piece (red team: 1,024 streams of 256 KiB answers from one
/// address, 310 MB). Pieces are at most 16 KiB now, the rest charged to the
/// client's share (1 MiB here) and spooled past it, uncompressed and
/// gzipped alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streams_that_open_one_byte_of_window_hold_one_small_piece_each() {
    let fixture = OdooFixture::start().await;
    let mut setup = site(
        &fixture,
        "max_conns = 256\nmax_conns_per_client = 256\nqueue_timeout = \"3s\"",
    );
    // The guard's rate would refuse 400 requests at once from one address.
    setup.listen = "buffer_memory_per_client = \"1MiB\"\n\n[guard]\nrate = { per_second = 100000, burst = 100000 }\n".into();
    let r = Rampart::start(setup).await;
    let c = Client::new(&r);
    let warm = c
        .small_window_h2(ip("127.0.0.2"), "/download?bytes=200000", 2, &[], 1)
        .await;
    drop((warm.responses, warm.sender));
    let before = r.vm_hwm_kib();
    let mut held = Vec::new();
    // 200 KB answers Odoo writes in one go (one piece each before), and
    // pages of known length that are gzipped in one pass.
    for (path, accept) in [
        ("/download?bytes=200000", "identity"),
        ("/download?bytes=200000", "identity"),
        ("/big.html?bytes=200000", "gzip"),
        ("/big.html?bytes=200000", "gzip"),
    ] {
        let h = c
            .small_window_h2(
                ip("127.0.0.2"),
                path,
                100,
                &[("accept-encoding", accept)],
                1,
            )
            .await;
        let statuses: Vec<u16> = h.responses.iter().map(|r| r.status().as_u16()).collect();
        assert!(statuses.iter().all(|s| *s == 200), "{path}: {statuses:?}");
        held.push(h);
    }
    // Measured (debug build): 60 MB before, 35 MB now; most of the rest is
    // what any open stream costs (a debug build's futures are large).
    let grown = r.vm_hwm_kib().saturating_sub(before);
    eprintln!("400 streams with one byte of window: peak +{grown} KiB");
    assert!(
        grown < 48 * 1024,
        "400 streams with one byte of window grew Rampart's peak memory by {grown} KiB"
    );
    drop(held);
}
