//! The daemon: it starts the jobs, the socket endpoint and the HTTP listener around one
//! [`Shutdown`], one [`Bus`] and one status [`Board`], and tears them down in order.
//!
//! Who owns what:
//!
//! * each job ([`crate::jobs`]) owns its own resources, on its own thread: the mover the
//!   source connection and the archive, the heartbeat its health check and alert state;
//! * the I/O thread runs a small tokio runtime for the socket endpoint ([`crate::endpoint`]) and
//!   the HTTP listener (`crate::http`); they only read the board and post on the bus;
//! * the signal thread turns SIGINT and SIGTERM into [`Shutdown::trigger`];
//! * this module owns the order of things: bind everything (failing fast), start the jobs, wait
//!   for them all to return after a shutdown, then close the I/O runtime, so replies to requests
//!   in flight ("the watcher is stopping") still reach their clients; the socket file goes last
//!   but one, the archive lock last.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::Duration;

use rowtrail_reader::archive::Archive;
use rowtrail_reader::lock::ArchiveLock;
use rowtrail_reader::now_micros;
use rowtrail_reader::source::Source;
use rowtrail_reader::ReaderError;

use crate::alerts::AlertRules;
use crate::control::FailoverOrder;
use crate::control::{Bus, Shutdown};
use crate::jobs::heartbeat::{HealthCheck, Heartbeat, Pacing};
use crate::jobs::mover::{Mover, Pace};
use crate::jobs::publisher::Publisher;
use crate::jobs::remote_replica::RemoteReplicaJob;
use crate::jobs::replicas::Replicas;
use crate::jobs::verify::Verify;
use crate::jobs::{Job, JobContext};
use crate::status::{Board, NodeState, Status, TakeoverState};
use crate::{endpoint, http, WatcherError};

/// Opens (or reopens, after a failure) the source.
pub type SourceFactory = Box<dyn FnMut() -> Result<Box<dyn Source>, ReaderError> + Send>;

/// Carries out a failover on the watcher's archive (built by the command line, which knows the
/// configuration); returns the new primary's location and the outcome as JSON, or why it was
/// refused or failed.
pub type FailoverHandler =
    Box<dyn FnMut(&mut Archive, &FailoverOrder) -> Result<(String, String), String> + Send>;

/// A node the watcher answers health checks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSettings {
    /// Where it is (as status shows the source: a file, or a server and database).
    pub target: String,
    /// `source` or `replica`.
    pub kind: &'static str,
    /// Where its own health endpoints are served (a listener of its own, for a load balancer
    /// to check it by), if anywhere.
    pub health_listen: Option<SocketAddr>,
}

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
    /// The heartbeat against the primary (a fresh connection each time).
    pub health_check: HealthCheck,
    /// How often the heartbeat runs, and when it calls the primary down.
    pub heartbeat: Pacing,
    /// Carries out failovers (a socket `failover`, `auto_failover`); `None`: refused.
    pub failover: Option<FailoverHandler>,
    /// The nodes health checks are answered for (the configured source, the replicas).
    pub nodes: Vec<NodeSettings>,
    /// Alert thresholds and the alert command.
    pub alerts: AlertRules,
    /// Where to serve Prometheus metrics (a loopback address), if anywhere.
    pub metrics: Option<SocketAddr>,
    /// Where the archive's digest goes after every pass that archived something.
    pub digest: crate::digest::DigestSink,
    /// The replicas kept current from the archive (none: no replicas job).
    pub replicas: Vec<crate::jobs::replicas::ReplicaSettings>,
    /// The change stream to publish to, if any.
    pub stream: Option<crate::jobs::publisher::StreamJob>,
    /// The replicas kept current from the change stream (`[[remote_replica]]`).
    pub remote_replicas: Vec<crate::jobs::remote_replica::RemoteReplicaSettings>,
    /// The scheduled checks (nothing to check: no verify job).
    pub verify: crate::jobs::verify::VerifySettings,
}

