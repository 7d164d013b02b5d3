//! Reading table definitions out of a SQLite database's own catalog.
//!
//! A DBA's CREATE TABLE script for SQLite is loaded into an in-memory SQLite database and read
//! through the same catalog queries, so a script and a live file give the same model, with
//! SQLite itself as the parser.

use rowtrail_sql::{Column, Ident, Table, TableName};
use rusqlite::Connection;

use crate::ReaderError;

fn src_err(location: &str, context: &str) -> impl FnOnce(rusqlite::Error) -> ReaderError {
    let location = location.to_string();
    let context = context.to_string();
    move |cause| ReaderError::Source {
        location,
        context,
        cause,
    }
}

/// The capturable tables of `conn`'s main schema, rowtrail's own objects excluded.
///
/// With `only`, just those tables (in that order); an unknown name is an error that lists what
/// exists. Virtual tables and views are not capturable.
pub fn sqlite_tables(
    conn: &Connection,
    location: &str,
    only: Option<&[String]>,
) -> Result<Vec<Table>, ReaderError> {
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
    let names: Vec<(String, String, bool)> = match only {
        None => listed
            .into_iter()
            .filter(|(n, kind, _)| kind == "table" && !is_ours(n))
            .collect(),
        Some(wanted) => {
            let mut out = Vec::new();
            for w in wanted {
                let found = listed.iter().find(|(n, _, _)| n == w);
                match found {
                    Some((n, kind, wr)) if kind == "table" && !is_ours(n) => {
                        out.push((n.clone(), kind.clone(), *wr))
                    }
                    Some((n, kind, _)) => {
                        return Err(ReaderError::Sql(rowtrail_sql::SqlError::Uncapturable {
                            table: n.clone(),
                            reason: if is_ours(n) {
                                "it is one of rowtrail's own objects".into()
                            } else {
                                format!("it is a {kind}, and only ordinary tables can be captured")
                            },
                        }))
                    }
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
            out
        }
    };
    let mut tables = Vec::with_capacity(names.len());
    for (name, _, without_rowid) in names {
        tables.push(read_table(conn, location, &name, without_rowid)?);
    }
    Ok(tables)
}

fn read_table(
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
