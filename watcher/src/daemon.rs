//! The watcher's main loop: one thread owns the source and the archive and runs passes; the
//! socket and OS signals only send it events.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rowtrail_reader::archive::Archive;
use rowtrail_reader::lock::ArchiveLock;
use rowtrail_reader::mover::{self, PassStats};
use rowtrail_reader::source::Source;
use rowtrail_reader::{now_micros, ReaderError};

use crate::alerts::AlertRules;
use crate::health::{self, HealthCheck};
use crate::protocol::{Drained, Response};
use crate::status::Status;
use crate::{endpoint, WatcherError};

/// Opens (or reopens, after a failure) the source.
pub type SourceFactory = Box<dyn FnMut() -> Result<Box<dyn Source>, ReaderError> + Send>;

/// How the watcher behaves.
pub struct WatcherOptions {
    /// The socket to serve.
    pub socket: PathBuf,
    /// The safety net: a pass at least this often, whatever else happens.
    pub poll_interval: Duration,
    /// How often the engine probe looks for new commits.
    pub probe_interval: Duration,
    /// Images per batch.
    pub batch: usize,
    /// The source's location, for status and logs.
    pub source_location: String,
    /// rowtrail's version, for status.
    pub version: String,
    /// The heartbeat against the source (a fresh connection each time).
    pub health_check: HealthCheck,
    /// How often the heartbeat runs.
    pub heartbeat_interval: Duration,
    /// Alert thresholds and the alert command.
    pub alerts: AlertRules,
    /// Where to serve Prometheus metrics (a loopback address), if anywhere.
    pub metrics: Option<SocketAddr>,
}

/// What reaches the main loop.
pub(crate) enum Event {
    /// Look now (a signal).
    Wake,
    /// Drain now and answer.
    Flush(Sender<Response>),
    /// Finish the batch in hand and stop.
    Shutdown,
    /// The heartbeat found the source again (or a new incarnation): reconnect and look.
    SourceRecovered,
}
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// The same error is logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(30);

