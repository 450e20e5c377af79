//! Three `rampart serve` nodes (127.0.0.1, .2, .3) sharing one real
//! PostgreSQL, in front of one Odoo-like fixture.
#![allow(dead_code)]

use std::net::IpAddr;
use std::process::Command;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rampart_testkit::OdooFixture;

use crate::common::{Rampart, Setup, Site};
use crate::pg::{PG_USER, PgCluster};
use crate::slots_common::{CALL_LIMIT, Client, HOST};

pub struct Nodes {
    pub nodes: Vec<Rampart>,
    pub clients: Vec<Client>,
}

/// `[cluster]` for node `n` (1-based) of `pg`'s `rampart` database.
pub fn cluster_toml(pg: &PgCluster, n: usize) -> String {
    format!(
        "\n[cluster]\npg = \"postgresql://postgres@127.0.0.1:{}/rampart\"\nnode = \"front-{n}\"\nheartbeat = \"1s\"\n",
        pg.port
    )
}

/// A PostgreSQL with a `rampart` database and the schema (`rampart cluster init`).
pub fn start_pg() -> PgCluster {
    let pg = PgCluster::start();
    pg.psql("postgres", "CREATE DATABASE rampart");
    pg
}

/// Writes a config holding only `[cluster]` (for the CLI) and returns its path.
pub fn cli_config(dir: &std::path::Path, pg: &PgCluster) -> std::path::PathBuf {
    let p = dir.join("cluster-cli.toml");
    std::fs::write(&p, cluster_toml(pg, 0)).unwrap();
    p
}

/// Three nodes; `cluster` = Some(pg) joins them, None leaves them alone.
pub async fn start_nodes(fixture: &OdooFixture, guard: &str, pg: Option<&PgCluster>) -> Nodes {
    let mut nodes = Vec::new();
    for n in 1..=3 {
        let mut setup = Setup::site(Site::new(HOST, fixture));
        setup.extra = format!("\n[guard]\n{guard}\n");
        if let Some(pg) = pg {
            setup.extra.push_str(&cluster_toml(pg, n));
        }
        setup.ip = Some(format!("127.0.0.{n}"));
        nodes.push(Rampart::start(setup).await);
    }
    let clients = nodes.iter().map(Client::new).collect();
    Nodes { nodes, clients }
}

impl Nodes {
    /// Waits until every node says it is connected (`rampart_cluster_up 1`).
    pub async fn wait_up(&self) {
        for r in &self.nodes {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            loop {
                let m = r.metrics().await;
                if m.lines().any(|l| l == "rampart_cluster_up 1") {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "node {} never connected to PostgreSQL:\n{}",
                    r.https,
                    r.stderr()
                );
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// One POST /web/login from `src` with a form session the fixture knows;
/// the status.
pub async fn post_login(
    c: &Client,
    fixture: &OdooFixture,
    src: IpAddr,
    login: &str,
    password: &str,
) -> u16 {
    let (sid, token) = fixture.login_form_session();
    let body = format!("csrf_token={token}&login={login}&password={password}&redirect=%2Fodoo");
    let tls = c.tls(src, false).await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(conn);
    let req = http::Request::builder()
        .method("POST")
        .uri("/web/login")
        .header("host", format!("{HOST}:{}", c.https.port()))
        .header("cookie", format!("session_id={sid}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let call = async {
        let res = sender.send_request(req).await.expect("an answer");
        let status = res.status().as_u16();
        res.into_body().collect().await.expect("the body");
        status
    };
    tokio::time::timeout(CALL_LIMIT, call)
        .await
        .unwrap_or_else(|_| panic!("no answer to a login from {src} within {CALL_LIMIT:?}"))
}

/// The login POSTs that reached the fixture so far.
pub fn logins_reached(fixture: &OdooFixture) -> usize {
    fixture
        .requests()
        .into_iter()
        .filter(|s| s.method == "POST" && s.path == "/web/login")
        .count()
}

/// `n` failed logins as `login`, from `src(i)`, sent round-robin over the
/// nodes, at most `parallel` at a time; their statuses.
pub async fn burst(
    nodes: &Nodes,
    fixture: &Arc<OdooFixture>,
    n: usize,
    parallel: usize,
    login: &str,
    src: impl Fn(usize) -> IpAddr,
) -> Vec<u16> {
    let gate = Arc::new(tokio::sync::Semaphore::new(parallel));
    let mut tasks = Vec::new();
    for i in 0..n {
        let c = nodes.clients[i % nodes.clients.len()].clone();
        let (fixture, gate, login, src) =
            (fixture.clone(), gate.clone(), login.to_string(), src(i));
        tasks.push(tokio::spawn(async move {
            let _p = gate.acquire_owned().await.unwrap();
            post_login(&c, &fixture, src, &login, "wrong-guess").await
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// pg_ctl on the test cluster: "stop" (fast) or "start" on the same port.
pub fn pg_ctl(pg: &PgCluster, action: &str) {
    let opts = format!(
        "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=40",
        pg.port,
        pg.dir.path().display()
    );
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", PG_USER, "--"])
        .arg(pg.bin.join("pg_ctl"))
        .arg("-D")
        .arg(pg.dir.path().join("data"))
        .arg("-l")
        .arg(pg.dir.path().join("log"));
    if action == "stop" {
        cmd.args(["-m", "fast", "-w", "stop"]);
    } else {
        cmd.args(["-o", &opts, "-w", "-t", "30", "start"]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "pg_ctl {action}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// GET /web/login from `src` on one node; the status.
pub async fn get_status(c: &Client, src: IpAddr) -> u16 {
    c.send(src, "GET", "/web/login", vec![]).await.status
}

/// Sends `sig` (STOP, CONT) to the test PostgreSQL's postmaster and its
/// children: a server that hangs instead of going away.
pub fn pg_signal(pg: &PgCluster, sig: &str) {
    let pidfile = std::fs::read_to_string(pg.dir.path().join("data/postmaster.pid")).unwrap();
    let main = pidfile.lines().next().unwrap().trim().to_string();
    let out = Command::new("ps")
        .args(["-o", "pid=", "--ppid", &main])
        .output()
        .unwrap();
    let mut pids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    pids.push(main);
    let st = Command::new("kill")
        .arg(format!("-{sig}"))
        .args(&pids)
        .status()
        .unwrap();
    assert!(st.success(), "kill -{sig} {pids:?}");
}
