//! Issue 13 §5: three `rampart serve` nodes (127.0.0.1, .2, .3, the same
//! ports) share one real PostgreSQL and one real ACME CA (Debian's pebble).
//! One node orders, the CA validates on another (pebble-challtestsrv
//! resolves the name to 127.0.0.2 only, while front-1 orders), and all
//! three serve the same certificate; the account and the certificate are
//! stored once, their private keys encrypted. A lease left by a node that
//! died mid-order holds the others back only until it expires.
//!
//! Which node orders is made certain, not left to a race: the test puts
//! the order lease in the name of a node that does not exist (what a node
//! killed mid-order leaves behind), waits until all three are connected,
//! then hands the lease to front-1.

mod acme_common;
mod cluster_common;
mod common;
#[path = "../../backup/tests/common/mod.rs"]
mod pg;
mod slots_common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use acme_common::{
    HOST, ISSUE_WAIT, Pebble, Serve, metrics, require_pebble, served_chain, wait_for,
};
use cluster_common::{cli_config, start_pg};
use common::{TempDir, run_cli};
use pg::PgCluster;
use rampart_testkit::{OdooFixture, free_port};

/// What the three nodes share: ports, the CA, the database, the key.
struct Rig {
    tmp: TempDir,
    pg: PgCluster,
    pebble: Pebble,
    odoo: OdooFixture,
    key: PathBuf,
    ports: (u16, u16, u16),
    challenge: &'static str,
}

impl Rig {
    /// PostgreSQL with the schema, a key from `rampart cluster new-key`,
    /// and pebble validating at 127.0.0.2.
    async fn start(name: &str, challenge: &'static str) -> Rig {
        require_pebble();
        let tmp = TempDir::new(name);
        let pg = start_pg();
        let cli = cli_config(tmp.path(), &pg);
        let (code, out, err) = run_cli(&["--config", cli.to_str().unwrap(), "cluster", "init"]);
        assert_eq!(code, 0, "cluster init: {out}{err}");
        let key = tmp.path().join("cluster.key");
        let (code, out, err) = run_cli(&["cluster", "new-key", key.to_str().unwrap()]);
        assert_eq!(code, 0, "new-key: {out}{err}");
        let (code, _, err) = run_cli(&["cluster", "new-key", key.to_str().unwrap()]);
        assert_ne!(code, 0, "new-key must not replace a key");
        assert!(err.contains("not replacing"), "{err}");
        let ports = (free_port(), free_port(), free_port());
        let (http, https) = match challenge {
            "http-01" => (ports.0, 1),
            _ => (1, ports.1),
        };
        let mut pebble = Pebble::prepare(tmp.path().join("pebble"), http, https);
        pebble.resolve_to = "127.0.0.2".into();
        pebble.start().await;
        let odoo = OdooFixture::start().await;
        Rig {
            tmp,
            pg,
            pebble,
            odoo,
            key,
            ports,
            challenge,
        }
    }

    fn addr(&self, n: usize, port: u16) -> SocketAddr {
        format!("127.0.0.{n}:{port}").parse().unwrap()
    }

    fn https(&self, n: usize) -> SocketAddr {
        self.addr(n, self.ports.1)
    }

    fn admin(&self, n: usize) -> SocketAddr {
        self.addr(n, self.ports.2)
    }

    /// Node `n` (1-based) on 127.0.0.n, its own state_dir.
    async fn node(&self, n: usize) -> Serve {
        self.node_with(n, &self.key, "node").await
    }

