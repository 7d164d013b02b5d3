//! rowtrail-watcher: the daemon that keeps the archive current.
//!
//! The watcher runs jobs, each on a thread of its own, around one shutdown, one event bus and
//! one shared [`status`] (`jobs/mod.rs` lists them and what each owns; `daemon.rs` starts and
//! stops them; `control.rs` holds the shutdown and the bus):
//!
//! * the **mover** (`jobs/mover.rs`) runs the trace reader's drain ([`rowtrail_reader::mover`]).
//!   It is woken three ways, and correctness needs none of them but the last: a [`protocol`]
//!   message on the local socket (a Unix socket in a private folder; a named pipe on Windows),
//!   the engine probe (SQLite `data_version`), and a poll timer;
//! * the **heartbeat** (`jobs/heartbeat.rs`) judges the source, the backlog and the archive's
//!   disk, raising [`alerts`];
//! * the **publisher** (`jobs/publisher.rs`), when `[stream]` is configured, publishes the
//!   archived changes to NATS JetStream ([`rowtrail_stream`]) in archive order, exactly once;
//! * a **remote replica** job (`jobs/remote_replica.rs`) per `[[remote_replica]]` keeps a
//!   replica current from that stream, on a host with or without a source of its own.
//!
//! The socket endpoint (`endpoint.rs`) and the HTTP listener (`http.rs`, serving [`metrics`])
//! run on one small tokio runtime and only read the status and post events. [`client`] is the
//! other end of the socket, used by `rowtrail signal` and `rowtrail status`; [`process`] is a
//! watcher process as the demo, the benchmarks and the tests start and stop it.

pub mod alerts;
pub mod client;
mod control;
mod daemon;
pub mod digest;
mod endpoint;
pub mod error;
mod http;
mod jobs;
pub mod metrics;
pub mod process;
pub mod protocol;
pub mod status;

pub use alerts::AlertRules;
pub use control::FailoverOrder;
pub use daemon::{
    run, run_without_source, FailoverHandler, NodeSettings, SourceFactory, WatcherOptions,
};
pub use error::WatcherError;
pub use jobs::heartbeat::{HealthCheck, Pacing, DOWN_AFTER};
pub use jobs::publisher::StreamJob;
pub use jobs::remote_replica::RemoteReplicaSettings;
pub use jobs::replicas::ReplicaSettings;
pub use jobs::verify::VerifySettings;

use std::path::{Path, PathBuf};

/// The default socket for an archive: `watcher.sock` in a private folder beside it,
/// `.<archive file name>.rowtrail/`.
pub fn default_socket(archive: &Path) -> PathBuf {
    let mut dir = std::ffi::OsString::from(".");
    dir.push(archive.file_name().unwrap_or_default());
    dir.push(".rowtrail");
    archive.with_file_name(dir).join("watcher.sock")
}
