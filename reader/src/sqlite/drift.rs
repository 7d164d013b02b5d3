//! Schema drift on a SQLite source: where a captured table no longer matches what its capture
//! was made for, and the tables capture does not cover.
//!
//! SQLite fires no trigger on DDL, so drift is found by comparing the registry's definitions
//! with the catalog: `ALTER TABLE … ADD COLUMN` (the new column's values are not captured),
//! `RENAME COLUMN` (SQLite rewrites the triggers, so the values are captured under the old
//! name), `RENAME TO` (the triggers follow the table, which the registry still knows by its old
//! name), `DROP TABLE` (the triggers go with it), a table rebuilt by create, copy, drop and
//! rename (its triggers are gone), and tables created after the install. [`observe`] reads it
//! all in one snapshot; the reader follows what it can (`follow.rs`), `rowtrail sql check`
//! reports it, and the heartbeat raises it.

use rowtrail_sql::sqlite::CaptureNames;
use rowtrail_sql::Table;
use rusqlite::Connection;

use super::catalog::{read_table, registry, survey};
use super::connection::err;
use crate::source::CapturedTable;
use crate::ReaderError;

/// How a captured table's columns or keys differ from what its capture was made for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColumnDrift {
    /// Columns added (their values are not captured).
    pub added: Vec<String>,
    /// Columns renamed, `(old, new)` (their values are captured under the old name).
    pub renamed: Vec<(String, String)>,
    /// Anything else that changed, in words (a type, the primary key, a column dropped).
    pub other: Vec<String>,
    /// Whether the unique keys (other than the primary key) changed.
    pub unique_keys_changed: bool,
}

impl ColumnDrift {
    /// Whether nothing differs.
    pub fn is_empty(&self) -> bool {
        self.same_columns() && !self.unique_keys_changed
    }

    /// Whether the columns (names, types, order), the rowid and the primary key are the same:
    /// rows written for one definition fit the other.
    pub fn same_columns(&self) -> bool {
        self.added.is_empty() && self.renamed.is_empty() && self.other.is_empty()
    }

    /// What differs, in words.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.added.is_empty() {
            parts.push(format!(
                "column(s) {} added, whose values are not captured",
                quoted_list(&self.added)
            ));
        }
        for (from, to) in &self.renamed {
            parts.push(format!(
                "column {from:?} renamed to {to:?}, whose values are captured under the old name"
            ));
        }
        parts.extend(self.other.iter().cloned());
        if self.unique_keys_changed {
            parts.push("its unique keys changed".into());
        }
        parts.join("; ")
    }
}

fn quoted_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One way the source's schema and its capture disagree.
#[derive(Debug, Clone, PartialEq)]
pub enum Drift {
    /// A captured table's columns or keys changed.
    Columns {
        /// The captured table, as the registry records it.
        captured: CapturedTable,
        /// Its definition now.
        live: Table,
        /// What changed.
        drift: ColumnDrift,
    },
    /// A captured table's capture triggers are missing (it was rebuilt by create, copy, drop
    /// and rename, or they were dropped): its changes are not captured.
    TriggersMissing {
        /// The captured table.
        captured: CapturedTable,
        /// Its definition now.
        live: Table,
        /// The missing triggers.
        missing: Vec<String>,
    },
    /// A captured table was renamed; its triggers followed it, so its changes are captured
    /// still, but archived under the old name.
    Renamed {
        /// The captured table, under its old name.
        captured: CapturedTable,
        /// Its definition now, under its new name.
        live: Table,
        /// What else changed.
        drift: ColumnDrift,
    },
    /// A captured table was dropped: its rows went without a record of each.
    Dropped {
        /// The captured table.
        captured: CapturedTable,
    },
    /// A captured table changed so that capture cannot cover it any more (a column named like
    /// rowtrail's own was added, say): its capture is left as it was.
    NoLongerCapturable {
        /// The captured table.
        captured: CapturedTable,
        /// Why.
        reason: String,
    },
    /// A table capture does not cover (created after the install, or left out then).
    NotCaptured {
        /// The table's definition, when capture could cover it.
        table: Option<Table>,
        /// Its name.
        name: String,
        /// Why capture cannot cover it, when it cannot.
        refused: Option<String>,
    },
}

impl Drift {
    /// The table it is about, by the name the registry knows (or its own, for one not captured).
    pub fn table(&self) -> String {
        match self {
            Drift::Columns { captured, .. }
            | Drift::TriggersMissing { captured, .. }
            | Drift::Renamed { captured, .. }
            | Drift::Dropped { captured }
            | Drift::NoLongerCapturable { captured, .. } => captured.table.name.to_string(),
            Drift::NotCaptured { name, .. } => name.clone(),
        }
    }

