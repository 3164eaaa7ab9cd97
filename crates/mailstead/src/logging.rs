//! Structured logs: one line per event, as text or JSON, to standard error. `RUST_LOG`
//! overrides LOG_LEVEL for debugging one module.

use mailstead_core::config::kinds::{LogFormat, LogLevel};
use tracing_subscriber::EnvFilter;

pub fn init(level: LogLevel, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        // Our own crates at the configured level; dependencies only when they warn.
        EnvFilter::new(format!("warn,mailstead={0},mailstead_core={0},mailstead_store={0},mailstead_directory={0},mailstead_listener={0},mailstead_smtp={0},mailstead_imap={0},mailstead_pop3={0},mailstead_sieve={0},mailstead_queue={0}", level.as_str()))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
