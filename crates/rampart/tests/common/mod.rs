//! Harness for the edge integration tests: writes a rampart.toml into a
//! private temp dir, starts the real `rampart serve` with its listeners on
//! port 0, and learns the ports the kernel gave them from the process's
//! sd_notify READY/STATUS message (the harness plays systemd on
//! NOTIFY_SOCKET): no free-port race, and sd_notify is exercised by every
//! test. It gives the test a client that trusts exactly the local CA this
//! instance created. Dropping the harness stops the process (SIGTERM, then
//! SIGKILL after 5 s) and removes the dir.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rampart_testkit::{OdooFixture, TestClient, TestResponse, free_port};
use tokio::net::UnixDatagram;

/// A directory unique to one test (tempfile's), removed on drop.
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("rampart-{tag}-"))
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temp dir for {tag}: {e}"));
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

/// A TOML value as the toml crate writes it (strings escaped as TOML
/// escapes them, not as Rust's `{:?}` does).
pub fn toml_value(v: impl Into<toml::Value>) -> String {
    v.into().to_string()
}

/// `key = value` lines for a table's plain keys, written by the toml crate.
fn toml_keys(pairs: Vec<(&str, toml::Value)>) -> String {
    let table: toml::Table = pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    toml::to_string(&table).expect("plain keys serialise")
}

/// One `[[site]]`, written as TOML; `extra` is appended verbatim inside
/// the site (plain keys first, then any `[site.x]` tables).
#[derive(Clone, Debug)]
pub struct Site {
    pub hosts: Vec<String>,
    pub odoo: Vec<String>,
    pub websocket: Vec<String>,
    pub extra: String,
}

impl Site {
    /// A site for `host` in front of `fixture`'s two ports.
    pub fn new(host: &str, fixture: &OdooFixture) -> Site {
        Site {
            hosts: vec![host.to_string()],
            odoo: vec![fixture.http_addr.to_string()],
            websocket: vec![fixture.ws_addr.to_string()],
            extra: String::new(),
        }
    }

    /// A site whose upstreams are closed ports.
    pub fn unreachable(host: &str) -> Site {
        Site {
            hosts: vec![host.to_string()],
            odoo: vec![format!("127.0.0.1:{}", free_port())],
            websocket: vec![format!("127.0.0.1:{}", free_port())],
            extra: String::new(),
        }
    }

    pub fn extra(mut self, toml: &str) -> Site {
        self.extra.push_str(toml);
        self.extra.push('\n');
        self
    }

    fn to_toml(&self) -> String {
        let list = |v: &[String]| toml::Value::Array(v.iter().map(|s| s.as_str().into()).collect());
        format!(
            "\n[[site]]\n{}{}\n",
            toml_keys(vec![
                ("hosts", list(&self.hosts)),
                ("tls", "local".into()),
                ("odoo", list(&self.odoo)),
                ("websocket", list(&self.websocket)),
            ]),
            self.extra
        )
    }
}

/// What to write into rampart.toml besides ports and paths.
#[derive(Clone, Debug, Default)]
pub struct Setup {
    pub sites: Vec<Site>,
    /// Extra lines inside `[listen]`.
    pub listen: String,
    /// "combined" (default) or "json".
    pub log_format: Option<String>,
    /// Extra lines inside `[log]` (`process = "json"`).
    pub log: String,
    /// `listen.admin` instead of loopback port 0 (e.g. "unix:/path").
    pub admin: Option<String>,
    /// Top-level tables appended after the sites (`[backup]`, ...).
    pub extra: String,
    /// Extra environment for the `rampart serve` process.
    pub env: Vec<(String, String)>,
    /// The loopback address the listeners bind (default 127.0.0.1).
    pub ip: Option<String>,
}

impl Setup {
    pub fn site(site: Site) -> Setup {
        Setup {
            sites: vec![site],
            ..Setup::default()
        }
    }
}

