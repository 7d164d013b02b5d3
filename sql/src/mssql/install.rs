//! The install script: shared objects, then each table's staging table, registry row and trigger.

use super::ddl_guard;
use super::trigger::{create_trigger, fire_first};
use super::{
    header, ident, name_literal, objects, shared, transactional, Captured, Options, Script, SCHEMA,
};
use crate::literal::Literal;
use crate::staging;

/// The install script for `tables` (already checked).
pub(super) fn script(tables: &[Captured], options: &Options) -> Script {
    let mut h = header("install", tables, options);
    h.push(
        "Creates (or keeps): schema [rowtrail], the sequence, meta (incarnation), registry and"
            .into(),
    );
    h.push("versions tables; per table: a staging table and a capture trigger (replaced).".into());
    h.push("Staged rows, the sequence and the incarnation survive a re-run.".into());
    let mut s = Script::new("install", h);
    shared_objects(&mut s);
    // The guard is replaced last, once every table's column snapshot is current.
    s.push(ddl_guard::drop_guard());
    for t in tables {
        table_objects(&mut s, t, options.target);
    }
    s.push(ddl_guard::create_guard());
    transactional(s, "install complete")
}

/// `THROW` with a rowtrail message (a literal: names in it are quoted as text).
pub(super) fn throw(message: &str) -> String {
    format!(
        "THROW 50000, {}, 1;",
        Literal::mssql(&format!("rowtrail: {message}"))
    )
}

/// A fresh sequence value: the `first_seq` of a table version, above every image staged before
/// it and below every image staged after it.
pub(super) fn next_seq() -> String {
    format!("NEXT VALUE FOR {}", shared(objects::SEQUENCE))
}

fn shared_objects(s: &mut Script) {
    let schema = ident(SCHEMA);
    s.push(format!(
        "IF SCHEMA_ID({}) IS NULL\n    EXEC (N'CREATE SCHEMA {} AUTHORIZATION [dbo]');",
        Literal::mssql(SCHEMA),
        schema.mssql()
    ));
    let seq = shared(objects::SEQUENCE);
    s.push(format!(
        "IF OBJECT_ID({}, N'SO') IS NULL\n    CREATE SEQUENCE {seq} AS bigint\n        \
         START WITH 2 INCREMENT BY 2 MINVALUE 2 NO MAXVALUE NO CYCLE CACHE 1000;",
        name_literal(&seq)
    ));
    let meta = shared(objects::META);
    s.push(format!(
        "IF OBJECT_ID({lit}, N'U') IS NULL\n    CREATE TABLE {meta} (\n        \
         [key] nvarchar(64) NOT NULL PRIMARY KEY,\n        [value] nvarchar(4000) NOT NULL);\n\
         IF NOT EXISTS (SELECT 1 FROM {meta} WHERE [key] = N'incarnation')\n    \
         INSERT INTO {meta} ([key], [value]) VALUES (N'incarnation', CONVERT(nvarchar(36), NEWID()));\n\
         IF NOT EXISTS (SELECT 1 FROM {meta} WHERE [key] = N'format')\n    \
         INSERT INTO {meta} ([key], [value]) VALUES (N'format', N'{fmt}');\n\
         IF NOT EXISTS (SELECT 1 FROM {meta} WHERE [key] = N'recovery_fork')\n    \
         INSERT INTO {meta} ([key], [value])\n        \
         SELECT N'recovery_fork', ISNULL(CONVERT(nvarchar(36), recovery_fork_guid), N'')\n        \
         FROM sys.database_recovery_status WHERE database_id = DB_ID();",
        lit = name_literal(&meta),
        fmt = super::FORMAT,
    ));
    let reg = shared(objects::REGISTRY);
    s.push(format!(
        "IF OBJECT_ID({}, N'U') IS NULL\n    CREATE TABLE {reg} (\n        \
         [table_schema] sysname NOT NULL,\n        [table_name] sysname NOT NULL,\n        \
         [staging_name] sysname NOT NULL UNIQUE,\n        [trigger_name] sysname NOT NULL,\n        \
         [definition] nvarchar(max) NOT NULL,\n        \
         [installed_at] datetime2(7) NOT NULL DEFAULT SYSUTCDATETIME(),\n        \
         PRIMARY KEY ([table_schema], [table_name]));",
        name_literal(&reg)
    ));
    let ver = shared(objects::VERSIONS);
    s.push(format!(
        "IF OBJECT_ID({}, N'U') IS NULL\n    CREATE TABLE {ver} (\n        \
         [table_schema] sysname NOT NULL,\n        [table_name] sysname NOT NULL,\n        \
         [first_seq] bigint NOT NULL,\n        [definition] nvarchar(max) NOT NULL,\n        \
         [recorded_at] datetime2(7) NOT NULL DEFAULT SYSUTCDATETIME(),\n        \
         PRIMARY KEY ([table_schema], [table_name], [first_seq]));",
        name_literal(&ver)
    ));
    s.push(format!(
        "IF OBJECT_ID({}, N'U') IS NULL
    {}",
        name_literal(&shared(objects::COLUMNS)),
        ddl_guard::create_snapshot_table()
    ));
}

