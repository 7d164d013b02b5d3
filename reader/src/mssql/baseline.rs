//! Baselines of a SQL Server source's tables, taken online, chunked by primary key, each at an
//! exact position of the change stream.
//!
//! Seqs commit out of order here (see [`super::barrier`]), so no moment's snapshot equals "every
//! change up to seq P and none above" by itself. The baseline makes it so, per key:
//!
//! 1. **Keep staging whole.** The baseline takes an application lock that every staging delete
//!    takes (shared) first, so from now on no staged image is deleted until it lets go.
//! 2. **Settle a position.** A barrier mark (the sequence's value, then the open transactions)
//!    is waited out: every seq at or below `P = value + 1` is then committed or never will be,
//!    and a lock-waiting read of the table's staging below `P` makes sure their commits are over.
//! 3. **Read in chunks, correct each row to P.** Changes of one key commit in seq order (a
//!    writer holds the row's lock until it commits, and takes its seq after it got the lock), so
//!    the row as it was at `P` is the before-image of its earliest change above `P` if it has one
//!    (absent when that change is an insert), and the row as read otherwise. Each chunk copies up
//!    to `page` rows in key order into a temporary table (`#rowtrail_chunk`), then returns the rows
//!    of that chunk whose key has no image above `P` in staging, with the before-images that are
//!    the earliest image above `P` of a key in the chunk's key range (a row deleted after `P` comes
//!    back so). Keys are matched by SQL Server, under the key columns' own collations.
//!
//! Why a row read at any moment after step 2 gives the row at `P`: if the read row includes a
//! change above `P`, that change committed before the read, with its staged image; the earliest
//! change of the key above `P` committed no later; both are still staged (step 1), and the
//! staging read comes after the row read. Changes at or below `P` all committed before the read
//! (step 2). So the result does not depend on when a chunk is read: chunks read at different
//! times fit together, which is the watermark method of Debezium's incremental snapshots and the
//! DBLog paper (low watermark `P`, chunk read, high watermark the staging read after it, rows
//! changed inside the window replaced), made exact for one position per table.
//!
//! **Isolation.** With `ALLOW_SNAPSHOT_ISOLATION` on, all chunks are read in one snapshot
//! transaction begun right after step 2, and the lock is released as soon as the snapshot is
//! established (staging is then frozen in the snapshot): staging deletes pause only while the
//! barrier waits. Otherwise each chunk is its own pair of statements under `READ COMMITTED`
//! (locking, or row versions with `READ_COMMITTED_SNAPSHOT`), and the lock is held until the
//! table is read: the reader archives on but cannot delete from staging meanwhile.
//!
//! Tables without a primary key are refused: rows cannot be matched to their images, nor chunks
//! resumed by key.

use std::time::{Duration, Instant};

use rowtrail_sql::mssql::Captured;
use rowtrail_sql::{Ident, Value};
use tiberius::Row;

use super::client::MssqlClient;
use super::convert::{select_expr, value_of, variant_columns, variant_type_expr, with_base_type};
use super::{barrier, queries};
use crate::archive::BaselineRow;
use crate::source::{CapturedTable, SnapshotPosition};
use crate::ReaderError;

/// How long the barrier may wait for the transactions open at its mark to end.
pub const SETTLE_WAIT: Duration = Duration::from_secs(300);

/// The temporary table a chunk is copied into.
const CHUNK_TABLE: &str = "#rowtrail_chunk";

/// How a table is read for its baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// One snapshot transaction for the whole table (`ALLOW_SNAPSHOT_ISOLATION` on).
    Snapshot,
    /// Each chunk under `READ COMMITTED`, staging deletes held back until the table is read.
    Chunks,
}

fn refuse(why: String) -> ReaderError {
    ReaderError::BadRequest(why)
}

fn key_of(t: &CapturedTable) -> Result<Vec<usize>, ReaderError> {
    if t.table.primary_key.is_empty() {
        return Err(refuse(format!(
            "table {} has no primary key: a SQL Server baseline matches rows to their staged \
             changes and resumes by key, so it needs one (add a primary key, or leave the table \
             out with --tables)",
            t.table.name
        )));
    }
    Ok(t.table.primary_key.clone())
}

