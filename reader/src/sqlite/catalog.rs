//! What a SQLite source's own catalog says: whether capture is installed, its incarnation and
//! registry, the schema version, and the definitions of the tables capture could cover.
//!
//! A DBA's CREATE TABLE script for SQLite is loaded into an in-memory SQLite database and read
//! through the same catalog queries, so a script and a live file give the same model, with
//! SQLite itself as the parser.

use std::path::Path;

use rowtrail_sql::sqlite::objects;
use rowtrail_sql::{Column, ForeignKey, Ident, Table, TableName};
use rusqlite::{Connection, OptionalExtension};

use super::connection::err;
use crate::source::CapturedTable;
use crate::ReaderError;

/// Whether the database behind `conn` has a table named `name`.
pub(crate) fn table_exists(
    conn: &Connection,
    name: &str,
    location: &str,
) -> Result<bool, ReaderError> {
    conn.query_row(
        "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?1",
        [name],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
    .map_err(err(location, "cannot read the schema"))
}

/// Whether rowtrail capture is installed in the database behind `conn`.
pub fn installed(conn: &Connection, location: &str) -> Result<bool, ReaderError> {
    table_exists(conn, objects::REGISTRY, location)
}

/// The incarnation recorded on the source; `None` when capture is not installed.
pub fn incarnation(conn: &Connection, location: &str) -> Result<Option<String>, ReaderError> {
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

/// Gives the source a new incarnation (as `docs/archive.md` has operators do by hand after a
/// restore from a backup, "A source whose sequence went back"), so that what it stages from now
/// on is archived as a new source; returns it.
pub fn renew_incarnation(conn: &Connection, location: &str) -> Result<String, ReaderError> {
    let meta = Ident::new(objects::META)?;
    let n = conn
        .execute(
            &format!(
                "UPDATE {} SET \"value\" = lower(hex(randomblob(16))) WHERE \"key\" = 'incarnation'",
                meta.sqlite()
            ),
            [],
        )
        .map_err(err(location, "cannot give the source a new incarnation"))?;
    if n != 1 {
        return Err(ReaderError::NotInstalled {
            location: location.to_string(),
        });
    }
    incarnation(conn, location)?.ok_or_else(|| ReaderError::NotInstalled {
        location: location.to_string(),
    })
}

/// The id of the archive the reader records it archives this source into (meta key `archive`).
pub fn archive_home(conn: &Connection, location: &str) -> Result<Option<String>, ReaderError> {
    if !table_exists(conn, objects::META, location)? {
        return Ok(None);
    }
    conn.query_row(
        &format!(
            "SELECT \"value\" FROM {} WHERE \"key\" = 'archive'",
            Ident::new(objects::META)?.sqlite()
        ),
        [],
        |r| r.get(0),
    )
    .optional()
    .map_err(err(
        location,
        "cannot read which archive the source is archived into",
    ))
}

/// Records `archive` as the archive this source is archived into.
pub fn set_archive_home(
    conn: &Connection,
    location: &str,
    archive: &str,
) -> Result<(), ReaderError> {
    conn.execute(
        &format!(
            "INSERT INTO {} (\"key\", \"value\") VALUES ('archive', ?1) \
             ON CONFLICT (\"key\") DO UPDATE SET \"value\" = excluded.\"value\" \
             WHERE \"value\" IS NOT excluded.\"value\"",
            Ident::new(objects::META)?.sqlite()
        ),
        [archive],
    )
    .map(drop)
    .map_err(err(
        location,
        "cannot record which archive the source is archived into",
    ))
}

/// The captured tables recorded in the registry.
pub fn registry(conn: &Connection, location: &str) -> Result<Vec<CapturedTable>, ReaderError> {
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
pub(crate) fn open_installed(path: &Path) -> Result<(Connection, String, String), ReaderError> {
    installed_on(super::connection::open_for_reader(path)?, path)
}

/// The installed source behind `conn` (opened on `path`), its location and incarnation.
pub(crate) fn installed_on(
    conn: Connection,
    path: &Path,
) -> Result<(Connection, String, String), ReaderError> {
    let location = path.display().to_string();
    if !installed(&conn, &location)? {
        return Err(ReaderError::NotInstalled { location });
    }
    let incarnation = incarnation(&conn, &location)?.ok_or_else(|| ReaderError::NotInstalled {
        location: location.clone(),
    })?;
    Ok((conn, location, incarnation))
}

/// `PRAGMA schema_version`: it changes whenever a table is created, altered or dropped.
pub(crate) fn schema_version(conn: &Connection, location: &str) -> Result<i64, ReaderError> {
    conn.query_row("PRAGMA schema_version", [], |r| r.get(0))
        .map_err(err(location, "cannot read the schema version"))
}

fn src_err(location: &str, context: &str) -> impl FnOnce(rusqlite::Error) -> ReaderError {
    let location = location.to_string();
    let context = context.to_string();
    move |cause| super::connection::source_error(&location, context, cause)
}

/// A table capture cannot cover as it stands, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The table's name as the database has it.
    pub table: String,
    /// What is wrong and what to do about it.
    pub reason: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.table, self.reason)
    }
}

