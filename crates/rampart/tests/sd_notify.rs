//! `rampart serve` under systemd's notify protocol: READY and STATUS
//! lines, WATCHDOG=1 when WatchdogSec asks for it, RELOADING=1 with
//! MONOTONIC_USEC (Type=notify-reload) on SIGHUP. A datagram socket in a
//! temp dir plays systemd.

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{TempDir, bin};
use rampart_testkit::free_port;

fn monotonic_usec() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

/// Reads datagrams until one satisfies `want`, up to 20 s.
fn wait_for(sock: &UnixDatagram, seen: &mut Vec<String>, want: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 4096];
    loop {
        assert!(
            Instant::now() < deadline,
            "no such notification; got {seen:?}"
        );
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            seen.push(msg.clone());
            if want(&msg) {
                return msg;
            }
        }
    }
}

struct Killed(std::process::Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn serve_speaks_sd_notify_with_watchdog_and_reload() {
    let dir = TempDir::new("sd-notify");
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let cfg = dir.path().join("rampart.toml");
    // Every listener on port 0: READY's STATUS= names what the kernel chose.
    std::fs::write(
        &cfg,
        format!(
            "state_dir = {}\n[listen]\nhttps = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n[log]\naccess = \"off\"\n[[site]]\nhosts = [\"erp.test\"]\nodoo = [\"127.0.0.1:{}\"]\n",
            common::toml_value(dir.path().join("state").display().to_string()),
            free_port()
        ),
    )
    .unwrap();
    let stderr_path = dir.path().join("stderr.log");
    let child = Command::new(bin())
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "400000")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("cannot start the rampart binary");
    let pid = child.id();
    let _child = Killed(child);
    let mut seen = Vec::new();
    wait_for(&sock, &mut seen, |m| m == "READY=1");
    let status = wait_for(&sock, &mut seen, |m| m.starts_with("STATUS="));
    assert!(status.contains("serving 1 site"), "{status}");
    let listening = common::parse_listening(&status).unwrap_or_else(|| panic!("{status}"));
    let names: Vec<&str> = listening.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["https", "http", "admin"], "{status}");
    for (name, addr) in &listening {
        let addr: std::net::SocketAddr = addr.parse().unwrap();
        assert_ne!(addr.port(), 0, "{status}");
        std::net::TcpStream::connect(addr)
            .unwrap_or_else(|e| panic!("{name} {addr} from {status:?}: {e}"));
    }
    wait_for(&sock, &mut seen, |m| m == "WATCHDOG=1");
    wait_for(&sock, &mut seen, |m| m == "WATCHDOG=1");

    let before = monotonic_usec();
    let ok = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let reloading = wait_for(&sock, &mut seen, |m| m.starts_with("RELOADING=1"));
    let usec: u64 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {reloading:?}"))
        .parse()
        .unwrap();
    assert!(
        usec >= before && usec <= monotonic_usec(),
        "MONOTONIC_USEC={usec} is not between SIGHUP ({before}) and now"
    );
    wait_for(&sock, &mut seen, |m| m == "READY=1");
    wait_for(&sock, &mut seen, |m| m == "STATUS=config reloaded");
    // The same file again: port 0 matches the bound ports, nothing "changed".
    let log = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(!log.contains("listen addresses changed"), "{log}");
}
