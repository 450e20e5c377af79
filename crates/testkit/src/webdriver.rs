//! A real browser for the tests: Debian's `chromium`, headless, driven through `chromedriver` over
//! W3C WebDriver (HTTP + JSON).
//!
//! Hand-written because the tests need a dozen endpoints (new session, navigate, find, type, click,
//! run a script, screenshot, read the console) and each is one JSON request; a WebDriver crate would
//! bring its own HTTP stack and async runtime choices for that. The wire is HTTP/1.1 with
//! `Connection: close` to chromedriver on loopback, one request per connection.
//!
//! No silent skip: a missing `chromium` or `chromedriver` panics naming the Debian package.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::client::{free_port, wait_for_port};
use crate::util;

/// The element key of W3C WebDriver's element references.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long one WebDriver command may take (a 20 MB upload runs inside one script call).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(90);

/// How to start the browser.
#[derive(Clone, Debug, Default)]
pub struct BrowserOptions {
    /// `host` names the browser resolves to 127.0.0.1 (Chromium `--host-resolver-rules`).
    pub hosts: Vec<String>,
    /// Speak only HTTP/1.1 to servers (`--disable-http2`).
    pub disable_http2: bool,
}

/// Finds an executable on PATH or at the usual Debian place.
fn find_executable(name: &str, debian_package: &str) -> PathBuf {
    let from_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    from_path
        .or_else(|| Some(Path::new("/usr/bin").join(name)).filter(|p| p.is_file()))
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not installed: the browser tests need it (Debian package `{debian_package}`; scripts/test.sh installs it)"
            )
        })
}

/// A chromedriver process with one Chromium session. Dropping it ends the session and the
/// driver, and removes the browser's profile directory.
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    profile: PathBuf,
    /// chromedriver's own log, for failure messages.
    pub driver_log: PathBuf,
}

