//! The heartbeat's look at a SQLite source: a fresh connection, the installation, the backlog.

use std::path::Path;

use rowtrail_sql::sqlite::objects;
use rowtrail_sql::{staging, Ident};

use rusqlite::OptionalExtension;

use super::catalog::installed_on;
use super::connection::{err, open_for_heartbeat};
use super::SqliteSource;
use crate::source::Health;
use crate::ReaderError;

impl SqliteSource {
    /// A heartbeat: opens a fresh connection (so a moved, replaced or deleted file is noticed,
    /// which an open connection would not notice), checks the installation, measures the
    /// backlog, and makes sure the write lock the staging delete needs can be had.
    ///
    /// Each statement waits at most [`super::connection::HEARTBEAT_BUSY_TIMEOUT`] for a lock:
    /// a source another process keeps locked is reported as
    /// [`ReaderError::SourceLocked`], naming who holds what where that is known.
    pub fn health(path: &Path) -> Result<Health, ReaderError> {
        let (conn, location, incarnation) = installed_on(open_for_heartbeat(path)?, path)?;
        let time = Ident::new(staging::COL_TIME)?;
        let seq = Ident::new(staging::COL_SEQ)?;
        let op = Ident::new(staging::COL_OP)?;
        let oldest: Option<f64> = conn
            .query_row(
                &format!(
                    "SELECT (julianday('now') - julianday({time})) * 86400.0 FROM {t} \
                     WHERE {op} IS NOT '{mark}' ORDER BY {seq} LIMIT 1",
                    t = Ident::new(objects::STAGING)?.sqlite(),
                    op = op.sqlite(),
                    mark = rowtrail_sql::sqlite::OP_HIGH_WATER,
                    time = time.sqlite(),
                    seq = seq.sqlite(),
                ),
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(err(&location, "cannot measure the backlog"))?
            .flatten();
        let staged = super::staging::count(&conn, &location, None)?;
        // This connection sees only what is committed: a context row here outlived its writer's
        // transaction.
        let context: i64 = conn
            .query_row(
                &format!(
                    "SELECT count(*) FROM {}",
                    Ident::new(objects::CONTEXT)?.sqlite()
                ),
                [],
                |r| r.get(0),
            )
            .map_err(err(&location, "cannot read the context table"))?;
        // Taken and given back at once (nothing is written): a writer that keeps the lock for
        // longer than the wait blocks every staging delete too.
        conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;")
            .map_err(err(
                &location,
                "the staging delete cannot take the write lock, so archived changes stay staged",
            ))?;
        Ok(Health {
            incarnation,
            staged,
            oldest_age_secs: oldest,
            context_committed: context > 0,
        })
    }
}