fn q(name: &Ident) -> String {
    name.mssql().to_string()
}

/// `alias.k > lit` in key order: the rows after the key `after`.
fn after_key(
    t: &CapturedTable,
    key: &[usize],
    alias: &str,
    after: &[Value],
) -> Result<String, ReaderError> {
    let lits: Vec<String> = key
        .iter()
        .zip(after)
        .map(|(&i, v)| rowtrail_sql::mssql::undo::key_literal_of(&t.table, i, v))
        .collect::<Result<_, _>>()?;
    let col = |j: usize| format!("{alias}.{}", q(&t.table.columns[key[j]].name));
    let mut ors = Vec::with_capacity(key.len());
    for j in 0..key.len() {
        let mut ands: Vec<String> = (0..j)
            .map(|m| format!("{} = {}", col(m), lits[m]))
            .collect();
        ands.push(format!("{} > {}", col(j), lits[j]));
        ors.push(format!("({})", ands.join(" AND ")));
    }
    Ok(format!("({})", ors.join(" OR ")))
}

/// `a.k <= b.k` in key order, both sides columns.
fn at_or_below(t: &CapturedTable, key: &[usize], a: &str, b: &str) -> String {
    let col = |alias: &str, j: usize| format!("{alias}.{}", q(&t.table.columns[key[j]].name));
    let mut ors = Vec::with_capacity(key.len() + 1);
    for j in 0..key.len() {
        let mut ands: Vec<String> = (0..j)
            .map(|m| format!("{} = {}", col(a, m), col(b, m)))
            .collect();
        ands.push(format!("{} < {}", col(a, j), col(b, j)));
        ors.push(format!("({})", ands.join(" AND ")));
    }
    let all_equal: Vec<String> = (0..key.len())
        .map(|m| format!("{} = {}", col(a, m), col(b, m)))
        .collect();
    ors.push(format!("({})", all_equal.join(" AND ")));
    format!("({})", ors.join(" OR "))
}

