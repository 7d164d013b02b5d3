//! Logging through `tracing`, to stderr; `RUST_LOG` sets the level (default `info`), the config's
//! `watcher.log_format` (or `ROWTRAIL_LOG_FORMAT`) picks text or JSON lines. Row values never
//! reach a log line: only counts, names, sequence numbers and errors. Colours only on a terminal
//! (and not with `NO_COLOR` set): a log file or the journal gets plain text.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// The filter directives for `RUST_LOG` (`None`: unset). The SQL Server client logs the
/// server's error messages, which can quote key values ("The duplicate key value is (…)"), so it
/// is silenced unless `RUST_LOG` names it explicitly.
fn directives(rust_log: Option<&str>) -> String {
    let base = rust_log.filter(|s| !s.trim().is_empty()).unwrap_or("info");
    if base.contains("tiberius") {
        base.to_string()
    } else {
        format!("{base},tiberius=off")
    }
}

/// Whether log lines may carry colour codes: only on a terminal, and only without `NO_COLOR`.
fn colour(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Installs the subscriber once; `verbose` (`-v`) logs at debug level when `RUST_LOG` does not
/// say otherwise.
pub fn init(format: LogFormat, verbose: bool) {
    let rust_log = std::env::var("RUST_LOG")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .or_else(|| verbose.then(|| "debug".to_string()));
    let filter = EnvFilter::try_new(directives(rust_log.as_deref()))
        .unwrap_or_else(|_| EnvFilter::new(directives(None)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
        ))
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::{colour, directives};

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some("".as_ref())));
        assert!(!colour(true, Some("1".as_ref())));
        assert!(!colour(false, None));
    }

    #[test]
    fn the_sql_server_client_is_silent_unless_asked_for() {
        assert_eq!(directives(None), "info,tiberius=off");
        assert_eq!(directives(Some("")), "info,tiberius=off");
        assert_eq!(directives(Some("debug")), "debug,tiberius=off");
        assert_eq!(
            directives(Some("warn,tiberius=debug")),
            "warn,tiberius=debug"
        );
    }
}
