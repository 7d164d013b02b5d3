//! rowtrail-stream: the archive's changes published to NATS JetStream, in archive order,
//! exactly once.
//!
//! * [`subject`]: where a change goes, `<prefix>.<source>.<schema>.<table>`, every name made one
//!   safe token;
//! * [`envelope`]: the message body, a Debezium-style change event with rowtrail's fields, its
//!   values typed as the archive stores them (documented with a JSON Schema in
//!   `docs/stream.md`);
//! * [`settings`]: the server, the stream's settings, and the credentials (from the
//!   environment only);
//! * [`connection`]: one connection, used from a plain thread (it runs its own small tokio
//!   runtime): the stream created or brought to its settings, windows of pipelined publishes,
//!   and the stream's last message for finding the place again.
//!
//! * [`read`]: a source's messages read back in the stream's order (an ephemeral ordered
//!   consumer), for checks and tools.
//! * [`decode`]: a message body read back into the change the archive holds;
//! * [`consumer`]: a durable pull consumer of one source's subjects;
//! * [`remote`]: a remote replica, kept current from the stream through the replica's own
//!   apply path, whole source transactions at a time, exactly once.
//!
//! The watcher's `publisher` job drives these: it reads the archive after the published
//! position, publishes, and records the position after the server acknowledged.

pub mod connection;
pub mod consumer;
pub mod decode;
pub mod envelope;
pub mod error;
pub mod read;
pub mod remote;
pub mod settings;
pub mod subject;

pub use connection::{Connection, Outgoing, PendingWindow, WindowOutcome};
pub use error::StreamError;
pub use settings::{Credentials, Settings, Storage};