/// What a look at a database's tables found: every table capture can cover, every one it cannot
/// (each with its reason), and the user tables it leaves alone because of their name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Survey {
    /// The tables capture can cover, in name order (or in the order asked for).
    pub tables: Vec<Table>,
    /// The tables capture cannot cover as they are.
    pub refused: Vec<Refusal>,
    /// Tables whose names start with `rowtrail_` but that are not rowtrail's own objects: never
    /// captured, since rowtrail takes every such name for itself.
    pub reserved: Vec<String>,
}

/// Whether `name` is one of the objects a rowtrail install creates: a shared table, or a staging
/// or pending table (`rowtrail_s_…_<10 hex>`, `rowtrail_p_…_<10 hex>`).
fn is_rowtrail_object(name: &str) -> bool {
    if [
        objects::META,
        objects::SEQUENCE,
        objects::STAGING,
        objects::CONTEXT,
        objects::REGISTRY,
    ]
    .contains(&name)
    {
        return true;
    }
    let Some(rest) = name
        .strip_prefix("rowtrail_s_")
        .or_else(|| name.strip_prefix("rowtrail_p_"))
    else {
        return false;
    };
    let hash = rest.rsplit('_').next().unwrap_or(rest);
    hash.len() == 10 && hash.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Every table of `conn`'s main schema, sorted into what capture can cover and what it cannot.
///
/// With `only`, just those tables (in that order); an unknown name is an error that lists what
/// exists. Virtual tables and views are not capturable; rowtrail's own objects are left out, and
/// other tables named `rowtrail_…` are listed in [`Survey::reserved`] (or refused, when asked
/// for by name).
pub fn survey(
    conn: &Connection,
    location: &str,
    only: Option<&[String]>,
) -> Result<Survey, ReaderError> {
    let mut stmt = conn
        .prepare(
            "SELECT name, type, wr FROM pragma_table_list WHERE schema = 'main' \
             AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
        )
        .map_err(src_err(location, "cannot list tables"))?;
    let listed: Vec<(String, String, bool)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? != 0)))
        .and_then(|rows| rows.collect())
        .map_err(src_err(location, "cannot list tables"))?;
    let is_ours = |n: &str| n.starts_with(rowtrail_sql::staging::PREFIX);
    let mut survey = Survey::default();
    let mut names: Vec<(String, bool)> = Vec::new();
    match only {
        None => {
            for (n, kind, wr) in listed {
                if kind != "table" {
                    continue;
                }
                if is_ours(&n) {
                    if !is_rowtrail_object(&n) {
                        survey.reserved.push(n);
                    }
                    continue;
                }
                names.push((n, wr));
            }
        }
        Some(wanted) => {
            for w in wanted {
                match listed.iter().find(|(n, _, _)| n == w) {
                    Some((n, kind, wr)) if kind == "table" && !is_ours(n) => {
                        names.push((n.clone(), *wr))
                    }
                    Some((n, kind, _)) => survey.refused.push(Refusal {
                        table: n.clone(),
                        reason: if is_rowtrail_object(n) {
                            "it is one of rowtrail's own objects".into()
                        } else if is_ours(n) {
                            "its name starts with rowtrail_, which rowtrail keeps for its own \
                             objects; rename the table to capture it"
                                .into()
                        } else {
                            format!("it is a {kind}, and only ordinary tables can be captured")
                        },
                    }),
                    None => {
                        let tables: Vec<&str> = listed
                            .iter()
                            .filter(|(n, k, _)| k == "table" && !is_ours(n))
                            .map(|(n, _, _)| n.as_str())
                            .collect();
                        let hint = if tables.is_empty() {
                            " (it has no tables)".to_string()
                        } else {
                            format!("; its tables are: {}", tables.join(", "))
                        };
                        return Err(ReaderError::UnknownTable {
                            table: w.clone(),
                            location: location.into(),
                            hint,
                        });
                    }
                }
            }
        }
    }
    for (name, without_rowid) in names {
        match read_table(conn, location, &name, without_rowid) {
            Ok(t) => match rowtrail_sql::sqlite::capturable(&t) {
                Ok(()) => survey.tables.push(t),
                Err(e) => survey.refused.push(Refusal {
                    table: name,
                    reason: refusal_reason(e),
                }),
            },
            Err(ReaderError::Sql(e)) => survey.refused.push(Refusal {
                table: name,
                reason: refusal_reason(e),
            }),
            Err(e) => return Err(e),
        }
    }
    Ok(survey)
}

