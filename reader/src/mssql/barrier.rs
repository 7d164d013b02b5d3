//! Which sequence values are settled: the barrier both the consistent cut and the baseline stand
//! on.
//!
//! Seqs are taken out of commit order on SQL Server: a transaction takes its seqs in the
//! capture trigger and commits whenever it commits, so a transaction holding a lower seq may
//! commit after one holding a higher seq was read. No staging row says "nothing lower can still
//! come": the trigger takes an update's seqs into a table variable before it inserts the staged
//! rows, so a seq can be taken and not yet visible even to a dirty read. The transactions
//! themselves can tell:
//!
//! 1. read the sequence's current value `V` (`sys.sequences.current_value`: the last value
//!    handed out, cached or not);
//! 2. then list the transactions open in this database (`sys.dm_tran_database_transactions`);
//! 3. once none of them is open any more, every seq at or below `V + 1` is settled: it was
//!    committed, or it never will be.
//!
//! Proof: a seq `s ≤ V` was handed out before step 1 to some transaction `T`; `V + 1` can only be
//! the after-image of the update pair whose before-image took `V`, in the same transaction. At
//! step 2 (after step 1) `T` was either over, or open, and then listed; it is over by step 3
//! either way. A transaction that enlists in the database after step 2 takes its seqs after step
//! 1, so above `V`.
//!
//! The view needs `VIEW SERVER STATE` (SQL Server 2019 and earlier), `VIEW SERVER PERFORMANCE
//! STATE` (2022) or `VIEW DATABASE STATE` (Azure SQL Database). Without it there is no barrier:
//! [`open_transactions`] says so with `None`, and the cut and the baseline explain what to grant.

use tiberius::ToSql;

use super::client::MssqlClient;
use super::queries;
use crate::ReaderError;

/// The most transactions [`still_open`] asks about in one request (SQL Server takes at most
/// 2,100 parameters).
pub const MOST_WATCHED: usize = 2_000;

/// Server errors that mean the login may not read the transaction views.
const DENIED: &[u32] = &[297, 300];

/// A point the barrier can settle: the sequence's value and the transactions open after it was
/// read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// The sequence's current value when the mark was taken.
    pub value: i64,
    /// The transactions open in the database just after (never the reader's own).
    pub open: Vec<i64>,
}

impl Mark {
    /// The highest seq the mark settles once none of its transactions is open: `value + 1`
    /// (an update's after-image takes its before-image's seq plus one).
    pub fn settles(&self) -> i64 {
        self.value.saturating_add(1)
    }
}

/// The sequence's current value, asked of the server now (the probe's cache aside).
pub fn sequence_value(c: &mut MssqlClient) -> Result<i64, ReaderError> {
    let name = queries::shared(rowtrail_sql::mssql::objects::SEQUENCE);
    let rows = c.query("cannot read the sequence's value", queries::PROBE, &[&name])?;
    Ok(rows.first().and_then(|r| r.get::<i64, _>(0)).unwrap_or(0))
}

/// Whether `e` says the login may not read the transaction views.
pub fn is_denied(e: &ReaderError) -> bool {
    super::error::server_error(e).is_some_and(|s| DENIED.contains(&s.code))
}

/// The transactions open in this database now (system transactions and the session's own
/// aside), or `None` when the login may not see them.
pub fn open_transactions(c: &mut MssqlClient) -> Result<Option<Vec<i64>>, ReaderError> {
    match c.query(
        "cannot list the database's open transactions",
        queries::OPEN_TRANSACTIONS,
        &[],
    ) {
        Ok(rows) => Ok(Some(
            rows.iter().filter_map(|r| r.get::<i64, _>(0)).collect(),
        )),
        Err(e) if is_denied(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Takes a mark: the sequence's value, then the transactions open after it was read. `None`
/// when the login may not see them.
pub fn mark(c: &mut MssqlClient) -> Result<Option<Mark>, ReaderError> {
    let value = sequence_value(c)?;
    Ok(open_transactions(c)?.map(|open| Mark { value, open }))
}

/// How many of `ids` are still open in this database (0 for none asked).
pub fn still_open(c: &mut MssqlClient, ids: &[i64]) -> Result<u64, ReaderError> {
    let mut open = 0u64;
    for chunk in ids.chunks(MOST_WATCHED) {
        let sql = queries::still_open(chunk.len());
        let params: Vec<&dyn ToSql> = chunk.iter().map(|i| i as &dyn ToSql).collect();
        let rows = c.query("cannot watch open transactions", &sql, &params)?;
        open += rows.first().and_then(|r| r.get::<i64, _>(0)).unwrap_or(0) as u64;
    }
    Ok(open)
}

/// What the login lacks for the barrier, for messages.
pub const NEEDS: &str = "the reader's login needs VIEW SERVER STATE (SQL Server 2019 and \
     earlier; VIEW SERVER PERFORMANCE STATE on 2022) or, on Azure SQL Database, VIEW DATABASE \
     STATE, to see which transactions are still open";
