//! Upgrading capture of one SQLite table after its schema changed: statements to run inside a
//! transaction the caller holds (a schema change and its upgrade commit together or not at all).
//!
//! The staging table is dropped and made again for the new definition, so the caller must have
//! archived (and deleted) every image staged under the old one first.

use super::{comment_name, ident, objects, table_objects, CaptureNames};
use crate::literal::Literal;
use crate::{SqlError, Table};

/// `DROP TRIGGER` for each capture trigger of `t` (a table whose columns are about to change in
/// a way its triggers would refuse, as `ALTER TABLE … DROP COLUMN` does).
pub fn drop_triggers(t: &Table) -> String {
    CaptureNames::for_table(t)
        .triggers
        .iter()
        .map(|trig| format!("DROP TRIGGER IF EXISTS {};\n", trig.sqlite()))
        .collect()
}

/// Statements that move capture of `old` (the definition the registry records) to `new`, the
/// table's definition now (under the same name, or another one after a rename), or remove it
/// when `new` is `None` (the table was dropped). No `BEGIN`/`COMMIT`: the caller's transaction
/// holds them.
pub fn table_upgrade(old: &Table, new: Option<&Table>) -> Result<String, SqlError> {
    if let Some(new) = new {
        super::capturable(new)?;
    }
    let names = CaptureNames::for_table(old);
    let mut s = format!(
        "-- upgrade capture of {}\n",
        comment_name(&old.name.to_string())
    );
    s.push_str(&drop_triggers(old));
    s.push_str(&format!(
        "DROP TABLE IF EXISTS {};\nDROP TABLE IF EXISTS {};\n",
        names.staging.sqlite(),
        names.pending.sqlite()
    ));
    s.push_str(&format!(
        "DELETE FROM {} WHERE \"staging_name\" = {};\n",
        ident(objects::REGISTRY).sqlite(),
        Literal::sqlite(names.staging.as_str())
    ));
    if let Some(new) = new {
        s.push_str(&table_objects(new)?);
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Column, Ident, TableName};

    fn table(name: &str, cols: &[&str]) -> Table {
        Table {
            name: TableName::bare(Ident::new(name).unwrap()),
            columns: cols
                .iter()
                .map(|c| Column::new(Ident::new(*c).unwrap(), "TEXT", true))
                .collect(),
            primary_key: vec![],
            unique_keys: vec![],
            rowid: true,
        }
    }

    #[test]
    fn an_upgrade_replaces_every_object_and_stays_inside_the_callers_transaction() {
        let old = table("t", &["a"]);
        let new = table("u", &["a", "b"]);
        let s = table_upgrade(&old, Some(&new)).unwrap();
        let old_names = CaptureNames::for_table(&old);
        let new_names = CaptureNames::for_table(&new);
        for trig in &old_names.triggers {
            assert!(s.contains(&format!("DROP TRIGGER IF EXISTS {}", trig.sqlite())));
        }
        assert!(s.contains(&format!(
            "DROP TABLE IF EXISTS {}",
            old_names.staging.sqlite()
        )));
        assert!(s.contains(&format!(
            "CREATE TABLE IF NOT EXISTS {}",
            new_names.staging.sqlite()
        )));
        assert!(s.contains(&format!(
            "CREATE TRIGGER {}",
            new_names.triggers[2].sqlite()
        )));
        assert!(
            !s.contains("BEGIN IMMEDIATE") && !s.contains("COMMIT"),
            "{s}"
        );
        let dropped = table_upgrade(&old, None).unwrap();
        assert!(!dropped.contains("CREATE"), "{dropped}");
    }
}