/// Why the model refused a table, in words that fit after its name.
fn refusal_reason(e: rowtrail_sql::SqlError) -> String {
    match e {
        rowtrail_sql::SqlError::Uncapturable { reason, .. } => reason,
        rowtrail_sql::SqlError::InvalidIdentifier { name, reason } => {
            let what = if name.chars().count() > rowtrail_sql::ident::MAX_IDENT_CHARS {
                format!(
                    "the name {:?} is {} characters long; rowtrail keeps every name to {} \
                     (SQL Server's limit, so that archives of both engines read alike): rename it",
                    abbreviated(&name),
                    name.chars().count(),
                    rowtrail_sql::ident::MAX_IDENT_CHARS
                )
            } else {
                format!("the name {name:?} cannot be used: {reason}")
            };
            what
        }
        other => other.to_string(),
    }
}

/// The first 40 characters of a long name, for messages.
fn abbreviated(name: &str) -> String {
    let mut s: String = name.chars().take(40).collect();
    if name.chars().count() > 40 {
        s.push('…');
    }
    s
}

/// The capturable tables of `conn`'s main schema, rowtrail's own objects excluded; an error
/// naming every table that cannot be captured if there is any (see [`survey`]).
pub fn sqlite_tables(
    conn: &Connection,
    location: &str,
    only: Option<&[String]>,
) -> Result<Vec<Table>, ReaderError> {
    let survey = survey(conn, location, only)?;
    if !survey.refused.is_empty() {
        return Err(ReaderError::Uncapturable {
            location: location.to_string(),
            refused: survey.refused,
            capturable: survey.tables.len(),
        });
    }
    Ok(survey.tables)
}

pub(crate) fn read_table(
    conn: &Connection,
    location: &str,
    name: &str,
    without_rowid: bool,
) -> Result<Table, ReaderError> {
    let ctx = format!("cannot read the definition of table {name:?}");
    let mut stmt = conn
        .prepare(
            "SELECT name, type, \"notnull\", pk, hidden FROM pragma_table_xinfo(?1) ORDER BY cid",
        )
        .map_err(src_err(location, &ctx))?;
    let rows: Vec<(String, String, bool, i64, i64)> = stmt
        .query_map([name], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get::<_, i64>(2)? != 0,
                r.get(3)?,
                r.get(4)?,
            ))
        })
        .and_then(|rows| rows.collect())
        .map_err(src_err(location, &ctx))?;
    let mut columns = Vec::new();
    let mut pk: Vec<(i64, usize)> = Vec::new();
    for (col, ty, notnull, pk_pos, hidden) in rows {
        if hidden == 1 {
            continue; // hidden columns of virtual tables
        }
        let mut c = Column::new(Ident::new(col)?, ty, !notnull);
        c.computed = hidden >= 2;
        if pk_pos > 0 {
            pk.push((pk_pos, columns.len()));
        }
        columns.push(c);
    }
    pk.sort();
    let position = |col: &str| columns.iter().position(|c| c.name.as_str() == col);
    let mut unique_keys = Vec::new();
    let mut idx = conn
        .prepare("SELECT name, origin FROM pragma_index_list(?1) WHERE \"unique\" = 1")
        .map_err(src_err(location, &ctx))?;
    let indexes: Vec<(String, String)> = idx
        .query_map([name], |r| Ok((r.get(0)?, r.get(1)?)))
        .and_then(|rows| rows.collect())
        .map_err(src_err(location, &ctx))?;
    for (index, origin) in indexes {
        if origin == "pk" {
            continue;
        }
        let mut info = conn
            .prepare("SELECT name FROM pragma_index_info(?1) ORDER BY seqno")
            .map_err(src_err(location, &ctx))?;
        let cols: Vec<Option<String>> = info
            .query_map([&index], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(src_err(location, &ctx))?;
        // Expression indexes have no column name for some entries; they are not tracked.
        let key: Option<Vec<usize>> = cols
            .iter()
            .map(|c| c.as_deref().and_then(position))
            .collect();
        if let Some(key) = key {
            if !key.is_empty() && !unique_keys.contains(&key) {
                unique_keys.push(key);
            }
        }
    }
    let table = Table {
        name: TableName::bare(Ident::new(name)?),
        columns,
        primary_key: pk.into_iter().map(|(_, i)| i).collect(),
        unique_keys,
        rowid: !without_rowid,
    };
    table.validate()?;
    Ok(table)
}

