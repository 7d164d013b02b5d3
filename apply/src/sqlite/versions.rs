//! Refusing steps whose recorded table definition does not match the table they would write.
//!
//! An archived change holds its row as its table was when the change was captured. Written
//! back into a table whose columns have changed since (a column added, renamed or dropped, the
//! table renamed or rebuilt), the guard could hold while the write leaves a row state that
//! never existed (a new column keeping whatever value it has now). Such a job is refused as a
//! whole, before anything is written.

use std::collections::BTreeMap;

use rowtrail_reader::sqlite::catalog::live_table;
use rowtrail_reader::sqlite::drift::compare;
use rusqlite::Connection;

use crate::{ApplyError, Job};

/// Checks every table `job` writes against the database behind `conn`.
pub(super) fn check(conn: &Connection, location: &str, job: &Job<'_>) -> Result<(), ApplyError> {
    // Per table name: the changes of each recorded definition (a job may span several).
    let mut by_table: BTreeMap<String, Vec<(&rowtrail_sql::Table, Vec<i64>)>> = BTreeMap::new();
    for s in &job.steps {
        let versions = by_table
            .entry(s.step.table.name.name.as_str().to_string())
            .or_default();
        match versions
            .iter_mut()
            .find(|(t, _)| std::ptr::eq(*t, s.step.table) || *t == s.step.table)
        {
            Some((_, ids)) => ids.push(s.id),
            None => versions.push((s.step.table, vec![s.id])),
        }
    }
    let mut refused = Vec::new();
    for (name, versions) in by_table {
        let live = live_table(conn, location, &name)?;
        for (recorded, ids) in versions {
            let why = match &live {
                None => Some(format!(
                    "table {name:?} no longer exists (was it renamed or dropped? `rowtrail sql check` says)"
                )),
                Some(live) => {
                    let d = compare(recorded, live);
                    (!d.same_columns()).then(|| {
                        format!(
                            "table {name:?} changed since they were captured: {}",
                            d.describe()
                        )
                    })
                }
            };
            if let Some(why) = why {
                refused.push(format!("change(s) {}: {why}", id_list(&ids)));
            }
        }
    }
    if refused.is_empty() {
        Ok(())
    } else {
        Err(ApplyError::TableChanged {
            what: job.what.to_string(),
            rows: refused,
        })
    }
}

/// `3, 7, 9` (the first ten, then how many more).
fn id_list(ids: &[i64]) -> String {
    let mut s: Vec<String> = ids.iter().take(10).map(i64::to_string).collect();
    if ids.len() > 10 {
        s.push(format!("and {} more", ids.len() - 10));
    }
    s.join(", ")
}
