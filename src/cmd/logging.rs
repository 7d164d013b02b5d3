//! Logging through `tracing`, to stderr; `RUST_LOG` sets the level (default `info`).
//! Row values never reach a log line: only counts, names, sequence numbers and errors.

use tracing_subscriber::EnvFilter;

/// Installs the subscriber once.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
