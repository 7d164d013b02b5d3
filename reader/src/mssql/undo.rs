//! What `rowtrail undo` and `redo` need from a SQL Server source: its foreign keys, the id of
//! the transaction an undo runs in (the capture triggers record it with every write, which is
//! how the undo's own writes are recognised), whether staging still holds writes of a
//! transaction, and running a rendered undo script.
//!
//! Every statement is in [`super::queries`]; values travel only as parameters.

use super::catalog;
use super::client::MssqlClient;
use super::error::server_error;
use super::queries;
use crate::ReaderError;

/// One column of one foreign key, as `sys.foreign_key_columns` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignKeyColumn {
    /// The key's object id (groups the columns of one key).
    pub key: i32,
    /// The column's position in the key (1-based).
    pub ordinal: i32,
    /// The referencing table's schema.
    pub child_schema: String,
    /// The referencing table.
    pub child_table: String,
    /// The referencing column.
    pub child_column: String,
    /// The referenced table's schema.
    pub parent_schema: String,
    /// The referenced table.
    pub parent_table: String,
    /// The referenced column.
    pub parent_column: String,
}

/// Every foreign key of the database the login can see, its tables and columns named as the
/// captured tables of the registry name them ([`super::foreign_keys::group`]).
pub fn foreign_keys(c: &mut MssqlClient) -> Result<Vec<rowtrail_sql::ForeignKey>, ReaderError> {
    let rows = foreign_key_columns(c)?;
    let tables: Vec<_> = catalog::registry(c)?.into_iter().map(|t| t.table).collect();
    Ok(super::foreign_keys::group(&rows, &tables))
}

/// Every column of every foreign key of the database the login can see, keys in object id
/// order and columns in key order.
pub fn foreign_key_columns(c: &mut MssqlClient) -> Result<Vec<ForeignKeyColumn>, ReaderError> {
    let rows = c.query("cannot read the foreign keys", queries::FOREIGN_KEYS, &[])?;
    let text = |r: &tiberius::Row, i: usize| -> String {
        r.try_get::<&str, _>(i)
            .ok()
            .flatten()
            .unwrap_or_default()
            .to_string()
    };
    Ok(rows
        .iter()
        .map(|r| ForeignKeyColumn {
            key: r.get::<i32, _>(0).unwrap_or_default(),
            ordinal: r.get::<i32, _>(1).unwrap_or_default(),
            child_schema: text(r, 2),
            child_table: text(r, 3),
            child_column: text(r, 4),
            parent_schema: text(r, 5),
            parent_table: text(r, 6),
            parent_column: text(r, 7),
        })
        .collect())
}

/// How this server tells a session the id of its transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionIdSource {
    /// `CURRENT_TRANSACTION_ID()` (SQL Server 2016 and later, Azure SQL).
    Function,
    /// `sys.dm_tran_current_transaction`, readable with `VIEW SERVER STATE` (2012 and 2014).
    ServerState,
}

/// SQL Server's number for "… is not a recognized built-in function name".
const UNKNOWN_FUNCTION: u32 = 195;

/// Finds out how this server tells a session its transaction id. Asks outside any transaction,
/// so a server without `CURRENT_TRANSACTION_ID()` refuses the question and nothing else.
pub fn transaction_id_source(c: &mut MssqlClient) -> Result<TransactionIdSource, ReaderError> {
    match c.query(
        "cannot read the transaction id",
        queries::CURRENT_TRANSACTION_ID,
        &[],
    ) {
        Ok(_) => Ok(TransactionIdSource::Function),
        Err(e) if server_error(&e).is_some_and(|s| s.code == UNKNOWN_FUNCTION) => {
            Ok(TransactionIdSource::ServerState)
        }
        Err(e) => Err(e),
    }
}

/// The id of the session's open transaction, as the capture triggers record it; `None` when
/// the server does not tell it to this login (2012/2014 without `VIEW SERVER STATE`).
pub fn transaction_id(
    c: &mut MssqlClient,
    how: TransactionIdSource,
) -> Result<Option<i64>, ReaderError> {
    let sql = match how {
        TransactionIdSource::Function => queries::CURRENT_TRANSACTION_ID,
        TransactionIdSource::ServerState => queries::CURRENT_TRANSACTION_ID_2012,
    };
    let rows = c.query("cannot read the transaction id", sql, &[])?;
    Ok(rows.first().and_then(|r| r.get::<i64, _>(0)))
}