    /// Node `n` with `key` as its secret_key_file, in `<prefix>N/`.
    async fn node_with(&self, n: usize, key: &Path, prefix: &str) -> Serve {
        let dir = self.tmp.path().join(format!("{prefix}{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("rampart.toml");
        std::fs::write(&config, self.config_text(n, &dir, Some(key))).unwrap();
        let listeners = [self.https(n), self.admin(n)];
        Serve::start(&config, dir.join("stderr.log"), &listeners).await
    }

    fn config_text(&self, n: usize, dir: &Path, key: Option<&Path>) -> String {
        let key = key
            .map(|k| format!("secret_key_file = {:?}\n", k.display().to_string()))
            .unwrap_or_default();
        format!(
            "state_dir = {state:?}\n\n[listen]\nhttp = \"{http}\"\nhttps = \"{https}\"\nadmin = \"{admin}\"\n\n\
                 [guard]\nrate = {{ per_second = 100000, burst = 100000 }}\n\n\
                 [acme]\nemail = \"ops@example.com\"\ndirectory = \"{directory}\"\nca_bundle = {bundle:?}\nchallenge = \"{challenge}\"\n\n\
                 [[site]]\nhosts = [\"{HOST}\"]\ntls = \"acme\"\nodoo = [\"{odoo_http}\"]\nwebsocket = [\"{odoo_ws}\"]\n\n\
                 [cluster]\npg = \"postgresql://postgres@127.0.0.1:{pg}/rampart\"\nnode = \"front-{n}\"\nheartbeat = \"1s\"\n{key}",
            state = dir.join("state").display().to_string(),
            http = self.addr(n, self.ports.0),
            https = self.https(n),
            admin = self.admin(n),
            directory = self.pebble.directory(),
            bundle = self.pebble.bundle().display().to_string(),
            challenge = self.challenge,
            odoo_http = self.odoo.http_addr,
            odoo_ws = self.odoo.ws_addr,
            pg = self.pg.port,
        )
    }

    fn sql(&self, q: &str) -> String {
        self.pg.psql("rampart", q)
    }

    /// The lease row's key for HOST (`shared_key`: directory, hosts).
    fn lease_key(&self) -> String {
        format!("{} {HOST}", self.pebble.directory())
    }

    /// Puts the order lease in `holder`'s name for `secs` from now.
    fn set_lease(&self, holder: &str, secs: u32) {
        self.sql(&format!(
            "INSERT INTO rampart.order_leases (key, holder, until)
             VALUES ('{k}', '{holder}', now() + interval '{secs} seconds')
             ON CONFLICT (key) DO UPDATE SET holder = EXCLUDED.holder, until = EXCLUDED.until",
            k = self.lease_key()
        ));
    }

    /// pebble's root, the trust anchor of what it issues.
    async fn root(&self) -> PathBuf {
        let p = self.tmp.path().join("pebble-root.pem");
        std::fs::write(&p, self.pebble.management_pem("/roots/0").await).unwrap();
        p
    }
}

/// Waits until every node reports `rampart_cluster_up 1`.
async fn wait_connected(rig: &Rig, nodes: &[Serve]) {
    for (i, s) in nodes.iter().enumerate() {
        let admin = rig.admin(i + 1);
        let up = wait_for(Duration::from_secs(30), || async move {
            let m = metrics(admin).await;
            m.lines().any(|l| l == "rampart_cluster_up 1").then_some(())
        })
        .await;
        assert!(up.is_some(), "node {} never connected:\n{}", i + 1, s.log());
    }
}

/// The leaf each node serves for HOST, verified against `root`.
async fn leaves(rig: &Rig, n: usize, root: &Path) -> Vec<Option<Vec<u8>>> {
    let mut out = Vec::new();
    for i in 1..=n {
        out.push(
            served_chain(rig.https(i), root)
                .await
                .ok()
                .and_then(|c| c.into_iter().next()),
        );
    }
    out
}

async fn one_order_three_nodes(challenge: &'static str) {
    let started = Instant::now();
    let rig = Rig::start(&format!("cluster-certs-{challenge}"), challenge).await;
    // As if a node had died holding the lease: nobody orders yet.
    rig.set_lease("front-0", 3600);
    let nodes = vec![rig.node(1).await, rig.node(2).await, rig.node(3).await];
    wait_connected(&rig, &nodes).await;
    let root = rig.root().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        rig.pebble.orders(),
        0,
        "an order while another node holds the lease"
    );
    assert!(
        leaves(&rig, 3, &root).await.iter().all(Option::is_none),
        "a CA certificate before any order"
    );

    // front-1 orders; pebble validates on 127.0.0.2 (front-2) only.
    rig.set_lease("front-1", 3600);
    let served = wait_for(ISSUE_WAIT, || {
        let (rig, root) = (&rig, &root);
        async move {
            let l = leaves(rig, 3, root).await;
            l.iter().all(Option::is_some).then_some(l)
        }
    })
    .await;
    let logs: Vec<String> = nodes.iter().map(Serve::log).collect();
    let Some(served) = served else {
        panic!(
            "not every node serves a certificate from the CA:\n{}\npebble:\n{}",
            logs.join("\n----\n"),
            rig.pebble.log()
        );
    };
    let leaf = served[0].clone().unwrap();
    for (i, l) in served.iter().enumerate() {
        assert_eq!(
            l.as_ref(),
            Some(&leaf),
            "node {} serves another certificate",
            i + 1
        );
    }
    assert_eq!(
        rig.pebble.orders(),
        1,
        "one order for three nodes:\n{}",
        rig.pebble.log()
    );
    assert!(
        logs[0].contains("new certificate in service"),
        "{}",
        logs[0]
    );
    for (i, log) in logs.iter().enumerate().skip(1) {
        assert!(
            log.contains("certificate stored by another node in service"),
            "node {}:\n{log}",
            i + 1
        );
        assert!(
            !log.contains("ordering a certificate"),
            "node {} ordered:\n{log}",
            i + 1
        );
    }
    assert_eq!(rig.sql("SELECT count(*) FROM rampart.acme_accounts"), "1");
    assert_eq!(rig.sql("SELECT count(*) FROM rampart.certs"), "1");
    assert_eq!(
        rig.sql(
            "SELECT count(*) FROM rampart.certs WHERE position('PRIVATE'::bytea in private_key) > 0
             UNION ALL SELECT count(*) FROM rampart.acme_accounts
             WHERE position('\"key_pkcs8\"'::bytea in credentials) > 0"
        ),
        "0\n0",
        "private keys in clear in PostgreSQL"
    );
    assert_eq!(
        rig.sql("SELECT count(*) FROM rampart.order_leases"),
        "0",
        "the lease is given back"
    );

    // A node started with another key: an error naming its key file, no
    // order, no certificate from the CA (the stored key does not open).
    let other = rig.tmp.path().join("other.key");
    assert_eq!(
        run_cli(&["cluster", "new-key", other.to_str().unwrap()]).0,
        0
    );
    let mut nodes = nodes;
    drop(nodes.pop());
    let wrong = rig.node_with(3, &other, "wrong-key").await;
    let said = wait_for(Duration::from_secs(30), || async {
        wrong.log().contains("cannot decrypt").then_some(())
    })
    .await;
    let log = wrong.log();
    assert!(said.is_some(), "no decryption error:\n{log}");
    assert!(log.contains(&other.display().to_string()), "{log}");
    assert!(!log.contains("ordering a certificate"), "{log}");
    assert_eq!(rig.pebble.orders(), 1, "a wrong key made an order");
    assert!(
        leaves(&rig, 3, &root).await[2].is_none(),
        "node 3 serves a CA certificate"
    );

    // PostgreSQL stopped, node 1 restarted: it serves the certificate
    // from its state_dir, and nothing is ordered.
    drop(wrong);
    cluster_common::pg_ctl(&rig.pg, "stop");
    nodes.remove(0);
    let again = rig.node(1).await;
    let after = leaves(&rig, 1, &root).await.remove(0);
    assert_eq!(
        after.as_ref(),
        Some(&leaf),
        "node 1 without PostgreSQL:\n{}",
        again.log()
    );
    assert_eq!(rig.pebble.orders(), 1);
    println!(
        "{challenge}: one order, three nodes serving it, in {:?}",
        started.elapsed()
    );
}

/// HTTP-01: the CA fetches the token from front-2, which did not order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_acme_order_for_three_nodes_over_http01_and_all_serve_it() {
    one_order_three_nodes("http-01").await;
}

