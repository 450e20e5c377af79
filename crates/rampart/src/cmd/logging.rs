//! The process log (stderr, journald-aware, scrubbed of secrets), set up
//! once by whichever long-running command starts first (`serve`,
//! `wal-stream`).

use rampart_edge::config::ProcessLogFormat;

/// The process log on stderr. `RAMPART_LOG` is an EnvFilter: a level
/// (`debug`) or per-module directives (`info,rampart_guard=debug`).
pub fn init_tracing(format: ProcessLogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("RAMPART_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Under systemd, journald stamps the time itself.
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Scrubbed of the config's secret values (see scrub.rs).
        .with_writer(|| crate::scrub::Stderr);
    if format == ProcessLogFormat::Json {
        // The module (`target`) is what a RAMPART_LOG directive names.
        builder
            .json()
            .with_target(true)
            .with_current_span(false)
            .init();
        return;
    }
    let builder = builder
        .with_target(false)
        .with_ansi(!journald && std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if journald {
        builder.without_time().init();
    } else {
        builder.init();
    }
}
