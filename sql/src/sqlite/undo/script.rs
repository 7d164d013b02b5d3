//! Whole undo scripts: the steps in order, as one transaction a DBA can run by hand.

use std::fmt::Write;

use super::{render, OnConflict, ScriptStep, Values};
use crate::SqlError;

/// The whole script for `steps`, in order, as one transaction, runnable by hand (`sqlite3
/// -bail source.db < undo.sql`). Foreign keys are checked once at the end (no new violations
/// may appear), so the order of rows within the script does not matter to them.
pub fn script(
    header: &str,
    steps: &[ScriptStep<'_>],
    on_conflict: OnConflict,
) -> Result<String, SqlError> {
    let mut s = String::new();
    for line in header.lines() {
        let _ = writeln!(s, "-- {}", line.replace(|c: char| c.is_control(), "?"));
    }
    let steps_table = "temp.\"rowtrail_undo_steps\"";
    let check = if on_conflict == OnConflict::Stop {
        " CONSTRAINT \"rowtrail undo: a row no longer equals its archived image, or its key is taken (a later change conflicts)\" CHECK (\"n\" = 1)"
    } else {
        ""
    };
    let _ = write!(
        s,
        "PRAGMA foreign_keys = OFF;\nBEGIN IMMEDIATE;\n\
         CREATE TEMP TABLE \"rowtrail_undo_steps\" (\"step\" INTEGER PRIMARY KEY, \"n\" INTEGER NOT NULL{check});\n\
         CREATE TEMP TABLE \"rowtrail_undo_fk\" (\"before\" INTEGER NOT NULL, \"after\" INTEGER, \
         CONSTRAINT \"rowtrail undo: a row would lose its parent (foreign key)\" CHECK (\"after\" IS NULL OR \"after\" <= \"before\"));\n\
         INSERT INTO temp.\"rowtrail_undo_fk\" (\"before\") SELECT count(*) FROM pragma_foreign_key_check;\n"
    );
    for (i, st) in steps.iter().enumerate() {
        let n = i + 1;
        let _ = writeln!(
            s,
            "\n-- step {n}: {}",
            st.comment.replace(|c: char| c.is_control(), "?")
        );
        let only_if = format!("(SELECT \"n\" FROM {steps_table} WHERE \"step\" = {n}) = 0");
        let r = render(&st.step, Values::Inline, Some(&only_if))?;
        let _ = writeln!(s, "{};", r.guarded.sql);
        let _ = writeln!(
            s,
            "INSERT INTO {steps_table} (\"step\", \"n\") VALUES ({n}, changes());"
        );
        if on_conflict == OnConflict::Force {
            for f in &r.forced {
                let _ = writeln!(s, "{};", f.sql);
            }
        }
    }
    s.push_str(
        "\nUPDATE temp.\"rowtrail_undo_fk\" SET \"after\" = (SELECT count(*) FROM pragma_foreign_key_check);\n\
         DROP TABLE temp.\"rowtrail_undo_steps\";\nDROP TABLE temp.\"rowtrail_undo_fk\";\nCOMMIT;\n",
    );
    Ok(s)
}