pub struct Rampart {
    pub dir: TempDir,
    pub child: Option<Child>,
    pub pid: u32,
    pub https: SocketAddr,
    pub http: SocketAddr,
    pub admin: SocketAddr,
    pub config_path: PathBuf,
    pub access_log: PathBuf,
    pub stderr_path: PathBuf,
    pub state_dir: PathBuf,
    pub client: TestClient,
    pub setup: Setup,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_rampart")
}

impl Rampart {
    /// Writes the config and starts `rampart serve` on port 0; panics with
    /// the process's stderr if it does not come up.
    pub async fn start(setup: Setup) -> Rampart {
        let dir = TempDir::new("serve");
        let ip = setup.ip.clone().unwrap_or_else(|| "127.0.0.1".into());
        let any: SocketAddr = format!("{ip}:0").parse().unwrap();
        let state_dir = dir.path().join("state");
        let access_log = dir.path().join("access.log");
        let config_path = dir.path().join("rampart.toml");
        let stderr_path = dir.path().join("stderr.log");
        let mut r = Rampart {
            dir,
            child: None,
            pid: 0,
            https: any,
            http: any,
            admin: any,
            config_path,
            access_log,
            stderr_path,
            state_dir,
            client: TestClient::new_plain(),
            setup,
        };
        r.write_config(&r.setup.clone());
        r.spawn().await;
        // From now on the file names the ports the kernel chose, so a
        // restart (or a test's own) comes back on the same ones, and a
        // config written for a reload keeps them.
        r.write_config(&r.setup.clone());
        r
    }

    /// The rampart.toml text for `setup` with this instance's ports/paths.
    pub fn config_text(&self, setup: &Setup) -> String {
        let admin = setup
            .admin
            .clone()
            .unwrap_or_else(|| self.admin.to_string());
        let mut text = format!(
            "{}\n[listen]\n{}{}\n\n[log]\n{}{}\n",
            toml_keys(vec![(
                "state_dir",
                self.state_dir.display().to_string().into()
            )]),
            toml_keys(vec![
                ("http", self.http.to_string().into()),
                ("https", self.https.to_string().into()),
                ("admin", admin.into()),
            ]),
            setup.listen,
            toml_keys(vec![
                ("access", self.access_log.display().to_string().into()),
                (
                    "format",
                    setup.log_format.as_deref().unwrap_or("combined").into()
                ),
            ]),
            setup.log,
        );
        for s in &setup.sites {
            text.push_str(&s.to_toml());
        }
        text.push_str(&setup.extra);
        text
    }

    /// Replaces rampart.toml (atomically, so a reload never reads half).
    pub fn write_config(&self, setup: &Setup) {
        self.write_config_text(&self.config_text(setup));
    }

