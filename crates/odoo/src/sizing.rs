//! Worker counts and memory limits, by the rules of Odoo's deployment guide.
//!
//! - workers ≤ (#CPU × 2) + 1, counting the cron worker;
//! - one HTTP worker serves about 6 concurrent users;
//! - RAM ≈ processes × (light share × 150 MB + heavy share × 1 GB), with 80 %
//!   light and 20 % heavy requests by default.
//!
//! The guide's example: 4 CPUs and 60 users need 10 workers, the CPUs allow
//! 9, so 8 HTTP workers + 1 cron, 9 × (0.8 × 150 + 0.2 × 1024) MB ≈ 3 GB.

use serde::Serialize;

/// Concurrent users one HTTP worker serves.
pub const USERS_PER_WORKER: u32 = 6;
/// Memory of a worker serving light requests, in MB.
pub const LIGHT_WORKER_MB: f64 = 150.0;
/// Memory of a worker serving heavy requests (reports, imports), in MB.
pub const HEAVY_WORKER_MB: f64 = 1024.0;
/// Share of requests taken as heavy when none is given.
pub const DEFAULT_HEAVY_RATIO: f64 = 0.2;
/// Cron workers (`max_cron_threads`).
pub const CRON_WORKERS: u32 = 1;
/// `limit_memory_soft`: a worker past this is recycled once its request
/// ends. These limits are the deployment guide's values.
pub const LIMIT_MEMORY_SOFT: u64 = 629_145_600;
/// `limit_memory_hard`: a worker past this is killed at once.
pub const LIMIT_MEMORY_HARD: u64 = 1_677_721_600;
/// `limit_request`: requests a worker serves before it is recycled.
pub const LIMIT_REQUEST: u64 = 8192;
/// `limit_time_cpu`: CPU seconds a request may use.
pub const LIMIT_TIME_CPU: u64 = 600;
/// `limit_time_real`: seconds a request may take.
pub const LIMIT_TIME_REAL: u64 = 1200;
/// Share of the machine's RAM Odoo may take; PostgreSQL and the OS need the rest.
pub const ODOO_RAM_SHARE: f64 = 0.75;

/// What to size for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Machine {
    /// The machine's CPUs.
    pub cpus: u32,
    /// Concurrent users; `None` sizes for what the CPUs allow.
    pub users: Option<u32>,
    /// The machine's RAM in bytes, to warn when it is short.
    pub ram: Option<u64>,
    /// Share of requests that are heavy (reports, imports), 0..=1.
    pub heavy_ratio: f64,
}

/// The sizing, and the odoo.conf lines that carry it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// The CPUs sized for.
    pub cpus: u32,
    /// The concurrent users sized for, when given.
    pub users: Option<u32>,
    /// (#CPU × 2) + 1: HTTP and cron workers together.
    pub max_processes: u32,
    /// HTTP workers the users call for, before the CPU cap.
    pub workers_for_users: Option<u32>,
    /// HTTP workers (`workers`), within what the CPUs carry.
    pub workers: u32,
    /// Cron workers (`max_cron_threads`).
    pub max_cron_threads: u32,
    /// Estimated RAM for all Odoo processes, in MB (1 MB = 2^20 bytes).
    pub ram_needed_mb: u64,
    /// The machine's RAM in MB, when given.
    pub ram_mb: Option<u64>,
    /// HTTP workers that fit in `ODOO_RAM_SHARE` of the RAM, when short.
    pub workers_fitting_ram: Option<u32>,
    /// `limit_memory_soft`, in bytes.
    pub limit_memory_soft: u64,
    /// `limit_memory_hard`, in bytes.
    pub limit_memory_hard: u64,
    /// `limit_request`, in requests.
    pub limit_request: u64,
    /// `limit_time_cpu`, in seconds.
    pub limit_time_cpu: u64,
    /// `limit_time_real`, in seconds.
    pub limit_time_real: u64,
    /// What the machine falls short of (CPUs for the users, RAM).
    pub warnings: Vec<String>,
}

/// Bad input to the plan (a zero CPU count, a ratio outside 0..=1).
pub fn check(m: &Machine) -> Result<(), String> {
    if m.cpus == 0 {
        return Err("--cpus must be at least 1".into());
    }
    if !(0.0..=1.0).contains(&m.heavy_ratio) {
        return Err(format!("--heavy-ratio {} is outside 0..1", m.heavy_ratio));
    }
    Ok(())
}

