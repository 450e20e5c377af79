//! Issue 15 §9: `rampart init` writes an nftables ruleset that nft itself
//! accepts (web and SSH open, Odoo, PostgreSQL and the admin port from
//! loopback only), and `rampart audit` reports those ports listening off
//! loopback from the live sockets. Through the real binary.

mod common;

use std::net::TcpListener;
use std::process::Command;

use common::{TempDir, require_program, run_cli};

fn nft_check(nft: &std::path::Path, file: &std::path::Path) -> (bool, String) {
    let out = Command::new(nft)
        .arg("-c")
        .arg("-f")
        .arg(file)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn init_writes_a_ruleset_nft_accepts() {
    let nft = require_program("nft", "nftables");
    let dir = TempDir::new("firewall-init");
    let out_dir = dir.path().display().to_string();
    let (code, out, err) = run_cli(&[
        "init",
        "--domain",
        "erp.example.com",
        "--email",
        "ops@example.com",
        "--out",
        &out_dir,
        "--ssh-port",
        "2222",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("rampart.nft"), "how to load it:\n{out}");
    let path = dir.path().join("rampart.nft");
    let rules = std::fs::read_to_string(&path).expect("init wrote rampart.nft");
    let (ok, why) = nft_check(&nft, &path);
    assert!(ok, "nft -c refuses the ruleset: {why}\n{rules}");
    for wanted in [
        "policy drop",
        "iif \"lo\" accept",
        "tcp dport { 5432, 8069, 8072, 9180 } drop",
        "tcp dport 2222 accept",
        "tcp dport { 80, 443 } accept",
        "nft -f rampart.nft",
    ] {
        assert!(rules.contains(wanted), "{wanted:?} missing:\n{rules}");
    }
    assert!(!rules.contains("flush ruleset"), "{rules}");
    // The private ports are dropped before anything off loopback is accepted.
    assert!(rules.find("9180 } drop").unwrap() < rules.find("2222 accept").unwrap());
    // nft really checks: a broken copy is refused.
    let broken = dir.path().join("broken.nft");
    std::fs::write(&broken, rules.replace("2222 accept", "2222 acept")).unwrap();
    assert!(
        !nft_check(&nft, &broken).0,
        "nft -c accepted a broken ruleset"
    );
}

#[test]
fn audit_reports_ports_listening_off_loopback() {
    let dir = TempDir::new("firewall-audit");
    let public = |_: ()| TcpListener::bind("0.0.0.0:0").unwrap();
    let odoo_http = public(());
    let postgres = public(());
    let admin = public(());
    let evented_local = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = |l: &TcpListener| l.local_addr().unwrap().port();
    let conf = dir.path().join("odoo.conf");
    std::fs::write(
        &conf,
        format!(
            "[options]\nhttp_port = {}\ngevent_port = {}\ndb_port = {}\n",
            port(&odoo_http),
            port(&evented_local),
            port(&postgres)
        ),
    )
    .unwrap();
    let toml = dir.path().join("rampart.toml");
    std::fs::write(
        &toml,
        format!(
            "state_dir = {:?}\n[listen]\nadmin = \"127.0.0.1:{}\"\n[[site]]\nhosts = [\"erp.test\"]\n",
            dir.path().join("state").display().to_string(),
            port(&admin)
        ),
    )
    .unwrap();
    let (code, out, err) = run_cli(&[
        "audit",
        "--odoo-conf",
        conf.to_str().unwrap(),
        "--config",
        toml.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 1, "high findings: {out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let findings = v["findings"].as_array().unwrap();
    let find = |id: &str| {
        findings
            .iter()
            .find(|f| f["id"] == id)
            .unwrap_or_else(|| panic!("no {id} finding: {out}"))
    };
    let f = find("odoo-port-public");
    assert_eq!(f["severity"], "high");
    let what = f["what"].as_str().unwrap();
    assert!(
        what.contains(&format!("0.0.0.0:{}", port(&odoo_http))) && what.contains("http_port"),
        "{f}"
    );
    // The evented port listens on loopback only: not reported.
    assert_eq!(
        findings
            .iter()
            .filter(|f| f["id"] == "odoo-port-public")
            .count(),
        1,
        "{out}"
    );
    let f = find("postgres-port-public");
    assert!(
        f["what"]
            .as_str()
            .unwrap()
            .contains(&format!("0.0.0.0:{}", port(&postgres))),
        "{f}"
    );
    let f = find("admin-port-public");
    assert!(
        f["what"]
            .as_str()
            .unwrap()
            .contains(&format!("0.0.0.0:{}", port(&admin))),
        "{f}"
    );
    assert!(
        v["checked"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c.as_str().unwrap_or("").starts_with("listening sockets")),
        "{out}"
    );

    // Closed, the same audit has none of them.
    drop((odoo_http, postgres, admin));
    let (_, out, _) = run_cli(&[
        "audit",
        "--odoo-conf",
        conf.to_str().unwrap(),
        "--config",
        toml.to_str().unwrap(),
        "--json",
    ]);
    assert!(!out.contains("port-public"), "{out}");
}
