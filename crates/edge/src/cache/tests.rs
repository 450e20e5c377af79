use super::*;
use rampart_config::ByteSize;

fn cand(target: &str) -> Candidate {
    Candidate {
        key: Key {
            site: "s".into(),
            host: "h".into(),
            target: target.into(),
        },
        fill: true,
    }
}

fn cfg(max: u64) -> CacheConfig {
    CacheConfig {
        max_memory: ByteSize(max),
        ..CacheConfig::default()
    }
}

async fn put(cache: &Arc<Cache>, target: &str, len: usize, max: u64) {
    let Lookup::Fill(g) = cache.lookup(&cand(target), &CacheConfig::default()).await else {
        panic!("expected a fill for {target}");
    };
    let charge = cache.reserve("s", len as u64, &cfg(max)).unwrap();
    cache.insert(
        &g,
        &cfg(max),
        Bytes::from(vec![b'x'; len]),
        HeaderMap::new(),
        "\"e\"".into(),
        None,
        Duration::from_secs(60),
        Duration::from_millis(250),
        charge,
    );
}

/// Keeps a 4-byte answer under `g`.
fn fill_body(cache: &Arc<Cache>, g: &FillGuard, cfg: &CacheConfig) {
    let charge = cache.reserve("s", 4, cfg).unwrap();
    insert_body(cache, g, cfg, charge);
}

/// Inserts a 4-byte answer under `g` with a charge already reserved.
fn insert_body(cache: &Cache, g: &FillGuard, cfg: &CacheConfig, charge: Charge) {
    cache.insert(
        g,
        cfg,
        Bytes::from_static(b"body"),
        HeaderMap::new(),
        "\"e\"".into(),
        None,
        Duration::from_secs(60),
        Duration::ZERO,
        charge,
    );
}

#[tokio::test]
async fn bounded_by_bytes_least_recently_used_first() {
    let cache = Arc::new(Cache::default());
    let max = 3 * (1000 + 512);
    put(&cache, "/a", 1000, max).await;
    put(&cache, "/b", 1000, max).await;
    put(&cache, "/c", 1000, max).await;
    // /a used: /b is now the least recently used.
    assert!(matches!(
        cache.lookup(&cand("/a"), &CacheConfig::default()).await,
        Lookup::Hit(_)
    ));
    put(&cache, "/d", 1000, max).await;
    assert!(matches!(
        cache.lookup(&cand("/b"), &CacheConfig::default()).await,
        Lookup::Fill(_)
    ));
    for t in ["/a", "/c", "/d"] {
        assert!(
            matches!(
                cache.lookup(&cand(t), &CacheConfig::default()).await,
                Lookup::Hit(_)
            ),
            "{t}"
        );
    }
    let stats = cache.stats();
    assert_eq!(stats["sites"][0]["entries"], 3);
    assert_eq!(stats["sites"][0]["evictions"], 1);
    assert!(stats["sites"][0]["bytes"].as_u64().unwrap() <= max);
}