/// Runs the watcher until SIGINT, SIGTERM or a `shutdown` request. `lock` proves this is the only
/// reader of `archive`; it is held until the watcher returns.
pub fn run(
    mut open_source: SourceFactory,
    mut archive: Archive,
    lock: ArchiveLock,
    mut opts: WatcherOptions,
) -> Result<(), WatcherError> {
    let status = Arc::new(Mutex::new(Status {
        source_up: true,
        pid: std::process::id(),
        version: opts.version.clone(),
        started_us: now_micros(),
        source: opts.source_location.clone(),
        archive: archive.path().display().to_string(),
        ..Status::default()
    }));
    let (events, rx) = mpsc::channel::<Event>();
    let stop = Arc::new(AtomicBool::new(false));
    watch_os_signals(events.clone(), Arc::clone(&stop))?;
    let endpoint = endpoint::serve(&opts.socket, events.clone(), Arc::clone(&status))?;
    let metrics = match opts.metrics {
        Some(addr) => Some(crate::metrics::serve(addr, Arc::clone(&status))?),
        None => None,
    };
    let check = std::mem::replace(
        &mut opts.health_check,
        Box::new(|| unreachable!("the heartbeat owns the check")),
    );
    health::spawn(
        check,
        opts.heartbeat_interval,
        opts.alerts.clone(),
        archive.path().to_path_buf(),
        Arc::clone(&status),
        events.clone(),
        Arc::clone(&stop),
    );
    tracing::info!(
        source = %opts.source_location,
        archive = %archive.path().display(),
        socket = %opts.socket.display(),
        poll_ms = opts.poll_interval.as_millis() as u64,
        metrics = %metrics.map_or("off".to_string(), |a| format!("http://{a}/metrics")),
        "watcher started"
    );

    let mut state = Loop {
        source: None,
        last_version: None,
        backoff: BACKOFF_START,
        retry_at: None,
        last_logged: None,
        flushes: Vec::new(),
    };
    let mut next_poll = Instant::now();
    let mut shutting_down = false;
    while !shutting_down {
        let now = Instant::now();
        let mut deadline = next_poll.min(now + opts.probe_interval);
        if let Some(r) = state.retry_at {
            deadline = deadline.max(r.min(next_poll));
        }
        let mut wake = None;
        match rx.recv_timeout(deadline.saturating_duration_since(now)) {
            Ok(Event::Shutdown) | Err(RecvTimeoutError::Disconnected) => shutting_down = true,
            Ok(Event::Wake) => wake = Some(Wake::Signal),
            Ok(Event::Flush(reply)) => {
                state.flushes.push(reply);
                wake = Some(Wake::Signal);
            }
            Ok(Event::SourceRecovered) => {
                state.reconnect();
                wake = Some(Wake::Probe);
            }
            Err(RecvTimeoutError::Timeout) => {
                let now = Instant::now();
                if now >= next_poll {
                    wake = Some(Wake::Poll);
                } else if let Some(retry) = state.retry_at {
                    if now >= retry {
                        wake = Some(Wake::Probe); // retry after a failure
                    }
                } else {
                    if let Some(source) = state.source.as_mut() {
                        match source.probe() {
                            Ok(v) if Some(v) != state.last_version => wake = Some(Wake::Probe),
                            Ok(_) => {}
                            Err(_) => wake = Some(Wake::Probe), // let the pass report it
                        }
                    } else {
                        wake = Some(Wake::Probe);
                    }
                }
            }
        }
        // Coalesce whatever else is queued into this pass.
        while let Ok(ev) = rx.try_recv() {
            match ev {
                Event::Shutdown => shutting_down = true,
                Event::Wake => {}
                Event::Flush(reply) => state.flushes.push(reply),
                Event::SourceRecovered => state.reconnect(),
            }
        }
        let Some(wake) = wake else { continue };
        if shutting_down && state.flushes.is_empty() {
            break;
        }
        let in_backoff = state.retry_at.is_some_and(|r| Instant::now() < r);
        if in_backoff && state.flushes.is_empty() && wake != Wake::Poll {
            continue;
        }
        {
            let mut s = status.lock().expect("status lock");
            match wake {
                Wake::Signal => s.wakeups.signal += 1,
                Wake::Probe => s.wakeups.probe += 1,
                Wake::Poll => s.wakeups.poll += 1,
            }
        }
        state.pass(&mut open_source, &mut archive, &opts, &status, &stop);
        next_poll = Instant::now() + opts.poll_interval;
    }
    stop.store(true, Ordering::Relaxed);
    for reply in state.flushes.drain(..) {
        let _ = reply.send(Response::error("the watcher is stopping"));
    }
    tracing::info!("watcher stopped");
    drop(endpoint);
    drop(lock);
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    Signal,
    Probe,
    Poll,
}

struct Loop {
    source: Option<Box<dyn Source>>,
    last_version: Option<i64>,
    backoff: Duration,
    retry_at: Option<Instant>,
    last_logged: Option<(String, Instant)>,
    flushes: Vec<Sender<Response>>,
}

impl Loop {
    /// Drops the source connection so the next pass opens a fresh one, and retries at once.
    fn reconnect(&mut self) {
        self.source = None;
        self.last_version = None;
        self.retry_at = None;
        self.backoff = BACKOFF_START;
    }

