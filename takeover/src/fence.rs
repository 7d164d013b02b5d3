//! Fencing: an old primary takes no more writes once another copy is primary.
//!
//! On SQLite the fence is a trigger on each captured table that aborts every insert, update
//! and delete with a message naming the takeover (`rowtrail_sql::sqlite::fence`); reads go on,
//! and what its staging still holds stays readable for the handback. A primary that cannot be
//! reached (its file unreadable, its host gone) cannot be fenced then: the takeover records the
//! fence as pending, and the watcher fences it the moment it is reachable again, before it can
//! be mistaken for a primary.

use std::path::Path;
use std::time::Duration;

use rowtrail_reader::source::SourceSpec;
use rowtrail_sql::Table;
use rusqlite::{Connection, OpenFlags};

use crate::TakeoverError;

/// What fencing did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fenced {
    /// The fence is in place.
    Done,
    /// The primary could not be reached; the reason.
    Pending(String),
}

impl Fenced {
    /// `fenced` or `pending`, as the takeover record holds it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Fenced::Done => "fenced",
            Fenced::Pending(_) => "pending",
        }
    }
}

/// The message every write to a fenced table fails with.
pub fn message(takeover: i64, new_primary: &str) -> String {
    format!(
        "rowtrail: this database is fenced: takeover {takeover} made {new_primary} the primary; \
         write there (see `rowtrail primary`)"
    )
}

fn open(path: &Path) -> Result<Connection, String> {
    if !path.exists() {
        return Err(format!("{} does not exist", path.display()));
    }
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .map_err(|e| format!("{} cannot be opened for writing: {e}", path.display()))?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    // Reading the schema proves the file is a database we can use, not just a path.
    conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
        r.get::<_, i64>(0)
    })
    .map_err(|e| format!("{} cannot be read: {e}", path.display()))?;
    Ok(conn)
}

/// Fences `tables` on `spec` with `message`; `Pending` when it cannot be reached.
pub fn fence(spec: &SourceSpec, tables: &[Table], message: &str) -> Result<Fenced, TakeoverError> {
    let SourceSpec::Sqlite { path, .. } = spec else {
        return Err(TakeoverError::Refused(
            "fencing a SQL Server primary is not built yet: failover is for SQLite sources in \
             this version (see docs/failover.md)"
                .into(),
        ));
    };
    let mut conn = match open(path) {
        Ok(c) => c,
        Err(why) => return Ok(Fenced::Pending(why)),
    };
    let script = rowtrail_sql::sqlite::fence::fence_script(tables, message);
    let tx = match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        // A writer that holds the file and does not let go (frozen mid-transaction): the
        // fence waits for the file to be free again.
        Err(e) if is_busy(&e) => {
            return Ok(Fenced::Pending(format!(
                "{} is locked by a writer that does not let go ({e})",
                path.display()
            )))
        }
        Err(e) => return Err(TakeoverError::db(path, "cannot start fencing")(e)),
    };
    match tx.execute_batch(&script) {
        Ok(()) => {}
        Err(e) if is_busy(&e) => {
            return Ok(Fenced::Pending(format!(
                "{} is locked by a writer that does not let go ({e})",
                path.display()
            )))
        }
        Err(e) => return Err(TakeoverError::db(path, "cannot install the fence")(e)),
    }
    tx.commit()
        .map_err(TakeoverError::db(path, "cannot commit the fence"))?;
    Ok(Fenced::Done)
}

/// Removes the fence from `tables` on `spec`.
pub fn unfence(spec: &SourceSpec, tables: &[Table]) -> Result<(), TakeoverError> {
    let SourceSpec::Sqlite { path, .. } = spec else {
        return Err(TakeoverError::Refused(
            "fencing a SQL Server primary is not built yet".into(),
        ));
    };
    let conn = open(path).map_err(TakeoverError::Refused)?;
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE;\n{}COMMIT;",
        rowtrail_sql::sqlite::fence::unfence_script(tables)
    ))
    .map_err(TakeoverError::db(path, "cannot remove the fence"))
}

/// Fences the old primary of the newest takeover if its fence is still pending (it could not
/// be reached then) and it can be reached now; records it. The heartbeat calls it while its
/// status shows a fence pending. Returns whether it fenced one now.
pub fn retry_pending(archive: &Path) -> bool {
    let pending = rowtrail_reader::archive::Archive::open_read_only(archive)
        .ok()
        .and_then(|a| a.takeovers().ok())
        .and_then(|mut ts| ts.pop())
        .filter(|t| t.fence.as_deref() == Some("pending") && t.from_engine == "sqlite");
    let Some(t) = pending else {
        return false;
    };
    let tables: Vec<Table> =
        match rowtrail_standby::replica::Replica::open(Path::new(&t.to_location)) {
            Ok(r) => r
                .tables()
                .iter()
                .map(|x| x.definition.as_ref().clone())
                .collect(),
            Err(_) => return false,
        };
    let spec = SourceSpec::Sqlite {
        path: t.from_location.clone().into(),
        capture_new_tables: false,
    };
    match fence(&spec, &tables, &message(t.id, &t.to_location)) {
        Ok(Fenced::Done) => {
            let recorded = rowtrail_reader::archive::Archive::open_beside(archive)
                .and_then(|mut a| a.set_takeover_fence(t.id, "fenced"));
            match recorded {
                Ok(()) => {
                    tracing::warn!(old_primary = %t.from_location, takeover = t.id,
                        "the old primary is reachable again: fenced (writes to it now fail)");
                    true
                }
                Err(e) => {
                    tracing::error!(error = %e, "the old primary was fenced but the archive could not record it");
                    true
                }
            }
        }
        Ok(Fenced::Pending(_)) => false,
        Err(e) => {
            tracing::error!(error = %e, old_primary = %t.from_location, "cannot fence the old primary");
            false
        }
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}
