//! The SQLite source: install and uninstall capture, read and delete staged images, probe.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rowtrail_sql::sqlite::{self as gen, objects, CaptureNames};
use rowtrail_sql::staging;
use rowtrail_sql::{Ident, Table, Value};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::{CapturedTable, Meta, Source, SourceInfo, StagedImage, StagedKey, StagingDeleter};
use crate::ReaderError;

/// A SQLite database under capture (or about to be).
pub struct SqliteSource {
    conn: Connection,
    info: SourceInfo,
    tables: Vec<CapturedTable>,
    /// Per table: the SELECT over its staging table.
    selects: Vec<String>,
    /// `PRAGMA schema_version` when the registry was last read: a table captured (or dropped)
    /// since changes it, and the next batch reads the registry again in its own snapshot.
    schema_version: i64,
}

/// How long a source statement waits for another connection's lock.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Time between two tries for a lock the application holds.
const BUSY_POLL: Duration = Duration::from_micros(200);

/// Waits for the application's locks with short, even polls. SQLite's default handler sleeps up
/// to 100 ms between tries, and against a writer that commits back to back it keeps missing the
/// short gaps between transactions, so the staging delete could starve for as long as the
/// application writes.
fn poll_busy(attempt: i32) -> bool {
    let waited = BUSY_POLL.saturating_mul(u32::try_from(attempt).unwrap_or(u32::MAX));
    if waited >= BUSY_TIMEOUT {
        return false;
    }
    std::thread::sleep(BUSY_POLL);
    true
}

fn open(path: &Path) -> Result<Connection, ReaderError> {
    let location = path.display().to_string();
    if !path.exists() {
        return Err(ReaderError::Source {
            location,
            context: "the source database file does not exist".into(),
            cause: rusqlite::Error::InvalidPath(path.to_path_buf()),
        });
    }
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )
    .map_err(|cause| ReaderError::Source {
        location: location.clone(),
        context: "cannot open".into(),
        cause,
    })?;
    conn.busy_handler(Some(poll_busy))
        .map_err(|cause| ReaderError::Source {
            location: location.clone(),
            context: "cannot set the busy handler".into(),
            cause,
        })?;
    // Fail early and clearly on a file that is not a database.
    conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
        r.get::<_, i64>(0)
    })
    .map_err(|cause| ReaderError::Source {
        location,
        context: "cannot read the schema (is it a SQLite database?)".into(),
        cause,
    })?;
    Ok(conn)
}

/// Wraps an engine error with where and what; allocates only when there is an error.
pub(super) fn err<'a, C: Into<String> + 'a>(
    location: &'a str,
    context: C,
) -> impl FnOnce(rusqlite::Error) -> ReaderError + 'a {
    move |cause| ReaderError::Source {
        location: location.to_string(),
        context: context.into(),
        cause,
    }
}