    fn pass(
        &mut self,
        open_source: &mut SourceFactory,
        archive: &mut Archive,
        opts: &WatcherOptions,
        status: &Mutex<Status>,
        stop: &AtomicBool,
    ) {
        let started = Instant::now();
        let result = self.drain(open_source, archive, opts, stop);
        let mut s = status.lock().expect("status lock");
        s.pass_seconds_total += started.elapsed().as_secs_f64();
        match result {
            Ok((stats, complete)) => {
                s.passes += 1;
                s.archived += stats.archived;
                s.last_pass_us = Some(now_micros());
                s.last_error = None;
                if complete {
                    s.backlog = 0;
                    s.backlog_oldest_age_secs = None;
                }
                if let Some(source) = &self.source {
                    s.incarnation = Some(source.info().incarnation.clone());
                }
                if stats.archived > 0 || stats.duplicates > 0 {
                    tracing::debug!(
                        archived = stats.archived,
                        duplicates = stats.duplicates,
                        batches = stats.batches,
                        "pass"
                    );
                }
                self.backoff = BACKOFF_START;
                self.retry_at = None;
                self.last_logged = None;
                let drained = Drained {
                    archived: stats.archived,
                    images: stats.images,
                };
                for reply in self.flushes.drain(..) {
                    let _ = reply.send(Response {
                        ok: true,
                        drained: Some(drained.clone()),
                        ..Response::default()
                    });
                }
            }
            Err(e) => {
                let source_side = matches!(
                    e,
                    ReaderError::Source { .. }
                        | ReaderError::NotInstalled { .. }
                        | ReaderError::BadStaging { .. }
                );
                if source_side {
                    // Reconnect next time; the heartbeat decides whether the source is down.
                    self.source = None;
                    self.last_version = None;
                }
                let msg = e.to_string();
                s.last_error = Some(msg.clone());
                s.last_error_us = Some(now_micros());
                let repeat = self
                    .last_logged
                    .as_ref()
                    .is_some_and(|(m, at)| *m == msg && at.elapsed() < LOG_EVERY);
                if !repeat {
                    tracing::error!(error = %msg, retry_in_ms = self.backoff.as_millis() as u64, "pass failed");
                    self.last_logged = Some((msg.clone(), Instant::now()));
                }
                self.retry_at = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                for reply in self.flushes.drain(..) {
                    let _ = reply.send(Response::error(msg.clone()));
                }
            }
        }
        s.judge();
    }

    /// Drains staging; `complete` is false when a shutdown stopped it between batches.
    fn drain(
        &mut self,
        open_source: &mut SourceFactory,
        archive: &mut Archive,
        opts: &WatcherOptions,
        stop: &AtomicBool,
    ) -> Result<(PassStats, bool), ReaderError> {
        if self.source.is_none() {
            self.source = Some(open_source()?);
        }
        let source = self.source.as_mut().expect("just opened").as_mut();
        source.refresh()?;
        // Taken before reading: a commit after this point changes it, so the next probe looks again.
        let version = source.probe()?;
        if stop.load(Ordering::Relaxed) {
            self.last_version = None;
            return Ok((PassStats::default(), false));
        }
        let (stats, drained) = mover::drain_while(source, archive, opts.batch, &mut |_| {
            !stop.load(Ordering::Relaxed)
        })?;
        self.last_version = drained.then_some(version);
        Ok((stats, drained))
    }
}

#[cfg(unix)]
fn watch_os_signals(events: Sender<Event>, stop: Arc<AtomicBool>) -> Result<(), WatcherError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).map_err(|cause| {
        WatcherError::Socket {
            socket: PathBuf::new(),
            context: "cannot install the SIGINT/SIGTERM handler".into(),
            cause,
        }
    })?;
    std::thread::Builder::new()
        .name("rowtrail-signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                tracing::info!(signal = sig, "stopping after the batch in hand");
                stop.store(true, Ordering::Relaxed);
                let _ = events.send(Event::Shutdown);
            }
        })
        .expect("spawn the signal thread");
    Ok(())
}

#[cfg(not(unix))]
fn watch_os_signals(_events: Sender<Event>, _stop: Arc<AtomicBool>) -> Result<(), WatcherError> {
    // On Windows the service manager's stop request arrives as a `shutdown` socket request.
    Ok(())
}
