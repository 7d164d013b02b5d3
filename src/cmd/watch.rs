//! `rowtrail watch`, and its clients `rowtrail signal` and `rowtrail status`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use rowtrail_reader::lock::ArchiveLock;
use rowtrail_reader::source::Source;
use rowtrail_reader::ReaderError;
use rowtrail_watcher::protocol::Request;
use rowtrail_watcher::{client, WatcherOptions};

use crate::config::Config;

/// Arguments of `rowtrail watch`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Runs in the foreground; stop it with Ctrl-C, SIGTERM or `rowtrail signal --shutdown`.\n\
It finishes the batch in hand before it stops. Logs go to stderr (RUST_LOG=debug for more)."
)]
pub struct Args {}

/// Arguments of `rowtrail signal`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  rowtrail signal                 # a hint: look now\n  rowtrail signal --wait          # return once staging has been drained\n  rowtrail signal --shutdown      # stop the watcher after the batch in hand"
)]
pub struct SignalArgs {
    /// Wait until the watcher has drained staging.
    #[arg(long)]
    pub wait: bool,
    /// Ask the watcher to stop.
    #[arg(long, conflicts_with = "wait")]
    pub shutdown: bool,
    /// How long to wait for an answer, in seconds.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub timeout: u64,
}

/// Arguments of `rowtrail status`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit codes, as monitoring plugins expect them: 0 healthy, 1 degraded (an alert is\n\
firing or the last pass failed), 2 down (the source is down, or no watcher answers).\n\n\
Examples:\n  rowtrail status\n  rowtrail status --json | jq .backlog_oldest_age_secs"
)]
pub struct StatusArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs the watcher until it is told to stop.
pub fn run(_args: &Args, cfg: &Config) -> Result<ExitCode> {
    let archive_path = cfg.archive()?.to_path_buf();
    let spec = cfg.source_spec()?;
    let location = spec.location();
    let lock = ArchiveLock::acquire(&archive_path)?;
    let archive = super::read::open_archive(cfg)?;
    // Fail fast on a source that was never set up; later failures are retried.
    let mut first: Option<Box<dyn Source>> = Some(spec.open()?);
    let mut open = spec.opener();
    // A fresh connection each time: a heartbeat that reused the reader's connection could not
    // tell a dead server from a dead socket.
    let health_check = spec.health_probe();
    let factory = Box::new(move || -> Result<Box<dyn Source>, ReaderError> {
        match first.take() {
            Some(s) => Ok(s),
            None => open(),
        }
    });
    rowtrail_watcher::run(
        factory,
        archive,
        lock,
        WatcherOptions {
            socket: cfg.socket()?,
            poll_interval: cfg.poll_interval,
            probe_interval: cfg.probe_interval,
            batch: cfg.batch_size,
            source_location: location,
            version: env!("CARGO_PKG_VERSION").into(),
            health_check,
            heartbeat_interval: cfg.heartbeat_interval,
            alerts: cfg.alerts.clone(),
            metrics: cfg.metrics_listen,
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Sends a signal, a flush or a shutdown.
pub fn signal(args: &SignalArgs, cfg: &Config) -> Result<ExitCode> {
    let socket = cfg.socket()?;
    let timeout = Duration::from_secs(args.timeout.max(1));
    if args.shutdown {
        client::request(&socket, &Request::Shutdown, timeout)?;
        println!("the watcher is stopping after the batch in hand");
    } else if args.wait {
        let req = Request::Flush {
            timeout_ms: Some(timeout.as_millis() as u64),
        };
        let resp = client::request(&socket, &req, timeout + Duration::from_secs(1))?;
        let d = resp.drained.unwrap_or_default();
        println!("staging drained: {} change(s) archived", d.archived);
    } else {
        client::request(&socket, &Request::Signal, timeout)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Exit code of `status` when the watcher or the source is down.
pub const STATUS_DOWN: u8 = 2;

/// Prints the watcher's status; the exit code says healthy (0), degraded (1) or down (2).
pub fn status(args: &StatusArgs, cfg: &Config) -> Result<ExitCode> {
    use rowtrail_watcher::status::Health;
    let socket = cfg.socket()?;
    let resp = match client::request(&socket, &Request::Status, Duration::from_secs(5)) {
        Ok(r) => r,
        Err(
            e @ (rowtrail_watcher::WatcherError::NotRunning { .. }
            | rowtrail_watcher::WatcherError::Timeout { .. }),
        ) => {
            eprintln!("rowtrail: {e}");
            return Ok(ExitCode::from(STATUS_DOWN));
        }
        Err(e) => return Err(e.into()),
    };
    let s = resp.status.unwrap_or_default();
    let code = match s.health {
        Health::Healthy => ExitCode::SUCCESS,
        Health::Degraded => ExitCode::from(1),
        Health::Down => ExitCode::from(STATUS_DOWN),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(code);
    }
    let ago = |us: Option<i64>| match us {
        None => "never".to_string(),
        Some(us) => format!(
            "{:.1} s ago",
            (rowtrail_reader::now_micros() - us) as f64 / 1e6
        ),
    };
    let verdict = match s.health {
        Health::Healthy => "HEALTHY",
        Health::Degraded => "DEGRADED",
        Health::Down => "DOWN",
    };
    println!("{verdict}");
    println!(
        "watcher    pid {} (rowtrail {}), up since {}",
        s.pid,
        s.version,
        ago(Some(s.started_us))
    );
    let source_state = if let (true, Some(why)) = (s.source_up, &s.source_blocked) {
        format!("BLOCKED since {}: {why}", ago(s.source_blocked_since_us))
    } else if s.source_up {
        "up".to_string()
    } else {
        format!("DOWN since {}", ago(s.source_down_since_us))
    };
    println!("source     {} — {source_state}", s.source);
    println!(
        "archive    {} ({} free)",
        s.archive,
        s.archive_free_bytes
            .map_or("?".into(), |b| format!("{} MiB", b >> 20))
    );
    let oldest = s
        .backlog_oldest_age_secs
        .map_or(String::new(), |a| format!(", oldest {a:.1} s old"));
    println!("backlog    {} staged image(s){oldest}", s.backlog);
    println!(
        "passes     {} (last {}), {} change(s) archived since start",
        s.passes,
        ago(s.last_pass_us),
        s.archived
    );
    println!(
        "wakeups    {} signal, {} probe, {} poll",
        s.wakeups.signal, s.wakeups.probe, s.wakeups.poll
    );
    if let Some(e) = &s.last_error {
        println!("last error {e} ({})", ago(s.last_error_us));
    }
    if s.context_committed {
        println!(
            "WARNING    a rowtrail_context row is committed: every change is labelled with its login, \
             host and transaction until it is deleted (DELETE FROM rowtrail_context)"
        );
    }
    for a in &s.alerts {
        println!(
            "ALERT      {} ({}), since {}: {}",
            a.alert,
            a.severity,
            ago(Some(a.since_us)),
            a.message
        );
    }
    Ok(code)
}