/// How deep the session's transactions are nested (`@@TRANCOUNT`).
pub fn trancount(c: &mut MssqlClient) -> Result<i32, ReaderError> {
    let rows = c.query("cannot read the transaction depth", queries::TRANCOUNT, &[])?;
    Ok(rows
        .first()
        .and_then(|r| r.get::<i32, _>(0))
        .unwrap_or_default())
}

/// Whether any staging table still holds an image written in transaction `tx` at or after
/// `since_us` (µs since the epoch, UTC; one parameterised query per staging table; a writer
/// still deciding is waited for).
pub fn staged_in_transaction(
    c: &mut MssqlClient,
    tx: i64,
    since_us: i64,
) -> Result<bool, ReaderError> {
    let since = utc_text(since_us);
    for t in catalog::registry(c)? {
        let sql = queries::staged_in_transaction(&t.staging);
        if !c
            .query("cannot read staging", &sql, &[&tx, &since.as_str()])?
            .is_empty()
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Every transaction id staging still holds images of stamped at or after `since_us` (µs
/// since the epoch, UTC), each with its latest such stamp (µs): one query per staging table,
/// however many transactions the caller asks about (a writer still deciding is waited for).
pub fn staged_transactions(
    c: &mut MssqlClient,
    since_us: i64,
) -> Result<std::collections::HashMap<i64, i64>, ReaderError> {
    let since = utc_text(since_us);
    let mut out = std::collections::HashMap::new();
    for t in catalog::registry(c)? {
        let sql = queries::staged_transactions(&t.staging);
        for r in c.query("cannot read staging", &sql, &[&since.as_str()])? {
            let Some(tx) = r.get::<i64, _>(0) else {
                continue;
            };
            // A stamp that cannot be read counts as the latest: the transaction is staged.
            let at = r.get::<&str, _>(1).and_then(utc_micros).unwrap_or(i64::MAX);
            let latest = out.entry(tx).or_insert(at);
            *latest = (*latest).max(at);
        }
    }
    Ok(out)
}

/// ISO-8601 text (`CONVERT(…, 126)`, UTC) as µs since the epoch.
fn utc_micros(text: &str) -> Option<i64> {
    let civil: jiff::civil::DateTime = text.trim_end_matches(['Z', 'z']).parse().ok()?;
    jiff::tz::TimeZone::UTC
        .to_timestamp(civil)
        .ok()
        .map(|t| t.as_microsecond())
}

/// A time in µs since the epoch as the ISO-8601 text `CONVERT(datetime2, …, 126)` reads
/// (`2026-11-21T14:05:00.123456`), UTC.
pub fn utc_text(us: i64) -> String {
    jiff::Timestamp::from_microsecond(us)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .strftime("%Y-%m-%dT%H:%M:%S%.6f")
        .to_string()
}

/// Runs a rendered undo script (one batch) and returns its outcome rows: `(step, outcome)` for
/// each step whose guard did not hold, in skip and force modes.
pub fn run_script(c: &mut MssqlClient, sql: &str) -> Result<Vec<(i64, String)>, ReaderError> {
    let results = c.batch("an undo step failed", sql)?;
    let mut out = Vec::new();
    for set in &results {
        for r in set {
            let named = r.columns().len() == 2
                && r.columns()[0].name() == "step"
                && r.columns()[1].name() == "outcome";
            if !named {
                continue;
            }
            if let (Some(step), Some(outcome)) = (r.get::<i32, _>(0), r.get::<&str, _>(1)) {
                out.push((i64::from(step), outcome.to_string()));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_staged_stamp_reads_back_as_the_microseconds_it_was_written_from() {
        let us = 1_795_000_000_123_456;
        assert_eq!(utc_micros(&utc_text(us)), Some(us));
        // The server's own form: seven fractional digits, truncated to µs.
        assert_eq!(
            utc_micros("2026-11-21T14:05:00.1234567"),
            utc_micros("2026-11-21T14:05:00.123456")
        );
        assert_eq!(utc_micros("not a time"), None);
    }
}