/// What a watcher of a source holds: the source's opener, the archive, and its lock.
struct Capture {
    open_source: SourceFactory,
    archive: Archive,
    lock: ArchiveLock,
}

/// Runs the watcher until SIGINT, SIGTERM or a `shutdown` request. `lock` proves this is the only
/// reader of `archive`; it is held until the watcher returns.
pub fn run(
    open_source: SourceFactory,
    archive: Archive,
    lock: ArchiveLock,
    opts: WatcherOptions,
) -> Result<(), WatcherError> {
    run_jobs(
        Some(Capture {
            open_source,
            archive,
            lock,
        }),
        opts,
    )
}

/// Runs a watcher on a host without a source or an archive: its remote replicas' jobs alone
/// (`opts.remote_replicas`, which must name one at least), with the socket and the metrics;
/// the options about the source, the archive and its replicas are not used.
pub fn run_without_source(opts: WatcherOptions) -> Result<(), WatcherError> {
    run_jobs(None, opts)
}

fn run_jobs(capture: Option<Capture>, mut opts: WatcherOptions) -> Result<(), WatcherError> {
    let board = Board::new(Status {
        source_up: true,
        pid: std::process::id(),
        version: opts.version.clone(),
        started_us: now_micros(),
        source: opts.source_location.clone(),
        archive: capture
            .as_ref()
            .map(|c| c.archive.path().display().to_string())
            .unwrap_or_default(),
        nodes: opts
            .nodes
            .iter()
            .map(|n| NodeState {
                target: n.target.clone(),
                kind: n.kind.to_string(),
                role: String::new(),
                health_listen: n.health_listen.map(|a| a.to_string()),
            })
            .collect(),
        takeover: capture.as_ref().and_then(|c| takeover_state(&c.archive)),
        remote_replicas: opts
            .remote_replicas
            .iter()
            .map(|r| crate::status::RemoteReplicaState {
                path: r.path.display().to_string(),
                url: r.remote.url.clone(),
                subjects: r
                    .remote
                    .subjects
                    .as_ref()
                    .map(|s| s.all())
                    .unwrap_or_default(),
                stream: r.remote.stream.clone().unwrap_or_default(),
                ..Default::default()
            })
            .collect(),
        ..Status::default()
    });
    let shutdown = Shutdown::new();
    let archive_path = capture
        .as_ref()
        .map(|c| c.archive.path().to_path_buf())
        .unwrap_or_default();
    let mut jobs: Vec<Box<dyn Job>> = Vec::new();
    let mut lock = None;
    if let Some(c) = capture {
        lock = Some(c.lock);
        jobs.push(Box::new(Mover::new(
            c.open_source,
            c.archive,
            Pace {
                poll_interval: opts.poll_interval,
                probe_interval: opts.probe_interval,
                batch: opts.batch,
            },
            crate::digest::Publisher::new(opts.digest),
            opts.failover.take(),
        )));
        jobs.push(Box::new(Heartbeat::new(
            opts.health_check,
            opts.heartbeat,
            opts.alerts,
            archive_path.clone(),
        )));
        if !opts.replicas.is_empty() {
            jobs.push(Box::new(Replicas::new(
                archive_path.clone(),
                opts.replicas.clone(),
                opts.poll_interval,
            )));
        }
        if opts.verify.any() {
            jobs.push(Box::new(Verify::new(archive_path.clone(), opts.verify)));
        }
        if let Some(stream) = opts.stream {
            jobs.push(Box::new(Publisher::new(stream, archive_path.clone())));
        }
    }
    for (i, r) in opts.remote_replicas.iter().enumerate() {
        jobs.push(Box::new(RemoteReplicaJob::new(
            r.clone(),
            i,
            opts.poll_interval,
        )));
    }
    let takes: Vec<_> = jobs.iter().map(|j| j.takes()).collect();
    let (bus, inboxes) = Bus::new(&takes);

    let signals = os_signals::watch(shutdown.clone())?;
    let node_listeners: Vec<(usize, SocketAddr)> = opts
        .nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| n.health_listen.map(|a| (i, a)))
        .collect();
    let io = match Io::start(
        &opts.socket,
        opts.metrics,
        &node_listeners,
        &bus,
        &board,
        &shutdown,
    ) {
        Ok(io) => io,
        Err(e) => {
            signals.close();
            return Err(e);
        }
    };
    tracing::info!(
        source = %opts.source_location,
        archive = %archive_path.display(),
        socket = %opts.socket.display(),
        poll_ms = opts.poll_interval.as_millis() as u64,
        metrics = %io.metrics.map_or("off".to_string(), |a| format!("http://{a}/metrics")),
        "watcher started"
    );

    // Each job's thread returns its result and whether the shutdown came before it ended.
    type Ended = (Result<(), WatcherError>, bool);
    let mut running: Vec<(&'static str, JoinHandle<Ended>)> = Vec::new();
    let mut failure = None;
    for (job, inbox) in jobs.into_iter().zip(inboxes) {
        let name = job.name();
        let ctx = JobContext {
            shutdown: shutdown.clone(),
            bus: bus.clone(),
            inbox,
            board: board.clone(),
        };
        let stop = shutdown.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("rowtrail-{name}"))
            .spawn(move || {
                // Whatever ends a job ends the watcher: the others must not run on alone.
                let stop_all = StopOnDrop(stop);
                let result = job.run(ctx);
                (result, stop_all.0.is_triggered())
            });
        match spawned {
            Ok(handle) => running.push((name, handle)),
            Err(cause) => {
                shutdown.trigger();
                failure = Some(WatcherError::Job {
                    job: name,
                    reason: format!("cannot start its thread: {cause}"),
                });
                break;
            }
        }
    }
    drop(bus);

    for (name, handle) in running {
        let outcome = match handle.join() {
            Ok((Ok(()), true)) => continue,
            Ok((Ok(()), false)) => "it returned while the watcher was running".to_string(),
            Ok((Err(e), _)) => e.to_string(),
            Err(panic) => panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .map_or("it panicked".into(), |m| format!("it panicked: {m}")),
        };
        tracing::error!(job = name, "job stopped: {outcome}; stopping the watcher");
        failure.get_or_insert(WatcherError::Job {
            job: name,
            reason: outcome,
        });
    }
    io.stop();
    signals.close();
    tracing::info!("watcher stopped");
    drop(lock);
    failure.map_or(Ok(()), Err)
}

