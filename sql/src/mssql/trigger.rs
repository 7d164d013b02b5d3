//! The capture trigger: one `AFTER INSERT, UPDATE, DELETE` trigger per table.
//!
//! * **Set-based**: a handful of `INSERT … SELECT` statements over `inserted` and `deleted`; no
//!   cursor, no loop, no per-row call, no dynamic SQL. `SET NOCOUNT ON` and nothing is selected
//!   to the client. `SET ROWCOUNT 0` so a session's `SET ROWCOUNT n` cannot truncate capture
//!   (SET options made in a trigger end with it).
//! * **Metadata**, read once per firing: `ORIGINAL_LOGIN()`, `SYSUTCDATETIME()`, `HOST_NAME()`,
//!   `APP_NAME()` (both client-supplied), `CONNECTIONPROPERTY('client_net_address')`, the
//!   transaction id (`CURRENT_TRANSACTION_ID()`, or see [`Target::Sql2012`]) and a statement id.
//! * **Statement id**: one value of the global sequence taken at the start of each firing, so it
//!   is unique in the database for ever and sorts just before the images it labels. A MERGE fires
//!   the trigger once per action it performs, so each action gets its own statement id.
//! * **Sequence numbers**: the sequence counts in steps of 2. Every image takes `NEXT VALUE FOR`;
//!   a paired UPDATE's before-image takes `s` and its after-image `s+1`.
//! * **Pairing** (only `inserted` non-empty: `I` after-images; only `deleted`: `D`
//!   before-images; both: an UPDATE or a MERGE action):
//!   1. primary key unchanged: the statement set no key column (`UPDATE(k)` is false for
//!      each), every deleted row's key is found in `inserted` and the counts agree, so rows are
//!      paired by key (both sides numbered in key order; the same column and collation on both
//!      sides, so no collation conflict can arise) as `U` pairs. The key sets alone cannot
//!      tell: a permutation (`SET id = 3 - id` over ids 1 and 2) leaves the same keys, and
//!      pairing by them would give each row the other's values in the trail. A key with a
//!      computed column (which `UPDATE()` cannot test, and which any column may feed) never
//!      takes this branch;
//!   2. otherwise, exactly one row on each side: they are the pair (`U`);
//!   3. otherwise (a multi-row update that set a key column, or a table without a primary
//!      key):
//!      every image is recorded with op `K` (before-images `B`, after-images `A`) under the
//!      statement id, and is undone as a whole.
//! * **No-op updates** (`SET x = x`) are recorded like any other update: a `U` pair whose images
//!   are equal. The statement ran, fired triggers and may have changed a rowversion; filtering
//!   would need a type-aware comparison of every column (impossible for xml and CLR types).
//! * **Cannot fail on its own**: staging columns are nullable, typed exactly like the source
//!   (no conversion), staging has no constraints other than the sequence key, no triggers and
//!   no indexes that need session SET options; the sequence never cycles. Application users need
//!   no permission: the trigger, staging tables and sequence share one owner (ownership chain),
//!   which the install script checks.
//! * **Fires first** (`sp_settriggerorder`), before the application's own AFTER triggers, so the
//!   images of a statement take lower seqs than those of any nested statement its triggers
//!   cause: when another trigger updates the same table (the `ModifiedDate` pattern), that nested
//!   update fires this trigger itself and is captured after the statement that caused it, and
//!   newest-first undo takes it back first. (Fired last, the nested update was captured first,
//!   and the outer after-image lacked it.) If another trigger failing rolls the statement back,
//!   the staged images roll back with it. Staging tables have no triggers, so the trigger starts
//!   no nested trigger and is unaffected by `RECURSIVE_TRIGGERS`.

use super::{objects, shared, Captured, Target};
use crate::staging;