/// MB one Odoo process needs on average.
pub fn per_process_mb(heavy_ratio: f64) -> f64 {
    (1.0 - heavy_ratio) * LIGHT_WORKER_MB + heavy_ratio * HEAVY_WORKER_MB
}

/// Workers and limits for `m`, with warnings where the machine falls short.
pub fn plan(m: &Machine) -> Plan {
    let max_processes = m.cpus * 2 + 1;
    let http_cap = max_processes - CRON_WORKERS;
    let workers_for_users = m.users.map(|u| u.div_ceil(USERS_PER_WORKER));
    // Two HTTP workers at least: one long report must not stall everyone.
    let workers = match workers_for_users {
        Some(w) => w.clamp(2.min(http_cap), http_cap),
        None => http_cap,
    };
    let per = per_process_mb(m.heavy_ratio);
    let ram_needed_mb = (f64::from(workers + CRON_WORKERS) * per).round() as u64;
    let mut warnings = Vec::new();
    if let Some(w) = workers_for_users
        && w > http_cap
    {
        warnings.push(format!(
            "{} users call for {w} HTTP workers but {} CPU(s) carry {max_processes} processes at most; \
             expect queuing at peak, or add CPUs",
            m.users.unwrap_or(0),
            m.cpus
        ));
    }
    let ram_mb = m.ram.map(|b| b >> 20);
    let mut workers_fitting_ram = None;
    if let Some(ram) = ram_mb {
        let budget = ram as f64 * ODOO_RAM_SHARE;
        if ram_needed_mb as f64 > budget {
            let fit = ((budget / per).floor() as u32)
                .saturating_sub(CRON_WORKERS)
                .max(1);
            workers_fitting_ram = Some(fit);
            warnings.push(format!(
                "RAM is short: Odoo needs about {ram_needed_mb} MB, and {:.0} MB ({:.0} % of {ram} MB) is what \
                 it can take beside PostgreSQL and the OS; use workers = {fit} or add RAM",
                budget,
                ODOO_RAM_SHARE * 100.0
            ));
        }
    }
    Plan {
        cpus: m.cpus,
        users: m.users,
        max_processes,
        workers_for_users,
        workers,
        max_cron_threads: CRON_WORKERS,
        ram_needed_mb,
        ram_mb,
        workers_fitting_ram,
        limit_memory_soft: LIMIT_MEMORY_SOFT,
        limit_memory_hard: LIMIT_MEMORY_HARD,
        limit_request: LIMIT_REQUEST,
        limit_time_cpu: LIMIT_TIME_CPU,
        limit_time_real: LIMIT_TIME_REAL,
        warnings,
    }
}

impl Plan {
    /// HTTP workers that fit this machine: `workers`, lowered when RAM is short.
    pub fn workers_to_use(&self) -> u32 {
        self.workers_fitting_ram
            .map_or(self.workers, |f| f.min(self.workers))
    }

    /// The odoo.conf lines, in the order the guide lists them.
    pub fn conf_lines(&self) -> Vec<(&'static str, String)> {
        vec![
            ("workers", self.workers_to_use().to_string()),
            ("max_cron_threads", self.max_cron_threads.to_string()),
            ("limit_memory_soft", self.limit_memory_soft.to_string()),
            ("limit_memory_hard", self.limit_memory_hard.to_string()),
            ("limit_request", self.limit_request.to_string()),
            ("limit_time_cpu", self.limit_time_cpu.to_string()),
            ("limit_time_real", self.limit_time_real.to_string()),
        ]
    }

    /// The plan as pretty-printed JSON, for `--json`.
    pub fn render_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a plan serializes")
    }

    /// The human report `rampart plan` prints.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "{} CPU(s): at most {} Odoo processes ((CPUs × 2) + 1)\n",
            self.cpus, self.max_processes
        ));
        if let (Some(u), Some(w)) = (self.users, self.workers_for_users) {
            out.push_str(&format!(
                "{u} concurrent users: {w} HTTP worker(s) at {USERS_PER_WORKER} users each\n"
            ));
        }
        out.push_str(&format!(
            "plan: {} HTTP worker(s) + {} cron worker(s), about {} MB of RAM ({:.1} GB)\n",
            self.workers_to_use(),
            self.max_cron_threads,
            self.ram_needed_mb,
            self.ram_needed_mb as f64 / 1024.0
        ));
        for w in &self.warnings {
            out.push_str(&format!("warning: {w}\n"));
        }
        out.push_str("\n# odoo.conf\n");
        for (k, v) in self.conf_lines() {
            out.push_str(&format!("{k} = {v}\n"));
        }
        out
    }
}