/// The definition table `name` of the database behind `conn` has now; `None` when there is no
/// such table (or it is a view or virtual table).
pub fn live_table(
    conn: &Connection,
    location: &str,
    name: &str,
) -> Result<Option<Table>, ReaderError> {
    let found: Option<(String, bool)> = conn
        .query_row(
            "SELECT type, wr FROM pragma_table_list WHERE schema = 'main' AND name = ?1",
            [name],
            |r| Ok((r.get(0)?, r.get::<_, i64>(1)? != 0)),
        )
        .optional()
        .map_err(src_err(location, "cannot read the schema"))?;
    match found {
        Some((kind, without_rowid)) if kind == "table" => {
            read_table(conn, location, name, without_rowid).map(Some)
        }
        _ => Ok(None),
    }
}

/// Reads the tables a SQLite CREATE TABLE script defines, by running it in a private in-memory
/// database (other statements in it only touch that scratch database).
pub fn sqlite_tables_from_ddl(
    script: &str,
    only: Option<&[String]>,
) -> Result<Vec<Table>, ReaderError> {
    let location = "the DDL script";
    let conn = Connection::open_in_memory()
        .map_err(src_err(location, "cannot open a scratch database"))?;
    conn.execute_batch(script)
        .map_err(|cause| ReaderError::Source {
            location: location.into(),
            context: "SQLite could not run it (is it SQLite DDL?)".into(),
            cause,
        })?;
    sqlite_tables(&conn, location, only)
}

/// Every foreign key declared in the database behind `conn`, its tables named as the archive
/// names them (no schema). A key whose table name no captured table can have (too long) is left
/// out: no change can be of it.
pub fn foreign_keys(conn: &Connection, location: &str) -> Result<Vec<ForeignKey>, ReaderError> {
    let e = || err(location, "cannot read foreign keys");
    let mut stmt = conn
        .prepare(
            "SELECT m.name, f.id, f.seq, f.\"table\", f.\"from\", f.\"to\" FROM sqlite_schema m \
             JOIN pragma_foreign_key_list(m.name) f WHERE m.type = 'table' ORDER BY m.name, f.id, f.seq",
        )
        .map_err(e())?;
    let rows: Vec<(String, i64, String, String, Option<String>)> = stmt
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(3)?, r.get(4)?, r.get(5)?))
        })
        .and_then(|rows| rows.collect())
        .map_err(e())?;
    let mut out: Vec<ForeignKey> = Vec::new();
    let mut last: Option<(String, i64)> = None;
    let mut current: Option<usize> = None;
    for (child, id, parent, from, to) in rows {
        if last.as_ref() != Some(&(child.clone(), id)) {
            last = Some((child.clone(), id));
            current = match (Ident::new(child), Ident::new(parent)) {
                (Ok(child), Ok(parent)) => {
                    out.push(ForeignKey {
                        child: TableName::bare(child),
                        child_columns: Vec::new(),
                        parent: TableName::bare(parent),
                        parent_columns: Vec::new(),
                    });
                    Some(out.len() - 1)
                }
                _ => None,
            };
        }
        if let Some(fk) = current.map(|i| &mut out[i]) {
            fk.child_columns.push(from);
            if let Some(to) = to {
                fk.parent_columns.push(to);
            }
        }
    }
    Ok(out)
}