    pub fn write_config_text(&self, text: &str) {
        let tmp = self.config_path.with_extension("toml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.config_path).unwrap();
    }

    /// Stops the process (SIGTERM) and starts it again on the same config,
    /// ports and state directory.
    pub async fn restart(&mut self) {
        self.signal("TERM");
        self.wait_exit(Duration::from_secs(15))
            .expect("rampart did not stop on SIGTERM");
        self.spawn().await;
    }

    async fn spawn(&mut self) {
        let stderr = std::fs::File::create(&self.stderr_path).unwrap();
        let notify_path = self.dir.path().join("notify.sock");
        let _ = std::fs::remove_file(&notify_path);
        let notify = UnixDatagram::bind(&notify_path)
            .unwrap_or_else(|e| panic!("cannot bind {}: {e}", notify_path.display()));
        let child = Command::new(bin())
            .arg("serve")
            .arg("--config")
            .arg(&self.config_path)
            .env("RAMPART_LOG", "info")
            .env_remove("RAMPART_CONFIG")
            .env_remove("WATCHDOG_USEC")
            .env("NOTIFY_SOCKET", &notify_path)
            .envs(self.setup.env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("cannot start the rampart binary");
        self.pid = child.id();
        self.child = Some(child);
        let status = self.wait_ready(&notify).await;
        let listening = parse_listening(&status)
            .unwrap_or_else(|| panic!("READY came with an unexpected STATUS: {status:?}"));
        for (name, addr) in listening {
            let tcp = || {
                addr.parse::<SocketAddr>()
                    .unwrap_or_else(|e| panic!("{name} {addr:?} in {status:?}: {e}"))
            };
            match name.as_str() {
                "https" => self.https = tcp(),
                "http" => self.http = tcp(),
                "admin" if !addr.starts_with("unix:") => self.admin = tcp(),
                _ => {}
            }
        }
        self.client = TestClient::new(&self.ca_path());
    }

    /// Reads sd_notify datagrams until READY=1 and the STATUS= line that
    /// names the listeners (both come once every listener is bound).
    async fn wait_ready(&mut self, notify: &UnixDatagram) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        let mut ready = false;
        let mut buf = [0u8; 4096];
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "rampart exited ({status}) before it was ready:\n{}\nconfig:\n{}",
                    self.stderr(),
                    std::fs::read_to_string(&self.config_path).unwrap_or_default()
                );
            }
            assert!(
                std::time::Instant::now() < deadline,
                "rampart did not report READY within 30 s (got {seen:?}):\n{}",
                self.stderr()
            );
            let got = tokio::time::timeout(Duration::from_millis(200), notify.recv(&mut buf)).await;
            let Ok(Ok(n)) = got else { continue };
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            for line in msg.lines() {
                if line == "READY=1" {
                    ready = true;
                } else if let Some(status) = line.strip_prefix("STATUS=")
                    && ready
                    && status.starts_with("serving ")
                {
                    return status.to_string();
                }
            }
            seen.push(msg);
        }
    }

    pub fn ca_path(&self) -> PathBuf {
        self.state_dir.join("ca").join("root.pem")
    }

    pub fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.https.port())
    }

    pub fn http_url(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.http.port())
    }

    pub async fn get(&self, host: &str, path: &str) -> TestResponse {
        self.client.get(&self.url(host, path)).await
    }

    /// POSTs `body` as `content_type` to `path` on `host`.
    pub async fn post(
        &self,
        host: &str,
        path: &str,
        content_type: &str,
        body: impl Into<Vec<u8>>,
    ) -> TestResponse {
        let headers = [("content-type", content_type)];
        let url = self.url(host, path);
        self.client
            .request("POST", &url, &headers, body.into())
            .await
    }

    /// What a browser does before posting the login form: GET /web/login through Rampart and keep
    /// the session cookie it sets and the CSRF token rendered into the form (Odoo refuses a login
    /// POST without both). Returns (`session_id=...` for a Cookie header, token).
    pub async fn login_form(&self, host: &str) -> (String, String) {
        let page = self.get(host, "/web/login").await;
        assert_eq!(page.status, 200, "GET /web/login: {}", page.text());
        let cookie = page
            .header_all("set-cookie")
            .into_iter()
            .find(|c| c.starts_with("session_id="))
            .and_then(|c| c.split(';').next())
            .unwrap_or_else(|| panic!("the login page set no session cookie: {:?}", page.headers))
            .to_string();
        let html = page.text();
        let token = html
            .split(r#"name="csrf_token" value=""#)
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("no csrf_token in the login form:\n{html}"))
            .to_string();
        (cookie, token)
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn access_log_text(&self) -> String {
        std::fs::read_to_string(&self.access_log).unwrap_or_default()
    }

    /// Waits (up to 10 s) until the access log has a line containing all
    /// of `needles`; returns that line.
    pub async fn wait_access_line(&self, needles: &[&str]) -> String {
        wait_line(&self.access_log, needles).await
    }

    /// Waits (up to 10 s) until stderr has a line containing all `needles`.
    pub async fn wait_stderr_line(&self, needles: &[&str]) -> String {
        wait_line(&self.stderr_path, needles).await
    }

    /// Sends a signal by name (HUP, USR1, TERM) with kill(1).
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid.to_string())
            .status()
            .expect("cannot run kill");
        assert!(status.success(), "kill -{sig} {} failed", self.pid);
    }

    /// GET on the admin listener (plain HTTP).
    pub async fn admin_get(&self, path: &str) -> TestResponse {
        TestClient::new_plain()
            .get(&format!("http://{}{path}", self.admin))
            .await
    }

    pub async fn metrics(&self) -> String {
        let r = self.admin_get("/metrics").await;
        assert_eq!(r.status, 200, "/metrics: {}", r.text());
        r.text()
    }

    /// The peak resident memory of the rampart process, in KiB.
    pub fn vm_hwm_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/<pid>/status")
    }

    /// Waits for the process to exit on its own, up to `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        let child = self.child.as_mut()?;
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return Some(s);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Rampart {
    fn drop(&mut self) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status();
        if self.wait_exit(Duration::from_secs(5)).is_none()
            && let Some(child) = self.child.as_mut()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub async fn wait_line(path: &Path, needles: &[&str]) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
            return line.to_string();
        }
        if tokio::time::Instant::now() >= deadline {
            panic!(
                "no line containing {needles:?} in {} after 10 s; it has:\n{text}",
                path.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `serving 1 site(s) on https 127.0.0.1:41234, http 127.0.0.1:41235, admin unix:/x`
/// → [("https", "127.0.0.1:41234"), ...].
pub fn parse_listening(status: &str) -> Option<Vec<(String, String)>> {
    let (_, list) = status.split_once(" on ")?;
    list.split(", ")
        .map(|part| {
            let (name, addr) = part.split_once(' ')?;
            Some((name.to_string(), addr.to_string()))
        })
        .collect()
}

/// The status code of a raw HTTP answer (`HTTP/1.1 400 ...`), or 0.
pub fn raw_status(raw: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(raw);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Runs `rampart <args>` to completion; (exit code, stdout, stderr).
pub fn run_cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin())
        .args(args)
        .env_remove("RAMPART_CONFIG")
        .output()
        .expect("cannot run the rampart binary");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The program `name` as `command -v` finds it on PATH (scripts/test.sh
/// checks and installs the same way); a missing one fails the test, naming
/// the Debian package that provides it. Nothing in the suite is optional.
pub fn require_program(name: &str, package: &str) -> PathBuf {
    find_program(name).unwrap_or_else(|| {
        panic!(
            "{name} is not on PATH: install the Debian package {package} (scripts/test.sh installs it)"
        )
    })
}

pub fn find_program(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// `[guard]` for the guard tests (after the harness's [listen]): rates no
/// test reaches, and `max` failed logins within 60 s ban for 15 min.
pub fn guard_failures(max: u32) -> String {
    format!(
        "\n[guard]\nrate = {{ per_second = 5000, burst = 5000 }}\n\
         login_rate = {{ per_minute = 60000, burst = 5000 }}\n\
         login_failures = {{ max = {max}, within = \"60s\", ban = \"15m\" }}\n"
    )
}

/// Rampart in front of `fixture` for one site `host` (with `site_extra`
/// TOML), the guard as [`guard_failures`] sets it.
pub async fn start_guarded(
    fixture: &OdooFixture,
    host: &str,
    max: u32,
    site_extra: &str,
) -> Rampart {
    Rampart::start(Setup {
        sites: vec![Site::new(host, fixture).extra(site_extra)],
        listen: guard_failures(max),
        ..Setup::default()
    })
    .await
}

/// The value of the first Prometheus sample whose name (and labels, if
/// `name` has them) is `name`: `name 3` or `name{site="x"} 3`.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let rest = l.strip_prefix(name)?;
            if !(rest.starts_with(' ') || rest.starts_with('{')) {
                return None;
            }
            l.rsplit(' ').next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
}