/// This machine's CPUs (as the scheduler allows us) and RAM (MemTotal).
pub fn this_machine() -> (u32, Option<u64>) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let ram = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| {
        t.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kib| kib * 1024)
    });
    (cpus, ram)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(cpus: u32, users: Option<u32>, ram_gib: Option<u64>) -> Machine {
        Machine {
            cpus,
            users,
            ram: ram_gib.map(|g| g << 30),
            heavy_ratio: DEFAULT_HEAVY_RATIO,
        }
    }

    #[test]
    fn the_guides_example_4_cpus_60_users() {
        let p = plan(&m(4, Some(60), None));
        assert_eq!(p.max_processes, 9);
        assert_eq!(p.workers_for_users, Some(10));
        assert_eq!(p.workers, 8);
        assert_eq!(p.max_cron_threads, 1);
        // 9 × (0.8 × 150 + 0.2 × 1024) = 2923 MB: "about 3 GB".
        assert_eq!(p.ram_needed_mb, 2923);
        assert!(
            p.warnings.iter().any(|w| w.contains("10 HTTP workers")),
            "{:?}",
            p.warnings
        );
    }

    #[test]
    fn few_users_get_few_workers_but_at_least_two() {
        assert_eq!(plan(&m(4, Some(12), None)).workers, 2);
        assert_eq!(plan(&m(4, Some(3), None)).workers, 2);
        assert_eq!(plan(&m(8, Some(40), None)).workers, 7);
        assert!(plan(&m(8, Some(40), None)).warnings.is_empty());
        // One CPU: 3 processes, so 2 HTTP + 1 cron.
        assert_eq!(plan(&m(1, Some(100), None)).workers, 2);
    }

    #[test]
    fn without_users_sizes_for_the_cpus() {
        let p = plan(&m(2, None, None));
        assert_eq!(p.workers, 4);
        assert_eq!(p.ram_needed_mb, 1624);
    }

    #[test]
    fn warns_and_suggests_when_ram_is_short() {
        let p = plan(&m(4, Some(60), Some(2)));
        assert!(
            p.warnings.iter().any(|w| w.contains("RAM is short")),
            "{:?}",
            p.warnings
        );
        // 0.75 × 2048 MB / 324.8 MB = 4 processes → 3 HTTP workers.
        assert_eq!(p.workers_fitting_ram, Some(3));
        assert_eq!(p.workers_to_use(), 3);
        assert_eq!(p.conf_lines()[0], ("workers", "3".to_string()));
        let roomy = plan(&m(4, Some(60), Some(16)));
        assert_eq!(roomy.workers_fitting_ram, None);
        assert_eq!(roomy.workers_to_use(), 8);
    }

    #[test]
    fn this_machine_is_detected() {
        let (cpus, ram) = this_machine();
        assert!(cpus >= 1);
        assert!(ram.is_some_and(|r| r > 64 << 20), "{ram:?}");
    }

    #[test]
    fn heavy_ratio_changes_memory() {
        let mut mm = m(4, Some(60), None);
        mm.heavy_ratio = 0.5;
        // 9 × (0.5 × 150 + 0.5 × 1024) = 5283 MB.
        assert_eq!(plan(&mm).ram_needed_mb, 5283);
        mm.heavy_ratio = 1.5;
        assert!(check(&mm).is_err());
        assert!(check(&m(0, None, None)).is_err());
    }

    #[test]
    fn conf_lines_carry_the_guides_limits() {
        let text = plan(&m(4, Some(60), None)).render_text();
        for line in [
            "workers = 8",
            "max_cron_threads = 1",
            "limit_memory_soft = 629145600",
            "limit_memory_hard = 1677721600",
            "limit_request = 8192",
            "limit_time_cpu = 600",
            "limit_time_real = 1200",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
    }
}