/// The `CREATE TRIGGER` batch for `t` (the caller drops any old trigger first).
pub fn create_trigger(t: &Captured, target: Target) -> String {
    let seq = shared(objects::SEQUENCE);
    let staging = t.staging_name();
    let cols = staging_column_list(t);
    let values = |alias: &str| -> String {
        t.table
            .columns
            .iter()
            .map(|c| format!("{alias}.{}", c.name.mssql()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let meta = |seq_expr: &str, op: &str, image: &str| {
        format!("{seq_expr}, '{op}', '{image}', @tx, @stmt, @time, @login, @host, @app, @ip")
    };
    let insert_at = |pad: &str, seq_expr: &str, op: &str, image: &str, from: &str, alias: &str| {
        format!(
            "{pad}INSERT INTO {staging} ({cols})\n{pad}    SELECT {}, {}\n{pad}    FROM {from};\n",
            meta(seq_expr, op, image),
            values(alias),
        )
    };
    let insert = |seq_expr: &str, op: &str, image: &str, from: &str, alias: &str| {
        insert_at("        ", seq_expr, op, image, from, alias)
    };
    let next = format!("NEXT VALUE FOR {seq}");
    let tx = match target {
        Target::Sql2016 => "    DECLARE @tx bigint = CURRENT_TRANSACTION_ID();\n".to_string(),
        Target::Sql2012 => "    DECLARE @tx bigint = NULL;\n    \
             IF HAS_PERMS_BY_NAME(NULL, NULL, N'VIEW SERVER STATE') = 1\n        \
             SELECT @tx = transaction_id FROM sys.dm_tran_current_transaction;\n"
            .to_string(),
    };

    let mut s = format!(
        "CREATE TRIGGER {trigger} ON {source}\nAFTER INSERT, UPDATE, DELETE\nAS\nBEGIN\n    \
         -- rowtrail capture trigger (generated: do not edit; regenerate with rowtrail).\n    \
         SET NOCOUNT ON;\n    SET ROWCOUNT 0;\n    \
         DECLARE @has_ins bit = CASE WHEN EXISTS (SELECT 1 FROM inserted) THEN 1 ELSE 0 END;\n    \
         DECLARE @has_del bit = CASE WHEN EXISTS (SELECT 1 FROM deleted) THEN 1 ELSE 0 END;\n    \
         IF @has_ins = 0 AND @has_del = 0 RETURN;\n    \
         DECLARE @stmt bigint = {next};\n{tx}    \
         DECLARE @time datetime2(7) = SYSUTCDATETIME();\n    \
         DECLARE @login nvarchar(128) = ORIGINAL_LOGIN();\n    \
         DECLARE @host nvarchar(128) = HOST_NAME();\n    \
         DECLARE @app nvarchar(128) = APP_NAME();\n    \
         DECLARE @ip nvarchar(48) = CONVERT(nvarchar(48), CONNECTIONPROPERTY('client_net_address'));\n\n",
        trigger = t.trigger_name(),
        source = t.source(),
    );
    // Inserts only.
    s.push_str("    IF @has_del = 0\n    BEGIN\n");
    s.push_str(&insert(&next, "I", "A", "inserted AS i", "i"));
    s.push_str("        RETURN;\n    END;\n");
    // Deletes only.
    s.push_str("    IF @has_ins = 0\n    BEGIN\n");
    s.push_str(&insert(&next, "D", "B", "deleted AS d", "d"));
    s.push_str("        RETURN;\n    END;\n\n");
    // Both: an update (or one action of a MERGE).
    s.push_str(
        "    DECLARE @n_ins bigint = (SELECT COUNT_BIG(*) FROM inserted);\n    \
         DECLARE @n_del bigint = (SELECT COUNT_BIG(*) FROM deleted);\n",
    );
    let key = t
        .table
        .key()
        .filter(|key| key.iter().all(|&k| !t.table.columns[k].computed));
    if let Some(key) = key {
        // `UPDATE()` on each key column: whether the statement set it, whatever it set it to.
        let set_none = key
            .iter()
            .map(|&k| format!("UPDATE({})", t.table.columns[k].name.mssql()))
            .collect::<Vec<_>>()
            .join(" OR ");
        let key_cols: Vec<_> = key
            .iter()
            .map(|&k| t.table.columns[k].name.mssql().to_string())
            .collect();
        let on = key_cols
            .iter()
            .map(|c| format!("d.{c} = i.{c}"))
            .collect::<Vec<_>>()
            .join(" AND ");
        let order = |alias: &str| {
            key_cols
                .iter()
                .map(|c| format!("{alias}.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        // The row number's alias must not collide with a source column: rowtrail_seq is reserved.
        let rn = super::ident(staging::COL_SEQ).mssql().to_string();
        let numbered = |src: &str, alias: &str| {
            format!(
                "(SELECT ROW_NUMBER() OVER (ORDER BY {}) AS {rn}, {} FROM {src} AS {alias}) AS {alias}\n            \
                 JOIN @pairs AS p ON p.rn = {alias}.{rn}",
                order(alias),
                values(alias),
                rn = rn,
            )
        };
        s.push_str(&format!(
            "    -- 1. Key unchanged (no key column set): pair by primary key.\n    \
             IF NOT ({set_none}) AND @n_ins = @n_del AND @n_del = (SELECT COUNT_BIG(*) FROM deleted AS d JOIN inserted AS i ON {on})\n    \
             BEGIN\n        \
             DECLARE @pairs TABLE (rn bigint NOT NULL PRIMARY KEY, seq bigint NULL);\n        \
             INSERT INTO @pairs (rn, seq)\n            \
             SELECT n.rn, {next}\n            \
             FROM (SELECT ROW_NUMBER() OVER (ORDER BY {}) AS rn FROM deleted AS d) AS n;\n",
            order("d"),
        ));
        s.push_str(&insert("p.seq", "U", "B", &numbered("deleted", "d"), "d"));
        s.push_str(&insert(
            "p.seq + 1",
            "U",
            "A",
            &numbered("inserted", "i"),
            "i",
        ));
        s.push_str("        RETURN;\n    END;\n");
    }
    s.push_str(&format!(
        "    -- 2. One row changed: it is the pair.\n    \
         IF @n_ins = 1 AND @n_del = 1\n    BEGIN\n        \
         DECLARE @one bigint = {next};\n"
    ));
    s.push_str(&insert("@one", "U", "B", "deleted AS d", "d"));
    s.push_str(&insert("@one + 1", "U", "A", "inserted AS i", "i"));
    s.push_str("        RETURN;\n    END;\n");
    s.push_str(
        "    -- 3. Keys changed (or set) in a multi-row statement: record it whole, op K.\n",
    );
    s.push_str(&insert_at("    ", &next, "K", "B", "deleted AS d", "d"));
    s.push_str(&insert_at("    ", &next, "K", "A", "inserted AS i", "i"));
    s.push_str("END;");
    s
}

/// `EXEC sp_settriggerorder` for each statement type, so the trigger fires first: it records
/// the statement's own images before any other AFTER trigger runs, so a nested change made by
/// another trigger (a `ModifiedDate` update, say) is captured after it, with higher seqs.
pub fn fire_first(t: &Captured) -> String {
    let name = super::name_literal(&t.trigger_name());
    ["INSERT", "UPDATE", "DELETE"]
        .iter()
        .map(|ty| {
            format!(
                "EXEC sys.sp_settriggerorder @triggername = {name}, @order = N'First', @stmttype = N'{ty}';"
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The staging table's column list: metadata, then the captured columns.
pub(crate) fn staging_column_list(t: &Captured) -> String {
    staging::METADATA_COLUMNS
        .iter()
        .map(|c| super::ident(c).mssql().to_string())
        .chain(t.table.columns.iter().map(|c| c.name.mssql().to_string()))
        .collect::<Vec<_>>()
        .join(", ")
}
