//! Progress: bars on a terminal, plain lines otherwise (journald, cron
//! mail and CI logs want lines, not carriage returns).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// Where backup commands report progress: bars, plain lines, or nothing.
#[derive(Clone)]
pub struct Progress {
    mode: Mode,
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Quiet,
    Lines,
    Bars,
}

impl Progress {
    /// Bars when stderr is a terminal, lines otherwise.
    pub fn auto() -> Progress {
        let mode = if std::io::stderr().is_terminal() {
            Mode::Bars
        } else {
            Mode::Lines
        };
        Progress { mode }
    }

    /// Reports nothing.
    pub fn quiet() -> Progress {
        Progress { mode: Mode::Quiet }
    }

    /// One line of progress on stderr (nothing when quiet).
    pub fn line(&self, msg: impl AsRef<str>) {
        match self.mode {
            Mode::Quiet => {}
            _ => eprintln!("{}", msg.as_ref()),
        }
    }

    /// A task measured in bytes; `done` on the returned handle ends it.
    pub fn bytes(&self, label: &str, total: u64) -> Task {
        let bar = match self.mode {
            Mode::Bars => {
                let b = ProgressBar::new(total);
                b.set_style(
                    ProgressStyle::with_template(
                        "{msg:24} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                    )
                    .expect("valid template")
                    .progress_chars("=> "),
                );
                b.set_message(label.to_string());
                b.enable_steady_tick(Duration::from_millis(200));
                Some(b)
            }
            Mode::Lines => {
                if total > 0 {
                    eprintln!("{label}: {} to read", human_bytes(total));
                } else {
                    eprintln!("{label}: started");
                }
                None
            }
            Mode::Quiet => None,
        };
        Task {
            bar,
            label: label.to_string(),
            lines: self.mode == Mode::Lines,
        }
    }
}

pub struct Task {
    bar: Option<ProgressBar>,
    label: String,
    lines: bool,
}

impl Task {
    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }

    pub fn done(self, summary: &str) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
            eprintln!("{}: {summary}", self.label);
        } else if self.lines {
            eprintln!("{}: {summary}", self.label);
        }
    }
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn human_bytes_reads_well() {
        assert_eq!(super::human_bytes(512), "512 B");
        assert_eq!(super::human_bytes(1536), "1.5 KiB");
        assert_eq!(super::human_bytes(3 << 30), "3.0 GiB");
    }
}
