//! The DDL guard: a database trigger that refuses routine DDL which would break capture.
//!
//! The capture trigger names every column and stages each value in a column of exactly the
//! source's type. So after `ALTER TABLE … ALTER COLUMN` (a wider `varchar`, `int` to `bigint`),
//! `DROP COLUMN`, `sp_rename` or a schema transfer of a captured table, the next write of a user
//! would fail (a truncation or overflow in staging, an invalid column name) or, under
//! `ANSI_WARNINGS OFF`, stage a truncated copy; an added column would simply be missing from the
//! trail. rowtrail takes neither: the guard (`FOR ALTER_TABLE, RENAME, ALTER_SCHEMA,
//! DROP_TABLE`, on the database) compares each captured table whose capture trigger exists with
//! the snapshot of its columns taken when capture was installed or upgraded
//! ([`objects::COLUMNS`]: name, type ids, length, precision, scale, collation), and checks that
//! the trigger is still on the table the registry names. On any difference it rolls the DDL back
//! with a message naming the table and `rowtrail sql upgrade`, which runs the DBA's DDL and the
//! capture upgrade in one transaction (after dropping the capture trigger, which the guard takes
//! as the sign that capture is being upgraded). Dropping a captured table is refused too:
//! uninstall its capture first. DDL on other tables, indexes and constraints pass untouched.

use super::{ident, name_literal, objects, shared, Captured, SCHEMA};
use crate::literal::Literal;

/// The guard's name (a database-level DDL trigger has no schema).
pub const NAME: &str = "rowtrail_ddl_guard";

/// The batch that drops the guard if it exists.
pub fn drop_guard() -> String {
    format!(
        "IF EXISTS (SELECT 1 FROM sys.triggers WHERE parent_class = 0 AND name = {})\n    \
         DROP TRIGGER {} ON DATABASE;",
        Literal::mssql(NAME),
        ident(NAME).mssql()
    )
}

/// The columns of `sys.columns` the snapshot keeps, as `(snapshot column, sys.columns expr)`.
const SNAPSHOT: [(&str, &str); 7] = [
    ("column_name", "c.name COLLATE DATABASE_DEFAULT"),
    ("system_type_id", "c.system_type_id"),
    ("user_type_id", "c.user_type_id"),
    ("max_length", "c.max_length"),
    ("precision", "c.precision"),
    ("scale", "c.scale"),
    (
        "collation_name",
        "c.collation_name COLLATE DATABASE_DEFAULT",
    ),
];

/// `CREATE TABLE` of the column snapshot (the caller checks it does not exist).
pub fn create_snapshot_table() -> String {
    format!(
        "CREATE TABLE {} (\n        [table_schema] sysname NOT NULL,\n        \
         [table_name] sysname NOT NULL,\n        [column_name] sysname NOT NULL,\n        \
         [system_type_id] tinyint NOT NULL,\n        [user_type_id] int NOT NULL,\n        \
         [max_length] smallint NOT NULL,\n        [precision] tinyint NOT NULL,\n        \
         [scale] tinyint NOT NULL,\n        [collation_name] sysname NULL,\n        \
         PRIMARY KEY ([table_schema], [table_name], [column_name]));",
        shared(objects::COLUMNS)
    )
}

/// Statements that replace `t`'s column snapshot with its live columns.
pub fn refresh_snapshot(t: &Captured) -> String {
    let snap = shared(objects::COLUMNS);
    let w = super::install::registry_where(t);
    let cols: Vec<&str> = SNAPSHOT.iter().map(|(c, _)| *c).collect();
    let exprs: Vec<&str> = SNAPSHOT.iter().map(|(_, e)| *e).collect();
    format!(
        "DELETE FROM {snap} WHERE {w};\nIF NOT EXISTS (SELECT 1 FROM {snap} WHERE {w})\n    INSERT INTO {snap} ([table_schema], [table_name], [{}])\n        \
         SELECT {}, {}, {}\n        FROM sys.columns AS c WHERE c.object_id = OBJECT_ID({});",
        cols.join("], ["),
        Literal::mssql(t.schema().as_str()),
        Literal::mssql(t.table.name.name.as_str()),
        exprs.join(", "),
        name_literal(&t.source()),
    )
}

