//! How an undo or redo run's own writes are recognised in the capture.
//!
//! * **SQLite**: the run opens its transaction with a `rowtrail_context` row, so the triggers
//!   label each write with the run's tag (`undo:<id>`) as its transaction.
//! * **SQL Server**: the triggers record the writer's transaction id and nothing a session can
//!   set (DESIGN §3), so the run reads its own transaction's id while that transaction is open,
//!   before any write, and records it in the journal (`undo_runs.source_tx`); its writes are the
//!   changes of its source carrying that id.
//!
//! Either link keeps the run's writes out of later undo selections ([`crate::load::ELIGIBLE`])
//! and settles a run an interrupted process left `applying`: it committed exactly when a write
//! carrying its link exists, in staging or archived.

use rusqlite::OptionalExtension;

use rowtrail_reader::archive::Archive;

use crate::RestoreError;

/// What a run's writes carry as their transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// The run's tag (`undo:<id>`, `redo:<id>`): SQLite sources.
    Tag(String),
    /// The id of the source transaction the run wrote in: SQL Server sources.
    Transaction(i64),
}

impl std::fmt::Display for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Link::Tag(t) => write!(f, "{t}"),
            Link::Transaction(id) => write!(f, "{id}"),
        }
    }
}

/// Records that run `run` writes in source transaction `tx`. Written once, while the run is
/// `applying` and before its source transaction makes any write.
pub fn record(archive: &Archive, run: i64, tx: i64) -> Result<(), RestoreError> {
    let n = archive.connection().execute(
        "UPDATE undo_runs SET source_tx = ?2 WHERE id = ?1 AND state = 'applying' \
         AND source_tx IS NULL",
        [run, tx],
    )?;
    if n != 1 {
        return Err(RestoreError::BadRequest(format!(
            "undo run {run} cannot be linked to source transaction {tx}: it is not a pending run \
             without a link (was it settled by another process?)"
        )));
    }
    Ok(())
}

/// The source transaction recorded for run `run`, if any.
pub fn recorded(archive: &Archive, run: i64) -> Result<Option<i64>, RestoreError> {
    Ok(archive
        .connection()
        .query_row(
            "SELECT source_tx FROM undo_runs WHERE id = ?1",
            [run],
            |r| r.get::<_, Option<i64>>(0),
        )
        .optional()?
        .flatten())
}

/// Whether the archive holds a change of `incarnation` carrying `link` as its transaction.
pub fn archived(archive: &Archive, incarnation: &str, link: &Link) -> Result<bool, RestoreError> {
    match link {
        Link::Tag(tag) => Ok(archive.has_tagged_changes(incarnation, tag)?),
        Link::Transaction(tx) => Ok(archive.connection().query_row(
            "SELECT EXISTS (SELECT 1 FROM changes c JOIN sources s ON s.id = c.source_id \
             WHERE s.incarnation = ?1 AND c.tx = ?2)",
            rusqlite::params![incarnation, tx],
            |r| r.get(0),
        )?),
    }
}