/// The batch that reads one chunk of `t` for a baseline at `position`: up to `page` rows in key
/// order after the key `after` (from the first row without), corrected to the position. Its
/// results: the chunk's row count; the chunk's last key as read from the table (no row when the
/// chunk is empty); the rows, each as the staging select reads a row's columns.
pub fn chunk_batch(
    t: &CapturedTable,
    position: i64,
    after: Option<&[Value]>,
    page: usize,
) -> Result<String, ReaderError> {
    let key = key_of(t)?;
    let captured = Captured::new(&t.table)?;
    let source = captured.source();
    let staging = queries::staging_name(&t.staging);
    let seq = q(&Ident::new(rowtrail_sql::staging::COL_SEQ)?);
    let image = q(&Ident::new(rowtrail_sql::staging::COL_IMAGE)?);
    // A reserved metadata name (no source column can have it) for the row number.
    let rn = q(&Ident::new(rowtrail_sql::staging::COL_STMT)?);
    let cols = &captured.table.columns;
    let plain = |alias: &str| -> String {
        cols.iter()
            .map(|c| format!("{alias}.{}", q(&c.name)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    // Copied as staging holds them, so both sides of the union have one type per column; the
    // source's own type (and collation) wherever staging has it.
    let copied: Vec<String> = cols
        .iter()
        .zip(&captured.staging_types)
        .map(|(c, ty)| {
            if ty.eq_ignore_ascii_case(c.sql_type.trim()) {
                format!("t.{}", q(&c.name))
            } else {
                format!("CONVERT({ty}, t.{n}) AS {n}", n = q(&c.name))
            }
        })
        .collect();
    let order = |alias: &str, dir: &str| -> String {
        key.iter()
            .map(|&i| format!("{alias}.{}{dir}", q(&cols[i].name)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let same_key = key
        .iter()
        .map(|&i| format!("s.{n} = t.{n}", n = q(&cols[i].name)))
        .collect::<Vec<_>>()
        .join(" AND ");
    let key_exprs: Vec<String> = key
        .iter()
        .map(|&i| select_expr(&cols[i], &captured.staging_types[i]))
        .collect();
    let mut out_cols: Vec<String> = cols
        .iter()
        .zip(&captured.staging_types)
        .map(|(c, ty)| select_expr(c, ty))
        .collect();
    out_cols.extend(
        variant_columns(&captured.table)
            .into_iter()
            .map(|i| variant_type_expr(&cols[i])),
    );
    let (after_t, after_s) = match after {
        Some(k) => (
            format!(" WHERE {}", after_key(t, &key, "t", k)?),
            format!(" AND {}", after_key(t, &key, "s", k)?),
        ),
        None => (String::new(), String::new()),
    };
    Ok(format!(
        "IF OBJECT_ID(N'tempdb..{CHUNK_TABLE}') IS NOT NULL DROP TABLE {CHUNK_TABLE};\n\
         SELECT TOP ({page}) {copied} INTO {CHUNK_TABLE} FROM {source} AS t{after_t} ORDER BY {order_t};\n\
         SELECT COUNT_BIG(*) FROM {CHUNK_TABLE};\n\
         SELECT TOP (1) {key_exprs} FROM {CHUNK_TABLE} AS c ORDER BY {order_desc};\n\
         SELECT {out_cols} FROM (\n    \
             SELECT {plain_t} FROM {CHUNK_TABLE} AS t\n    \
             WHERE NOT EXISTS (SELECT 1 FROM {staging} AS s WHERE s.{seq} > {position} AND {same_key})\n    \
             UNION ALL\n    \
             SELECT {plain_s} FROM (\n        \
                 SELECT s.{image}, {plain_s}, ROW_NUMBER() OVER (PARTITION BY {partition} ORDER BY s.{seq}) AS {rn}\n        \
                 FROM {staging} AS s\n        \
                 WHERE s.{seq} > {position}{after_s}\n        \
                 AND ((SELECT COUNT_BIG(*) FROM {CHUNK_TABLE}) < {page}\n        \
                      OR EXISTS (SELECT 1 FROM {CHUNK_TABLE} AS c WHERE {below}))\n    \
             ) AS s WHERE s.{rn} = 1 AND s.{image} = 'B'\n\
         ) AS [rowtrail_row] ORDER BY {order_row};\n\
         DROP TABLE {CHUNK_TABLE};",
        copied = copied.join(", "),
        order_t = order("t", ""),
        key_exprs = key_exprs.join(", "),
        // The table's own columns (not the select list's converted ones, which a `SQL_…`
        // collation may order otherwise).
        order_desc = order("c", " DESC"),
        out_cols = out_cols.join(", "),
        plain_t = plain("t"),
        plain_s = plain("s"),
        partition = order("s", ""),
        below = at_or_below(t, &key, "s", "c"),
        order_row = order("[rowtrail_row]", ""),
    ))
}

/// A first and a later chunk of `t` with a key of sample values (for validation and review).
pub fn sample_chunks(t: &CapturedTable) -> Result<Vec<String>, ReaderError> {
    let key = key_of(t)?;
    let sample: Vec<Value> = key
        .iter()
        .map(|&i| sample_value(&t.table.columns[i].sql_type))
        .collect();
    Ok(vec![
        chunk_batch(t, 1234, None, 5000)?,
        chunk_batch(t, 1234, Some(&sample), 5000)?,
    ])
}

/// A value of type `ty` such as a key could hold.
fn sample_value(ty: &str) -> Value {
    let base = rowtrail_sql::mssql::types::MssqlType::parse(ty)
        .map(|t| t.base)
        .unwrap_or_default();
    match base.as_str() {
        "bit" | "tinyint" | "smallint" | "int" | "bigint" => Value::Integer(7),
        "decimal" | "numeric" | "money" | "smallmoney" => Value::Decimal("12.5000".into()),
        "float" | "real" => Value::Real(0.1),
        "date" => Value::DateTime("2024-01-02".into()),
        "time" => Value::DateTime("03:04:05.1234567".into()),
        "datetimeoffset" => Value::DateTime("2024-01-02T03:04:05.1234567+05:30".into()),
        "datetime" | "datetime2" | "smalldatetime" => {
            Value::DateTime("2024-01-02T03:04:05.123".into())
        }
        "binary" | "varbinary" | "hierarchyid" => Value::Blob(vec![0x5a, 0xc0]),
        "uniqueidentifier" => Value::Uuid([0x11; 16]),
        _ => Value::Text(b"k'1\n".to_vec()),
    }
}

/// One result row to archive values: the table's columns, each `sql_variant` with the base type
/// read after them.
fn values_of(row: Row, t: &CapturedTable, location: &str) -> Result<Vec<Value>, ReaderError> {
    let names: Vec<String> = row.columns().iter().map(|c| c.name().to_string()).collect();
    let mut cells = Vec::with_capacity(names.len());
    for (i, cell) in row.into_iter().enumerate() {
        cells.push(value_of(cell).map_err(|reason| ReaderError::Conversion {
            location: location.to_string(),
            staging: t.table.name.to_string(),
            column: names[i].clone(),
            reason,
        })?);
    }
    let n = t.table.columns.len();
    let extra: Vec<Value> = cells.split_off(n.min(cells.len()));
    let mut extra = extra.into_iter();
    for i in variant_columns(&t.table) {
        let value = std::mem::replace(&mut cells[i], Value::Null);
        cells[i] =
            with_base_type(value, extra.next().unwrap_or(Value::Null)).map_err(|reason| {
                ReaderError::Conversion {
                    location: location.to_string(),
                    staging: t.table.name.to_string(),
                    column: t.table.columns[i].name.to_string(),
                    reason,
                }
            })?;
    }
    Ok(cells)
}

/// Waits until none of the mark's transactions is open, polling with a growing pause, for at most
/// [`SETTLE_WAIT`].
fn wait_out(c: &mut MssqlClient, mark: &barrier::Mark, table: &str) -> Result<(), ReaderError> {
    let deadline = Instant::now() + SETTLE_WAIT;
    let mut pause = Duration::from_millis(20);
    loop {
        let open = barrier::still_open(c, &mark.open)?;
        if open == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(refuse(format!(
                "the baseline of {table} waited {} s for {open} transaction(s) open in the \
                 database when it started to end; find them in sys.dm_tran_active_transactions \
                 (a session left in a transaction, say), then take the baseline again (it \
                 resumes)",
                SETTLE_WAIT.as_secs()
            )));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

/// The database's isolation for baselines.
fn isolation(c: &mut MssqlClient) -> Result<Isolation, ReaderError> {
    let rows = c.query(
        "cannot read the database's row versioning",
        queries::ROW_VERSIONING,
        &[],
    )?;
    let snapshot = rows.first().and_then(|r| r.get::<i32, _>(0)) == Some(1);
    Ok(if snapshot {
        Isolation::Snapshot
    } else {
        Isolation::Chunks
    })
}

/// Takes a baseline of `table` (see the module's documentation), handing `each` its rows
/// `page` at a time.
pub fn snapshot(
    c: &mut MssqlClient,
    table: &CapturedTable,
    page: usize,
    each: &mut dyn FnMut(&[BaselineRow]) -> Result<(), ReaderError>,
) -> Result<SnapshotPosition, ReaderError> {
    key_of(table)?;
    let mode = isolation(c)?;
    c.batch(
        "cannot take the baseline's lock",
        &queries::hold_baseline_lock(),
    )?;
    let result = read_table(c, table, page.max(1), mode, each);
    // A snapshot transaction left open by a failure is rolled back; the lock goes either way.
    if result.is_err() {
        let _ = c.batch("cannot end the baseline", queries::ROLLBACK);
        let _ = c.batch(
            "cannot end the baseline",
            "SET TRANSACTION ISOLATION LEVEL READ COMMITTED;",
        );
    }
    let released = c.batch(
        "cannot release the baseline's lock",
        &queries::release_baseline_lock(),
    );
    let pos = result?;
    released?;
    Ok(pos)
}

fn read_table(
    c: &mut MssqlClient,
    table: &CapturedTable,
    page: usize,
    mode: Isolation,
    each: &mut dyn FnMut(&[BaselineRow]) -> Result<(), ReaderError>,
) -> Result<SnapshotPosition, ReaderError> {
    let name = table.table.name.to_string();
    let location = c.location().to_string();
    let mark = barrier::mark(c)?.ok_or_else(|| {
        refuse(format!(
            "a baseline of {name} on {location} needs to know which transactions are still \
             open: {}",
            barrier::NEEDS
        ))
    })?;
    wait_out(c, &mark, &name)?;
    let position = mark.settles();
    if let Some(sql) = queries::settled_count(&[&table.staging]) {
        // Waits for any commit of an image at or below the position still finishing.
        c.query("cannot read staging", &sql, &[&position])?;
    }
    if mode == Isolation::Snapshot {
        c.batch(
            "cannot begin the baseline's snapshot",
            queries::BEGIN_SNAPSHOT,
        )?;
    }
    // The first read establishes the snapshot; the time is the baseline's.
    let rows = c.query(
        "cannot read the time",
        &format!(
            "SELECT CONVERT(datetime2(3), SYSUTCDATETIME()) FROM {} WHERE [key] = N'incarnation'",
            queries::shared(rowtrail_sql::mssql::objects::META)
        ),
        &[],
    )?;
    let taken_at = match rows.into_iter().next().and_then(|r| r.into_iter().next()) {
        Some(cell) => match value_of(cell) {
            Ok(Value::DateTime(t)) => format!("{t}Z"),
            _ => String::new(),
        },
        None => String::new(),
    };
    if mode == Isolation::Snapshot {
        // Staging is frozen in the snapshot: deletes may go on.
        c.batch(
            "cannot release the baseline's lock",
            &queries::release_baseline_lock(),
        )?;
    }
    let key = key_of(table)?;
    let mut after: Option<Vec<Value>> = None;
    let mut read = 0u64;
    loop {
        let sql = chunk_batch(table, position, after.as_deref(), page)?;
        let mut results = c.batch("cannot read a baseline chunk", &sql)?.into_iter();
        let bad = |what: &str| ReaderError::BadStaging {
            staging: table.staging.to_string(),
            seq: position,
            reason: format!("a baseline chunk came back without {what}"),
        };
        let count = results
            .next()
            .and_then(|r| r.into_iter().next())
            .and_then(|r| r.get::<i64, _>(0))
            .ok_or_else(|| bad("its row count"))?;
        let last = results.next().ok_or_else(|| bad("its last key"))?;
        let rows = results.next().ok_or_else(|| bad("its rows"))?;
        let mut chunk: Vec<BaselineRow> = Vec::with_capacity(rows.len());
        for r in rows {
            chunk.push((None, values_of(r, table, &location)?));
        }
        read += chunk.len() as u64;
        if !chunk.is_empty() {
            each(&chunk)?;
        }
        if (count as usize) < page {
            break;
        }
        let last = last.into_iter().next().ok_or_else(|| bad("its last key"))?;
        let mut k = Vec::with_capacity(key.len());
        for cell in last.into_iter() {
            k.push(value_of(cell).map_err(|reason| ReaderError::Conversion {
                location: location.clone(),
                staging: name.clone(),
                column: "(primary key)".into(),
                reason,
            })?);
        }
        after = Some(k);
    }
    if mode == Isolation::Snapshot {
        c.batch("cannot end the baseline's snapshot", queries::END_SNAPSHOT)?;
    }
    Ok(SnapshotPosition {
        seq: position,
        taken_at,
        rows: read,
    })
}