#[tokio::test]
async fn one_fetch_at_a_time_per_key() {
    let cache = Arc::new(Cache::default());
    let Lookup::Fill(g) = cache.lookup(&cand("/a"), &CacheConfig::default()).await else {
        panic!("first is a fill");
    };
    let c2 = cache.clone();
    let waiter = tokio::spawn(async move {
        matches!(
            c2.lookup(&cand("/a"), &CacheConfig::default()).await,
            Lookup::Hit(_)
        )
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !waiter.is_finished(),
        "the second request waits for the first fetch"
    );
    fill_body(&cache, &g, &cfg(1 << 20));
    drop(g);
    assert!(
        waiter.await.unwrap(),
        "the waiter is answered from the new entry"
    );
}

#[tokio::test]
async fn a_failed_fill_lets_waiters_through() {
    let cache = Arc::new(Cache::default());
    let Lookup::Fill(g) = cache.lookup(&cand("/a"), &CacheConfig::default()).await else {
        panic!("first is a fill");
    };
    let c2 = cache.clone();
    let waiter = tokio::spawn(async move {
        matches!(
            c2.lookup(&cand("/a"), &CacheConfig::default()).await,
            Lookup::Pass
        )
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    drop(g);
    assert!(waiter.await.unwrap());
}

#[tokio::test]
async fn purge_by_site_and_prefix() {
    let cache = Arc::new(Cache::default());
    put(&cache, "/web/assets/1/a.js", 10, 1 << 20).await;
    put(&cache, "/web/image/1?unique=2", 10, 1 << 20).await;
    assert_eq!(cache.purge(Some("other"), "/"), 0);
    assert_eq!(cache.purge(Some("s"), "/web/assets/"), 1);
    assert_eq!(cache.purge(None, ""), 1);
    assert_eq!(cache.stats()["sites"][0]["entries"], 0);
}

/// CI failure 2026-12-03: a request that found neither the entry nor a
/// fetch under way, then (a moment later) no fetch either because it had
/// just ended, started a second fetch of a key already kept. Many
/// requests race for each of many keys on several threads; Odoo must be
/// asked once per key.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fetch_that_ends_while_another_request_looks_is_not_repeated() {
    let cache = Arc::new(Cache::default());
    for round in 0..300 {
        let target = format!("/k{round}");
        let fills = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (cache, target, fills) = (cache.clone(), target.clone(), fills.clone());
            tasks.push(tokio::spawn(async move {
                match cache.lookup(&cand(&target), &CacheConfig::default()).await {
                    Lookup::Fill(g) => {
                        fills.fetch_add(1, Ordering::Relaxed);
                        fill_body(&cache, &g, &cfg(1 << 20));
                    }
                    Lookup::Hit(_) => {}
                    Lookup::Pass => panic!("{target}: passed by a fill that kept its answer"),
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(
            fills.load(Ordering::Relaxed),
            1,
            "{target} fetched more than once"
        );
    }
}

/// An administrator purges while a request is fetching the old answer
/// from Odoo: that answer is served to its request but kept neither in
/// memory nor on disk, so the purge holds. A fetch begun after it is kept.
#[tokio::test]
async fn a_purge_during_a_fetch_is_not_undone_by_it() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(Cache::with_disk(dir.path()).unwrap());
    let cfg = CacheConfig {
        max_memory: ByteSize(1 << 20),
        disk: ByteSize(1 << 20),
        ..CacheConfig::default()
    };
    let Lookup::Fill(g) = cache.lookup(&cand("/a"), &cfg).await else {
        panic!("first is a fill");
    };
    assert_eq!(cache.purge(None, "/"), 0);
    fill_body(&cache, &g, &cfg);
    drop(g);
    // Time for a disk write, had one been started.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let Lookup::Fill(g) = cache.lookup(&cand("/a"), &cfg).await else {
        panic!("the answer fetched across the purge was kept");
    };
    fill_body(&cache, &g, &cfg);
    drop(g);
    assert!(matches!(
        cache.lookup(&cand("/a"), &cfg).await,
        Lookup::Hit(_)
    ));
    // On disk too: a cache opened on the same directory (a restart) reads it back.
    for _ in 0..100 {
        if cache.stats()["sites"][0]["disk_entries"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(cache.stats()["sites"][0]["disk_entries"], 1);
}

/// Red team of a7a7de8: `insert` checked the purge count, then took the
/// lock to put; a purge that ran wholly between the two was undone by the
/// fill. (Held lock handed over so the purge's sweep goes first.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_between_a_fills_check_and_its_put_holds() {
    for attempt in 0..20 {
        let cache = Arc::new(Cache::default());
        let Lookup::Fill(g) = cache.lookup(&cand("/a"), &CacheConfig::default()).await else {
            panic!("fill");
        };
        let charge = cache.reserve("s", 4, &cfg(1 << 20)).unwrap();
        // Stall `put` (and the purge's sweep) behind a held lock.
        let held = cache.inner.lock().unwrap();
        let c1 = cache.clone();
        let filler = std::thread::spawn(move || {
            insert_body(&c1, &g, &cfg(1 << 20), charge);
            drop(g);
        });
        std::thread::sleep(Duration::from_millis(30)); // insert has checked the count
        let c2 = cache.clone();
        let purger = std::thread::spawn(move || c2.purge(None, "/"));
        std::thread::sleep(Duration::from_millis(30)); // purge has counted itself
        // Hand the lock over so the filler re-queues behind the purge.
        drop(held);
        let held = cache.inner.lock().unwrap();
        std::thread::sleep(Duration::from_millis(30));
        drop(held);
        filler.join().unwrap();
        purger.join().unwrap();
        // The purge returned after the fill began: /a must not be kept.
        assert!(
            !matches!(
                cache.lookup(&cand("/a"), &CacheConfig::default()).await,
                Lookup::Hit(_)
            ),
            "attempt {attempt}: a fill begun before a finished purge is kept in memory"
        );
    }
}

/// Red team of a7a7de8: a purge counts itself before it removes disk
/// files, so a read-back that took the count after that but read its file
/// before the removal put the purged entry back in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_back_straddling_a_purge_is_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let big = CacheConfig {
        max_memory: ByteSize(1 << 30),
        disk: ByteSize(1 << 30),
        ..CacheConfig::default()
    };
    {
        let cache = Arc::new(Cache::with_disk(dir.path()).unwrap());
        for i in 0..3000 {
            let Lookup::Fill(g) = cache.lookup(&cand(&format!("/p/{i}")), &big).await else {
                panic!()
            };
            fill_body(&cache, &g, &big);
        }
        while cache.stats()["sites"][0]["disk_entries"] != 3000 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // A restart: memory empty, disk full. Purge, and read every key back
    // meanwhile; the read backs resume only after the purge returned.
    let cache = Arc::new(Cache::with_disk(dir.path()).unwrap());
    let keys: Vec<Key> = (0..3000).map(|i| cand(&format!("/p/{i}")).key).collect();
    let c2 = cache.clone();
    let purger = std::thread::spawn(move || c2.purge(None, "/"));
    while cache.purges.load(Ordering::SeqCst) == 0 {}
    let mut futs: Vec<_> = keys
        .iter()
        .map(|k| Box::pin(cache.read_back(k, &big)))
        .collect();
    let mut pending = Vec::new();
    for mut f in futs.drain(..) {
        if futures_util::poll!(f.as_mut()).is_pending() {
            pending.push(f);
        }
    }
    purger.join().unwrap();
    let mut survived = 0;
    for f in pending {
        if f.await.is_some() {
            survived += 1;
        }
    }
    let kept = cache.stats()["sites"][0]["entries"].clone();
    assert_eq!(
        kept, 0,
        "{survived} read back; purged entries kept in memory after the purge returned"
    );
}