/// The `CREATE TRIGGER … ON DATABASE` batch of the guard.
pub fn create_guard() -> String {
    let reg = shared(objects::REGISTRY);
    let snap = shared(objects::COLUMNS);
    let live: Vec<&str> = SNAPSHOT.iter().map(|(_, e)| *e).collect();
    let kept: Vec<String> = SNAPSHOT.iter().map(|(c, _)| format!("k.[{c}]")).collect();
    let (live, kept) = (live.join(", "), kept.join(", "));
    let of_table = "k.[table_schema] = r.[table_schema] AND k.[table_name] = r.[table_name]";
    let quoted = "QUOTENAME(r.[table_schema]) + N'.' + QUOTENAME(r.[table_name])";
    let event =
        |field: &str| format!("EVENTDATA().value('(/EVENT_INSTANCE/{field})[1]', 'sysname')");
    let message = Literal::mssql(
        "rowtrail: %s is captured, and this change to its columns, name or schema would break \
         its capture trigger (users' writes would fail, or the trail would miss values), so it \
         was rolled back. Make it with `rowtrail sql upgrade --table %s --ddl <file>`, which runs \
         it and upgrades capture in one transaction; or remove capture of the table first \
         (`rowtrail sql uninstall --tables %s`).",
    );
    format!(
        "CREATE TRIGGER {name} ON DATABASE\nFOR ALTER_TABLE, RENAME, ALTER_SCHEMA, DROP_TABLE\nAS\nBEGIN\n    \
         -- rowtrail DDL guard (generated: do not edit; regenerate with rowtrail).\n    \
         SET NOCOUNT ON;\n    \
         IF OBJECT_ID({reg_lit}, N'U') IS NULL OR OBJECT_ID({snap_lit}, N'U') IS NULL RETURN;\n    \
         IF {schema} = {own} RETURN;\n    \
         DECLARE @broken nvarchar(300) = NULL;\n    \
         IF {event_type} = N'DROP_TABLE'\n        \
         SELECT TOP (1) @broken = {quoted}\n        FROM {reg} AS r\n        \
         WHERE r.[table_schema] = {schema} AND r.[table_name] = {object};\n    \
         ELSE\n        \
         SELECT TOP (1) @broken = {quoted}\n        FROM {reg} AS r\n        \
         JOIN sys.triggers AS tr ON tr.name COLLATE DATABASE_DEFAULT = r.[trigger_name] AND tr.parent_class = 1\n        \
         WHERE tr.parent_id <> ISNULL(OBJECT_ID({quoted}, N'U'), 0)\n           \
         OR EXISTS (SELECT {kept} FROM {snap} AS k WHERE {of_table}\n                      \
         EXCEPT SELECT {live} FROM sys.columns AS c WHERE c.object_id = tr.parent_id)\n           \
         OR EXISTS (SELECT {live} FROM sys.columns AS c WHERE c.object_id = tr.parent_id\n                      \
         EXCEPT SELECT {kept} FROM {snap} AS k WHERE {of_table});\n    \
         IF @broken IS NOT NULL\n    BEGIN\n        \
         RAISERROR({message}, 16, 1, @broken, @broken, @broken);\n        \
         ROLLBACK TRANSACTION;\n    END;\nEND;",
        name = ident(NAME).mssql(),
        reg_lit = name_literal(&reg),
        snap_lit = name_literal(&snap),
        schema = event("SchemaName"),
        object = event("ObjectName"),
        event_type = event("EventType"),
        own = Literal::mssql(SCHEMA),
    )
}
