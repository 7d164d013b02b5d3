//! Moving an installed SQLite source from an older staging format to the one this build
//! writes ([`rowtrail_sql::sqlite::FORMAT`]), in one write transaction: the images waiting in
//! staging are kept under their seqs, so they are read on in seq order.

use rowtrail_sql::sqlite::{self as gen, objects};
use rowtrail_sql::Ident;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::catalog::{registry, table_exists};
use super::connection::err;
use crate::ReaderError;

/// The staging format recorded on the source behind `conn` (`None` when nothing is installed).
fn format_of(conn: &Connection, location: &str) -> Result<Option<String>, ReaderError> {
    if !table_exists(conn, objects::META, location)? {
        return Ok(None);
    }
    conn.query_row(
        &format!(
            "SELECT \"value\" FROM {} WHERE \"key\" = 'format'",
            Ident::new(objects::META)?.sqlite()
        ),
        [],
        |r| r.get(0),
    )
    .optional()
    .map_err(err(location, "cannot read the staging format"))
}

/// Migrates the source behind `conn` to this build's staging format when it has an older one;
/// returns whether it did. A format this build does not know is refused.
pub(super) fn to_current(conn: &mut Connection, location: &str) -> Result<bool, ReaderError> {
    match format_of(conn, location)?.as_deref() {
        None => return Ok(false),
        Some(f) if f == gen::FORMAT => return Ok(false),
        Some("1") => {}
        Some(other) => {
            return Err(ReaderError::BadRequest(format!(
            "source {location}: capture was installed with staging format {other:?}, which this \
                 rowtrail does not know (it writes format {}); use the rowtrail that installed it",
            gen::FORMAT
        )))
        }
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err(
            location,
            "cannot take the write lock to migrate capture",
        ))?;
    // Looked at again under the write lock: another process may have migrated meanwhile.
    if format_of(&tx, location)?.as_deref() != Some("1") {
        return Ok(false);
    }
    let tables: Vec<_> = registry(&tx, location)?
        .into_iter()
        .map(|c| c.table)
        .collect();
    let script = gen::upgrade::from_format_1(&tables)?;
    tx.execute_batch(&script).map_err(err(
        location,
        "cannot migrate capture to the shared staging table",
    ))?;
    tx.commit()
        .map_err(err(location, "cannot commit the capture migration"))?;
    tracing::warn!(source = %location, tables = tables.len(),
        "capture migrated from staging format 1 to {}: one shared staging table", gen::FORMAT);
    Ok(true)
}
