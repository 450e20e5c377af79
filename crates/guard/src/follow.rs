//! Following Odoo's log file for "Login failed ... from ADDR" lines.
//!
//! Polled rather than watched with inotify: a poll every half second is
//! cheap, needs no extra dependency, and handles both rotation styles the
//! same way. logrotate either renames the file and Odoo reopens a new one
//! (the inode at the path changes: finish the old file, then read the new
//! one from its start) or copies and truncates it in place (the file
//! shrinks below our position, or the bytes just before our position are no
//! longer the ones we read, when it grew back before we looked: read again
//! from the start).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// Longest line kept; longer ones (a traceback) are cut, not buffered whole.
const MAX_LINE: usize = 64 * 1024;
/// Bytes before the read position remembered to notice a truncated and rewritten file.
const FINGERPRINT: usize = 64;

pub struct Follower {
    path: PathBuf,
    file: Option<File>,
    inode: (u64, u64),
    pos: u64,
    partial: Vec<u8>,
    /// The last bytes read, ending at `pos`.
    tail: Vec<u8>,
    /// The first open starts at the end: older lines were dealt with before
    /// this process started. A file that appears later is read from its start.
    started: bool,
}

impl Follower {
    pub fn new(path: PathBuf) -> Self {
        Follower {
            path,
            file: None,
            inode: (0, 0),
            pos: 0,
            partial: Vec::new(),
            tail: Vec::new(),
            started: false,
        }
    }

    /// Complete new lines since the last call.
    pub fn poll(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        if self.file.is_none() {
            self.reopen();
        }
        if !self.tail_unchanged() {
            self.restart_from_top();
        }
        self.read_available(&mut lines);
        match std::fs::metadata(&self.path) {
            Ok(meta) if (meta.dev(), meta.ino()) != self.inode => {
                // Renamed away: the old file is finished, read what the new one has.
                self.flush_partial(&mut lines);
                self.reopen();
                self.read_available(&mut lines);
            }
            Ok(meta) if meta.len() < self.pos => {
                // Truncated in place (copytruncate).
                self.restart_from_top();
                self.read_available(&mut lines);
            }
            Ok(_) => {}
            Err(_) => {
                // Gone for now (between rename and Odoo reopening): keep the old handle.
            }
        }
        self.started = true;
        lines
    }

    fn reopen(&mut self) {
        match File::open(&self.path) {
            Ok(f) => {
                let Ok(meta) = f.metadata() else { return };
                self.inode = (meta.dev(), meta.ino());
                self.pos = if self.started { 0 } else { meta.len() };
                self.partial.clear();
                self.file = Some(f);
                self.tail = self.bytes_before_pos();
            }
            Err(_) => {
                self.file = None;
            }
        }
        self.started = true;
    }

    fn restart_from_top(&mut self) {
        self.partial.clear();
        self.tail.clear();
        self.pos = 0;
    }

    fn bytes_before_pos(&mut self) -> Vec<u8> {
        let Some(f) = self.file.as_mut() else {
            return Vec::new();
        };
        let start = self.pos.saturating_sub(FINGERPRINT as u64);
        let mut buf = vec![0u8; (self.pos - start) as usize];
        match f
            .seek(SeekFrom::Start(start))
            .and_then(|_| f.read_exact(&mut buf))
        {
            Ok(()) => buf,
            Err(_) => Vec::new(),
        }
    }

    /// False when the bytes before our position changed: the file was
    /// truncated and has grown back past it since the last poll.
    fn tail_unchanged(&mut self) -> bool {
        if self.pos == 0 || self.tail.is_empty() {
            return true;
        }
        let now = self.bytes_before_pos();
        now.is_empty() || now == self.tail
    }

    fn read_available(&mut self, lines: &mut Vec<String>) {
        let Some(f) = self.file.as_mut() else { return };
        if f.seek(SeekFrom::Start(self.pos)).is_err() {
            return;
        }
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = match f.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            self.pos += n as u64;
            self.tail.extend_from_slice(&buf[..n]);
            if self.tail.len() > FINGERPRINT {
                self.tail.drain(..self.tail.len() - FINGERPRINT);
            }
            for &b in &buf[..n] {
                if b == b'\n' {
                    lines.push(String::from_utf8_lossy(&self.partial).into_owned());
                    self.partial.clear();
                } else if self.partial.len() < MAX_LINE {
                    self.partial.push(b);
                }
            }
        }
    }

    fn flush_partial(&mut self, lines: &mut Vec<String>) {
        if !self.partial.is_empty() {
            lines.push(String::from_utf8_lossy(&self.partial).into_owned());
            self.partial.clear();
        }
    }
}

