//! systemd's sd_notify protocol: datagrams to $NOTIFY_SOCKET. READY,
//! STOPPING and STATUS= lines; RELOADING=1 with MONOTONIC_USEC so
//! `Type=notify-reload` works; WATCHDOG=1 at half of `WatchdogSec` when
//! systemd asks for it. A few lines do not warrant a dependency.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let r = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
    } else {
        sock.send_to(state.as_bytes(), &path)
    };
    if let Err(e) = r {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

/// A human line for `systemctl status`.
pub fn status(text: &str) {
    notify(&format!("STATUS={}", text.replace('\n', " ")));
}

/// Before a reload: systemd (`Type=notify-reload`) matches the timestamp
/// against the moment it sent SIGHUP.
pub fn reloading() {
    notify(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
}

fn monotonic_usec() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

/// The keep-alive interval systemd asks for (`WatchdogSec=`), halved as
/// sd_watchdog_enabled(3) advises; None when the watchdog is off or meant
/// for another process.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}