impl Browser {
    pub async fn start(opts: BrowserOptions) -> Browser {
        let chromium = find_executable("chromium", "chromium");
        let chromedriver = find_executable("chromedriver", "chromium-driver");
        let profile = std::env::temp_dir().join(format!(
            "rampart-browser-{}-{}",
            std::process::id(),
            util::random_token(10)
        ));
        std::fs::create_dir_all(&profile)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", profile.display()));
        let driver_log = profile.with_extension("chromedriver.log");
        let port = free_port();
        let log = std::fs::File::create(&driver_log)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", driver_log.display()));
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("a second handle on the log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
        let mut browser = Browser {
            driver,
            port,
            session: String::new(),
            profile,
            driver_log,
        };
        let addr = format!("127.0.0.1:{port}").parse().unwrap();
        if let Err(e) = wait_for_port(addr, Duration::from_secs(20)).await {
            panic!(
                "chromedriver did not listen on {addr}: {e}\n{}",
                browser.log_text()
            );
        }
        let mut args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            "--window-size=1280,900".into(),
            format!("--user-data-dir={}", browser.profile.display()),
        ];
        if !opts.hosts.is_empty() {
            let rules: Vec<String> = opts
                .hosts
                .iter()
                .map(|h| format!("MAP {h} 127.0.0.1"))
                .collect();
            args.push(format!("--host-resolver-rules={}", rules.join(",")));
        }
        if opts.disable_http2 {
            args.push("--disable-http2".into());
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            // Rampart's local CA is made per test; the browser is not told to trust it.
            "acceptInsecureCerts": true,
            "pageLoadStrategy": "normal",
            "goog:chromeOptions": {"binary": chromium, "args": args},
            "goog:loggingPrefs": {"browser": "ALL"}
        }}});
        let created = browser.call("POST", "/session", Some(capabilities)).await;
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromedriver made no session: {created}"))
            .to_string();
        browser
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.driver_log).unwrap_or_default()
    }

    /// One WebDriver command; returns its `value`, panics on an error answer.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        match self.try_call(method, path, body).await {
            Ok(v) => v,
            Err(e) => panic!("WebDriver {method} {path}: {e}"),
        }
    }

    async fn try_call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let exchange = async {
            let mut tcp = TcpStream::connect(("127.0.0.1", self.port))
                .await
                .map_err(|e| format!("cannot reach chromedriver: {e}"))?;
            let body = body.map(|b| b.to_string()).unwrap_or_default();
            let request = format!(
                "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                self.port,
                body.len()
            );
            tcp.write_all(request.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            // chromedriver keeps the connection open after its answer whatever Connection says:
            // read the head, then exactly the body it announces.
            let mut raw = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            let end = loop {
                if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                    break end;
                }
                let n = tcp.read(&mut buf).await.map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err(format!(
                        "EOF before the head: {}",
                        String::from_utf8_lossy(&raw)
                    ));
                }
                raw.extend_from_slice(&buf[..n]);
            };
            let head = String::from_utf8_lossy(&raw[..end]).into_owned();
            let mut body = raw[end + 4..].to_vec();
            let length = head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())
                    .flatten()
            });
            let chunked = head
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked");
            loop {
                let complete = match length {
                    Some(len) => body.len() >= len,
                    None if chunked => body.ends_with(b"0\r\n\r\n"),
                    None => false,
                };
                if complete {
                    break;
                }
                let n = tcp.read(&mut buf).await.map_err(|e| e.to_string())?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&buf[..n]);
            }
            if chunked {
                body = dechunk(&body);
            }
            Ok::<_, String>((head, body))
        };
        let (head, body) = tokio::time::timeout(COMMAND_TIMEOUT, exchange)
            .await
            .map_err(|_| format!("no answer within {COMMAND_TIMEOUT:?}"))??;
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line: {head}"))?;
        let value: Value = serde_json::from_slice(&body)
            .map_err(|e| format!("not JSON ({e}): {}", String::from_utf8_lossy(&body)))?;
        if status != 200 {
            // The message says what went wrong; chromedriver's stack trace does not.
            let message = value["value"]["message"]
                .as_str()
                .map(|m| m.lines().next().unwrap_or(m).to_string())
                .unwrap_or_else(|| value["value"].to_string());
            return Err(format!("HTTP {status}: {message}"));
        }
        Ok(value.get("value").cloned().unwrap_or(value))
    }

    fn at(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    pub async fn goto(&self, url: &str) {
        self.call("POST", &self.at("/url"), Some(json!({ "url": url })))
            .await;
    }

    /// Resizes the window (W3C Set Window Rect), e.g. to the page's height before a screenshot.
    pub async fn set_window_size(&self, width: u32, height: u32) {
        self.call(
            "POST",
            &self.at("/window/rect"),
            Some(json!({ "width": width, "height": height })),
        )
        .await;
    }

    pub async fn current_url(&self) -> String {
        let v = self.call("GET", &self.at("/url"), None).await;
        v.as_str().unwrap_or_default().to_string()
    }

    /// The first element matching a CSS selector, or why not.
    pub async fn find(&self, css: &str) -> Result<String, String> {
        let v = self
            .try_call(
                "POST",
                &self.at("/element"),
                Some(json!({"using": "css selector", "value": css})),
            )
            .await?;
        v[ELEMENT_KEY]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("not an element reference: {v}"))
    }

    /// Like [`Browser::find`], but waits up to `limit` for the element to appear.
    pub async fn wait_for(&self, css: &str, limit: Duration) -> Result<String, String> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let error = match self.find(css).await {
                Ok(el) => return Ok(el),
                Err(e) => e,
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "no element `{css}` after {limit:?} on {} ({error})",
                    self.current_url().await
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn send_keys(&self, element: &str, text: &str) {
        self.call(
            "POST",
            &self.at(&format!("/element/{element}/value")),
            Some(json!({ "text": text })),
        )
        .await;
    }

    pub async fn click(&self, element: &str) {
        self.call(
            "POST",
            &self.at(&format!("/element/{element}/click")),
            Some(json!({})),
        )
        .await;
    }

    pub async fn text(&self, element: &str) -> String {
        let v = self
            .call("GET", &self.at(&format!("/element/{element}/text")), None)
            .await;
        v.as_str().unwrap_or_default().to_string()
    }

    /// Runs a synchronous script in the page; returns what it returns.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.call(
            "POST",
            &self.at("/execute/sync"),
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// Runs an asynchronous script: it gets a callback as its last argument.
    pub async fn execute_async(&self, script: &str, args: Vec<Value>) -> Value {
        // The page's own script timeout (30 s by default) must cover a 20 MB round trip.
        self.call(
            "POST",
            &self.at("/timeouts"),
            Some(json!({"script": COMMAND_TIMEOUT.as_millis() as u64 - 5_000})),
        )
        .await;
        self.call(
            "POST",
            &self.at("/execute/async"),
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// The browser console since the last call (chromedriver's `goog:loggingPrefs` log).
    pub async fn console(&self) -> Vec<Value> {
        let v = self
            .call(
                "POST",
                &self.at("/se/log"),
                Some(json!({"type": "browser"})),
            )
            .await;
        v.as_array().cloned().unwrap_or_default()
    }

    /// Saves a PNG of the page; returns the path, or why not.
    pub async fn screenshot(&self, path: &Path) -> Result<PathBuf, String> {
        let v = self.try_call("GET", &self.at("/screenshot"), None).await?;
        let png = base64_decode(v.as_str().unwrap_or_default())?;
        std::fs::write(path, png).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(path.to_path_buf())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session closes Chromium; chromedriver goes with the kill.
        if !self.session.is_empty() {
            let port = self.port;
            let path = format!("/session/{}", self.session);
            let _ = std::thread::spawn(move || {
                use std::io::{Read, Write};
                if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                    let _ = s.write_all(
                        format!(
                            "DELETE {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\r\n"
                        )
                        .as_bytes(),
                    );
                    // The answer comes once Chromium has closed; the connection stays open.
                    let _ = s.read(&mut [0u8; 4096]);
                }
            })
            .join();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
        let _ = std::fs::remove_file(&self.driver_log);
    }
}

fn dechunk(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(i) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&rest[..i])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 || rest.len() < i + 2 + size {
            break;
        }
        out.extend_from_slice(&rest[i + 2..i + 2 + size]);
        rest = &rest[(i + 4 + size).min(rest.len())..];
    }
    out
}

fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b'\n' | b'\r' => continue,
            _ => return Err(format!("not base64: byte {c}")),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip() {
        let data: Vec<u8> = (0..=255).collect();
        assert_eq!(base64_decode(&util::base64_encode(&data)).unwrap(), data);
    }

    #[test]
    fn dechunks() {
        assert_eq!(dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), b"abcde");
    }
}
