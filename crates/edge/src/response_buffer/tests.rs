use super::*;
use crate::upstream::Pool;
use http_body::Frame;
use http_body_util::BodyExt;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};

const C: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

fn spool() -> (Arc<Spool>, std::path::PathBuf) {
    let d = std::env::temp_dir().join(format!(
        "rampart-rbuf-test-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    (
        Spool::open(
            &d,
            1 << 30,
            1 << 30,
            BodyMemory::new(1 << 30, 1 << 30),
            1000,
        )
        .unwrap(),
        d,
    )
}

fn odoo(
    data: &[u8],
) -> impl HttpBody<Data = Bytes, Error = std::convert::Infallible> + Unpin + use<> {
    let chunks: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = data
        .chunks(16 * 1024)
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    http_body_util::StreamBody::new(futures_util::stream::iter(chunks))
}

async fn until(what: &str, f: impl Fn() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never: {what}");
}

#[tokio::test]
async fn the_slot_is_freed_when_odoo_is_done_not_when_the_client_is() {
    let (spool, dir) = spool();
    let pool = Pool::new(&["a:1".into()], 1, 1, Duration::from_millis(10));
    let lease = pool.acquire(C).await.unwrap();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let settings = Settings {
        client: C,
        upstream_idle: Duration::from_secs(5),
        send_timeout: Duration::from_secs(60),
        read_away: false,
    };
    let body = buffer(odoo(&data), lease, spool.clone(), settings, Box::new(|| {}));
    until("slot freed", || pool.upstreams[0].active() == 0).await;
    assert!(spool.written.get() > 0, "the rest went to the spool");
    let got = body.collect().await.unwrap().to_bytes();
    assert_eq!(got.len(), data.len());
    assert!(got == data, "bytes changed on the way");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_client_that_stops_taking_bytes_loses_the_stream() {
    let (spool, dir) = spool();
    let pool = Pool::new(&["a:1".into()], 1, 1, Duration::from_millis(10));
    let lease = pool.acquire(C).await.unwrap();
    let data = vec![7u8; 1_000_000];
    let stalled = Arc::new(AtomicBool::new(false));
    let flag = stalled.clone();
    let settings = Settings {
        client: C,
        upstream_idle: Duration::from_secs(5),
        send_timeout: Duration::from_millis(200),
        read_away: false,
    };
    let mut body = buffer(
        odoo(&data),
        lease,
        spool.clone(),
        settings,
        Box::new(move || flag.store(true, Ordering::SeqCst)),
    );
    // Take one piece, then nothing.
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.is_data());
    until("stall noticed", || stalled.load(Ordering::SeqCst)).await;
    until("spool given back", || spool.used() == 0).await;
    let next = body.frame().await.unwrap();
    assert!(next.is_err(), "the stream ends with an error");
    // A client waiting on Odoo (nothing handed) is never timed out.
    let lease = pool.acquire(C).await.unwrap();
    let never = http_body_util::StreamBody::new(futures_util::stream::pending::<
        Result<Frame<Bytes>, std::convert::Infallible>,
    >());
    let flag = Arc::new(AtomicBool::new(false));
    let f2 = flag.clone();
    let settings = Settings {
        client: C,
        upstream_idle: Duration::from_secs(5),
        send_timeout: Duration::from_millis(100),
        read_away: false,
    };
    let waiting = buffer(
        never,
        lease,
        spool,
        settings,
        Box::new(move || f2.store(true, Ordering::SeqCst)),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!flag.load(Ordering::SeqCst));
    drop(waiting);
    until("slot freed when the client left", || {
        pool.upstreams[0].active() == 0
    })
    .await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn answers_a_client_never_reads_are_bounded_by_its_memory_share() {
    // No spool share, 300 KB of memory per client: the red team's
    // unread HTTP/2 answers, each would otherwise keep 256 KiB.
    let d = std::env::temp_dir().join(format!(
        "rampart-rbuf-share-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let spool = Spool::open(&d, 1 << 30, 0, BodyMemory::new(300_000, 1 << 30), 1000).unwrap();
    const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9));
    let pool = Pool::new(&["a:1".into()], 8, 8, Duration::from_millis(10));
    let settings = |client| Settings {
        client,
        upstream_idle: Duration::from_secs(5),
        send_timeout: Duration::from_secs(60),
        read_away: false,
    };
    let data = vec![5u8; 200_000];
    let mut unread = Vec::new();
    // The first answer fits in the share.
    let lease = pool.acquire(C).await.unwrap();
    unread.push(buffer(
        odoo(&data),
        lease,
        spool.clone(),
        settings(C),
        Box::new(|| {}),
    ));
    until("the first answer drained", || {
        pool.upstreams[0].active() == 0
    })
    .await;
    // The rest wait for the client, holding only their own slots, and
    // the memory stays within the share (plus the one piece a waiting
    // drain holds).
    for _ in 0..3 {
        let lease = pool.acquire(C).await.unwrap();
        unread.push(buffer(
            odoo(&data),
            lease,
            spool.clone(),
            settings(C),
            Box::new(|| {}),
        ));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        pool.upstreams[0].active(),
        3,
        "unread answers drained past the share"
    );
    assert!(
        spool.memory.used() <= 300_000 + 3 * 16 * 1024,
        "memory held: {}",
        spool.memory.used()
    );
    // Another client is not charged for it.
    let lease = pool.acquire(OTHER).await.unwrap();
    let other = buffer(
        odoo(&data),
        lease,
        spool.clone(),
        settings(OTHER),
        Box::new(|| {}),
    );
    until("the other client's answer drained", || {
        pool.upstreams[0].active() == 3
    })
    .await;
    assert_eq!(other.collect().await.unwrap().to_bytes().len(), data.len());
    // Reading frees the share and the waiting answers drain, whole; the
    // last one read first, while the others still hold the share: a
    // stream being read always moves.
    let last = unread.pop().unwrap();
    let read = tokio::time::timeout(Duration::from_secs(10), last.collect());
    let got = read.await.expect("a stream being read moves").unwrap();
    assert_eq!(got.to_bytes(), data);
    for body in unread {
        assert_eq!(body.collect().await.unwrap().to_bytes(), data);
    }
    until("every slot freed", || pool.upstreams[0].active() == 0).await;
    assert_eq!(spool.memory.used(), 0, "memory given back");
    std::fs::remove_dir_all(d).unwrap();
}

/// A finished answer's task must end with it, not at the send-deadline
/// watch's next tick (up to 5 s later): at thousands of answers a second,
/// finished tasks waiting for their tick held tens of MB.
#[tokio::test]
async fn the_buffer_task_ends_when_the_client_has_its_answer() {
    let (spool, dir) = spool();
    let pool = Pool::new(&["a:1".into()], 1, 1, Duration::from_millis(10));
    let lease = pool.acquire(C).await.unwrap();
    let settings = Settings {
        client: C,
        upstream_idle: Duration::from_secs(5),
        // The watch ticks every 5 s at this deadline.
        send_timeout: Duration::from_secs(3600),
        read_away: false,
    };
    // The task owns `on_stall` until it ends: its drop closes `ended`.
    let (task_alive, mut ended) = tokio::sync::oneshot::channel::<()>();
    let on_stall = Box::new(move || drop(task_alive));
    let body = buffer(
        odoo(b"<html>login</html>"),
        lease,
        spool,
        settings,
        on_stall,
    );
    let got = body.collect().await.unwrap().to_bytes();
    assert_eq!(&got[..], b"<html>login</html>");
    let ended_in_time = tokio::time::timeout(Duration::from_secs(2), &mut ended).await;
    assert!(
        ended_in_time.is_ok(),
        "the task outlived its answer (waiting for the watch's 5 s tick)"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// HTTP/2 keeps a piece handed to hyper whole until the client's window
/// lets it go, counted nowhere: Odoo's answer arriving in one large piece
/// (and the spool read back) is handed over at most `PIECE_MAX` at a time,
/// the rest staying in the buffer, charged to the client.
#[tokio::test]
async fn pieces_handed_to_hyper_are_at_most_piece_max_the_rest_stays_charged() {
    let (spool, dir) = spool();
    let pool = Pool::new(&["a:1".into()], 1, 1, Duration::from_millis(10));
    let lease = pool.acquire(C).await.unwrap();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let one_piece = http_body_util::Full::new(Bytes::from(data.clone()));
    let settings = Settings {
        client: C,
        upstream_idle: Duration::from_secs(5),
        send_timeout: Duration::from_secs(60),
        read_away: false,
    };
    let mut body = buffer(one_piece, lease, spool.clone(), settings, Box::new(|| {}));
    until("drained", || pool.upstreams[0].active() == 0).await;
    assert_eq!(spool.memory.used(), data.len(), "the answer is charged");
    let mut got = Vec::new();
    while let Some(frame) = body.frame().await {
        let piece = frame.unwrap().into_data().unwrap();
        assert!(piece.len() <= PIECE_MAX, "a piece of {}", piece.len());
        got.extend_from_slice(&piece);
        assert_eq!(spool.memory.used(), data.len() - got.len());
    }
    assert!(got == data, "bytes changed on the way");
    std::fs::remove_dir_all(dir).unwrap();
}

/// A client waiting with nothing in memory gets one piece past its spent
/// share (a stream being read always moves), and only one: the rest of
/// Odoo's read, which can be hundreds of KB, goes to the spool. Before,
/// the whole read went to memory, for every stream of a client that grants
/// each stream one byte of window (red team: 1,024 streams, 208 MB).
#[tokio::test]
async fn a_waiting_client_past_its_share_gets_one_piece_in_memory_and_the_rest_is_spooled() {
    let d = std::env::temp_dir().join(format!("rampart-rbuf-share-{}", std::process::id()));
    // A share of one byte: every piece is past it.
    let spool = Spool::open(&d, 1 << 30, 1 << 30, BodyMemory::new(1, 1 << 30), 1000).unwrap();
    let pool = Pool::new(&["a:1".into()], 1, 1, Duration::from_millis(10));
    let lease = pool.acquire(C).await.unwrap();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let (go, wait) = tokio::sync::oneshot::channel::<()>();
    let read = Bytes::from(data.clone());
    let odoo = http_body_util::StreamBody::new(Box::pin(futures_util::stream::once(async move {
        let _ = wait.await;
        Ok::<_, std::convert::Infallible>(Frame::data(read))
    })));
    let settings = Settings {
        client: C,
        upstream_idle: Duration::from_secs(5),
        send_timeout: Duration::from_secs(60),
        read_away: false,
    };
    let mut body = buffer(odoo, lease, spool.clone(), settings, Box::new(|| {}));
    {
        let first = body.frame();
        tokio::pin!(first);
        assert!(
            futures_util::poll!(first.as_mut()).is_pending(),
            "nothing yet"
        );
        go.send(()).unwrap();
        let piece = first.await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&piece[..], &data[..piece.len()]);
        assert!(piece.len() <= PIECE_MAX, "a piece of {}", piece.len());
    }
    until("drained", || pool.upstreams[0].active() == 0).await;
    assert_eq!(
        spool.memory.used(),
        0,
        "only the piece handed over was in memory"
    );
    assert!(spool.written.get() >= (data.len() - PIECE_MAX) as u64);
    let rest = body.collect().await.unwrap().to_bytes();
    assert!(rest[..] == data[data.len() - rest.len()..] && rest.len() >= data.len() - PIECE_MAX);
    std::fs::remove_dir_all(d).unwrap();
}
