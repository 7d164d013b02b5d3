//! The upgrade script: a captured table gained, lost or changed columns.
//!
//! Runs in one transaction. Dropping the old trigger takes a schema-modification lock on the
//! source table, so from then until commit no statement can write it (and no staging row for it
//! can appear); every writer before has committed. Then:
//!
//! * added columns are added to staging (NULL in rows staged before);
//! * dropped columns stay in staging, so rows staged before keep their values (NULL in later
//!   rows); reinstall the table to drop them;
//! * columns whose type, collation or sparseness changed are altered in staging; a widening
//!   (a longer string, a wider integer, more decimal digits) keeps every staged value and runs
//!   whatever staging holds, any other change only when staging holds no rows (otherwise the
//!   script stops: drain with `rowtrail read` and run it again), since converting staged values
//!   could change them;
//! * the column snapshot the DDL guard compares with is taken anew (see [`super::ddl_guard`]);
//! * the registry gets the new definition and `rowtrail_versions` a row with the sequence value
//!   at the switch: a staged row belongs to the latest version whose `first_seq` is below its seq;
//! * the trigger is created anew and set to fire first.

use super::install::{next_seq, push_trigger, registry_where, throw};
use super::{header, name_literal, objects, shared, transactional, Captured, Options, Script};
use crate::literal::Literal;
use crate::{SqlError, Table};

/// The upgrade script for the table whose definition was `old` and is now `new`.
pub fn script(old: &Table, new: &Table, options: &Options) -> Result<Script, SqlError> {
    let old = Captured::new(old)?;
    let new = Captured::new(new)?;
    if old.table.name != new.table.name {
        return Err(SqlError::Uncapturable {
            table: new.table.name.to_string(),
            reason: format!(
                "an upgrade is for one table, but the old definition is of {}",
                old.table.name
            ),
        });
    }
    let mut added = Vec::new();
    let mut changed = Vec::new();
    let mut dropped = Vec::new();
    for (i, c) in new.table.columns.iter().enumerate() {
        match old.table.columns.iter().position(|o| o.name == c.name) {
            None => added.push(i),
            Some(j) => {
                let o = &old.table.columns[j];
                if old.staging_types[j] != new.staging_types[i]
                    || o.collation != c.collation
                    || o.sparse != c.sparse
                {
                    changed.push((j, i));
                }
            }
        }
    }
    for c in &old.table.columns {
        if !new.table.columns.iter().any(|n| n.name == c.name) {
            dropped.push(c.name.to_string());
        }
    }
    let mut h = header("upgrade", std::slice::from_ref(&new), options);
    h.push(format!(
        "Columns added: {}; changed: {}; dropped (kept in staging): {}.",
        added.len(),
        changed.len(),
        dropped.len()
    ));
    h.push(
        "Replaces the capture trigger; keeps every staged row. Stops, changing nothing, if a"
            .into(),
    );
    h.push(
        "column's type changed while staging holds rows: run `rowtrail read`, then run again."
            .into(),
    );
    let mut s = Script::new("upgrade", h);
    let reg = shared(objects::REGISTRY);
    let stg = new.staging_name();
    let old_def = Literal::mssql(&old.table.to_json()).to_string();
    let new_def = Literal::mssql(&new.table.to_json()).to_string();
    let w = registry_where(&new);
    let mut body = format!(
        "IF OBJECT_ID({src}, N'U') IS NULL\n    {missing}\n\
         IF NOT EXISTS (SELECT 1 FROM {reg} WHERE {w} AND [definition] IN ({old_def}, {new_def}))\n    {unknown}\n\
         IF OBJECT_ID({trl}, N'TR') IS NOT NULL\n    DROP TRIGGER {trig};\n\
         IF EXISTS (SELECT 1 FROM {reg} WHERE {w} AND [definition] = {old_def})\nBEGIN\n",
        src = name_literal(&new.source()),
        missing = throw(&format!("table {} does not exist in this database", new.source())),
        unknown = throw(&format!(
            "the registry holds neither the old nor the new definition of {}; generate the upgrade \
             from the definition that was installed",
            new.source()
        )),
        trl = name_literal(&new.trigger_name()),
        trig = new.trigger_name(),
    );
    // Widening (a longer varchar, int to bigint) keeps every staged value as it is, so it may
    // alter staging that holds rows; any other change waits for staging to drain.
    let widening_only = changed.iter().all(|&(j, i)| {
        let parse = |t: &str| super::types::MssqlType::parse(t).ok();
        match (parse(&old.staging_types[j]), parse(&new.staging_types[i])) {
            (Some(a), Some(b)) => {
                a.widens_to(&b)
                    && old.table.columns[j].collation == new.table.columns[i].collation
                    && old.table.columns[j].sparse == new.table.columns[i].sparse
            }
            _ => false,
        }
    });
    if !changed.is_empty() && !widening_only {
        body.push_str(&format!(
            "    IF EXISTS (SELECT 1 FROM {stg})\n        {}\n",
            throw(&format!(
                "staging for {} holds rows and a column's type changed; run `rowtrail read` to \
                 drain it, then run this script again",
                new.source()
            ))
        ));
    }
    if !changed.is_empty() {
        for &(j, i) in &changed {
            let name = new.table.columns[i].name.mssql();
            let def = new.staging_column(i);
            if old.table.columns[j].sparse {
                body.push_str(&format!(
                    "    ALTER TABLE {stg} ALTER COLUMN {name} DROP SPARSE;\n"
                ));
            }
            let plain = def.replace(" SPARSE NULL", " NULL");
            body.push_str(&format!("    ALTER TABLE {stg} ALTER COLUMN {plain};\n"));
            if new.table.columns[i].sparse {
                body.push_str(&format!(
                    "    ALTER TABLE {stg} ALTER COLUMN {name} ADD SPARSE;\n"
                ));
            }
        }
    }
    for &i in &added {
        body.push_str(&format!(
            "    IF COL_LENGTH({}, {}) IS NULL\n        ALTER TABLE {stg} ADD {};\n",
            name_literal(&stg),
            Literal::mssql(new.table.columns[i].name.as_str()),
            new.staging_column(i),
        ));
    }
    body.push_str(&format!(
        "    UPDATE {reg} SET [definition] = {new_def} WHERE {w};\n    \
         INSERT INTO {ver} ([table_schema], [table_name], [first_seq], [definition])\n        \
         VALUES ({sch}, {tab}, {cur}, {new_def});\nEND;",
        ver = shared(objects::VERSIONS),
        sch = Literal::mssql(new.schema().as_str()),
        tab = Literal::mssql(new.table.name.name.as_str()),
        cur = next_seq(),
    ));
    s.push(body);
    push_trigger(&mut s, &new, options.target);
    Ok(transactional(s, "upgrade complete"))
}
