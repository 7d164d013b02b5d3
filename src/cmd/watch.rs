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
    if !cfg.has_source() {
        return run_without_source(cfg);
    }
    let archive_path = cfg.archive()?.to_path_buf();
    let spec = cfg.source_spec()?;
    let location = spec.location();
    let lock = ArchiveLock::acquire(&archive_path)?;
    let archive = super::read::open_archive(cfg)?;
    // Fail fast on a source that was never set up; later failures are retried.
    let mut first: Option<Box<dyn Source>> = Some(spec.open()?);
    // After a failover the archive names another primary: each reconnect and each heartbeat
    // resolves it again, so the watcher follows it without a restart.
    let follow = {
        let cfg = cfg.clone();
        move || -> Result<rowtrail_reader::source::SourceSpec> {
            let mut now = cfg.clone();
            now.follow_recorded_primary();
            now.source_spec()
        }
    };
    let open_follow = follow.clone();
    let verify_follow = follow.clone();
    let factory = Box::new(move || -> Result<Box<dyn Source>, ReaderError> {
        match first.take() {
            Some(s) => Ok(s),
            None => open_follow()
                .map_err(|e| ReaderError::BadRequest(e.to_string()))?
                .open(),
        }
    });
    // A fresh connection each time: a heartbeat that reused the reader's connection could not
    // tell a dead server from a dead socket.
    let probe_cfg = cfg.clone();
    let health_check: rowtrail_watcher::HealthCheck = Box::new(move || {
        let spec = follow().unwrap_or_else(|_| spec_fallback(&probe_cfg));
        // The configured address is the configured source's; a promoted copy is probed at
        // its file (or its server).
        let configured = probe_cfg
            .configured_source
            .as_deref()
            .or(probe_cfg.source_path.as_deref());
        let address = if configured == spec_path(&spec) {
            probe_cfg.takeover.address.clone()
        } else {
            rowtrail_takeover::probe::Address::of_spec(&spec)
        };
        rowtrail_takeover::probe::probe(&spec, &address, &probe_cfg.takeover.timeouts)
    });
    let failover_cfg = cfg.clone();
    let failover: rowtrail_watcher::FailoverHandler = Box::new(move |archive, order| {
        let mut now = failover_cfg.clone();
        now.follow_recorded_primary();
        if let Some(to) = &order.handback_to {
            let req =
                super::failover::handback_request(&now, to.clone(), order.conflicts.as_deref())
                    .map_err(|e| e.to_string())?;
            let outcome = rowtrail_takeover::handback::apply(archive, &req, &mut |step| {
                tracing::info!("handback: {step}");
            })
            .map_err(|e| e.to_string())?;
            return Ok((
                outcome.takeover.to_location.clone(),
                serde_json::to_string(&outcome).unwrap_or_default(),
            ));
        }
        let mut req =
            super::failover::request(&now, order.to.clone(), order.force, order.automatic)
                .map_err(|e| e.to_string())?;
        req.last_seen_us = order.last_seen_us;
        let outcome = rowtrail_takeover::failover::apply(archive, &req, &mut |step| {
            tracing::info!("failover: {step}");
        })
        .map_err(|e| e.to_string())?;
        Ok((
            outcome.takeover.to_location.clone(),
            serde_json::to_string(&outcome).unwrap_or_default(),
        ))
    });
    let mut nodes = vec![rowtrail_watcher::NodeSettings {
        target: cfg
            .configured_source
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| location.clone()),
        kind: "source",
        health_listen: cfg.source_health_listen,
    }];
    nodes.extend(cfg.replicas.iter().map(|r| rowtrail_watcher::NodeSettings {
        target: r.path.display().to_string(),
        kind: "replica",
        health_listen: r.health_listen,
    }));
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
            heartbeat: rowtrail_watcher::Pacing {
                busy: cfg.heartbeat_interval,
                idle: cfg.takeover.idle_interval,
                failures: cfg.takeover.failures,
                auto_failover: cfg.takeover.auto_failover,
            },
            failover: Some(failover),
            nodes,
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
                // The primary now, as the archive names it (it moves with a failover).
                open_source: {
                    let follow = verify_follow;
                    Box::new(move || {
                        follow()
                            .map_err(|e| ReaderError::BadRequest(e.to_string()))?
                            .open()
                    })
                },
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
            remote_replicas: cfg.remote_replicas.clone(),
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

