//! One row's history: every change to it, oldest first, following key changes.

use rowtrail_reader::archive::{Archive, ArchivedChange, ChangeQuery};
use rowtrail_sql::{Table, TableName, Value};

use crate::RestoreError;

/// One column that differs between the before- and after-image.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnChange {
    /// The column.
    pub column: String,
    /// Its value before (None for an insert).
    pub before: Option<Value>,
    /// Its value after (None for a delete).
    pub after: Option<Value>,
}

/// The columns a change touched (all of them for inserts and deletes, unless `all` is false
/// and the value is NULL); with `all`, unchanged columns too.
pub fn changed_columns(change: &ArchivedChange, all: bool) -> Vec<ColumnChange> {
    let cols = &change.table.columns;
    (0..cols.len())
        .filter_map(|i| {
            let before = change.before.as_ref().map(|b| b[i].clone());
            let after = change.after.as_ref().map(|a| a[i].clone());
            let differs = match (&before, &after) {
                (Some(b), Some(a)) => !b.same(a),
                _ => true,
            };
            (all || differs).then(|| ColumnChange {
                column: cols[i].name.to_string(),
                before,
                after,
            })
        })
        .collect()
}

/// The latest definition the archive holds for `table`.
pub fn latest_definition(archive: &Archive, table: &TableName) -> Result<Table, RestoreError> {
    match archive.latest_definition(table)? {
        Some(t) => Ok(t),
        None => {
            let names = archive.table_names()?;
            let asked = table.to_string();
            let hint = if names.is_empty() {
                " (the archive is empty)".to_string()
            } else if let Some(n) = names.iter().find(|n| n.eq_ignore_ascii_case(&asked)) {
                format!("; names are matched exactly: did you mean {n}?")
            } else {
                format!("; tables with history: {}", names.join(", "))
            };
            Err(RestoreError::UnknownTable {
                table: table.to_string(),
                hint,
            })
        }
    }
}

/// How a key given as text is read for a column with the declared type `ty` (SQLite affinity
/// rules), with plain text as the fallback.
fn key_candidates(text: &str, ty: &str) -> Vec<Value> {
    let t = ty.to_ascii_uppercase();
    let mut out = Vec::new();
    // As SQLite's INTEGER and NUMERIC affinities store it: `1.0` and `1e0` become the integer 1.
    let integral = || {
        text.parse::<i64>().ok().or_else(|| {
            let f = text.trim().parse::<f64>().ok()?;
            (f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
        })
    };
    if t.contains("INT") {
        if let Some(i) = integral() {
            out.push(Value::Integer(i));
        }
    } else if !(t.contains("CHAR")
        || t.contains("CLOB")
        || t.contains("TEXT")
        || t.contains("BLOB"))
    {
        if let Some(i) = integral() {
            out.push(Value::Integer(i));
        } else if let Ok(f) = text.parse::<f64>() {
            out.push(Value::Real(f));
        }
    }
    out.push(Value::text(text));
    out
}

/// Every change to the row of `table` whose key is `key` (one text per key column; the rowid
/// for a rowid table without a primary key), oldest first.
pub fn row_history(
    archive: &Archive,
    table: &TableName,
    key: &[String],
) -> Result<Vec<ArchivedChange>, RestoreError> {
    let def = latest_definition(archive, table)?;
    let types: Vec<String> = match def.key() {
        Some(k) => k.iter().map(|&i| def.columns[i].sql_type.clone()).collect(),
        None if def.rowid => vec!["INTEGER".into()],
        None => {
            return Err(RestoreError::BadKey(format!(
                "table {table} has no primary key and no rowid; find its changes with `rowtrail audit --table`"
            )))
        }
    };
    if key.len() != types.len() {
        let names: Vec<String> = match def.key() {
            Some(k) => k.iter().map(|&i| def.columns[i].name.to_string()).collect(),
            None => vec!["rowid".into()],
        };
        return Err(RestoreError::BadKey(format!(
            "table {table} is keyed by {} column(s) ({}); give one --key per column, in that order",
            names.len(),
            names.join(", ")
        )));
    }
    // Every combination of readings of the key parts (integer, real, text).
    let mut combos: Vec<Vec<Value>> = vec![Vec::new()];
    for (text, ty) in key.iter().zip(&types) {
        let options = key_candidates(text, ty);
        combos = combos
            .into_iter()
            .flat_map(|c| {
                options.iter().map(move |o| {
                    let mut c = c.clone();
                    c.push(o.clone());
                    c
                })
            })
            .collect();
    }
    let mut out: Vec<ArchivedChange> = Vec::new();
    for combo in combos {
        out.extend(follow_key(archive, table, combo, i64::MAX)?);
    }
    out.sort_by_key(|c| c.id);
    out.dedup_by_key(|c| c.id);
    Ok(out)
}

/// The key of an image (the primary key's values, or the rowid for keyless rowid tables).
fn image_key(c: &ArchivedChange, image: &[Value]) -> Vec<Value> {
    match c.table.key() {
        Some(k) => k.iter().map(|&i| image[i].clone()).collect(),
        None => c.rowid.map(Value::Integer).into_iter().collect(),
    }
}

/// Changes to the row keyed `key` before archive id `before_id`, following key changes back to
/// the row's earlier keys (a key re-used by another row after the change is not followed).
fn follow_key(
    archive: &Archive,
    table: &TableName,
    key: Vec<Value>,
    before_id: i64,
) -> Result<Vec<ArchivedChange>, RestoreError> {
    let mut out = Vec::new();
    let mut pending = vec![(key, before_id)];
    let mut seen = std::collections::HashSet::new();
    while let Some((key, limit)) = pending.pop() {
        let found = changes_of_row(archive, table, &key)?;
        for c in found.into_iter().filter(|c| c.id < limit) {
            if let (Some(b), Some(_)) = (&c.before, &c.after) {
                let old = image_key(&c, b);
                let new_key = c
                    .after
                    .as_ref()
                    .map(|a| image_key(&c, a))
                    .unwrap_or_default();
                let same = |a: &[Value], b: &[Value]| {
                    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same(y))
                };
                // Arrived at this row from its old key: look further back under the old key.
                if !same(&old, &new_key) && same(&new_key, &key) {
                    pending.push((old, c.id));
                }
            }
            if seen.insert(c.id) {
                out.push(c);
            }
        }
    }
    Ok(out)
}

/// Every change to the row of `table` keyed `key` (under that key, before or after), oldest
/// first, in one query answered from the two row indexes (`changes_by_row`,
/// `changes_by_prev_row`), so the cost follows the row's history, not the archive's size.
fn changes_of_row(
    archive: &Archive,
    table: &TableName,
    key: &[Value],
) -> Result<Vec<ArchivedChange>, RestoreError> {
    Ok(archive.changes(&ChangeQuery {
        table: Some(table.clone()),
        row_key: Some(rowtrail_sql::key::encode_key(key)),
        ..ChangeQuery::default()
    })?)
}
