//! `rowtrail sql alter`: a schema change to a captured SQLite table and the upgrade of its
//! capture, in one transaction (SQLite's DDL is transactional), so no change is ever captured
//! by the old capture after the schema changed, and `DROP COLUMN` gets past the triggers that
//! name the column.

use std::path::Path;
use std::time::{Duration, Instant};

use rowtrail_sql::sqlite::upgrade;
use rowtrail_sql::Table;
use rusqlite::TransactionBehavior;

use super::catalog::{installed, read_table, registry};
use super::connection::{err, open};
use super::follow::Note;
use super::staging::{count, sequence_value, widen_for};
use super::SqliteSource;
use crate::ReaderError;

/// How long `alter` waits by default for the table's staged images to be archived.
pub const ALTER_WAIT: Duration = Duration::from_secs(30);

/// What an alter did to capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Altered {
    /// The table's name before.
    pub table: String,
    /// Its name now, or `None` when the statements dropped it.
    pub now: Option<String>,
    /// What changed, in words.
    pub detail: String,
}

impl SqliteSource {
    /// Runs `ddl` (statements without `BEGIN`/`COMMIT`) on the captured table `table` of the
    /// database at `path` and upgrades its capture to what the statements made of it, all in
    /// one transaction: either both happen or neither does.
    ///
    /// The table's staged images must be archived first (a running watcher does it within
    /// moments; otherwise `rowtrail read`): it waits up to [`ALTER_WAIT`] for that, holding no
    /// lock while it waits, at most `wait` ([`ALTER_WAIT`] by default).
    pub fn alter(
        path: &Path,
        table: &str,
        ddl: &str,
        wait: Duration,
    ) -> Result<Altered, ReaderError> {
        let mut conn = open(path)?;
        let location = path.display().to_string();
        let deadline = Instant::now() + wait;
        loop {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(err(&location, "cannot take the write lock"))?;
            if !installed(&tx, &location)? {
                return Err(ReaderError::NotInstalled { location });
            }
            let captured = registry(&tx, &location)?
                .into_iter()
                .find(|c| c.table.name.name.as_str() == table)
                .ok_or_else(|| ReaderError::UnknownTable {
                    table: table.to_string(),
                    location: location.clone(),
                    hint: " among the captured tables (alter it directly: no capture to upgrade)"
                        .into(),
                })?;
            let staged = count(&tx, &location, Some(&captured))?;
            if staged > 0 {
                drop(tx);
                if Instant::now() >= deadline {
                    return Err(ReaderError::BadRequest(format!(
                        "{staged} staged change image(s) of {table:?} were not archived within {} s; \
                         start the watcher or run `rowtrail read`, then try again (nothing was changed)",
                        wait.as_secs()
                    )));
                }
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            let before = table_names(&tx, &location)?;
            // DROP COLUMN is refused while the triggers name the column: they go first, and
            // are made again for the table as the statements leave it.
            tx.execute_batch(&upgrade::drop_triggers(&captured.table))
                .map_err(err(&location, "cannot drop the capture triggers"))?;
            tx.execute_batch(ddl).map_err(|cause| {
                super::connection::source_error(
                    &location,
                    "the statements failed; nothing was changed".into(),
                    cause,
                )
            })?;
            let after = table_names(&tx, &location)?;
            let now = if after.iter().any(|n| n == table) {
                Some(table.to_string())
            } else {
                let new: Vec<&String> = after.iter().filter(|n| !before.contains(n)).collect();
                match new.as_slice() {
                    [one] => Some((*one).clone()),
                    [] => None,
                    _ => {
                        return Err(ReaderError::BadRequest(format!(
                            "the statements removed {table:?} and made {} tables; make one schema change per `sql alter` (nothing was changed)",
                            new.len()
                        )))
                    }
                }
            };
            let live: Option<Table> = match &now {
                Some(name) => {
                    let wr: bool = tx
                        .query_row(
                            "SELECT wr FROM pragma_table_list WHERE schema = 'main' AND name = ?1",
                            [name],
                            |r| Ok(r.get::<_, i64>(0)? != 0),
                        )
                        .map_err(err(&location, "cannot read the schema"))?;
                    Some(read_table(&tx, &location, name, wr)?)
                }
                None => None,
            };
            widen_for(&tx, &location, &live.iter().collect::<Vec<_>>())?;
            tx.execute_batch(&upgrade::table_upgrade(&captured.table, live.as_ref())?)
                .map_err(err(&location, "cannot upgrade capture"))?;
            let detail = match (&now, &live) {
                (None, _) => {
                    "dropped through `rowtrail sql alter`; its capture was removed".to_string()
                }
                (Some(name), Some(live)) => {
                    let d = super::drift::compare(&captured.table, live);
                    let mut s = if name != table {
                        format!("renamed to {name:?}")
                    } else {
                        String::new()
                    };
                    if !d.is_empty() {
                        if !s.is_empty() {
                            s.push_str("; ");
                        }
                        s.push_str(
                            &d.describe()
                                .replace(", whose values are not captured", "")
                                .replace(", whose values are captured under the old name", ""),
                        );
                    }
                    if s.is_empty() {
                        s.push_str("altered");
                    }
                    format!("{s}, through `rowtrail sql alter` (capture upgraded in the same transaction)")
                }
                (Some(_), None) => unreachable!("a table that exists has a definition"),
            };
            let note = Note {
                table: table.to_string(),
                kind: match &now {
                    None => "dropped",
                    Some(n) if n != table => "renamed",
                    Some(_) => "upgraded",
                }
                .into(),
                renamed_to: now.clone().filter(|n| n != table),
                detail: detail.clone(),
                after_seq: sequence_value(&tx, &location)?,
                unsure_from_seq: None,
            };
            note.write(&tx, &location)?;
            tx.commit()
                .map_err(err(&location, "cannot commit; nothing was changed"))?;
            return Ok(Altered {
                table: table.to_string(),
                now,
                detail,
            });
        }
    }

    /// Schema drift between the database at `path` and its capture (see [`super::drift`]),
    /// read in one snapshot.
    pub fn drift(path: &Path) -> Result<Vec<super::drift::Drift>, ReaderError> {
        let mut conn = open(path)?;
        let location = path.display().to_string();
        let tx = conn
            .transaction()
            .map_err(err(&location, "cannot start a read transaction"))?;
        if !installed(&tx, &location)? {
            return Err(ReaderError::NotInstalled { location });
        }
        super::drift::observe(&tx, &location)
    }
}

fn table_names(conn: &rusqlite::Connection, location: &str) -> Result<Vec<String>, ReaderError> {
    conn.prepare("SELECT name FROM sqlite_schema WHERE type = 'table'")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(err(location, "cannot read the schema"))
}
