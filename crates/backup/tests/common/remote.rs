//! A real OpenSSH sshd and an S3-compatible server (moto), on loopback.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{PG_USER, chown_to_user, ensure_user, free_port};

fn wait_for_port(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!("{what} exited early: {st}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not listen on 127.0.0.1:{port} within 30 s");
}

/// sshd in the foreground with its own host key, accepting one key for
/// the unprivileged test user through Rampart's forced-command line.
pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// The receiver's directory (what `-d` points at).
    pub store: PathBuf,
    pub client_key: PathBuf,
    pub known_hosts: PathBuf,
    child: Child,
}

fn keygen(path: &Path) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success());
}

impl Sshd {
    pub fn start() -> Sshd {
        ensure_user();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        keygen(&d.join("host_key"));
        keygen(&d.join("client_key"));
        // What the receiver's admin does once: the directories, owned by
        // the backup user, then the forced-command key line.
        let store = d.join("store");
        for sub in ["blobs", "data", "index", "tmp"] {
            std::fs::create_dir_all(store.join(sub)).unwrap();
        }
        chown_to_user(&store);
        let client_pub = std::fs::read_to_string(d.join("client_key.pub")).unwrap();
        let line = rampart_backup::sftp_authorized_keys_line(&client_pub, &store.to_string_lossy());
        std::fs::write(d.join("authorized_keys"), format!("{line}\n")).unwrap();
        let port = free_port();
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
                 AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nUsePAM no\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
                 AllowUsers {PG_USER}\nSubsystem sftp internal-sftp\nLogLevel VERBOSE\n",
                d = d.display()
            ),
        )
        .unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let log = std::fs::File::create(d.join("sshd.log")).unwrap();
        let mut child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("sshd (openssh-server) is installed");
        wait_for_port(port, &mut child, "sshd");
        let host_pub = std::fs::read_to_string(d.join("host_key.pub")).unwrap();
        let mut parts = host_pub.split_whitespace();
        let (kind, key) = (parts.next().unwrap(), parts.next().unwrap());
        let known_hosts = d.join("known_hosts");
        std::fs::write(&known_hosts, format!("[127.0.0.1]:{port} {kind} {key}\n")).unwrap();
        Sshd {
            port,
            store,
            client_key: d.join("client_key"),
            known_hosts,
            child,
            dir,
        }
    }

    pub fn target(&self, name: &str) -> rampart_backup::TargetConfig {
        rampart_backup::TargetConfig {
            name: name.into(),
            url: format!(
                "sftp://{PG_USER}@127.0.0.1:{}{}",
                self.port,
                self.store.display()
            ),
            key: Some(self.client_key.clone()),
            known_hosts: Some(self.known_hosts.clone()),
            ..Default::default()
        }
    }

    /// Runs OpenSSH's own sftp client in batch mode with the writer's key;
    /// returns whether every command succeeded, and the output.
    pub fn sftp_batch(&self, commands: &str) -> (bool, String) {
        let batch = self.dir.path().join("batch");
        std::fs::write(&batch, commands).unwrap();
        let out = Command::new("sftp")
            .args(["-q", "-b"])
            .arg(&batch)
            .arg("-i")
            .arg(&self.client_key)
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .args([
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "BatchMode=yes",
                "-P",
            ])
            .arg(self.port.to_string())
            .arg(format!("{PG_USER}@127.0.0.1"))
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The TCP port process `pid` listens on (IPv4 loopback), from its socket
/// inodes and /proc/net/tcp.
fn listening_port(pid: u32) -> Option<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .flatten()
        .filter_map(|e| {
            let link = std::fs::read_link(e.path()).ok()?;
            let link = link.to_str()?;
            Some(
                link.strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_string(),
            )
        })
        .collect();
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
        let f: Vec<&str> = line.split_whitespace().collect();
        let listening = f.get(3) == Some(&"0A");
        let ours = f.get(9).is_some_and(|i| inodes.iter().any(|x| x == i));
        let port = f.get(1)?.rsplit(':').next()?;
        (listening && ours)
            .then(|| u16::from_str_radix(port, 16).ok())
            .flatten()
    })
}

/// moto's S3-compatible server with one bucket.
pub struct S3Server {
    pub port: u16,
    pub bucket: String,
    child: Child,
}

impl S3Server {
    /// moto binds a port of its own choosing (`-p 0`) and the port is read
    /// from its listening socket: a port picked here and handed over would
    /// be free for the seconds moto takes to start under load, and another
    /// process could take it (the bucket creation then went to a stranger,
    /// or moto failed to bind).
    pub fn start(bucket: &str) -> S3Server {
        let mut child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server (pip install 'moto[server]') is installed");
        let deadline = Instant::now() + Duration::from_secs(60);
        let port = loop {
            if let Some(port) = listening_port(child.id()) {
                break port;
            }
            if let Ok(Some(st)) = child.try_wait() {
                panic!("moto_server exited early: {st}");
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("moto_server did not listen within 60 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        // Built before the bucket is made, so a failure below still stops moto.
        let server = S3Server {
            port,
            bucket: bucket.into(),
            child,
        };
        // Buckets are made by the admin; moto takes an unsigned PUT (and
        // answers 200 again for a bucket it has). Right after its port
        // opens moto may still reset a connection, and its first answer
        // takes seconds under load: retry until a deadline.
        use std::io::{Read, Write};
        let create = || -> std::io::Result<String> {
            let mut s = TcpStream::connect(("127.0.0.1", port))?;
            s.set_read_timeout(Some(Duration::from_secs(30)))?;
            write!(
                s,
                "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )?;
            let mut resp = String::new();
            s.read_to_string(&mut resp)?;
            Ok(resp)
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let resp = loop {
            let resp = create();
            if resp.as_ref().is_ok_and(|r| r.starts_with("HTTP/1.1 200"))
                || Instant::now() >= deadline
            {
                break resp;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let resp = resp.expect("moto_server answers the bucket creation within 60 s");
        assert!(resp.starts_with("HTTP/1.1 200"), "create bucket: {resp}");
        server
    }

    pub fn target(&self, name: &str, prefix: &str) -> rampart_backup::TargetConfig {
        rampart_backup::TargetConfig {
            name: name.into(),
            url: format!("s3://{}/{prefix}", self.bucket),
            endpoint: Some(format!("http://127.0.0.1:{}", self.port)),
            region: Some("us-east-1".into()),
            access_key_id: Some("testing".into()),
            secret_access_key: Some("testing".into()),
            ..Default::default()
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
