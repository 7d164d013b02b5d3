//! Whole undo scripts: the steps in order, as one transaction a DBA can run by hand.

use std::fmt::Write;

use super::{render, Step, Values};
use crate::{Dialect, SqlError};

/// How a script treats a step whose guard does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnConflict {
    /// Stop, and roll everything back.
    Stop,
    /// Leave that row alone and go on.
    Skip,
    /// Make the row equal the target anyway.
    Force,
}

/// One step of a script, with the comment that says what it undoes.
#[derive(Debug, Clone, Copy)]
pub struct ScriptStep<'a> {
    /// One line (no line breaks) describing the step.
    pub comment: &'a str,
    /// The step.
    pub step: Step<'a>,
}

/// The whole script for `steps`, in order, as one transaction, runnable by hand (`sqlite3
/// -bail source.db < undo.sql`, or `sqlcmd -b`). SQLite scripts check foreign keys once at the
/// end (no new violations may appear), so the order of rows within the script does not matter
/// to them; SQL Server scripts rely on the steps being in an order its foreign keys accept.
pub fn script(
    header: &str,
    steps: &[ScriptStep<'_>],
    on_conflict: OnConflict,
    dialect: Dialect,
) -> Result<String, SqlError> {
    let mut s = String::new();
    for line in header.lines() {
        let _ = writeln!(s, "-- {}", line.replace(|c: char| c.is_control(), "?"));
    }
    let steps_table = "temp.\"rowtrail_undo_steps\"";
    match dialect {
        Dialect::Sqlite => {
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
        }
        Dialect::Mssql => s.push_str("SET XACT_ABORT ON;\nBEGIN TRANSACTION;\nDECLARE @n int;\n"),
    }
    for (i, st) in steps.iter().enumerate() {
        let n = i + 1;
        let _ = writeln!(
            s,
            "\n-- step {n}: {}",
            st.comment.replace(|c: char| c.is_control(), "?")
        );
        let only_if = format!("(SELECT \"n\" FROM {steps_table} WHERE \"step\" = {n}) = 0");
        let only_if = (dialect == Dialect::Sqlite).then_some(only_if.as_str());
        let r = render(&st.step, dialect, Values::Inline, only_if)?;
        let _ = writeln!(s, "{};", r.guarded.sql);
        match dialect {
            Dialect::Sqlite => {
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
            Dialect::Mssql => {
                s.push_str("SET @n = @@ROWCOUNT;\n");
                match on_conflict {
                    OnConflict::Stop => {
                        let _ = writeln!(
                            s,
                            "IF @n <> 1 THROW 50003, N'rowtrail undo: step {n} conflicts: the row no longer equals its archived image, or its key is taken', 1;"
                        );
                    }
                    OnConflict::Skip => {}
                    OnConflict::Force => {
                        s.push_str("IF @n = 0\nBEGIN\n");
                        for f in &r.forced {
                            let _ = writeln!(s, "    {};", f.sql);
                        }
                        s.push_str("END;\n");
                    }
                }
            }
        }
    }
    match dialect {
        Dialect::Sqlite => s.push_str(
            "\nUPDATE temp.\"rowtrail_undo_fk\" SET \"after\" = (SELECT count(*) FROM pragma_foreign_key_check);\n\
             DROP TABLE temp.\"rowtrail_undo_steps\";\nDROP TABLE temp.\"rowtrail_undo_fk\";\nCOMMIT;\n",
        ),
        Dialect::Mssql => s.push_str("\nCOMMIT TRANSACTION;\n"),
    }
    Ok(s)
}
