//! A SQLite database as an apply target: a captured source (undo, redo, handback) or a copy.
//!
//! On a captured source the job's writes carry its tag ([`Link::Tag`]): the apply labels its
//! transaction with a `rowtrail_context` row, which the capture triggers read. A job whose
//! steps were recorded for a table definition other than the table's now is refused, for its
//! script as for its apply (`versions.rs`).

mod transaction;

pub use transaction::apply_within;
mod versions;

use std::path::Path;

use rowtrail_reader::sqlite::{catalog, connection, staging};
use rowtrail_sql::sqlite::undo;
use rowtrail_sql::{Dialect, ForeignKey};
use rusqlite::Connection;

use crate::{ApplyError, Hooks, Job, Link, StepResult, Target};

/// A SQLite database rowtrail writes to.
pub struct SqliteTarget {
    conn: Connection,
    location: String,
}

impl SqliteTarget {
    /// Opens the database at `path` (it must exist), waiting for the application's locks as
    /// the reader does.
    pub fn open(path: &Path) -> Result<Self, ApplyError> {
        let conn = connection::open(path)?;
        Ok(Self::from_connection(conn))
    }

    /// A target on an open connection.
    pub fn from_connection(conn: Connection) -> Self {
        let location = conn.path().unwrap_or("(memory)").to_string();
        Self { conn, location }
    }

    /// The connection, for what a caller reads besides applying.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The connection back, with the settings it had before (an apply restores them).
    pub fn into_connection(self) -> Connection {
        self.conn
    }
}

impl Target for SqliteTarget {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn location(&self) -> String {
        self.location.clone()
    }

    fn incarnation(&self) -> Result<Option<String>, ApplyError> {
        Ok(catalog::incarnation(&self.conn, &self.location)?)
    }

    fn foreign_keys(&self) -> Result<Vec<ForeignKey>, ApplyError> {
        Ok(catalog::foreign_keys(&self.conn, &self.location)?)
    }

    fn link(&self, tag: &str, _recorded_tx: Option<i64>) -> Option<Link> {
        Some(Link::Tag(tag.to_string()))
    }

    fn staged_with(&self, link: &Link, _since_us: i64) -> Result<bool, ApplyError> {
        // A run's tag is never reused: no time window is needed. SQLite's capture records the
        // label a writer declared, never a transaction id of its own; a label may be a number.
        match link {
            Link::Tag(tag) => Ok(staging::staged_with_tx(&self.conn, &self.location, tag)?),
            Link::Transaction(tx) => Ok(staging::staged_with_tx(&self.conn, &self.location, tx)?),
        }
    }

    fn script(&self, job: &Job<'_>, header: &str) -> Result<String, ApplyError> {
        versions::check(&self.conn, &self.location, job)?;
        Ok(undo::script(header, &job.script_steps(), job.on_conflict)?)
    }

    fn apply(
        &mut self,
        job: &Job<'_>,
        hooks: &mut dyn Hooks,
    ) -> Result<Vec<StepResult>, ApplyError> {
        versions::check(&self.conn, &self.location, job)?;
        transaction::apply(&mut self.conn, job, hooks)
    }
}