/// A watcher on a host without a source: its `[[remote_replica]]` jobs alone. Anything that
/// needs the source or its archive is refused, saying so.
fn run_without_source(cfg: &Config) -> Result<ExitCode> {
    if cfg.remote_replicas.is_empty() {
        anyhow::bail!(
            "no source database: set [source] path (or engine = \"mssql\" and connection) in \
             rowtrail.toml, or pass --source FILE; a watcher without a source runs only \
             [[remote_replica]] jobs, and the config names none"
        );
    }
    if !cfg.replicas.is_empty() || cfg.stream.is_some() || cfg.archive_path.is_some() {
        anyhow::bail!(
            "[archive], [[replica]] and [stream] need the source: set [source] too, or keep \
             only [[remote_replica]] sections on a host that is fed from the stream"
        );
    }
    rowtrail_watcher::run_without_source(WatcherOptions {
        socket: cfg.socket()?,
        poll_interval: cfg.poll_interval,
        probe_interval: cfg.probe_interval,
        batch: cfg.batch_size,
        source_location: "(none: remote replicas only)".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        // Not run: there is no source to look at.
        health_check: Box::new(|| rowtrail_takeover::probe::Probe {
            verdict: rowtrail_takeover::probe::Verdict::Up,
            elapsed: Duration::ZERO,
            health: None,
            error: None,
        }),
        heartbeat: rowtrail_watcher::Pacing {
            busy: cfg.heartbeat_interval,
            idle: cfg.takeover.idle_interval,
            failures: cfg.takeover.failures,
            auto_failover: false,
        },
        failover: None,
        nodes: Vec::new(),
        verify: rowtrail_watcher::VerifySettings {
            archive_every: None,
            replicas: Vec::new(),
            open_source: Box::new(|| {
                Err(ReaderError::BadRequest(
                    "a watcher without a source has nothing to compare with".into(),
                ))
            }),
        },
        alerts: cfg.alerts.clone(),
        metrics: cfg.metrics_listen,
        digest: cfg.digest.clone(),
        replicas: Vec::new(),
        stream: None,
        remote_replicas: cfg.remote_replicas.clone(),
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The configured source's spec, when the recorded primary cannot be resolved.
fn spec_fallback(cfg: &Config) -> rowtrail_reader::source::SourceSpec {
    cfg.source_spec()
        .unwrap_or(rowtrail_reader::source::SourceSpec::Sqlite {
            path: cfg.source_path.clone().unwrap_or_default(),
            capture_new_tables: cfg.capture_new_tables,
        })
}

fn spec_path(spec: &rowtrail_reader::source::SourceSpec) -> Option<&std::path::Path> {
    match spec {
        rowtrail_reader::source::SourceSpec::Sqlite { path, .. } => Some(path),
        rowtrail_reader::source::SourceSpec::Mssql(_) => None,
    }
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
    if let Some(state) = &s.primary_state {
        outln!(
            "heartbeat  {state}{} (every {} ms; down after {} failed in a row; last seen {})",
            s.primary_detail
                .as_ref()
                .map_or(String::new(), |d| format!(": {d}")),
            s.heartbeat_interval_ms,
            s.failures_to_down,
            ago(s.primary_last_seen_us)
        );
    }
    if let Some(t) = &s.takeover {
        outln!(
            "takeover   {} {} ({}{}): {} → {}{}{}",
            t.kind,
            t.id,
            if t.finished_us.is_some() {
                "done"
            } else {
                "UNFINISHED at "
            },
            if t.finished_us.is_some() {
                String::new()
            } else {
                t.step.clone()
            },
            t.from,
            t.to,
            t.fence
                .as_ref()
                .map_or(String::new(), |f| format!(", old primary {f}")),
            t.last_error
                .as_ref()
                .map_or(String::new(), |e| format!(" — last attempt failed: {e}"))
        );
    }
    for n in &s.nodes {
        outln!(
            "node       {} ({}): {}{}",
            n.target,
            n.kind,
            n.role,
            n.health_listen
                .as_ref()
                .map_or(String::new(), |l| format!(", health on http://{l}/"))
        );
    }
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
    for r in &s.remote_replicas {
        let link = if r.connected {
            "connected"
        } else {
            "NOT CONNECTED"
        };
        outln!(
            "remote     {} from {} on {} ({link}): change {} (seq {}), {} pending, lag {:.1} s, {} applied since start{}",
            r.path,
            if r.stream.is_empty() { &r.subjects } else { &r.stream },
            r.url,
            r.position,
            r.position_seq,
            r.pending,
            r.lag_secs,
            r.applied,
            r.last_error
                .as_ref()
                .map_or(String::new(), |e| format!(" — FAILING: {e}"))
        );
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
