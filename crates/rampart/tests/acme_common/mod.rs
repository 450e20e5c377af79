//! Shared by the ACME tests that run the real `rampart serve` against
//! Debian's pebble (a real ACME CA) and pebble-challtestsrv (its DNS,
//! which resolves every name to 127.0.0.1): the CA, the server process,
//! and bounded waits on what they serve.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rampart_testkit::{TestClient, free_port, tls_handshake_info, wait_for_port};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::common::{bin, require_program, run_cli};

pub const HOST: &str = "erp.test";
/// Every wait in these tests is bounded; this is the longest one (an order).
pub const ISSUE_WAIT: Duration = Duration::from_secs(90);

/// Debian's pebble and its DNS, found on PATH; a missing one fails the test.
pub fn require_pebble() {
    require_program("pebble", "pebble");
    require_program("pebble-challtestsrv", "pebble");
    require_program("openssl", "openssl");
}

pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Pebble's own HTTPS certificate: a throwaway root (the `ca_bundle`
/// Rampart trusts for the directory) and a leaf for 127.0.0.1. openssl(1)
/// because this package has no certificate generator among its
/// dependencies; scripts/test.sh installs it.
pub fn pebble_https_cert(dir: &Path) {
    let cnf = dir.join("openssl.cnf");
    std::fs::write(
        &cnf,
        "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = pebble test root\n\
         [ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n\
         subjectKeyIdentifier = hash\n\
         [leaf]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n\
         extendedKeyUsage = serverAuth\nsubjectAltName = IP:127.0.0.1,DNS:localhost\n\
         authorityKeyIdentifier = keyid\nsubjectKeyIdentifier = hash\n",
    )
    .unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("cannot run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let cnf = cnf.to_str().unwrap();
    run(&[
        &["req", "-x509", "-config", cnf, "-extensions", "ca"][..],
        &ec[..],
        &["-keyout", "ca.key", "-out", "bundle.pem", "-days", "2"][..],
    ]
    .concat());
    run(&[
        &["req", "-new", "-config", cnf, "-subj", "/CN=127.0.0.1"][..],
        &ec[..],
        &["-keyout", "key.pem", "-out", "leaf.csr"][..],
    ]
    .concat());
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "bundle.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "cert.pem",
        "-days",
        "2",
        "-extfile",
        cnf,
        "-extensions",
        "leaf",
    ]);
}

/// pebble and pebble-challtestsrv on loopback, killed on drop.
pub struct Pebble {
    dir: PathBuf,
    listen: SocketAddr,
    mgmt: SocketAddr,
    children: Vec<Child>,
    /// The address pebble-challtestsrv resolves every name to (where the
    /// CA validates): 127.0.0.1 unless a test points it at another node.
    pub resolve_to: String,
}

impl Pebble {
    /// Chooses the ports and writes the config; `start` runs it. Split so
    /// Rampart can be configured with the directory URL before pebble runs.
    pub fn prepare(dir: PathBuf, http_port: u16, tls_port: u16) -> Pebble {
        std::fs::create_dir_all(&dir).unwrap();
        pebble_https_cert(&dir);
        let p = Pebble {
            listen: loopback(free_port()),
            mgmt: loopback(free_port()),
            dir,
            children: Vec::new(),
            resolve_to: "127.0.0.1".into(),
        };
        let config = format!(
            r#"{{ "pebble": {{
                "listenAddress": "{listen}",
                "managementListenAddress": "{mgmt}",
                "certificate": "{d}/cert.pem", "privateKey": "{d}/key.pem",
                "httpPort": {http_port}, "tlsPort": {tls_port},
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false
            }} }}"#,
            listen = p.listen,
            mgmt = p.mgmt,
            d = p.dir.display(),
        );
        std::fs::write(p.dir.join("pebble.json"), config).unwrap();
        p
    }

    pub fn directory(&self) -> String {
        format!("https://{}/dir", self.listen)
    }

    pub fn bundle(&self) -> PathBuf {
        self.dir.join("bundle.pem")
    }

    pub async fn start(&mut self) {
        let dir = self.dir.clone();
        let log = |name: &str| Stdio::from(std::fs::File::create(dir.join(name)).unwrap());
        let (dns, dns_mgmt) = (loopback(free_port()), loopback(free_port()));
        let challtestsrv = Command::new("pebble-challtestsrv")
            .args(["-defaultIPv4", &self.resolve_to, "-defaultIPv6", ""])
            .args(["-dns01", &dns.to_string()])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &dns_mgmt.to_string()])
            .stdout(log("dns.log"))
            .stderr(log("dns.err"))
            .spawn()
            .expect("pebble-challtestsrv");
        self.children.push(challtestsrv);
        let pebble = Command::new("pebble")
            .arg("-config")
            .arg(self.dir.join("pebble.json"))
            .args(["-dnsserver", &dns.to_string()])
            // Validate at once (no random 0-15 s sleep), really validate,
            // no random nonce rejections, a fresh authorization per order.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_VA_ALWAYS_VALID", "0")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(log("pebble.log"))
            .stderr(log("pebble.err"))
            .spawn()
            .expect("pebble");
        self.children.push(pebble);
        for addr in [dns_mgmt, self.listen, self.mgmt] {
            wait_for_port(addr, Duration::from_secs(30))
                .await
                .unwrap_or_else(|e| panic!("pebble did not start: {e}\n{}", self.log()));
        }
    }

    pub fn log(&self) -> String {
        let read = |n: &str| std::fs::read_to_string(self.dir.join(n)).unwrap_or_default();
        format!("{}{}", read("pebble.log"), read("pebble.err"))
    }

    /// How many new-order requests pebble has received.
    pub fn orders(&self) -> usize {
        self.log().matches("POST /order-plz").count()
    }

    /// A PEM document from pebble's management interface (`/roots/0`, `/intermediates/0`).
    pub async fn management_pem(&self, path: &str) -> String {
        let r = TestClient::new(&self.bundle())
            .get(&format!("https://{}{path}", self.mgmt))
            .await;
        assert_eq!(r.status, 200, "pebble {path}: {}", r.text());
        r.text()
    }
}