/// Whether the database behind `conn` has a table named `name`.
fn table_exists(conn: &Connection, name: &str, location: &str) -> Result<bool, ReaderError> {
    conn.query_row(
        "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?1",
        [name],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
    .map_err(err(location, "cannot read the schema"))
}

/// Whether rowtrail capture is installed in the database behind `conn`.
fn installed(conn: &Connection, location: &str) -> Result<bool, ReaderError> {
    table_exists(conn, objects::REGISTRY, location)
}

/// The incarnation recorded on the source; `None` when capture is not installed.
fn incarnation(conn: &Connection, location: &str) -> Result<Option<String>, ReaderError> {
    let meta = Ident::new(objects::META)?;
    if !table_exists(conn, objects::META, location)? {
        return Ok(None);
    }
    conn.query_row(
        &format!(
            "SELECT \"value\" FROM {} WHERE \"key\" = 'incarnation'",
            meta.sqlite()
        ),
        [],
        |r| r.get(0),
    )
    .optional()
    .map_err(err(location, "cannot read the incarnation"))
}

/// The captured tables recorded in the registry.
fn registry(conn: &Connection, location: &str) -> Result<Vec<CapturedTable>, ReaderError> {
    let sql = format!(
        "SELECT \"staging_name\", \"definition\" FROM {} ORDER BY \"table_schema\", \"table_name\"",
        Ident::new(objects::REGISTRY)?.sqlite()
    );
    let mut stmt = conn
        .prepare(&sql)
        .map_err(err(location, "cannot read the registry"))?;
    let rows: Vec<(String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .and_then(|rows| rows.collect())
        .map_err(err(location, "cannot read the registry"))?;
    rows.into_iter()
        .map(|(staging, def)| {
            Ok(CapturedTable {
                table: Table::from_json(&def)?,
                staging: Ident::new(staging)?,
            })
        })
        .collect()
}

/// A connection to a source with capture installed, its location and its incarnation.
fn open_installed(path: &Path) -> Result<(Connection, String, String), ReaderError> {
    let conn = open(path)?;
    let location = path.display().to_string();
    if !installed(&conn, &location)? {
        return Err(ReaderError::NotInstalled { location });
    }
    let incarnation = incarnation(&conn, &location)?.ok_or_else(|| ReaderError::NotInstalled {
        location: location.clone(),
    })?;
    Ok((conn, location, incarnation))
}

impl SqliteSource {
    /// Opens a source that already has capture installed.
    pub fn open(path: &Path) -> Result<Self, ReaderError> {
        let (conn, location, incarnation) = open_installed(path)?;
        let mut source = Self {
            conn,
            info: SourceInfo {
                incarnation,
                engine: "sqlite",
                location,
            },
            tables: Vec::new(),
            selects: Vec::new(),
            schema_version: 0,
        };
        source.refresh()?;
        Ok(source)
    }

    /// The tables of the database at `path` that capture could cover (`only` to pick some).
    pub fn candidate_tables(
        path: &Path,
        only: Option<&[String]>,
    ) -> Result<Vec<Table>, ReaderError> {
        let conn = open(path)?;
        let tables = super::sqlite_tables(&conn, &path.display().to_string(), only)?;
        if tables.is_empty() {
            return Err(ReaderError::NoTables {
                location: path.display().to_string(),
            });
        }
        Ok(tables)
    }

    /// Installs (or refreshes) capture for `tables` in the database at `path`.
    ///
    /// A table whose definition changed since it was installed keeps its staging table only when
    /// that table is empty; otherwise the install stops and asks for a drain first.
    pub fn install(path: &Path, tables: &[Table], version: &str) -> Result<(), ReaderError> {
        let conn = open(path)?;
        let location = path.display().to_string();
        if installed(&conn, &location)? {
            let existing = registry(&conn, &location)?;
            for t in tables {
                let Some(old) = existing.iter().find(|c| c.table.name == t.name) else {
                    continue;
                };
                if old.table.columns != t.columns || old.table.rowid != t.rowid {
                    let staged = count(&conn, &location, &old.staging)?;
                    if staged > 0 {
                        return Err(ReaderError::StagedRowsPending { location, staged });
                    }
                    conn.execute_batch(&format!("DROP TABLE IF EXISTS {};", old.staging.sqlite()))
                        .map_err(err(&location, "cannot replace an outdated staging table"))?;
                    let pending = CaptureNames::for_table(&old.table).pending;
                    conn.execute_batch(&format!("DROP TABLE IF EXISTS {};", pending.sqlite()))
                        .map_err(err(&location, "cannot replace an outdated pending table"))?;
                }
            }
        }
        check_free_names(&conn, &location, tables)?;
        let script = gen::install_script(tables, version)?;
        conn.execute_batch(&script).map_err(|cause| {
            let _ = conn.execute_batch("ROLLBACK");
            ReaderError::Source {
                location: location.clone(),
                context: "the install script failed; nothing was changed".into(),
                cause,
            }
        })
    }

    /// Removes capture for every captured table (or only `only`), refusing while staged images
    /// are waiting unless `discard_staged`. Returns the tables uninstalled.
    pub fn uninstall(
        path: &Path,
        only: Option<&[String]>,
        discard_staged: bool,
        version: &str,
    ) -> Result<Vec<Table>, ReaderError> {
        let conn = open(path)?;
        let location = path.display().to_string();
        if !installed(&conn, &location)? {
            return Err(ReaderError::NotInstalled { location });
        }
        let all = registry(&conn, &location)?;
        let chosen: Vec<&CapturedTable> = match only {
            None => all.iter().collect(),
            Some(names) => names
                .iter()
                .map(|n| {
                    all.iter()
                        .find(|c| c.table.name.name.as_str() == n)
                        .ok_or_else(|| ReaderError::UnknownTable {
                            table: n.clone(),
                            location: location.clone(),
                            hint: " among the captured tables".into(),
                        })
                })
                .collect::<Result<_, _>>()?,
        };
        if !discard_staged {
            let mut staged = 0;
            for c in &chosen {
                staged += count(&conn, &location, &c.staging)?;
            }
            if staged > 0 {
                return Err(ReaderError::StagedRowsPending { location, staged });
            }
        }
        let tables: Vec<Table> = chosen.iter().map(|c| c.table.clone()).collect();
        let shared = tables.len() == all.len();
        let script = gen::uninstall_script(&tables, shared, version);
        conn.execute_batch(&script).map_err(|cause| {
            let _ = conn.execute_batch("ROLLBACK");
            ReaderError::Source {
                location,
                context: "the uninstall script failed; nothing was changed".into(),
                cause,
            }
        })?;
        Ok(tables)
    }

    /// A heartbeat: opens a fresh connection (so a moved, replaced or deleted file is noticed,
    /// which an open connection would not notice), checks the installation, and measures the
    /// backlog.
    pub fn health(path: &Path) -> Result<super::Health, ReaderError> {
        let (conn, location, incarnation) = open_installed(path)?;
        let mut staged = 0u64;
        let mut oldest: Option<f64> = None;
        let time = Ident::new(staging::COL_TIME)?;
        let seq = Ident::new(staging::COL_SEQ)?;
        for c in registry(&conn, &location)? {
            let (n, age): (i64, Option<f64>) = conn
                .query_row(
                    &format!(
                        "SELECT (SELECT count(*) FROM {t}), \
                         (SELECT (julianday('now') - julianday({time})) * 86400.0 FROM {t} ORDER BY {seq} LIMIT 1)",
                        t = c.staging.sqlite(),
                        time = time.sqlite(),
                        seq = seq.sqlite(),
                    ),
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(err(&location, "cannot measure the backlog"))?;
            staged += n as u64;
            if let Some(age) = age {
                oldest = Some(oldest.map_or(age, |o: f64| o.max(age)));
            }
        }
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
        Ok(super::Health {
            incarnation,
            staged,
            oldest_age_secs: oldest,
            context_committed: context > 0,
        })
    }

    /// The file this source reads.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(&self.info.location)
    }

    fn location(&self) -> &str {
        &self.info.location
    }

    /// One batch read in one snapshot, provided the incarnation in that snapshot is still the
    /// one this source reads for; otherwise `Err` with the incarnation found.
    fn read_under_incarnation(
        &mut self,
        limit: usize,
        above: Option<i64>,
    ) -> Result<Result<Vec<StagedImage>, String>, ReaderError> {
        let location = self.info.location.clone();
        let tx = self
            .conn
            .transaction()
            .map_err(err(&location, "cannot start a read transaction"))?;
        match incarnation(&tx, &location)? {
            None => return Err(ReaderError::NotInstalled { location }),
            Some(found) if found != self.info.incarnation => return Ok(Err(found)),
            Some(_) => {}
        }
        // A table captured since the registry was read must be merged in this very snapshot:
        // its images take seqs from the same counter, and reading them in a later pass, after
        // higher seqs of other tables, would archive them out of order.
        let version = schema_version(&tx, &location)?;
        if version != self.schema_version {
            self.tables = registry(&tx, &location)?;
            self.selects = staging_selects(&self.tables);
            self.schema_version = version;
        }
        let mut stmts = Vec::with_capacity(self.selects.len());
        for sql in &self.selects {
            stmts.push(
                tx.prepare_cached(sql)
                    .map_err(err(&location, "cannot read staging"))?,
            );
        }
        let per_table = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
        let above = above.unwrap_or(i64::MIN);
        let mut cursors = Vec::with_capacity(stmts.len());
        for s in stmts.iter_mut() {
            cursors.push(
                s.query([per_table, above])
                    .map_err(err(&location, "cannot read staging"))?,
            );
        }
        let tables = &self.tables;
        let streams = cursors
            .iter_mut()
            .enumerate()
            .map(|(i, rows)| {
                let loc = location.as_str();
                std::iter::from_fn(move || next_image(rows, i, &tables[i], loc).transpose())
            })
            .collect();
        let out = super::merge_by_seq(streams, limit)?;
        drop(cursors);
        drop(stmts);
        tx.commit()
            .map_err(err(&location, "cannot end the read transaction"))?;
        Ok(Ok(out))
    }
}

fn schema_version(conn: &Connection, location: &str) -> Result<i64, ReaderError> {
    conn.query_row("PRAGMA schema_version", [], |r| r.get(0))
        .map_err(err(location, "cannot read the schema version"))
}

/// Per captured table, the SELECT of its staged images in seq order, at most `?1`, with a seq
/// above `?2`.
fn staging_selects(tables: &[CapturedTable]) -> Vec<String> {
    let seq = Ident::new(staging::COL_SEQ).expect("valid");
    tables
        .iter()
        .map(|c| {
            let mut cols: Vec<String> = staging::METADATA_COLUMNS
                .iter()
                .map(|m| Ident::new(*m).expect("valid").sqlite().to_string())
                .collect();
            if c.table.rowid {
                cols.push(
                    Ident::new(staging::COL_ROWID)
                        .expect("valid")
                        .sqlite()
                        .to_string(),
                );
            }
            cols.extend(
                c.table
                    .columns
                    .iter()
                    .map(|col| col.name.sqlite().to_string()),
            );
            format!(
                "SELECT {} FROM {} WHERE {seq} > ?2 ORDER BY {seq} LIMIT ?1",
                cols.join(", "),
                c.staging.sqlite(),
                seq = seq.sqlite()
            )
        })
        .collect()
}

fn count(conn: &Connection, location: &str, staging: &Ident) -> Result<u64, ReaderError> {
    if !table_exists(conn, staging.as_str(), location)? {
        return Ok(0);
    }
    conn.query_row(
        &format!("SELECT count(*) FROM {}", staging.sqlite()),
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n as u64)
    .map_err(err(location, "cannot count staged images"))
}

/// Refuses to install over a user object that happens to carry one of our derived names.
fn check_free_names(
    conn: &Connection,
    location: &str,
    tables: &[Table],
) -> Result<(), ReaderError> {
    let mut stmt = conn
        .prepare("SELECT type FROM sqlite_schema WHERE name = ?1")
        .map_err(err(location, "cannot read the schema"))?;
    for t in tables {
        let names = CaptureNames::for_table(t);
        for (name, expected) in [(&names.staging, "table"), (&names.pending, "table")]
            .into_iter()
            .chain(names.triggers.iter().map(|n| (n, "trigger")))
        {
            let kind: Option<String> = stmt
                .query_row([name.as_str()], |r| r.get(0))
                .optional()
                .map_err(err(location, "cannot read the schema"))?;
            if let Some(kind) = kind {
                if kind != expected {
                    return Err(ReaderError::Sql(rowtrail_sql::SqlError::Uncapturable {
                        table: t.name.to_string(),
                        reason: format!(
                            "a {kind} named {:?} already exists and is not rowtrail's",
                            name.as_str()
                        ),
                    }));
                }
            }
        }
    }
    Ok(())
}

fn text_of(v: ValueRef<'_>) -> Option<String> {
    match v {
        ValueRef::Null => None,
        ValueRef::Text(t) | ValueRef::Blob(t) => Some(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(r) => Some(r.to_string()),
    }
}

/// A staged op or image code as text, borrowed from the row when it is text already.
fn code_of(v: ValueRef<'_>) -> Option<std::borrow::Cow<'_, str>> {
    match v {
        ValueRef::Text(t) | ValueRef::Blob(t) => Some(String::from_utf8_lossy(t)),
        other => text_of(other).map(std::borrow::Cow::Owned),
    }
}

/// The exact value a SQLite cell holds.
pub fn value_of(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(r) => Value::Real(r),
        ValueRef::Text(t) => Value::Text(t.to_vec()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

/// The statement time as the archive keeps it: ISO-8601 UTC text with milliseconds. Triggers
/// store SQLite's `julianday('now')`; text (as older installs wrote it) is kept as it is.
fn time_text(v: Value) -> Value {
    match v {
        Value::Real(jd) => Value::Text(iso_bytes(jd)),
        other => other,
    }
}

/// `YYYY-MM-DDTHH:MM:SS.sssZ` for a Julian day number (UTC), to the millisecond, written digit
/// by digit: every staged image has a time, so this runs once per image the reader moves.
fn iso_bytes(jd: f64) -> Vec<u8> {
    let (year, month, day, ms_of_day) = civil_from_julian_day(jd);
    if !(0..=9999).contains(&year) {
        return format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
            ms_of_day / 3_600_000,
            ms_of_day / 60_000 % 60,
            ms_of_day / 1000 % 60,
            ms_of_day % 1000
        )
        .into_bytes();
    }
    let mut out = Vec::with_capacity(24);
    push_digits(&mut out, year, 4);
    let parts = [
        (b'-', month, 2),
        (b'-', day, 2),
        (b'T', ms_of_day / 3_600_000, 2),
        (b':', ms_of_day / 60_000 % 60, 2),
        (b':', ms_of_day / 1000 % 60, 2),
        (b'.', ms_of_day % 1000, 3),
    ];
    for (sep, n, width) in parts {
        out.push(sep);
        push_digits(&mut out, n, width);
    }
    out.push(b'Z');
    out
}

/// The `width` lowest decimal digits of `n` (0 ≤ n), zero-padded.
fn push_digits(out: &mut Vec<u8>, n: i64, width: u32) {
    for p in (0..width).rev() {
        out.push(b'0' + (n / 10_i64.pow(p) % 10) as u8);
    }
}

/// Year, month, day and millisecond of the day (UTC) of a Julian day number, to the millisecond.
fn civil_from_julian_day(jd: f64) -> (i64, i64, i64, i64) {
    let ms = ((jd - 2_440_587.5) * 86_400_000.0).round() as i64;
    let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, ms_of_day)
}

fn nullable(v: Value) -> Option<Value> {
    (v != Value::Null).then_some(v)
}

impl Source for SqliteSource {
    fn info(&self) -> &SourceInfo {
        &self.info
    }

    fn tables(&self) -> &[CapturedTable] {
        &self.tables
    }

    fn refresh(&mut self) -> Result<(), ReaderError> {
        let location = self.info.location.clone();
        if !installed(&self.conn, &location)? {
            return Err(ReaderError::NotInstalled { location });
        }
        self.schema_version = schema_version(&self.conn, &location)?;
        self.tables = registry(&self.conn, &location)?;
        self.selects = staging_selects(&self.tables);
        Ok(())
    }

    fn read_batch(
        &mut self,
        limit: usize,
        mut above: Option<i64>,
    ) -> Result<Vec<StagedImage>, ReaderError> {
        // A reinstall between two batches starts a new incarnation (its seqs start again from
        // 1): switch to it, or its images would be archived as the old one's, where their seqs
        // are taken, and be dropped as already archived.
        for _ in 0..2 {
            match self.read_under_incarnation(limit, above)? {
                Ok(images) => return Ok(images),
                Err(found) => {
                    tracing::warn!(source = %self.info.location, old = %self.info.incarnation,
                        new = %found, "capture was reinstalled: a new incarnation starts");
                    self.info.incarnation = found;
                    self.refresh()?;
                    above = None;
                }
            }
        }
        Err(ReaderError::IncarnationChanged {
            location: self.info.location.clone(),
            expected: self.info.incarnation.clone(),
            found: "a newer one again".into(),
        })
    }

    fn delete_staged(&mut self, keys: &[StagedKey]) -> Result<(), ReaderError> {
        delete_under(
            &mut self.conn,
            &self.info.location,
            &self.info.incarnation,
            &self.tables,
            keys,
        )
    }

    fn delete_behind(&mut self) -> Result<Option<Box<dyn StagingDeleter>>, ReaderError> {
        Ok(Some(Box::new(SqliteDeleter {
            conn: open(&self.path())?,
            location: self.info.location.clone(),
        })))
    }

    fn probe(&mut self) -> Result<i64, ReaderError> {
        let location = self.location().to_string();
        self.conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(err(&location, "probe failed"))
    }

    fn staged_count(&mut self) -> Result<u64, ReaderError> {
        let location = self.location().to_string();
        let mut total = 0;
        for c in &self.tables {
            total += count(&self.conn, &location, &c.staging)?;
        }
        Ok(total)
    }
}

/// Deletes `keys` (read under `expected`, indexing `tables`) in one immediate transaction.
fn delete_under(
    conn: &mut Connection,
    location: &str,
    expected: &str,
    tables: &[CapturedTable],
    keys: &[StagedKey],
) -> Result<(), ReaderError> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(err(location, "cannot start the staging delete"))?;
    // The batch was read under this incarnation; after a reinstall the same staging names
    // hold the new incarnation's images, which must not be touched.
    let found = incarnation(&tx, location)?.unwrap_or_default();
    if found != expected {
        return Err(ReaderError::IncarnationChanged {
            location: location.to_string(),
            expected: expected.to_string(),
            found,
        });
    }
    super::sqlite_delete::delete_copied(&tx, tables, keys, location)?;
    tx.commit()
        .map_err(err(location, "cannot commit the staging delete"))
}

/// The delete-behind handle of a [`SqliteSource`]: a second connection to the same file.
struct SqliteDeleter {
    conn: Connection,
    location: String,
}

impl StagingDeleter for SqliteDeleter {
    fn delete(
        &mut self,
        incarnation: &str,
        tables: &[CapturedTable],
        keys: &[StagedKey],
    ) -> Result<(), ReaderError> {
        delete_under(&mut self.conn, &self.location, incarnation, tables, keys)
    }
}

fn next_image(
    rows: &mut rusqlite::Rows<'_>,
    table: usize,
    captured: &CapturedTable,
    location: &str,
) -> Result<Option<StagedImage>, ReaderError> {
    let Some(row) = rows.next().map_err(err(location, "cannot read staging"))? else {
        return Ok(None);
    };
    let get = |i: usize| row.get_ref(i).map_err(err(location, "cannot read staging"));
    let seq = match get(0)? {
        ValueRef::Integer(s) => Some(s),
        _ => None,
    };
    let (seq, op, image) = super::staged_kind(
        &captured.staging,
        seq,
        code_of(get(1)?).as_deref(),
        code_of(get(2)?).as_deref(),
    )?;
    let bad = |reason: &str| ReaderError::BadStaging {
        staging: captured.staging.to_string(),
        seq,
        reason: reason.into(),
    };
    let meta = Meta {
        tx: nullable(value_of(get(3)?)),
        stmt: nullable(value_of(get(4)?)),
        time: nullable(value_of(get(5)?)).map(time_text),
        login: text_of(get(6)?),
        host: text_of(get(7)?),
        app: text_of(get(8)?),
        client_ip: text_of(get(9)?),
    };
    let mut col = staging::METADATA_COLUMNS.len();
    let rowid = if captured.table.rowid {
        col += 1;
        match get(col - 1)? {
            ValueRef::Integer(r) => Some(r),
            _ => return Err(bad("its rowid is not an integer")),
        }
    } else {
        None
    };
    let mut values = Vec::with_capacity(captured.table.columns.len());
    for i in 0..captured.table.columns.len() {
        values.push(value_of(get(col + i)?));
    }
    Ok(Some(StagedImage {
        table,
        seq,
        op,
        image,
        meta,
        rowid,
        values,
    }))
}

#[cfg(test)]
mod tests {
    use super::iso_bytes;

    #[test]
    fn julian_days_format_exactly_as_sqlite_formats_them() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        let mut days: Vec<f64> = vec![
            2_440_587.5,
            2_451_544.5,
            2_451_604.5,
            2_460_000.25,
            2_488_069.5,
        ];
        for _ in 0..2000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            // 1900..2100, to the millisecond, as 'now' is.
            let ms = -2_208_988_800_000_i64 + (rng % 6_311_433_600_000) as i64;
            days.push(ms as f64 / 86_400_000.0 + 2_440_587.5);
        }
        for jd in days {
            let sqlite: String = conn
                .query_row("SELECT strftime('%Y-%m-%dT%H:%M:%fZ', ?1)", [jd], |r| {
                    r.get(0)
                })
                .unwrap();
            assert_eq!(iso_bytes(jd), sqlite.as_bytes(), "julian day {jd}");
        }
    }
}