/// `WHERE [table_schema] = N'…' AND [table_name] = N'…'` for `t`'s registry rows.
pub(super) fn registry_where(t: &Captured) -> String {
    format!(
        "[table_schema] = {} AND [table_name] = {}",
        Literal::mssql(t.schema().as_str()),
        Literal::mssql(t.table.name.name.as_str())
    )
}

/// The staging table's `CREATE TABLE` (without the existence check).
pub(super) fn create_staging(t: &Captured) -> String {
    let meta = [
        (staging::COL_SEQ, "bigint NOT NULL PRIMARY KEY CLUSTERED"),
        (staging::COL_OP, "char(1) NOT NULL"),
        (staging::COL_IMAGE, "char(1) NOT NULL"),
        (staging::COL_TX, "bigint NULL"),
        (staging::COL_STMT, "bigint NOT NULL"),
        (staging::COL_TIME, "datetime2(7) NOT NULL"),
        (staging::COL_LOGIN, "nvarchar(128) NULL"),
        (staging::COL_HOST, "nvarchar(128) NULL"),
        (staging::COL_APP, "nvarchar(128) NULL"),
        (staging::COL_CLIENT_IP, "nvarchar(48) NULL"),
    ];
    let mut defs: Vec<String> = meta
        .iter()
        .map(|(c, ty)| format!("{} {ty}", ident(c).mssql()))
        .collect();
    defs.extend((0..t.table.columns.len()).map(|i| t.staging_column(i)));
    format!(
        "CREATE TABLE {} (\n        {});\n    ALTER TABLE {} SET (LOCK_ESCALATION = DISABLE);",
        t.staging_name(),
        defs.join(",\n        "),
        t.staging_name()
    )
}

fn table_objects(s: &mut Script, t: &Captured, target: super::Target) {
    let source = t.source();
    let rowtrail_owner = format!(
        "(SELECT principal_id FROM sys.schemas WHERE name = {})",
        Literal::mssql(SCHEMA)
    );
    s.push(format!(
        "-- {name}\nIF OBJECT_ID({src}, N'U') IS NULL\n    {missing}\n\
         IF OBJECTPROPERTY(OBJECT_ID({src}), 'OwnerId') <> {rowtrail_owner}\n    {owner}",
        name = super::script::comment_text(&t.table.name.to_string()),
        src = name_literal(&source),
        missing = throw(&format!("table {source} does not exist in this database")),
        owner = throw(&format!(
            "table {source} is not owned by the owner of schema [rowtrail]; the trigger would need \
             INSERT permission on staging for every application user. Make both owned by the same \
             principal (ALTER AUTHORIZATION) and run again"
        )),
    ));
    let reg = shared(objects::REGISTRY);
    let json = t.table.to_json();
    s.push(format!(
        "IF EXISTS (SELECT 1 FROM {reg} WHERE {w} AND [definition] <> {def})\n    {changed}\n\
         IF OBJECT_ID({stg}, N'U') IS NULL\nBEGIN\n    {create}\nEND;\n\
         IF NOT EXISTS (SELECT 1 FROM {reg} WHERE {w})\nBEGIN\n    \
         INSERT INTO {reg} ([table_schema], [table_name], [staging_name], [trigger_name], [definition])\n        \
         VALUES ({sch}, {tab}, {sname}, {tname}, {def});\n    \
         INSERT INTO {ver} ([table_schema], [table_name], [first_seq], [definition])\n        \
         VALUES ({sch}, {tab}, {cur}, {def});\nEND;",
        w = registry_where(t),
        def = Literal::mssql(&json),
        changed = throw(&format!(
            "table {source} is already captured with another definition; run the upgrade script \
             for it instead"
        )),
        stg = name_literal(&t.staging_name()),
        create = create_staging(t),
        sch = Literal::mssql(t.schema().as_str()),
        tab = Literal::mssql(t.table.name.name.as_str()),
        sname = Literal::mssql(t.staging.as_str()),
        tname = Literal::mssql(t.trigger.as_str()),
        ver = shared(objects::VERSIONS),
        cur = next_seq(),
    ));
    push_trigger(s, t, target);
}

/// Drop-and-create of `t`'s trigger, then its firing order (three batches).
pub(super) fn push_trigger(s: &mut Script, t: &Captured, target: super::Target) {
    let trig = t.trigger_name();
    s.push(format!(
        "IF OBJECT_ID({}, N'TR') IS NOT NULL\n    DROP TRIGGER {trig};",
        name_literal(&trig)
    ));
    s.push(create_trigger(t, target));
    s.push(format!(
        "IF EXISTS (SELECT 1 FROM sys.triggers AS tr JOIN sys.trigger_events AS e ON e.object_id = tr.object_id\n    \
         WHERE tr.parent_id = OBJECT_ID({src}) AND e.is_first = 1 AND tr.object_id <> OBJECT_ID({lit}))\n    {other}\n{last}",
        src = name_literal(&t.source()),
        lit = name_literal(&trig),
        other = throw(&format!(
            "another trigger on {} is already set to fire first; set it to 'None' with \
             sp_settriggerorder (rowtrail must record each statement before any other trigger \
             changes the table again) and run again",
            t.source()
        )),
        last = fire_first(t),
    ));
    s.push(ddl_guard::refresh_snapshot(t));
}