    /// What is wrong, in words naming the table and the columns.
    pub fn problem(&self) -> String {
        match self {
            Drift::Columns { drift, .. } => format!("{:?}: {}", self.table(), drift.describe()),
            Drift::TriggersMissing { missing, .. } => format!(
                "{:?}: capture trigger(s) {} are missing, so its changes are not captured (was the table rebuilt?)",
                self.table(),
                quoted_list(missing)
            ),
            Drift::Renamed { live, drift, .. } => {
                let mut s = format!(
                    "{:?} was renamed to {:?}: its changes are still archived under the old name",
                    self.table(),
                    live.name.to_string()
                );
                if !drift.is_empty() {
                    s.push_str("; ");
                    s.push_str(&drift.describe());
                }
                s
            }
            Drift::Dropped { .. } => format!(
                "{:?} was dropped: its capture remains registered, and its rows went without a record of each",
                self.table()
            ),
            Drift::NoLongerCapturable { reason, .. } => format!(
                "{:?} changed so that capture cannot cover it any more: {reason}",
                self.table()
            ),
            Drift::NotCaptured { refused: None, .. } => {
                format!("{:?} is not captured (created after the install?)", self.table())
            }
            Drift::NotCaptured {
                refused: Some(why), ..
            } => format!("{:?} is not captured, and cannot be as it is: {why}", self.table()),
        }
    }

    /// What to run to fix it.
    pub fn fix(&self) -> String {
        match self {
            Drift::NotCaptured { refused: None, .. } => format!(
                "rowtrail sql install --table {:?} (or set source.capture_new_tables = true)",
                self.table()
            ),
            Drift::NotCaptured { .. } | Drift::NoLongerCapturable { .. } => {
                "change the table so it can be captured, then `rowtrail sql install` it; or leave it out (`rowtrail sql uninstall --table …`)".into()
            }
            _ => "rowtrail read (or a running watcher) upgrades capture: it archives what was staged, then captures the table as it is now; next time make schema changes with `rowtrail sql alter`".into(),
        }
    }

    /// Whether the reader upgrades capture for it on its own.
    pub fn followed(&self) -> bool {
        !matches!(
            self,
            Drift::NotCaptured { .. } | Drift::NoLongerCapturable { .. }
        )
    }
}

/// How `live` differs from `captured` (both under whatever names they have).
pub fn compare(captured: &Table, live: &Table) -> ColumnDrift {
    let mut d = ColumnDrift::default();
    let same_kind = |a: &rowtrail_sql::Column, b: &rowtrail_sql::Column| {
        a.sql_type.eq_ignore_ascii_case(&b.sql_type)
            && a.nullable == b.nullable
            && a.computed == b.computed
    };
    let n = captured.columns.len();
    for (i, c) in captured.columns.iter().enumerate() {
        match live.columns.get(i) {
            Some(l) if same_kind(c, l) && l.name == c.name => {}
            // SQLite adds columns at the end and keeps the others in place, and a captured
            // column cannot be dropped while its triggers name it: the same place with another
            // name is a rename.
            Some(l) if same_kind(c, l) && !captured.columns.iter().any(|o| o.name == l.name) => {
                d.renamed.push((c.name.to_string(), l.name.to_string()))
            }
            Some(l) => d.other.push(format!(
                "column {:?} ({}) is now {:?} ({})",
                c.name.as_str(),
                shown_type(&c.sql_type),
                l.name.as_str(),
                shown_type(&l.sql_type)
            )),
            None => d
                .other
                .push(format!("column {:?} was dropped", c.name.as_str())),
        }
    }
    d.added = live
        .columns
        .iter()
        .skip(n)
        .map(|c| c.name.to_string())
        .collect();
    if captured.rowid != live.rowid {
        d.other.push(if live.rowid {
            "it has a rowid now".into()
        } else {
            "it is a WITHOUT ROWID table now".into()
        });
    }
    if captured.primary_key != live.primary_key {
        d.other.push("its primary key changed".into());
    } else if captured.unique_keys != live.unique_keys {
        d.unique_keys_changed = true;
    }
    d
}

fn shown_type(t: &str) -> &str {
    if t.is_empty() {
        "no type"
    } else {
        t
    }
}

