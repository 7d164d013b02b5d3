//! A SQLite table's rows by key range ([`TableRanges`]), for a source or for a copy of it (a
//! replica): checksums computed inside SQLite by the aggregate `rowtrail_range_hash`, which
//! hashes each row's canonical image and adds the hashes up, so a range's checksum does not
//! depend on the order its rows are read in and costs no row read by rowtrail.
//!
//! Ranges are written in the key columns' order with the BINARY collation (a column's declared
//! collation would order a copy, which does not declare it, otherwise), NULL lowest: where the
//! key's index is BINARY already the plain columns are compared, so SQLite answers each range
//! from the index; else each comparison says `COLLATE BINARY` (correct, but scanning). Bounds
//! are taken from the table's own rows and bound as the values they are.

use std::path::{Path, PathBuf};

use rowtrail_sql::{image, Table, Value};
use rusqlite::functions::{Aggregate, Context, FunctionFlags};
use rusqlite::{Connection, OptionalExtension};
use sha2::{Digest as _, Sha256};

use super::baseline::snapshot_start;
use super::connection::err;
use super::value::{value_of, Param};
use super::SqliteSource;
use crate::archive::BaselineRow;
use crate::source::{CapturedTable, KeyRange, RangeSum, SnapshotPosition, TableRanges};
use crate::ReaderError;

/// The aggregate's name in SQL.
const HASH_FN: &str = "rowtrail_range_hash";

/// The running state of one `rowtrail_range_hash` group.
struct Sum {
    total: u128,
    values: Vec<Value>,
    bytes: Vec<u8>,
}

/// `rowtrail_range_hash(c1, …, cn)`: the wrapping sum of the first 16 bytes of each row's
/// SHA-256 over its canonical image ([`image::encode_into`]).
struct RangeHash;

impl Aggregate<Sum, Vec<u8>> for RangeHash {
    fn init(&self, _: &mut Context<'_>) -> rusqlite::Result<Sum> {
        Ok(Sum {
            total: 0,
            values: Vec::new(),
            bytes: Vec::new(),
        })
    }

    fn step(&self, ctx: &mut Context<'_>, acc: &mut Sum) -> rusqlite::Result<()> {
        acc.values.clear();
        for i in 0..ctx.len() {
            acc.values.push(value_of(ctx.get_raw(i)));
        }
        acc.bytes.clear();
        image::encode_into(&acc.values, &mut acc.bytes);
        let digest = Sha256::digest(&acc.bytes);
        let mut first = [0u8; 16];
        first.copy_from_slice(&digest[..16]);
        acc.total = acc.total.wrapping_add(u128::from_le_bytes(first));
        Ok(())
    }

    fn finalize(&self, _: &mut Context<'_>, acc: Option<Sum>) -> rusqlite::Result<Vec<u8>> {
        Ok(acc.map_or(0, |a| a.total).to_le_bytes().to_vec())
    }
}

/// Whose database a [`SqliteRanges`] reads, for its errors.
#[derive(Debug, Clone)]
enum Side {
    /// The captured source (its location).
    Source(String),
    /// A copy of it (a replica file).
    Copy(PathBuf),
}

/// One key column of a range: its SQL and whether it can hold NULL.
#[derive(Debug, Clone)]
struct OrderColumn {
    /// `"name"`, or `"name" COLLATE BINARY` where the column's own collation is another.
    sql: String,
    /// Whether NULL can never be stored in it.
    never_null: bool,
}

/// One table of a SQLite database, read by key range on a connection the caller holds in one
/// read transaction (so every range is read in the same snapshot).
pub struct SqliteRanges<'c> {
    conn: &'c Connection,
    side: Side,
    table: String,
    /// The rowid's alias, for a rowid table.
    rowid: Option<&'static str>,
    columns: Vec<String>,
    order: Vec<OrderColumn>,
    key: Vec<usize>,
    rows_read: u64,
}