/// TLS-ALPN-01: the CA's handshake reaches front-2, which did not order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_acme_order_for_three_nodes_over_tls_alpn01_and_all_serve_it() {
    one_order_three_nodes("tls-alpn-01").await;
}

/// A node killed mid-order leaves its lease behind (here: a row held by
/// front-9 for 8 s). The others order nothing while it runs, and one of
/// them orders once it has expired; then both serve the certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lease_left_by_a_dead_node_holds_the_others_back_only_until_it_expires() {
    let rig = Rig::start("cluster-certs-lease", "http-01").await;
    rig.set_lease("front-9", 8);
    let set_at = Instant::now();
    // Node 2 answers the CA; node 1 may order as well as node 2.
    let nodes = vec![rig.node(1).await, rig.node(2).await];
    wait_connected(&rig, &nodes).await;
    let root = rig.root().await;
    while set_at.elapsed() < Duration::from_secs(6) {
        assert_eq!(
            rig.pebble.orders(),
            0,
            "an order while the dead node's lease runs"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let served = wait_for(ISSUE_WAIT, || {
        let (rig, root) = (&rig, &root);
        async move {
            let l = leaves(rig, 2, root).await;
            l.iter().all(Option::is_some).then_some(l)
        }
    })
    .await;
    let Some(served) = served else {
        let logs: Vec<String> = nodes.iter().map(Serve::log).collect();
        panic!(
            "no certificate after the lease expired:\n{}",
            logs.join("\n----\n")
        );
    };
    assert_eq!(served[0], served[1]);
    assert_eq!(rig.pebble.orders(), 1, "{}", rig.pebble.log());
    println!(
        "certificate served {:?} after a dead node's 8 s lease was set",
        set_at.elapsed()
    );
}

/// `[cluster]` with a `tls = "acme"` site but no `secret_key_file`: a
/// config error naming the key, before anything starts.
#[test]
fn a_cluster_with_acme_sites_needs_a_secret_key_file() {
    let tmp = TempDir::new("cluster-certs-nokey");
    let config = tmp.path().join("rampart.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = {state:?}\n\n[acme]\nemail = \"ops@example.com\"\n\n\
             [[site]]\nhosts = [\"{HOST}\"]\ntls = \"acme\"\nodoo = [\"127.0.0.1:1\"]\n\n\
             [cluster]\npg = \"postgresql://rampart@127.0.0.1:1/rampart\"\n",
            state = tmp.path().join("state").display().to_string(),
        ),
    )
    .unwrap();
    let (code, out, err) = run_cli(&["--config", config.to_str().unwrap(), "check"]);
    assert_ne!(code, 0, "{out}{err}");
    assert!(
        err.contains("secret_key_file") && err.contains("new-key"),
        "{out}{err}"
    );
}
