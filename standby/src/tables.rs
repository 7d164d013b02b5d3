//! The replica's tables: which of the source's it holds, and in which form: the source's
//! columns in their order, the primary key, and nothing the replica does not need (no unique
//! indexes, no foreign keys, no generated columns: every column holds the value the source's
//! row held, as captured).

use rowtrail_reader::archive::{Archive, BaselineTable};
use rowtrail_sql::{Column, Table};

use crate::as_of::AsOf;
use crate::StandbyError;

/// The baselines of the tables `names` (as named at the source, schema-qualified or not) out
/// of `baselines`; a name the archive holds no baseline of, or none as old as `as_of`, is
/// refused with the names it does hold.
pub(crate) fn only(
    archive: &Archive,
    incarnation: &str,
    baselines: Vec<BaselineTable>,
    names: &[String],
    as_of: Option<&AsOf>,
) -> Result<Vec<BaselineTable>, StandbyError> {
    let named = |t: &Table, n: &str| t.name.to_string() == n || t.name.name.as_str() == n;
    for n in names {
        if baselines.iter().any(|b| named(&b.table, n)) {
            continue;
        }
        let mut known: Vec<String> = archive
            .baseline_tables(incarnation)?
            .iter()
            .map(|b| b.table.name.to_string())
            .collect();
        known.sort();
        known.dedup();
        return Err(StandbyError::Refused(if known.contains(n) {
            format!(
                "table {n} has no baseline taken at or before {}: the archive cannot rebuild \
                 it as of then",
                as_of.map_or("now".to_string(), ToString::to_string)
            )
        } else {
            format!(
                "table {n:?} has no baseline in the archive for source {incarnation}; the \
                 tables it holds: {}",
                known.join(", ")
            )
        }));
    }
    Ok(baselines
        .into_iter()
        .filter(|b| names.iter().any(|n| named(&b.table, n)))
        .collect())
}

/// The table as the replica holds it: every column plain and writable, so applying a change
/// writes every value the source captured (generated and server-assigned values included).
pub(crate) fn replica_form(t: &Table) -> Table {
    Table {
        name: rowtrail_sql::TableName::bare(t.name.name.clone()),
        columns: t
            .columns
            .iter()
            .map(|c| Column {
                computed: false,
                identity: false,
                rowversion: false,
                generated: false,
                sparse: false,
                ..c.clone()
            })
            .collect(),
        primary_key: t.primary_key.clone(),
        unique_keys: Vec::new(),
        rowid: t.rowid,
    }
}

/// `CREATE TABLE` for `t`'s replica form. Declared types are kept on SQLite sources (so values
/// take the same affinity); a SQL Server type means nothing to SQLite and is left out, which
/// keeps every value's storage class as the archive holds it.
pub(crate) fn create_sql(t: &Table, sqlite_source: bool) -> String {
    let mut parts: Vec<String> = t
        .columns
        .iter()
        .map(|c| {
            let ty = if sqlite_source { c.sql_type.trim() } else { "" };
            let mut s = c.name.sqlite().to_string();
            if !ty.is_empty() {
                s.push(' ');
                s.push_str(ty);
            }
            s
        })
        .collect();
    if !t.primary_key.is_empty() {
        let key: Vec<String> = t
            .primary_key
            .iter()
            .map(|&i| t.columns[i].name.sqlite().to_string())
            .collect();
        parts.push(format!("PRIMARY KEY ({})", key.join(", ")));
    }
    format!(
        "CREATE TABLE {} ({}){}",
        t.name.name.sqlite(),
        parts.join(", "),
        if t.rowid { "" } else { " WITHOUT ROWID" }
    )
}

/// Whether `a` and `b` describe the same table to a replica: the same name, the same column
/// names in the same order, the same primary key and rowid. A copy that took over declares its
/// columns more plainly than the source did (no constraints beyond the key); its captured
/// definitions have the shape of the source's.
pub(crate) fn same_shape(a: &Table, b: &Table) -> bool {
    a.name.name == b.name.name
        && a.primary_key == b.primary_key
        && a.rowid == b.rowid
        && a.columns.len() == b.columns.len()
        && a.columns
            .iter()
            .zip(&b.columns)
            .all(|(x, y)| x.name == y.name)
}