/// Every drift between the source behind `conn` (with capture installed) and its capture, read
/// in one snapshot when `conn` is in a transaction.
pub fn observe(conn: &Connection, location: &str) -> Result<Vec<Drift>, ReaderError> {
    let captured = registry(conn, location)?;
    let mut trigger_on = conn
        .prepare("SELECT tbl_name FROM sqlite_schema WHERE type = 'trigger' AND name = ?1")
        .map_err(err(location, "cannot read the schema"))?;
    let mut kind_of = conn
        .prepare("SELECT type, wr FROM pragma_table_list WHERE schema = 'main' AND name = ?1")
        .map_err(err(location, "cannot read the schema"))?;
    let mut out = Vec::new();
    let mut followed_to: Vec<String> = Vec::new();
    for c in captured {
        let names = CaptureNames::for_table(&c.table);
        let mut on: Vec<Option<String>> = Vec::new();
        for trig in &names.triggers {
            let t: Option<String> = trigger_on
                .query_row([trig.as_str()], |r| r.get(0))
                .map(Some)
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(None),
                    e => Err(e),
                })
                .map_err(err(location, "cannot read the schema"))?;
            on.push(t);
        }
        let own = c.table.name.name.as_str().to_string();
        // Where the triggers are now: a rename takes them along.
        let moved = on.iter().flatten().find(|t| **t != own).cloned();
        let mut live_of = |name: &str| -> Result<Option<Result<Table, String>>, ReaderError> {
            let found: Option<(String, bool)> = kind_of
                .query_row([name], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? != 0)))
                .map(Some)
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(None),
                    e => Err(e),
                })
                .map_err(err(location, "cannot read the schema"))?;
            match found {
                Some((kind, wr)) if kind == "table" => {
                    match read_table(conn, location, name, wr).and_then(|t| {
                        rowtrail_sql::sqlite::capturable(&t)?;
                        Ok(t)
                    }) {
                        Ok(t) => Ok(Some(Ok(t))),
                        Err(ReaderError::Sql(e)) => Ok(Some(Err(e.to_string()))),
                        Err(e) => Err(e),
                    }
                }
                _ => Ok(None),
            }
        };
        if let Some(to) = moved {
            if let Some(live) = live_of(&to)? {
                let live = match live {
                    Ok(t) => t,
                    Err(reason) => {
                        followed_to.push(to);
                        out.push(Drift::NoLongerCapturable {
                            captured: c,
                            reason,
                        });
                        continue;
                    }
                };
                let drift = compare(&c.table, &live);
                followed_to.push(to);
                out.push(Drift::Renamed {
                    captured: c,
                    live,
                    drift,
                });
                continue;
            }
        }
        let live = match live_of(&own)? {
            None => {
                out.push(Drift::Dropped { captured: c });
                continue;
            }
            Some(Err(reason)) => {
                out.push(Drift::NoLongerCapturable {
                    captured: c,
                    reason,
                });
                continue;
            }
            Some(Ok(t)) => t,
        };
        let missing: Vec<String> = names
            .triggers
            .iter()
            .zip(&on)
            .filter(|(trig, on)| on.is_none() && is_needed(trig.as_str(), &c.table))
            .map(|(trig, _)| trig.to_string())
            .collect();
        let drift = compare(&c.table, &live);
        if !missing.is_empty() {
            out.push(Drift::TriggersMissing {
                captured: c,
                live,
                missing,
            });
        } else if !drift.is_empty() {
            out.push(Drift::Columns {
                captured: c,
                live,
                drift,
            });
        }
    }
    let captured_names: Vec<String> = registry(conn, location)?
        .into_iter()
        .map(|c| c.table.name.name.to_string())
        .collect();
    let all = survey(conn, location, None)?;
    for t in all.tables {
        let name = t.name.name.to_string();
        if !captured_names.contains(&name) && !followed_to.contains(&name) {
            out.push(Drift::NotCaptured {
                name,
                table: Some(t),
                refused: None,
            });
        }
    }
    for r in all.refused {
        if !captured_names.contains(&r.table) && !followed_to.contains(&r.table) {
            out.push(Drift::NotCaptured {
                name: r.table,
                table: None,
                refused: Some(r.reason),
            });
        }
    }
    Ok(out)
}

/// Whether an install makes the trigger `name` for `t`: the BEFORE triggers exist only for a
/// table with a key a new row can collide on (always, for a table with a rowid or a key).
fn is_needed(name: &str, t: &Table) -> bool {
    let before = name.starts_with("rowtrail_bi_") || name.starts_with("rowtrail_bu_");
    !before || t.rowid || !t.primary_key.is_empty() || !t.unique_keys.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rowtrail_sql::{Column, Ident, TableName};

    fn table(cols: &[(&str, &str)]) -> Table {
        Table {
            name: TableName::bare(Ident::new("t").unwrap()),
            columns: cols
                .iter()
                .map(|(n, ty)| Column::new(Ident::new(*n).unwrap(), *ty, true))
                .collect(),
            primary_key: vec![0],
            unique_keys: vec![],
            rowid: true,
        }
    }

    #[test]
    fn added_renamed_and_changed_columns_are_told_apart() {
        let old = table(&[("id", "INTEGER"), ("a", "TEXT"), ("b", "TEXT")]);
        assert!(compare(&old, &old).is_empty());
        let added = table(&[("id", "INTEGER"), ("a", "TEXT"), ("b", "TEXT"), ("c", "")]);
        assert_eq!(compare(&old, &added).added, vec!["c".to_string()]);
        let renamed = table(&[("id", "INTEGER"), ("aa", "TEXT"), ("b", "TEXT")]);
        assert_eq!(
            compare(&old, &renamed).renamed,
            vec![("a".to_string(), "aa".to_string())]
        );
        // Two columns swapped names: not a rename of either.
        let swapped = table(&[("id", "INTEGER"), ("b", "TEXT"), ("a", "TEXT")]);
        let d = compare(&old, &swapped);
        assert!(d.renamed.is_empty() && d.other.len() == 2, "{d:?}");
        let dropped = table(&[("id", "INTEGER"), ("a", "TEXT")]);
        assert_eq!(
            compare(&old, &dropped).other,
            vec!["column \"b\" was dropped"]
        );
    }
}
