//! Debian's pebble (a real ACME CA) and pebble-challtestsrv (its DNS) on loopback.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::TempDir;

pub struct Pebble {
    pebble: Option<Child>,
    dns: Child,
    pub dir: TempDir,
    pub directory: String,
    pub bundle: PathBuf,
    listen_port: u16,
}

/// The EAB key pebble's example config uses for kid-1.
pub const EAB_KID: &str = "kid-1";
pub const EAB_KEY: &str = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Debian's pebble and pebble-challtestsrv, found on PATH as `command -v`
/// finds them (scripts/test.sh checks the same way); a missing one fails the
/// test by name: nothing in the suite is optional.
pub fn require() {
    for name in ["pebble", "pebble-challtestsrv"] {
        assert!(
            on_path(name),
            "{name} is not on PATH: install the Debian package pebble (scripts/test.sh installs it)"
        );
    }
}

fn on_path(name: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|d| {
            std::fs::metadata(d.join(name))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

impl Pebble {
    /// Starts pebble validating HTTP-01 on `http_port` and TLS-ALPN-01 on
    /// `tls_port` of 127.0.0.1 (every name resolves there).
    pub fn start(tag: &str, http_port: u16, tls_port: u16, eab: bool) -> Pebble {
        let dir = TempDir::new(tag);
        // Pebble's own HTTPS certificate, from a test root the ACME client trusts via ca_bundle.
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "pebble test root");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        let bundle = dir.path().join("bundle.pem");
        std::fs::write(&bundle, ca_cert.pem()).unwrap();
        std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();

        let (listen_port, mgmt_port, dns_port, dns_mgmt) =
            (free_port(), free_port(), free_port(), free_port());
        let eab_keys = if eab {
            format!(r#", "externalAccountMACKeys": {{ "{EAB_KID}": "{EAB_KEY}" }}"#)
        } else {
            String::new()
        };
        let config = format!(
            r#"{{ "pebble": {{
                "listenAddress": "127.0.0.1:{listen_port}",
                "managementListenAddress": "127.0.0.1:{mgmt_port}",
                "certificate": "{cert}", "privateKey": "{key}",
                "httpPort": {http_port}, "tlsPort": {tls_port},
                "ocspResponderURL": "",
                "externalAccountBindingRequired": {eab}{eab_keys}
            }} }}"#,
            cert = dir.path().join("cert.pem").display(),
            key = dir.path().join("key.pem").display(),
        );
        std::fs::write(dir.path().join("pebble.json"), config).unwrap();
        let log = |name: &str| Stdio::from(std::fs::File::create(dir.path().join(name)).unwrap());
        let dns = Command::new("pebble-challtestsrv")
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{dns_mgmt}")])
            .stdout(log("dns.log"))
            .stderr(log("dns.err"))
            .spawn()
            .expect("pebble-challtestsrv");
        let pebble = Command::new("pebble")
            .arg("-config")
            .arg(dir.path().join("pebble.json"))
            .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_VA_ALWAYS_VALID", "0")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(log("pebble.log"))
            .stderr(log("pebble.err"))
            .spawn()
            .expect("pebble");
        let p = Pebble {
            pebble: Some(pebble),
            dns,
            directory: format!("https://127.0.0.1:{listen_port}/dir"),
            bundle,
            dir,
            listen_port,
        };
        for _ in 0..300 {
            if std::net::TcpStream::connect(("127.0.0.1", listen_port)).is_ok() {
                return p;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("pebble did not start: {}", p.log());
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.pebble.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Until the port is closed, a "down" CA could still answer.
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.listen_port)).is_err() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop();
        let _ = self.dns.kill();
        let _ = self.dns.wait();
    }
}
