//! Fencing a SQLite primary that another copy took over from: a `BEFORE` trigger for each of
//! insert, update and delete on every captured table that aborts the statement with a message
//! naming the takeover, so no write lands there (captured or not) while another copy is the
//! primary. Reads go on. Handback removes the fence.
//!
//! The triggers are named after the table like capture's own (`rowtrail_fi_…`, `rowtrail_fu_…`,
//! `rowtrail_fd_…`), so a fence on a table with any name is found and removed again.

use super::comment_name;
use crate::staging::derived_name;
use crate::Table;

/// The fence triggers' names for `t`: insert, update, delete.
fn names(t: &Table) -> [crate::Ident; 3] {
    ["fi", "fu", "fd"].map(|role| derived_name(&t.name, role))
}

/// A string literal for SQLite (single quotes doubled).
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Statements that fence `tables`, every write aborting with `message`. Idempotent; no
/// `BEGIN`/`COMMIT` (the caller's transaction holds them).
pub fn fence_script(tables: &[Table], message: &str) -> String {
    let mut s = String::new();
    for t in tables {
        s.push_str(&format!("-- fence {}\n", comment_name(&t.name.to_string())));
        for (name, op) in names(t).iter().zip(["INSERT", "UPDATE", "DELETE"]) {
            s.push_str(&format!(
                "DROP TRIGGER IF EXISTS {name};\nCREATE TRIGGER {name} BEFORE {op} ON {table} \
                 BEGIN SELECT RAISE(ABORT, {msg}); END;\n",
                name = name.sqlite(),
                table = t.name.name.sqlite(),
                msg = quoted(message),
            ));
        }
    }
    s
}

/// Statements that remove the fence from `tables` (harmless where there is none).
pub fn unfence_script(tables: &[Table]) -> String {
    tables
        .iter()
        .flat_map(names)
        .map(|name| format!("DROP TRIGGER IF EXISTS {};\n", name.sqlite()))
        .collect()
}

/// Whether `trigger` is a fence trigger's name.
pub fn is_fence_trigger(trigger: &str) -> bool {
    ["rowtrail_fi_", "rowtrail_fu_", "rowtrail_fd_"]
        .iter()
        .any(|p| trigger.starts_with(p))
}
