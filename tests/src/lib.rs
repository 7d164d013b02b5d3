//! rowtrail-tests: the one test-support crate of rowtrail, used by the end-to-end tests
//! (`tests/e2e/*.rs`) and by every crate's own tests and the benchmarks.
//!
//! * [`Sandbox`]: a private folder with a SQLite source, an archive path and a config file; it
//!   runs the real `rowtrail` binary as a process and prints its output when a step fails.
//! * [`Proc`], [`Armed`], [`kill_at`]: child processes, stopped by signal or parked at a
//!   failpoint and killed there.
//! * [`nats`]: a real NATS server with JetStream on a loopback port, for the change stream.
//! * [`haproxy`]: a real HAProxy routing clients by the health endpoints, and a node's
//!   stand-in service, for failover.
//! * [`scriptdom`]: Microsoft's T-SQL parser over generated scripts.
//! * [`tables`]: SQLite tables read and compared type for type; [`replay`]: the archive read
//!   back and replayed into a database.
//!
//! Waiting is always on a condition with a deadline ([`wait_until`]), never a bare sleep.

pub mod haproxy;
pub mod nats;
mod process;
pub mod replay;
mod sandbox;
pub mod scriptdom;
pub mod tables;

pub use process::{kill_at, show, stderr_lines, wait_until, Armed, Proc, REACH_FAILPOINT};
pub use sandbox::Sandbox;
