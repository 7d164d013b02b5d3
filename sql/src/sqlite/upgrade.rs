//! Upgrading capture of one SQLite table after its schema changed: statements to run inside a
//! transaction the caller holds (a schema change and its upgrade commit together or not at all).
//!
//! The table's triggers and pending table are made again for the new definition, so the caller
//! must have archived (and deleted) every image staged under the old one first.
//!
//! Also here: [`from_format_1`], the migration of an install of staging format 1 (a staging
//! table per captured table and a counter row) to the shared staging table.

use super::{
    comment_name, ident, objects, staging_table, table_id, table_objects, value_column,
    CaptureNames, COL_TABLE, FORMAT, OP_HIGH_WATER,
};
use crate::literal::Literal;
use crate::staging;
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
        "DROP TABLE IF EXISTS {};\n",
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

/// The migration of an install of staging format 1 whose registry holds `tables` to this
/// generator's format, without `BEGIN`/`COMMIT` (the caller's write transaction holds it):
///
/// * the registry gains each table's id, and the shared staging table is made, as wide as the
///   widest table;
/// * every image waiting in a table's own staging table moves into it under its own seq, and
///   the old staging table is dropped, so the reader goes on in seq order where it stopped;
/// * the counter's value becomes the high-water mark (when it is above every waiting image), so
///   seqs go on above every seq taken before, and the counter is dropped;
/// * every table's triggers are made again, and the format recorded is this one.
pub fn from_format_1(tables: &[Table]) -> Result<String, SqlError> {
    let reg = ident(objects::REGISTRY);
    let shared = ident(objects::STAGING);
    let seq = ident(staging::COL_SEQ);
    let width = tables.iter().map(|t| t.columns.len()).max().unwrap_or(0);
    let mut s = String::from("-- migrate capture from staging format 1\n");
    s.push_str(&format!(
        "ALTER TABLE {reg} ADD COLUMN \"table_id\" INTEGER;\n",
        reg = reg.sqlite()
    ));
    s.push_str(&staging_table(width));
    for t in tables {
        let names = CaptureNames::for_table(t);
        s.push_str(&format!(
            "UPDATE {reg} SET \"table_id\" = {id} WHERE \"staging_name\" = {name};\n",
            reg = reg.sqlite(),
            id = table_id(&t.name),
            name = Literal::sqlite(names.staging.as_str()),
        ));
        let mut to: Vec<String> = staging::METADATA_COLUMNS
            .iter()
            .map(|c| ident(c).sqlite().to_string())
            .collect();
        let mut from = to.clone();
        to.push(ident(COL_TABLE).sqlite().to_string());
        from.push(table_id(&t.name).to_string());
        if t.rowid {
            to.push(ident(staging::COL_ROWID).sqlite().to_string());
            from.push(ident(staging::COL_ROWID).sqlite().to_string());
        }
        for (i, c) in t.columns.iter().enumerate() {
            to.push(value_column(i + 1).sqlite().to_string());
            from.push(c.name.sqlite().to_string());
        }
        s.push_str(&format!(
            "INSERT INTO {shared} ({}) SELECT {} FROM {old};\nDROP TABLE {old};\nDROP TABLE IF EXISTS {pending};\n",
            to.join(", "),
            from.join(", "),
            shared = shared.sqlite(),
            old = names.staging.sqlite(),
            pending = names.pending.sqlite(),
        ));
    }
    s.push_str(&format!(
        "CREATE UNIQUE INDEX IF NOT EXISTS {idx} ON {reg} (\"table_id\");\n\
         INSERT INTO {shared} ({seq}, {op}) SELECT \"value\", '{OP_HIGH_WATER}' FROM {counter}\n  \
         WHERE \"id\" = 1 AND \"value\" > coalesce((SELECT max({seq}) FROM {shared}), 0);\n\
         DROP TABLE {counter};\n",
        idx = ident(super::REGISTRY_ID_INDEX).sqlite(),
        reg = reg.sqlite(),
        shared = shared.sqlite(),
        seq = seq.sqlite(),
        op = ident(staging::COL_OP).sqlite(),
        counter = ident(objects::SEQUENCE).sqlite(),
    ));
    for t in tables {
        s.push_str(&table_objects(t)?);
    }
    s.push_str(&format!(
        "UPDATE {meta} SET \"value\" = '{FORMAT}' WHERE \"key\" = 'format';\n",
        meta = ident(objects::META).sqlite()
    ));
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
            old_names.pending.sqlite()
        )));
        assert!(s.contains(&format!(
            "CREATE TABLE IF NOT EXISTS {}",
            new_names.pending.sqlite()
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