/// Triggers the shutdown when dropped: when a job's thread ends, however it ends.
struct StopOnDrop(Shutdown);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.trigger();
    }
}

/// The I/O thread: a single-threaded tokio runtime serving the socket endpoint and the HTTP
/// listener. It outlives the shutdown trigger on purpose, until the jobs have returned.
struct Io {
    thread: JoinHandle<()>,
    close: tokio::sync::oneshot::Sender<()>,
    metrics: Option<SocketAddr>,
}

impl Io {
    /// Binds the socket and the HTTP listener (failing fast if either cannot be bound) and starts
    /// serving them.
    fn start(
        socket: &std::path::Path,
        metrics: Option<SocketAddr>,
        nodes: &[(usize, SocketAddr)],
        bus: &Bus,
        board: &Board,
        shutdown: &Shutdown,
    ) -> Result<Self, WatcherError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|cause| WatcherError::Socket {
                socket: socket.to_path_buf(),
                context: "cannot start the I/O runtime".into(),
                cause,
            })?;
        let (endpoint, listener) = {
            let _inside = runtime.enter();
            let endpoint = endpoint::bind(socket)?;
            let listener = metrics.map(|a| http::bind(a, false)).transpose()?;
            let node_listeners = nodes
                .iter()
                .map(|&(i, addr)| http::bind(addr, true).map(|l| (i, l)))
                .collect::<Result<Vec<_>, _>>()?;
            (endpoint, (listener, node_listeners))
        };
        let (listener, node_listeners) = listener;
        let bound = match &listener {
            Some(l) => Some(l.local_addr().map_err(|cause| WatcherError::Socket {
                socket: metrics.map(|a| a.to_string()).unwrap_or_default().into(),
                context: "cannot read the metrics address".into(),
                cause,
            })?),
            None => None,
        };
        let served = endpoint::Served {
            bus: bus.clone(),
            board: board.clone(),
            shutdown: shutdown.clone(),
        };
        let board = board.clone();
        let (close, closed) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("rowtrail-io".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let endpoint = tokio::spawn(endpoint::serve(endpoint, served));
                    let mut http: Vec<_> = node_listeners
                        .into_iter()
                        .map(|(i, l)| tokio::spawn(http::serve(l, board.clone(), Some(i))))
                        .collect();
                    http.extend(listener.map(|l| tokio::spawn(http::serve(l, board, None))));
                    let _ = closed.await;
                    endpoint.abort();
                    for h in http {
                        h.abort();
                    }
                    // Let the aborted tasks drop (the endpoint removes its socket file).
                    let _ = endpoint.await;
                });
            })
            .map_err(|cause| WatcherError::Socket {
                socket: socket.to_path_buf(),
                context: "cannot start the I/O thread".into(),
                cause,
            })?;
        Ok(Self {
            thread,
            close,
            metrics: bound,
        })
    }

    /// Stops serving and removes the socket file.
    fn stop(self) {
        let _ = self.close.send(());
        let _ = self.thread.join();
    }
}