impl<'c> SqliteRanges<'c> {
    /// Ranges of `table` in a copy of the source at `path` (a replica), read on `conn`.
    pub fn of_copy(conn: &'c Connection, table: &Table, path: &Path) -> Result<Self, ReaderError> {
        Self::new(conn, table, Side::Copy(path.to_path_buf()))
    }

    fn new(conn: &'c Connection, t: &Table, side: Side) -> Result<Self, ReaderError> {
        let rowid = if t.rowid {
            Some(rowtrail_sql::sqlite::rowid_alias(t).ok_or_else(|| {
                ReaderError::BadRequest(format!(
                    "table {} hides its rowid behind columns named rowid, _rowid_ and oid",
                    t.name
                ))
            })?)
        } else {
            None
        };
        let key: Vec<usize> = match t.key() {
            Some(k) => k.to_vec(),
            None => (0..t.columns.len()).collect(),
        };
        let integer_key = t.rowid
            && t.primary_key.len() == 1
            && t.columns[t.primary_key[0]]
                .sql_type
                .trim()
                .eq_ignore_ascii_case("INTEGER");
        // Where the key's index orders by BINARY already, the plain columns (so SQLite answers
        // ranges from the index, row values included); else every comparison says BINARY.
        let binary = t.key().is_some() && key_is_binary(conn, t).unwrap_or(false);
        let order = key
            .iter()
            .map(|&i| {
                let c = &t.columns[i];
                OrderColumn {
                    sql: if binary {
                        c.name.sqlite().to_string()
                    } else {
                        format!("{} COLLATE BINARY", c.name.sqlite())
                    },
                    // A WITHOUT ROWID table's key and an INTEGER PRIMARY KEY (the rowid) never
                    // hold NULL; a rowid table's other key columns may, as SQLite allows.
                    never_null: !c.nullable || (t.key().is_some() && !t.rowid) || integer_key,
                }
            })
            .collect();
        let r = Self {
            conn,
            side,
            table: t.name.name.sqlite().to_string(),
            rowid,
            columns: t
                .columns
                .iter()
                .map(|c| c.name.sqlite().to_string())
                .collect(),
            order,
            key,
            rows_read: 0,
        };
        conn.create_aggregate_function(
            HASH_FN,
            -1,
            FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
            RangeHash,
        )
        .map_err(r.error("cannot set up the checksum of key ranges"))?;
        Ok(r)
    }

    fn error(&self, context: &str) -> impl FnOnce(rusqlite::Error) -> ReaderError {
        let side = self.side.clone();
        let context = format!("{context} of table {}", self.table);
        move |cause| match side {
            Side::Source(location) => err(&location, context)(cause),
            Side::Copy(path) => ReaderError::Database {
                path,
                context,
                cause,
            },
        }
    }

    /// The `WHERE` condition of `range` (`1` for every row), its parameters appended to `params`.
    fn condition(&self, range: &KeyRange, params: &mut Vec<Value>) -> String {
        let mut parts = Vec::new();
        if let Some(b) = &range.after {
            parts.push(self.above(b, params));
        }
        if let Some(b) = &range.upto {
            parts.push(self.at_or_below(b, params));
        }
        if parts.is_empty() {
            "1".to_string()
        } else {
            parts
                .into_iter()
                .map(|p| format!("({p})"))
                .collect::<Vec<_>>()
                .join(" AND ")
        }
    }

    /// Whether neither the columns nor the bound can hold NULL: then a row value comparison,
    /// which SQLite answers from the key's index.
    fn plain(&self, bound: &[Value]) -> bool {
        self.order.iter().all(|c| c.never_null) && !bound.contains(&Value::Null)
    }

    fn mark(params: &mut Vec<Value>, v: &Value) -> String {
        params.push(v.clone());
        format!("?{}", params.len())
    }

    fn tuple(&self, bound: &[Value], params: &mut Vec<Value>) -> (String, String) {
        let cols: Vec<&str> = self.order.iter().map(|c| c.sql.as_str()).collect();
        let marks: Vec<String> = bound.iter().map(|v| Self::mark(params, v)).collect();
        if cols.len() == 1 {
            (cols[0].to_string(), marks[0].clone())
        } else {
            (
                format!("({})", cols.join(", ")),
                format!("({})", marks.join(", ")),
            )
        }
    }