impl Pebble {
    /// Kills the CA (and its DNS); returns once the directory port refuses.
    pub fn stop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for _ in 0..100 {
            if std::net::TcpStream::connect(self.listen).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The value of the first sample in Prometheus text that starts with `series`.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

pub async fn metrics(admin: SocketAddr) -> String {
    let r = TestClient::new_plain()
        .get(&format!("http://{admin}/metrics"))
        .await;
    assert_eq!(r.status, 200, "/metrics: {}", r.text());
    r.text()
}

/// One `rampart serve` process; SIGTERM (then SIGKILL) on drop.
pub struct Serve {
    child: Child,
    pub stderr: PathBuf,
}

impl Serve {
    pub async fn start(config: &Path, stderr: PathBuf, listeners: &[SocketAddr]) -> Serve {
        let child = Command::new(bin())
            .arg("serve")
            .arg("--config")
            .arg(config)
            .env("RAMPART_LOG", "info")
            .env_remove("RAMPART_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("cannot start the rampart binary");
        let mut s = Serve { child, stderr };
        for &addr in listeners {
            let deadline = Instant::now() + Duration::from_secs(30);
            while wait_for_port(addr, Duration::from_millis(200))
                .await
                .is_err()
            {
                if let Some(status) = s.child.try_wait().unwrap() {
                    panic!("rampart exited ({status}):\n{}", s.log());
                }
                assert!(
                    Instant::now() < deadline,
                    "rampart not listening on {addr}:\n{}",
                    s.log()
                );
            }
        }
        s
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Sends a signal by name (HUP, TERM) with kill(1).
    pub fn signal(&self, sig: &str) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &pid])
            .status()
            .expect("cannot run kill");
        assert!(status.success(), "kill -{sig} {pid} failed");
    }

    pub fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.stop();
    }
}

/// (tag, content, rest) of the DER element at the start of `b`.
pub fn der(b: &[u8]) -> (u8, &[u8], &[u8]) {
    let (len, head) = if b[1] < 0x80 {
        (usize::from(b[1]), 2)
    } else {
        let n = usize::from(b[1] & 0x7f);
        let len = b[2..2 + n]
            .iter()
            .fold(0usize, |a, &x| a << 8 | usize::from(x));
        (len, 2 + n)
    };
    (b[0], &b[head..head + len], &b[head + len..])
}

/// A certificate's serial number: the first INTEGER of tbsCertificate,
/// after the optional `[0]` version. Enough DER to tell two issues apart
/// without a parser dependency in this package.
pub fn serial(cert: &[u8]) -> Vec<u8> {
    let (_, certificate, _) = der(cert);
    let (_, tbs, _) = der(certificate);
    let (mut tag, mut value, rest) = der(tbs);
    if tag == 0xa0 {
        (tag, value, _) = der(rest);
    }
    assert_eq!(tag, 0x02, "no serial INTEGER in the certificate");
    value.to_vec()
}

pub fn pem_to_der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .expect("a PEM certificate")
        .as_ref()
        .to_vec()
}

/// The chain served for HOST, verified against the roots in `ca`.
pub async fn served_chain(https: SocketAddr, ca: &Path) -> Result<Vec<Vec<u8>>, String> {
    tls_handshake_info(https, ca, HOST, &[b"http/1.1"])
        .await
        .map(|(_, _, chain)| chain)
}

/// Waits (bounded) until `f` returns Some.
pub async fn wait_for<T, F, Fut>(limit: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `rampart <args> --config <config>` off the async workers (it blocks).
pub async fn cli(config: &Path, args: &[&str]) -> (i32, String, String) {
    let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    args.push("--config".into());
    args.push(config.display().to_string());
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_cli(&args)
    })
    .await
    .unwrap()
}