#[cfg(unix)]
mod os_signals {
    use signal_hook::consts::{SIGINT, SIGTERM};
    use signal_hook::iterator::{Handle, Signals};

    use crate::control::Shutdown;
    use crate::WatcherError;

    /// The thread that turns SIGINT and SIGTERM into the shutdown.
    pub(super) struct Watch {
        handle: Handle,
        thread: std::thread::JoinHandle<()>,
    }

    /// Installs the handlers and starts the thread.
    pub(super) fn watch(shutdown: Shutdown) -> Result<Watch, WatcherError> {
        let mut signals =
            Signals::new([SIGINT, SIGTERM]).map_err(|cause| WatcherError::Socket {
                socket: Default::default(),
                context: "cannot install the SIGINT/SIGTERM handler".into(),
                cause,
            })?;
        let handle = signals.handle();
        let thread = std::thread::Builder::new()
            .name("rowtrail-signals".into())
            .spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    tracing::info!(signal = sig, "stopping after the batch in hand");
                    shutdown.trigger();
                }
            })
            .map_err(|cause| WatcherError::Socket {
                socket: Default::default(),
                context: "cannot start the signal thread".into(),
                cause,
            })?;
        Ok(Watch { handle, thread })
    }

    impl Watch {
        /// Ends the thread.
        pub(super) fn close(self) {
            self.handle.close();
            let _ = self.thread.join();
        }
    }
}

#[cfg(not(unix))]
mod os_signals {
    use crate::control::Shutdown;
    use crate::WatcherError;

    /// Nothing to watch: on Windows the service manager's stop request arrives as a `shutdown`
    /// socket request.
    pub(super) struct Watch;

    pub(super) fn watch(_shutdown: Shutdown) -> Result<Watch, WatcherError> {
        Ok(Watch)
    }

    impl Watch {
        pub(super) fn close(self) {}
    }
}

/// The newest takeover `archive` records, as the status shows it.
pub(crate) fn takeover_state(archive: &Archive) -> Option<TakeoverState> {
    let t = archive.takeovers().ok()?.pop()?;
    Some(TakeoverState {
        id: t.id,
        kind: t.kind.as_str().to_string(),
        step: t.step,
        from: t.from_location,
        to: t.to_location,
        fence: t.fence,
        automatic: t.automatic,
        started_us: t.started_us,
        finished_us: t.finished_us,
        last_error: None,
    })
}