    fn equal(c: &OrderColumn, v: &Value, params: &mut Vec<Value>) -> String {
        if *v == Value::Null {
            format!("{} IS NULL", c.sql)
        } else {
            format!("{} = {}", c.sql, Self::mark(params, v))
        }
    }

    /// The key is above `bound` (NULL lowest).
    fn above(&self, bound: &[Value], params: &mut Vec<Value>) -> String {
        if self.plain(bound) {
            let (cols, marks) = self.tuple(bound, params);
            return format!("{cols} > {marks}");
        }
        let mut terms = Vec::new();
        for (i, (c, v)) in self.order.iter().zip(bound).enumerate() {
            let mut and: Vec<String> = self.order[..i]
                .iter()
                .zip(bound)
                .map(|(c, v)| Self::equal(c, v, params))
                .collect();
            and.push(if *v == Value::Null {
                format!("{} IS NOT NULL", c.sql)
            } else {
                format!("{} > {}", c.sql, Self::mark(params, v))
            });
            terms.push(format!("({})", and.join(" AND ")));
        }
        terms.join(" OR ")
    }

    /// The key is at or below `bound` (NULL lowest).
    fn at_or_below(&self, bound: &[Value], params: &mut Vec<Value>) -> String {
        if self.plain(bound) {
            let (cols, marks) = self.tuple(bound, params);
            return format!("{cols} <= {marks}");
        }
        let mut terms = Vec::new();
        for (i, (c, v)) in self.order.iter().zip(bound).enumerate() {
            if *v == Value::Null {
                continue; // nothing is below NULL
            }
            let mut and: Vec<String> = self.order[..i]
                .iter()
                .zip(bound)
                .map(|(c, v)| Self::equal(c, v, params))
                .collect();
            let m = Self::mark(params, v);
            and.push(if c.never_null {
                format!("{} < {m}", c.sql)
            } else {
                format!("({} IS NULL OR {} < {m})", c.sql, c.sql)
            });
            terms.push(format!("({})", and.join(" AND ")));
        }
        let all: Vec<String> = self
            .order
            .iter()
            .zip(bound)
            .map(|(c, v)| Self::equal(c, v, params))
            .collect();
        terms.push(format!("({})", all.join(" AND ")));
        terms.join(" OR ")
    }

