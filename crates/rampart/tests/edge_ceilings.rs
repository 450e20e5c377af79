//! Red team 3, F4/F5: what buffered bodies keep in memory and the spool
//! files they open were bounded per client address only, so enough
//! addresses together could spend the process's memory (20 addresses:
//! 24 MB → 327 MB) or its file descriptors (~220 addresses × 256 spool
//! files = LimitNOFILE). Both have a process-wide ceiling too.
//!
//! One test lowers this process's RLIMIT_NOFILE while rampart starts (the
//! child inherits it), so the tests take turns starting rampart.

mod common;
mod slots_common;

use std::time::Duration;

use common::{Rampart, Setup, Site};
use rampart_testkit::OdooFixture;
use slots_common::{CALL_LIMIT, Client, HOST, ip, metric};

/// Held while a rampart starts: the file limit is lowered meanwhile.
static STARTING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn setup(fixture: &OdooFixture, listen: &str) -> Setup {
    let mut s = Setup::site(
        Site::new(HOST, fixture)
            .extra("max_conns = 256\nmax_conns_per_client = 256\nqueue_timeout = \"3s\""),
    );
    s.listen = listen.into();
    s
}

/// Waits until `what` holds on the metrics text, or panics naming it.
async fn until_metrics(r: &Rampart, what: &str, ok: impl Fn(&str) -> bool) {
    let deadline = tokio::time::Instant::now() + CALL_LIMIT;
    loop {
        let m = r.metrics().await;
        if ok(&m) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not reached\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_addresses_cannot_fill_the_process_memory_with_buffered_bodies() {
    let fixture = OdooFixture::start().await;
    let r = {
        let _turn = STARTING.lock().await;
        Rampart::start(setup(
            &fixture,
            "buffer_memory_per_client = \"1MiB\"\nbuffer_memory_max = \"2MiB\"",
        ))
        .await
    };
    let c = Client::new(&r);
    // Four addresses, each within its own share, 16 unread 200 KB answers
    // each: 4 MiB of shares against a 2 MiB ceiling.
    let mut held = Vec::new();
    for a in 10..14 {
        held.push(
            c.zero_window_h2(ip(&format!("127.0.0.{a}")), "/download?bytes=200000", 16)
                .await,
        );
    }
    // (Less a little: a few bytes of each answer are already handed over.)
    until_metrics(&r, "every answer drained", |m| {
        metric(m, "rampart_spooled_bytes") + metric(m, "rampart_buffered_memory_bytes")
            >= (4 * 16 * 200_000 - (1 << 20)) as f64
    })
    .await;
    let in_memory = metric(&r.metrics().await, "rampart_buffered_memory_bytes");
    assert!(
        in_memory <= (2 << 20) as f64,
        "4 addresses keep {in_memory} bytes in memory, over buffer_memory_max"
    );
    let res = c
        .try_send(ip("127.0.0.3"), "GET", "/download?bytes=100000", vec![])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status, 200);
    drop(held);
}

/// The open spool files of rampart (unlinked, so only /proc shows them).
fn open_spool_files(r: &Rampart) -> usize {
    let spool = r.state_dir.join("spool");
    std::fs::read_dir(format!("/proc/{}/fd", r.pid))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|t| t.starts_with(&spool))
        .count()
}

/// Lowers this process's soft RLIMIT_NOFILE to `soft` until dropped (the
/// rampart child inherits it at spawn).
struct FileLimit(rustix::process::Rlimit);

impl FileLimit {
    fn lower_to(soft: u64) -> FileLimit {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let old = getrlimit(Resource::Nofile);
        let current = Some(old.maximum.map_or(soft, |max| soft.min(max)));
        let new = Rlimit {
            current,
            maximum: old.maximum,
        };
        setrlimit(Resource::Nofile, new).expect("lower RLIMIT_NOFILE");
        FileLimit(old)
    }
}

impl Drop for FileLimit {
    fn drop(&mut self) {
        let _ = rustix::process::setrlimit(rustix::process::Resource::Nofile, self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_addresses_cannot_spend_the_process_file_descriptors_on_spool_files() {
    let fixture = OdooFixture::start().await;
    // A soft limit of 512 descriptors: a quarter (128) for spool files.
    let r = {
        let _turn = STARTING.lock().await;
        let _limit = FileLimit::lower_to(512);
        Rampart::start(setup(&fixture, "buffer_memory_per_client = \"64KiB\"")).await
    };
    let c = Client::new(&r);
    // Four addresses, 60 unread 300 KB answers each, every one spooled:
    // 240 files, each address under its own 256.
    let mut held = Vec::new();
    for a in 10..14 {
        held.push(
            c.zero_window_h2(ip(&format!("127.0.0.{a}")), "/download?bytes=300000", 60)
                .await,
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let files = open_spool_files(&r);
    assert!(
        files <= 128,
        "{files} spool files open with a soft limit of 512 descriptors"
    );
    // Everyone else is still served.
    let res = c
        .try_send(ip("127.0.0.3"), "GET", "/web/login", vec![])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status, 200, "{}", res.text());
    drop(held);
}
