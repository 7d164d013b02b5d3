//! `rowtrail watch`, and its clients `rowtrail signal` and `rowtrail status`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use rowtrail_reader::lock::ArchiveLock;
use rowtrail_reader::source::Source;
use rowtrail_reader::ReaderError;
use rowtrail_watcher::protocol::{Request, Response};
use rowtrail_watcher::{client, WatcherError, WatcherOptions};

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
    after_help = "Exit codes: 0 healthy, 1 degraded (an alert is firing, the last pass failed, or a\n\
watcher holds the archive but does not answer on its socket), 5 down (the source is down, or no\n\
watcher answers). 2 is a usage error, as for every command.\n\n\
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
            digest: cfg.digest.clone(),
            replicas: cfg.replicas.clone(),
            verify: rowtrail_watcher::VerifySettings {
                archive_every: cfg.archive_verify_every,
                replicas: cfg
                    .replicas
                    .iter()
                    .filter_map(|r| r.verify_every.map(|every| (r.path.clone(), every)))
                    .collect(),
                open_source: spec.opener(),
            },
            stream: cfg
                .stream
                .clone()
                .map(|settings| rowtrail_watcher::StreamJob {
                    batch: settings.window.saturating_mul(2).max(1),
                    source: rowtrail_stream::envelope::SourceInfo {
                        name: settings.subjects.source().to_string(),
                        engine: spec.engine().to_string(),
                        version: env!("CARGO_PKG_VERSION").into(),
                    },
                    settings,
                    poll_interval: cfg.poll_interval,
                }),
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Sends a signal, a flush or a shutdown.
pub fn signal(args: &SignalArgs, cfg: &Config) -> Result<ExitCode> {
    let socket = cfg.socket()?;
    let timeout = Duration::from_secs(args.timeout.max(1));
    let ask = |req: &Request, timeout| -> Result<Response> {
        client::request(&socket, req, timeout).map_err(|e| unanswered(e, cfg))
    };
    if args.shutdown {
        ask(&Request::Shutdown, timeout)?;
        outln!("the watcher is stopping after the batch in hand");
    } else if args.wait {
        let req = Request::Flush {
            timeout_ms: Some(timeout.as_millis() as u64),
        };
        let resp = ask(&req, timeout + Duration::from_secs(1))?;
        let d = resp.drained.unwrap_or_default();
        outln!("staging drained: {} change(s) archived", d.archived);
    } else {
        ask(&Request::Signal, timeout)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A watcher that holds the archive but does not answer, named by `pid`.
fn silent_holder(pid: u32, archive: &std::path::Path, socket: &std::path::Path) -> String {
    format!(
        "a watcher (pid {pid}) holds archive {} but does not answer on its socket {}: a running \
         watcher binds a deleted socket again within a second; if pid {pid} is a `rowtrail read`, \
         it ends once staging is drained. No other watcher can start until it stops",
        archive.display(),
        socket.display()
    )
}

/// Who holds the archive's reader lock, when a watcher should but does not answer.
fn lock_holder(cfg: &Config) -> Option<u32> {
    let archive = cfg.archive().ok()?;
    ArchiveLock::holder(archive).ok().flatten()
}

/// Turns "no watcher answers" into "one holds the archive but does not answer" when the
/// archive's lock says so, so that `signal` and `status` agree with the refusal `watch` gets.
fn unanswered(e: WatcherError, cfg: &Config) -> anyhow::Error {
    if let WatcherError::NotRunning { socket } = &e {
        if let (Some(pid), Ok(archive)) = (lock_holder(cfg), cfg.archive()) {
            return anyhow::anyhow!(silent_holder(pid, archive, socket));
        }
    }
    e.into()
}

/// Prints the watcher's status; the exit code says healthy (0), degraded (1) or down (5).
pub fn status(args: &StatusArgs, cfg: &Config) -> Result<ExitCode> {
    use rowtrail_watcher::status::Health;
    let socket = cfg.socket()?;
    let resp = match client::request(&socket, &Request::Status, Duration::from_secs(5)) {
        Ok(r) => r,
        Err(e @ (WatcherError::NotRunning { .. } | WatcherError::Timeout { .. })) => {
            if let (WatcherError::NotRunning { socket }, Some(pid)) = (&e, lock_holder(cfg)) {
                // Working, as far as anyone can tell, but it cannot be asked.
                eprintln!("rowtrail: {}", silent_holder(pid, cfg.archive()?, socket));
                return Ok(ExitCode::from(crate::EXIT_DEGRADED));
            }
            eprintln!("rowtrail: {e}");
            return Ok(ExitCode::from(crate::EXIT_DOWN));
        }
        Err(e) => return Err(e.into()),
    };
    let s = resp.status.unwrap_or_default();
    let code = match s.health {
        Health::Healthy => ExitCode::SUCCESS,
        Health::Degraded => ExitCode::from(crate::EXIT_DEGRADED),
        Health::Down => ExitCode::from(crate::EXIT_DOWN),
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&s)?);
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
    outln!("{verdict}");
    outln!(
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
    outln!("source     {} — {source_state}", s.source);
    outln!(
        "archive    {} ({} free)",
        s.archive,
        s.archive_free_bytes
            .map_or("?".into(), |b| format!("{} MiB", b >> 20))
    );
    let oldest = s
        .backlog_oldest_age_secs
        .map_or(String::new(), |a| format!(", oldest {a:.1} s old"));
    outln!("backlog    {} staged image(s){oldest}", s.backlog);
    outln!(
        "passes     {} (last {}), {} change(s) archived since start",
        s.passes,
        ago(s.last_pass_us),
        s.archived
    );
    outln!(
        "wakeups    {} signal, {} probe, {} poll",
        s.wakeups.signal,
        s.wakeups.probe,
        s.wakeups.poll
    );
    if let Some(e) = &s.last_error {
        outln!("last error {e} ({})", ago(s.last_error_us));
    }
    for r in &s.replicas {
        outln!(
            "replica    {}: change {} (seq {}), {} behind, lag {:.1} s{}{}{}",
            r.path,
            r.position,
            r.position_seq,
            r.behind,
            r.lag_secs,
            r.delay_secs
                .map_or(String::new(), |d| format!(", delay {d:.0} s")),
            if r.paused { ", paused" } else { "" },
            r.last_error
                .as_ref()
                .map_or(String::new(), |e| format!(" — FAILING: {e}"))
        );
    }
    for c in &s.checks {
        let next = (c.next_run_us - rowtrail_reader::now_micros()) as f64 / 1e6;
        outln!(
            "check      {} {} every {:.0} s: {}; next in {:.0} s",
            c.check,
            c.target,
            c.every_secs,
            match (c.last_ok, &c.last_result) {
                (None, _) => "not run yet".to_string(),
                (Some(ok), r) => format!(
                    "last run {} {}{}",
                    ago(c.last_run_us),
                    if ok { "passed" } else { "FAILED" },
                    r.as_deref().map(|r| format!(" — {r}")).unwrap_or_default()
                ),
            },
            next.max(0.0)
        );
    }
    if let Some(st) = &s.stream {
        let link = if st.connected {
            "connected"
        } else {
            "NOT CONNECTED"
        };
        outln!(
            "stream     {} on {} ({link}): published to change {}, {} behind ({:.1} s), {} published since start",
            st.stream,
            st.url,
            st.published_id,
            st.lag_changes,
            st.lag_seconds,
            st.published
        );
        if let Some(e) = &st.last_error {
            outln!("stream err {e} ({})", ago(st.last_error_us));
        }
    }
    if s.context_committed {
        outln!(
            "WARNING    a rowtrail_context row is committed: every change is labelled with its login, \
             host and transaction until it is deleted (DELETE FROM rowtrail_context)"
        );
    }
    for a in &s.alerts {
        outln!(
            "ALERT      {} ({}), since {}: {}",
            a.alert,
            a.severity,
            ago(Some(a.since_us)),
            a.message
        );
    }
    Ok(code)
}