/// The address of an Odoo "Login failed" line, e.g.
/// `... odoo.addons.base.models.res_users: Login failed for db:demo1 login:admin from 203.0.113.7`.
/// None for other lines and for "from n/a" (XML-RPC, no address known).
pub fn login_failure_addr(line: &str) -> Option<IpAddr> {
    let at = line.find("Login failed for db:")?;
    let rest = &line[at..];
    let from = rest.rfind(" from ")?;
    let addr = rest[from + 6..].split_whitespace().next()?;
    addr.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn append(path: &std::path::Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    const FAIL: &str = "2026-11-23 14:56:31,506 24849 INFO demo1 odoo.addons.base.models.res_users: Login failed for db:demo1 login:admin from 203.0.113.7\n";

    #[test]
    fn parses_login_failure_lines() {
        assert_eq!(
            login_failure_addr(FAIL.trim_end()),
            Some("203.0.113.7".parse().unwrap())
        );
        let old = "2019-01-01 10:00:00,000 1 INFO db odoo.addons.base.res.res_users: Login failed for db:db login:a from 2001:db8::5";
        assert_eq!(
            login_failure_addr(old),
            Some("2001:db8::5".parse().unwrap())
        );
        let xmlrpc = "... res_users: Login failed for db:demo1 login:admin from n/a";
        assert_eq!(login_failure_addr(xmlrpc), None);
        // A login name containing " from " cannot inject an address.
        let tricky = "... Login failed for db:d login:x from 1.2.3.4 from 198.51.100.2";
        assert_eq!(
            login_failure_addr(tricky),
            Some("198.51.100.2".parse().unwrap())
        );
        assert_eq!(
            login_failure_addr("... Login successful for db:d login:a from 1.2.3.4"),
            None
        );
    }

    #[test]
    fn follows_appends_and_starts_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("odoo.log");
        append(&log, "old line before start\n");
        let mut f = Follower::new(log.clone());
        assert!(f.poll().is_empty(), "history is not replayed");
        append(&log, "one\ntw");
        assert_eq!(f.poll(), vec!["one"]);
        append(&log, "o\n");
        assert_eq!(
            f.poll(),
            vec!["two"],
            "a line written in two pieces is one line"
        );
    }

    #[test]
    fn survives_rename_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("odoo.log");
        append(&log, "");
        let mut f = Follower::new(log.clone());
        f.poll();
        append(&log, "a\n");
        // logrotate: rename, Odoo keeps writing to the old file briefly, then reopens.
        std::fs::rename(&log, dir.path().join("odoo.log.1")).unwrap();
        append(&dir.path().join("odoo.log.1"), "b\n");
        assert_eq!(f.poll(), vec!["a", "b"]);
        append(&log, "c\n");
        assert_eq!(f.poll(), vec!["c"], "the new file is read from its start");
        append(&log, "d\n");
        assert_eq!(f.poll(), vec!["d"]);
    }

    #[test]
    fn survives_copytruncate() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("odoo.log");
        append(&log, "");
        let mut f = Follower::new(log.clone());
        f.poll();
        append(&log, "a long first line\n");
        assert_eq!(f.poll(), vec!["a long first line"]);
        std::fs::copy(&log, dir.path().join("odoo.log.1")).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&log)
            .unwrap();
        append(&log, "x\n");
        assert_eq!(f.poll(), vec!["x"]);
    }

    #[test]
    fn notices_a_truncated_file_that_grew_back_past_the_position() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("odoo.log");
        append(&log, "");
        let mut f = Follower::new(log.clone());
        f.poll();
        append(&log, "10:00 first\n");
        assert_eq!(f.poll(), vec!["10:00 first"]);
        std::fs::write(&log, "").unwrap();
        append(&log, "10:01 second, longer\n");
        assert_eq!(f.poll(), vec!["10:01 second, longer"]);
    }

    #[test]
    fn file_created_after_start_is_read_from_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("odoo.log");
        let mut f = Follower::new(log.clone());
        assert!(f.poll().is_empty());
        append(&log, "first\n");
        assert_eq!(f.poll(), vec!["first"]);
    }
}
