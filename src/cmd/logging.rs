//! Logging through `tracing`, to stderr; `RUST_LOG` sets the level (default `info`), the config's
//! `watcher.log_format` (or `ROWTRAIL_LOG_FORMAT`) picks text or JSON lines. Row values never
//! reach a log line: only counts, names, sequence numbers and errors.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the subscriber once.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
