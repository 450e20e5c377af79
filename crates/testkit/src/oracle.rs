//! What the differential tests share: a deterministic generator for their
//! corpora, their knobs from the environment, and the runner that feeds a
//! Python oracle one case a line and reads one JSON answer a line. The
//! world is the oracle: python3 (or a module) missing is a failure that
//! names what to install, never a skip.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};

/// A small deterministic generator (xorshift64*): no dependency, the same
/// corpus for a seed on every machine.
pub struct Rng(u64);

impl Rng {
    /// `seed` must not be 0 (xorshift stays at 0): callers pass `seed | 1`
    /// when the seed comes from outside.
    pub fn new(seed: u64) -> Rng {
        assert_ne!(seed, 0, "xorshift needs a non-zero seed");
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// One of `items` (not empty).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// True one time in `one_in`.
    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// A number from the environment (`RAMPART_DIFF_CASES`, a seed...), or
/// `default` when unset; a value that is not a number is an error.
pub fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// Lowercase hex, how the oracles take bytes on one line.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Starts `python script` with piped stdin and stdout; `needs` says what
/// to install when it cannot start.
pub fn spawn(python: &str, script: &str, needs: &str) -> Child {
    Command::new(python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python} {script}: {e} (needs {needs})"))
}

/// Fails, naming what to install, unless `python` can import `module`.
pub fn require_module(python: &str, module: &str, needs: &str) {
    let out = Command::new(python)
        .args(["-c", &format!("import {module}")])
        .output()
        .unwrap_or_else(|e| panic!("{python} is needed for this test: {e} (needs {needs})"));
    assert!(
        out.status.success(),
        "{python} cannot import {module} (needs {needs}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs the oracle over every case in one process: `lines` are written
/// (one case a line, from a thread so a full pipe cannot deadlock), one
/// JSON answer a line is read back. The oracle must exit 0 and answer
/// every case.
pub fn run(python: &str, script: &str, needs: &str, lines: Vec<String>) -> Vec<serde_json::Value> {
    let mut child = spawn(python, script, needs);
    let mut stdin = child.stdin.take().expect("piped");
    let cases = lines.len();
    let writer = std::thread::spawn(move || {
        let mut input = String::new();
        for l in lines {
            input.push_str(&l);
            input.push('\n');
        }
        stdin
            .write_all(input.as_bytes())
            .expect("write to the oracle");
    });
    let answers: Vec<serde_json::Value> = BufReader::new(child.stdout.take().expect("piped"))
        .lines()
        .map(|l| {
            let l = l.expect("oracle output");
            serde_json::from_str(&l).unwrap_or_else(|e| panic!("oracle answer not JSON ({e}): {l}"))
        })
        .collect();
    writer.join().expect("writer");
    let status = child.wait().expect("oracle exit");
    assert!(status.success(), "the oracle {script} failed: {status}");
    assert_eq!(answers.len(), cases, "the oracle answered every case");
    answers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_corpus() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        let xs: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..5).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs[0], xs[1]);
        let mut r = Rng::new(3);
        assert!((0..100).all(|_| r.below(4) < 4));
    }

    #[test]
    fn hex_is_lowercase_two_digits_a_byte() {
        assert_eq!(hex(&[0, 0xab, 0x10]), "00ab10");
    }
}
