//! The guard with a cluster ([`Shared`]): a fake one that records what it
//! is told and answers as a test says.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::*;

#[derive(Default)]
struct Fake {
    answer: Mutex<Option<SharedVerdict>>,
    bans: Mutex<Vec<SharedBan>>,
    unbans: Mutex<Vec<String>>,
    finished: Mutex<Vec<Finish>>,
    /// Cluster-wide failures `finish` reports.
    failures: Mutex<Option<u32>>,
}

impl Shared for Fake {
    fn reserve(&self, _r: Reserve) -> BoxFut<'_, Option<SharedVerdict>> {
        let a = *self.answer.lock().unwrap();
        Box::pin(async move { a })
    }
    fn finish(&self, f: Finish) -> BoxFut<'_, Option<u32>> {
        self.finished.lock().unwrap().push(f);
        let n = *self.failures.lock().unwrap();
        Box::pin(async move { n })
    }
    fn ban(&self, b: SharedBan) {
        self.bans.lock().unwrap().push(b);
    }
    fn unban(&self, net: &str, _at: SystemTime) {
        self.unbans.lock().unwrap().push(net.to_string());
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn joined() -> (tempfile::TempDir, Arc<Guard>, Arc<Fake>) {
    let dir = tempfile::tempdir().unwrap();
    let g = Guard::open(&GuardConfig::default(), dir.path()).unwrap();
    let fake = Arc::new(Fake::default());
    g.set_shared(fake.clone());
    (dir, g, fake)
}

async fn attempt(g: &Guard, addr: &str, login: &str) -> Result<LoginAttempt, Refused> {
    g.begin_check_shared(ip(addr), LoginRoute::WebLogin, None, Some(login))
        .await
}

#[tokio::test]
async fn the_clusters_refusal_is_final_and_its_silence_leaves_the_local_budget() {
    let (_d, g, fake) = joined();
    // Silent cluster: the local budget decides (10 by default).
    let held: Vec<_> = attempts(&g, "192.0.2.1", 12).await;
    assert_eq!(held.iter().filter(|r| r.is_ok()).count(), 10);
    drop(held);
    *fake.answer.lock().unwrap() = Some(SharedVerdict::Refused {
        addr_failures: 3,
        login_locked: false,
    });
    assert_eq!(
        attempt(&g, "192.0.2.2", "x").await.err(),
        Some(Refused::Busy)
    );
    *fake.answer.lock().unwrap() = Some(SharedVerdict::Refused {
        addr_failures: 3,
        login_locked: true,
    });
    assert_eq!(
        attempt(&g, "192.0.2.2", "x").await.err(),
        Some(Refused::LoginLocked)
    );
    // At max cluster-wide: banned here, and the ban goes to the cluster.
    *fake.answer.lock().unwrap() = Some(SharedVerdict::Refused {
        addr_failures: 10,
        login_locked: false,
    });
    assert_eq!(
        attempt(&g, "192.0.2.3", "x").await.err(),
        Some(Refused::Banned)
    );
    assert!(g.bans().iter().any(|b| b.addr == "192.0.2.3"));
    let sent = fake.bans.lock().unwrap();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].net, "192.0.2.3");
    assert!(!sent[0].admin);
}

async fn attempts(g: &Guard, addr: &str, n: usize) -> Vec<Result<LoginAttempt, Refused>> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(attempt(g, addr, "admin").await);
    }
    out
}

#[tokio::test]
async fn a_failure_that_takes_the_address_to_max_cluster_wide_bans_it_here() {
    let (_d, g, fake) = joined();
    *fake.answer.lock().unwrap() = Some(SharedVerdict::Go {
        login_failures: 0,
        login_counted: true,
    });
    *fake.failures.lock().unwrap() = Some(10);
    let a = attempt(&g, "192.0.2.9", "admin").await.unwrap();
    a.finish(LoginOutcome::Failure);
    for _ in 0..100 {
        if g.bans().iter().any(|b| b.addr == "192.0.2.9") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        g.bans().iter().any(|b| b.addr == "192.0.2.9"),
        "{:?}",
        g.bans()
    );
    let f = &fake.finished.lock().unwrap()[0];
    assert!(f.failed && !f.succeeded);
    assert_eq!(
        f.login.as_ref().map(|(l, c)| (l.as_str(), *c)),
        Some(("admin", true))
    );
}

#[tokio::test]
async fn bans_from_the_cluster_apply_without_echo_and_ended_ones_keep_their_count() {
    let (dir, g, fake) = joined();
    let until = SystemTime::now() + Duration::from_secs(600);
    g.apply_cluster_ban("198.51.100.7", until, "from node 2", 3)
        .unwrap();
    g.apply_cluster_ban("198.51.100.7", until, "from node 2", 3)
        .unwrap();
    assert!(fake.bans.lock().unwrap().is_empty(), "not sent back");
    assert_eq!(
        g.admit_request(ip("198.51.100.7"), None),
        Admission::Banned { until }
    );
    let log = std::fs::read_to_string(dir.path().join(BAN_LOG_FILE)).unwrap();
    assert_eq!(log.matches("ban 198.51.100.7").count(), 1, "{log}");
    assert!(
        g.apply_cluster_ban("'; DROP TABLE x; --", until, "r", 1)
            .is_err()
    );
    // Lifted in the cluster: admitted, and the count stays for the next ban.
    g.apply_cluster_ban("198.51.100.7", SystemTime::now(), "from node 2", 3)
        .unwrap();
    assert_eq!(
        g.admit_request(ip("198.51.100.7"), None),
        Admission::Admitted
    );
    assert_eq!(
        g.core
            .bans
            .previous_count(&"198.51.100.7/32".parse().unwrap()),
        3
    );
    // Administrator decisions here go to the cluster.
    g.ban(ip("198.51.100.8"), Duration::from_secs(60), "typed")
        .unwrap();
    g.unban(ip("198.51.100.8")).unwrap();
    assert!(fake.bans.lock().unwrap()[0].admin);
    assert_eq!(*fake.unbans.lock().unwrap(), ["198.51.100.8"]);
}
