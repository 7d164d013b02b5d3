//! rowtrail-reader: sources, the trace archive, and the mover between them.
//!
//! * [`source`]: what the mover asks of a captured database (the [`source::Source`] trait, staged
//!   images), whatever its engine.
//! * [`sqlite`] and [`mssql`]: the two engines, laid out alike: connection, catalog, install,
//!   health, staging reads and deletes, value conversion.
//! * [`archive`]: the SQLite trace archive: versioned schema, idempotent append with a SHA-256
//!   hash chain, reading changes back, verification.
//! * [`mover`]: one pass of the trace reader: copy a batch in sequence order, commit it to the
//!   archive, then delete exactly the staged rows it copied (on SQLite, while the next batch is
//!   read and archived).
//! * [`lock`]: the one-reader-per-archive lock; [`failpoint`]: labelled crash points for tests;
//!   [`operator`]: who runs this process, for the records that name who did something.

pub mod archive;
pub mod error;
pub mod failpoint;
pub mod lock;
pub mod mover;
pub mod mssql;
pub mod operator;
pub mod source;
pub mod sqlite;

pub use error::ReaderError;

/// Microseconds since the Unix epoch, from the system clock.
pub fn now_micros() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}
