//! The replicas job: keeps the replicas the config names current from the archive, after each
//! pass that archived something and on the poll timer (a delayed replica moves as time passes
//! even when nothing new arrives).
//!
//! A replica that fails (a tampered file, a table it does not hold) is reported in the status
//! and the log and tried again on the next round; capture goes on, as the trail matters more
//! than any one copy.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crossbeam_channel::select;
use rowtrail_reader::archive::Archive;
use rowtrail_standby::replica::{Replica, Until};

use super::{Job, JobContext};
use crate::control::Event;
use crate::status::ReplicaState;
use crate::WatcherError;

/// One replica the watcher keeps current.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaSettings {
    /// The replica file (built with `rowtrail replica create`).
    pub path: PathBuf,
    /// How far behind the source it stays (`None`: as close as the archive allows).
    pub delay: Option<Duration>,
    /// Where this replica's node answers load balancers' health checks, if anywhere.
    pub health_listen: Option<std::net::SocketAddr>,
    /// How often the verify job compares it with the source (`None`: never).
    pub verify_every: Option<Duration>,
}

/// The replicas job.
pub(crate) struct Replicas {
    archive: PathBuf,
    replicas: Vec<ReplicaSettings>,
    interval: Duration,
}

impl Replicas {
    /// A job applying the archive at `archive` to `replicas`, at least every `interval`.
    pub(crate) fn new(
        archive: PathBuf,
        replicas: Vec<ReplicaSettings>,
        interval: Duration,
    ) -> Self {
        Self {
            archive,
            replicas,
            interval,
        }
    }
}

impl Job for Replicas {
    fn name(&self) -> &'static str {
        "replicas"
    }

    fn takes(&self) -> fn(&Event) -> bool {
        |e| matches!(e, Event::Archived)
    }

    fn run(self: Box<Self>, ctx: JobContext) -> Result<(), WatcherError> {
        let mut open: Vec<Option<Replica>> = self.replicas.iter().map(|_| None).collect();
        ctx.board.update(|s| {
            s.replicas = self
                .replicas
                .iter()
                .map(|r| ReplicaState {
                    path: r.path.display().to_string(),
                    delay_secs: r.delay.map(|d| d.as_secs_f64()),
                    ..ReplicaState::default()
                })
                .collect();
        });
        let mut next = Instant::now();
        loop {
            let now = Instant::now();
            select! {
                recv(ctx.inbox) -> ev => if ev.is_err() { return Ok(()) },
                recv(ctx.shutdown.signal()) -> _ => return Ok(()),
                default(next.saturating_duration_since(now)) => {}
            }
            while ctx.inbox.try_recv().is_ok() {}
            if ctx.shutdown.is_triggered() {
                return Ok(());
            }
            self.round(&mut open, &ctx);
            next = Instant::now() + self.interval;
        }
    }
}

impl Replicas {
    /// Applies the archive to every replica once.
    fn round(&self, open: &mut [Option<Replica>], ctx: &JobContext) {
        let archive = match Archive::open_read_only(&self.archive) {
            Ok(a) => a,
            Err(e) => {
                let msg = e.to_string();
                ctx.board.update(|s| {
                    for r in &mut s.replicas {
                        r.last_error = Some(msg.clone());
                    }
                });
                return;
            }
        };
        let primary = ctx.board.snapshot().source;
        for (i, settings) in self.replicas.iter().enumerate() {
            // A replica a failover promoted is the primary now: clients write it, capture
            // archives it, and nothing is applied to it.
            if settings.path.display().to_string() == primary {
                open[i] = None;
                ctx.board.update(|s| {
                    let r = &mut s.replicas[i];
                    r.behind = 0;
                    r.lag_secs = 0.0;
                    r.last_error = None;
                });
                continue;
            }
            let started = Instant::now();
            let result = (|| {
                if open[i].is_none() {
                    open[i] = Some(Replica::open(&settings.path).map_err(|e| e.to_string())?);
                }
                let replica = open[i].as_mut().expect("opened above");
                let until = settings.delay.map_or(Until::Latest, Until::Delay);
                let report = replica.apply(&archive, &until).map_err(|e| e.to_string())?;
                let status = replica.status(&archive).map_err(|e| e.to_string())?;
                Ok::<_, String>((report, status))
            })();
            let secs = started.elapsed().as_secs_f64();
            match result {
                Ok((report, status)) => {
                    if report.applied > 0 {
                        tracing::debug!(replica = %settings.path.display(), applied = report.applied, "replica applied");
                    }
                    ctx.board.update(|s| {
                        let r = &mut s.replicas[i];
                        r.applied += report.applied;
                        r.position = status.position.change_id;
                        r.position_seq = status.position.seq;
                        r.consistent = status.position.consistent;
                        r.behind = status.behind;
                        r.lag_secs = status.lag_seconds;
                        r.paused = status.paused;
                        r.last_apply_secs = secs;
                        if report.applied > 0 && secs > 0.0 {
                            r.apply_rate = report.applied as f64 / secs;
                        }
                        r.rto_estimate_secs = if r.apply_rate > 0.0 {
                            r.behind as f64 / r.apply_rate
                        } else {
                            0.0
                        };
                        r.last_error = None;
                    });
                }
                Err(msg) => {
                    // Opened afresh next round: the file may have been replaced or repaired.
                    open[i] = None;
                    // Still behind, and more so as time passes: the lag keeps counting.
                    if let Some(status) = Replica::open(&settings.path)
                        .ok()
                        .and_then(|r| r.status(&archive).ok())
                    {
                        ctx.board.update(|s| {
                            let r = &mut s.replicas[i];
                            r.behind = status.behind;
                            r.lag_secs = status.lag_seconds;
                        });
                    }
                    tracing::warn!(replica = %settings.path.display(), "replica not applied: {msg}");
                    ctx.board.update(|s| s.replicas[i].last_error = Some(msg));
                }
            }
        }
    }
}
