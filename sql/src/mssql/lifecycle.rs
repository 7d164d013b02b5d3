//! The uninstall script (mirrors install) and the reader's permissions script.

use super::install::{registry_where, throw};
use super::{
    header, ident, name_literal, objects, shared, transactional, Captured, Options, Script, SCHEMA,
};
use crate::literal::Literal;
use crate::{Ident, SqlError};

/// Removes what install created for `tables`; the shared objects go too once no captured table
/// remains. Refuses (changing nothing) while a staging table holds rows no reader has archived.
pub(super) fn uninstall(tables: &[Captured], options: &Options) -> Script {
    let mut h = header("uninstall", tables, options);
    h.push("Drops the capture triggers first, then, per table: the staging table, its".into());
    h.push("registry rows.".into());
    h.push(
        "Then, if no captured table remains: registry, versions, meta (incarnation), the".into(),
    );
    h.push("sequence and schema [rowtrail]. Refuses while staging holds unarchived rows:".into());
    h.push("run `rowtrail read` first (or delete those rows yourself to discard them).".into());
    let mut s = Script::new("uninstall", h);
    let reg = shared(objects::REGISTRY);
    let ver = shared(objects::VERSIONS);
    let cols = shared(objects::COLUMNS);
    // The triggers go first: dropping one takes a schema-modification lock on its table, which
    // waits for the writers there and lets no new one in, so no trigger can be waiting to write
    // into a staging table while the check below holds it exclusively (the other order
    // deadlocks with a writer whose trigger is about to stage its rows). If staging still holds
    // rows, the check's THROW rolls the drops back with the rest.
    for t in tables {
        let trig = t.trigger_name();
        s.push(format!(
            "IF OBJECT_ID({tl}, N'TR') IS NOT NULL\n    DROP TRIGGER {trig};",
            tl = name_literal(&trig),
        ));
    }
    for t in tables {
        let stg = t.staging_name();
        s.push(format!(
            "-- {name}\nIF OBJECT_ID({lit}, N'U') IS NOT NULL\nBEGIN\n    \
             IF EXISTS (SELECT 1 FROM {stg} WITH (TABLOCKX, HOLDLOCK))\n        {busy}\nEND;",
            name = super::script::comment_text(&t.table.name.to_string()),
            lit = name_literal(&stg),
            busy = throw(&format!(
                "staging for {} holds rows not yet archived; run `rowtrail read` first",
                t.source()
            )),
        ));
    }
    for t in tables {
        let stg = t.staging_name();
        s.push(format!(
            "IF OBJECT_ID({sl}, N'U') IS NOT NULL\n    DROP TABLE {stg};\n\
             IF OBJECT_ID({rl}, N'U') IS NOT NULL\n    DELETE FROM {reg} WHERE {w};\n\
             IF OBJECT_ID({vl}, N'U') IS NOT NULL\n    DELETE FROM {ver} WHERE {w};\n\
             IF OBJECT_ID({cl}, N'U') IS NOT NULL\n    DELETE FROM {cols} WHERE {w};",
            cl = name_literal(&cols),
            sl = name_literal(&stg),
            rl = name_literal(&reg),
            vl = name_literal(&ver),
            w = registry_where(t),
        ));
    }
    let mut last = format!(
        "IF OBJECT_ID({rl}, N'U') IS NULL OR NOT EXISTS (SELECT 1 FROM {reg})\nBEGIN\n",
        rl = name_literal(&reg)
    );
    last.push_str(&format!(
        "    {}\n",
        super::ddl_guard::drop_guard().replace('\n', "\n    ")
    ));
    for obj in [
        objects::COLUMNS,
        objects::VERSIONS,
        objects::REGISTRY,
        objects::META,
    ] {
        let o = shared(obj);
        last.push_str(&format!(
            "    IF OBJECT_ID({}, N'U') IS NOT NULL\n        DROP TABLE {o};\n",
            name_literal(&o)
        ));
    }
    let seq = shared(objects::SEQUENCE);
    last.push_str(&format!(
        "    IF OBJECT_ID({}, N'SO') IS NOT NULL\n        DROP SEQUENCE {seq};\n    \
         IF SCHEMA_ID({lit}) IS NOT NULL\n        \
         AND NOT EXISTS (SELECT 1 FROM sys.objects WHERE schema_id = SCHEMA_ID({lit}))\n        \
         EXEC (N'DROP SCHEMA {schema}');\nEND;",
        name_literal(&seq),
        lit = Literal::mssql(SCHEMA),
        schema = ident(SCHEMA).mssql(),
    ));
    s.push(last);
    transactional(s, "uninstall complete")
}

/// The reader's grants: a database user for `reader_login` (same name) with SELECT and DELETE on
/// each staging table, SELECT on the registry, versions and meta tables (definitions and the
/// incarnation), VIEW DEFINITION on the sequence (its current value is the cheap probe) and on
/// each captured table (metadata only, no data: `sql check` reads the capture trigger's text,
/// which SQL Server shows only to holders of VIEW DEFINITION on its table). Application users
/// need nothing new.
pub(super) fn permissions(
    tables: &[Captured],
    reader_login: &Ident,
    options: &Options,
) -> Result<Script, SqlError> {
    super::script::check_name(reader_login.as_str()).map_err(|why| {
        SqlError::InvalidIdentifier {
            name: reader_login.as_str().to_string(),
            reason: why,
        }
    })?;
    let mut h = header("permissions", tables, options);
    h.push(format!(
        "Grants the reader login {} SELECT and DELETE on staging, SELECT on the registry,",
        super::script::comment_text(reader_login.as_str())
    ));
    h.push(
        "versions and meta tables, VIEW DEFINITION on the sequence and on the captured tables"
            .into(),
    );
    h.push(
        "(metadata only, for `rowtrail sql check`; no access to their rows); nothing else.".into(),
    );
    let mut s = Script::new("permissions", h);
    let user = reader_login.mssql();
    s.push(format!(
        "IF USER_ID({lit}) IS NULL\n    CREATE USER {user} FOR LOGIN {user};",
        lit = Literal::mssql(reader_login.as_str())
    ));
    let mut grants = String::new();
    for t in tables {
        grants.push_str(&format!(
            "GRANT SELECT, DELETE ON {} TO {user};\n",
            t.staging_name()
        ));
    }
    for obj in [objects::REGISTRY, objects::VERSIONS, objects::META] {
        grants.push_str(&format!("GRANT SELECT ON {} TO {user};\n", shared(obj)));
    }
    for t in tables {
        grants.push_str(&format!(
            "GRANT VIEW DEFINITION ON OBJECT::{} TO {user};\n",
            t.table.name.quoted(crate::Dialect::Mssql)
        ));
    }
    grants.push_str(&format!(
        "GRANT VIEW DEFINITION ON OBJECT::{} TO {user};",
        shared(objects::SEQUENCE)
    ));
    s.push(grants);
    Ok(transactional(s, "permissions granted"))
}