    fn order_by(&self) -> String {
        self.order
            .iter()
            .map(|c| c.sql.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Whether every column of `t`'s primary key index compares with the BINARY collation (an
/// INTEGER PRIMARY KEY, the rowid, has no index and compares as integers).
fn key_is_binary(conn: &Connection, t: &Table) -> rusqlite::Result<bool> {
    let name = t.name.name.as_str();
    let index: Option<String> = conn
        .query_row(
            "SELECT name FROM pragma_index_list(?1) WHERE origin = 'pk'",
            [name],
            |r| r.get(0),
        )
        .optional()?;
    let Some(index) = index else {
        return Ok(true);
    };
    let other: i64 = conn.query_row(
        "SELECT count(*) FROM pragma_index_xinfo(?1) WHERE key = 1 AND upper(coll) <> 'BINARY'",
        [index],
        |r| r.get(0),
    )?;
    Ok(other == 0)
}

impl TableRanges for SqliteRanges<'_> {
    fn sum(&mut self, range: &KeyRange) -> Result<RangeSum, ReaderError> {
        let mut params = Vec::new();
        let cond = self.condition(range, &mut params);
        let sql = format!(
            "SELECT count(*), {HASH_FN}({}) FROM {} WHERE {cond}",
            self.columns.join(", "),
            self.table
        );
        let (rows, hash): (i64, Vec<u8>) = self
            .conn
            .prepare_cached(&sql)
            .and_then(|mut s| {
                s.query_row(rusqlite::params_from_iter(params.iter().map(Param)), |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
            })
            .map_err(self.error("cannot sum a key range"))?;
        let mut h = [0u8; 16];
        if hash.len() == 16 {
            h.copy_from_slice(&hash);
        }
        Ok(RangeSum {
            rows: rows as u64,
            hash: h,
        })
    }

    fn split(&mut self, range: &KeyRange, every: u64) -> Result<Vec<Vec<Value>>, ReaderError> {
        let mut params = Vec::new();
        let cond = self.condition(range, &mut params);
        let keys: Vec<String> = self.key.iter().map(|&i| self.columns[i].clone()).collect();
        params.push(Value::Integer(every.max(1) as i64));
        let sql = format!(
            "SELECT * FROM (SELECT {}, row_number() OVER (ORDER BY {}) AS rowtrail_ordinal \
             FROM {} WHERE {cond}) WHERE rowtrail_ordinal % ?{} = 0",
            keys.join(", "),
            self.order_by(),
            self.table,
            params.len()
        );
        let n = keys.len();
        let e = self.error("cannot split a key range");
        let mut stmt = match self.conn.prepare_cached(&sql) {
            Ok(s) => s,
            Err(cause) => return Err(e(cause)),
        };
        let out = stmt
            .query_map(rusqlite::params_from_iter(params.iter().map(Param)), |r| {
                (0..n).map(|i| Ok(value_of(r.get_ref(i)?))).collect()
            })
            .and_then(|rows| rows.collect::<Result<Vec<Vec<Value>>, _>>());
        out.map_err(self.error("cannot split a key range"))
    }

    fn rows(&mut self, range: &KeyRange) -> Result<Vec<BaselineRow>, ReaderError> {
        let mut params = Vec::new();
        let cond = self.condition(range, &mut params);
        let mut cols: Vec<String> = Vec::new();
        if let Some(alias) = self.rowid {
            cols.push(alias.to_string());
        }
        cols.extend(self.columns.iter().cloned());
        let sql = format!(
            "SELECT {} FROM {} WHERE {cond} ORDER BY {}",
            cols.join(", "),
            self.table,
            self.order_by()
        );
        let skip = usize::from(self.rowid.is_some());
        let n = self.columns.len();
        let has_rowid = self.rowid.is_some();
        let out = self
            .conn
            .prepare_cached(&sql)
            .and_then(|mut s| {
                s.query_map(rusqlite::params_from_iter(params.iter().map(Param)), |r| {
                    let rowid = if has_rowid { Some(r.get(0)?) } else { None };
                    let values = (0..n)
                        .map(|i| Ok(value_of(r.get_ref(i + skip)?)))
                        .collect::<rusqlite::Result<Vec<Value>>>()?;
                    Ok((rowid, values))
                })?
                .collect::<Result<Vec<BaselineRow>, _>>()
            })
            .map_err(self.error("cannot read a key range"))?;
        self.rows_read += out.len() as u64;
        Ok(out)
    }

    fn rows_read(&self) -> u64 {
        self.rows_read
    }
}

impl SqliteSource {
    /// Reads `table` by key range in one snapshot (see [`crate::source::Source::table_ranges`]).
    pub(super) fn ranges(
        &mut self,
        table: &CapturedTable,
        visit: &mut dyn FnMut(&mut dyn TableRanges) -> Result<(), ReaderError>,
    ) -> Result<SnapshotPosition, ReaderError> {
        let location = self.info.location.clone();
        let tx = self.conn.transaction().map_err(err(
            &location,
            "cannot start the comparison's read transaction",
        ))?;
        let (seq, taken_at) = snapshot_start(&tx, &location)?;
        let rows = {
            let mut r = SqliteRanges::new(&tx, &table.table, Side::Source(location.clone()))?;
            visit(&mut r)?;
            r.rows_read()
        };
        tx.commit().map_err(err(
            &location,
            "cannot end the comparison's read transaction",
        ))?;
        Ok(SnapshotPosition {
            seq,
            taken_at,
            rows,
        })
    }
}
