//! The capture trigger, point by point (issue 4, part 3), tested on the generated text.

mod common;

use rowtrail_sql::mssql::{trigger, Captured, Deployment, Options, Target};
use sqlparser::dialect::MsSqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer};

fn trigger_of(name: &str) -> String {
    trigger::create_trigger(
        &Captured::new(&common::table(name)).unwrap(),
        Target::Sql2016,
    )
}

fn words(sql: &str) -> Vec<String> {
    Tokenizer::new(&MsSqlDialect {}, sql)
        .tokenize()
        .unwrap()
        .into_iter()
        .filter_map(|t| match t {
            Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_uppercase()),
            _ => None,
        })
        .collect()
}

#[test]
fn is_set_based_without_cursor_loop_or_dynamic_sql() {
    for t in common::tables() {
        let sql = trigger::create_trigger(&Captured::new(&t).unwrap(), Target::Sql2016);
        let w = words(&sql);
        for banned in [
            "CURSOR",
            "WHILE",
            "FETCH",
            "EXEC",
            "EXECUTE",
            "SP_EXECUTESQL",
            "GOTO",
            "WAITFOR",
        ] {
            assert!(!w.contains(&banned.to_string()), "{}: {banned}", t.name);
        }
    }
}

#[test]
fn sets_nocount_and_rowcount_and_returns_nothing_to_the_client() {
    let sql = trigger_of("SalesOrderDetail");
    let body: Vec<&str> = sql.lines().map(str::trim).collect();
    let first = body.iter().position(|l| l.starts_with("SET ")).unwrap();
    assert_eq!(body[first], "SET NOCOUNT ON;");
    assert_eq!(
        body[first + 1],
        "SET ROWCOUNT 0;",
        "a session's SET ROWCOUNT must not truncate capture"
    );
    // Every SELECT feeds an INSERT, a variable, or a predicate: none reaches the client.
    for (i, l) in body.iter().enumerate() {
        if l.starts_with("SELECT ") {
            let prev = body[i - 1];
            assert!(
                prev.starts_with("INSERT INTO") || l.starts_with("SELECT @"),
                "bare SELECT: {l}"
            );
        }
    }
    assert!(
        !words(&sql).contains(&"PRINT".to_string())
            && !words(&sql).contains(&"RAISERROR".to_string())
    );
}

#[test]
fn records_every_metadata_item() {
    let sql = trigger_of("Person");
    for f in [
        "ORIGINAL_LOGIN()",
        "SYSUTCDATETIME()",
        "HOST_NAME()",
        "APP_NAME()",
        "CONNECTIONPROPERTY('client_net_address')",
        "CURRENT_TRANSACTION_ID()",
        "DECLARE @stmt bigint = NEXT VALUE FOR [rowtrail].[rowtrail_seq];",
    ] {
        assert!(sql.contains(f), "missing {f}");
    }
    for col in [
        "[rowtrail_tx]",
        "[rowtrail_stmt]",
        "[rowtrail_time]",
        "[rowtrail_login]",
        "[rowtrail_host]",
        "[rowtrail_app]",
        "[rowtrail_client_ip]",
    ] {
        assert!(sql.contains(col), "missing {col}");
    }
}

#[test]
fn older_servers_read_the_transaction_id_only_when_permitted() {
    let c = Captured::new(&common::table("Person")).unwrap();
    let sql = trigger::create_trigger(&c, Target::Sql2012);
    assert!(!sql.contains("CURRENT_TRANSACTION_ID"));
    assert!(sql.contains("DECLARE @tx bigint = NULL;"));
    assert!(sql.contains("IF HAS_PERMS_BY_NAME(NULL, NULL, N'VIEW SERVER STATE') = 1"));
    assert!(sql.contains("SELECT @tx = transaction_id FROM sys.dm_tran_current_transaction;"));
}

#[test]
fn pairs_updates_by_key_then_by_single_row_else_records_op_k() {
    let sql = trigger_of("SalesOrderDetail");
    let by_key = sql.find("-- 1. Key unchanged").unwrap();
    let single = sql.find("-- 2. One row changed").unwrap();
    let whole = sql.find("-- 3. Keys changed").unwrap();
    assert!(by_key < single && single < whole);
    assert!(sql.contains(
        "IF NOT (UPDATE([SalesOrderID]) OR UPDATE([SalesOrderDetailID])) \
         AND @n_ins = @n_del AND @n_del = (SELECT COUNT_BIG(*) FROM deleted AS d JOIN inserted AS i ON \
         d.[SalesOrderID] = i.[SalesOrderID] AND d.[SalesOrderDetailID] = i.[SalesOrderDetailID])"
    ));
    // Both sides are numbered in key order and joined to the same reserved sequence value.
    assert_eq!(
        sql.matches("ROW_NUMBER() OVER (ORDER BY d.[SalesOrderID], d.[SalesOrderDetailID])")
            .count(),
        2
    );
    assert_eq!(
        sql.matches("ROW_NUMBER() OVER (ORDER BY i.[SalesOrderID], i.[SalesOrderDetailID])")
            .count(),
        1
    );
    assert!(sql.contains("SELECT p.seq, 'U', 'B'") && sql.contains("SELECT p.seq + 1, 'U', 'A'"));
    assert!(sql.contains("IF @n_ins = 1 AND @n_del = 1"));
    assert!(sql.contains("SELECT @one, 'U', 'B'") && sql.contains("SELECT @one + 1, 'U', 'A'"));
    assert!(sql[whole..].contains("'K', 'B'") && sql[whole..].contains("'K', 'A'"));
    assert!(sql.contains("'I', 'A'") && sql.contains("'D', 'B'"));
}

/// Issue 15 (medium, key permutations): `UPDATE t SET id = 3 - id` over ids 1 and 2 leaves the
/// same set of keys, so the key sets alone look unchanged and pairing by key gave row 1 the
/// values row 2 had (and the reverse) in the trail. Pairing by key needs the statement to have
/// set no key column; a statement that set one, over several rows, is recorded whole (op K).
#[test]
fn issue15_a_key_permutation_is_never_paired_by_key() {
    let sql = trigger_of("SalesOrderDetail");
    let by_key = sql.find("-- 1. Key unchanged").unwrap();
    let single = sql.find("-- 2. One row changed").unwrap();
    let branch = &sql[by_key..single];
    let guard = branch
        .lines()
        .find(|l| l.trim_start().starts_with("IF "))
        .expect("the by-key branch has a condition");
    assert!(
        guard
            .trim_start()
            .starts_with("IF NOT (UPDATE([SalesOrderID]) OR UPDATE([SalesOrderDetailID])) AND "),
        "pairing by key must first check that no key column was set: {guard}"
    );
    // The statement-whole fallback stays for multi-row statements that set a key.
    assert!(sql[single..].contains("'K', 'B'") && sql[single..].contains("'K', 'A'"));
}

/// A key with a computed column cannot be tested with `UPDATE()` (Msg 2114) and may change with
/// any column it is computed from: such a table never pairs multi-row updates by key.
#[test]
fn a_key_with_a_computed_column_never_pairs_by_key() {
    let mut t = common::table("SalesOrderDetail");
    let k = t.primary_key[1];
    t.columns[k].computed = true;
    let sql = trigger::create_trigger(&Captured::new(&t).unwrap(), Target::Sql2016);
    assert!(!sql.contains("-- 1. Key unchanged"), "{sql}");
    assert!(!sql.contains("UPDATE(["), "{sql}");
    assert!(sql.contains("IF @n_ins = 1 AND @n_del = 1") && sql.contains("'K', 'B'"));
}

#[test]
fn a_table_without_key_pairs_only_single_rows() {
    let sql = trigger_of("ImportLog");
    assert!(!sql.contains("-- 1. Key unchanged"));
    assert!(sql.contains("IF @n_ins = 1 AND @n_del = 1") && sql.contains("'K', 'B'"));
}

#[test]
fn the_sequence_steps_by_two_and_staging_has_no_identity() {
    let d = Deployment::generate(&common::tables(), &common::options()).unwrap();
    let install = d.install.render();
    assert!(install.contains("START WITH 2 INCREMENT BY 2 MINVALUE 2 NO MAXVALUE NO CYCLE"));
    // IDENTITY may appear only inside the recorded JSON definitions (string literals).
    let w = words(&install);
    assert!(
        !w.contains(&"IDENTITY".to_string()),
        "IDENTITY outside a literal"
    );
    assert!(
        !w.contains(&"SP_SEQUENCE_GET_RANGE".to_string()),
        "range reservation needs UPDATE permission on the sequence"
    );
}

#[test]
fn no_op_updates_are_recorded_not_filtered() {
    // No comparison of non-key values: a `SET x = x` update yields an ordinary U pair.
    let sql = trigger_of("Product");
    for c in ["Name", "ListPrice", "Description", "Version"] {
        assert!(
            !sql.contains(&format!("d.[{c}] = i.[{c}]"))
                && !sql.contains(&format!("d.[{c}] <> i.[{c}]"))
        );
    }
    assert!(!words(&sql).contains(&"EXCEPT".to_string()));
}

#[test]
fn fires_first_for_every_statement_type() {
    let d = Deployment::generate(&[common::table("Person")], &common::options()).unwrap();
    let install = d.install.render();
    for ty in ["INSERT", "UPDATE", "DELETE"] {
        assert!(install.contains(&format!(
            "EXEC sys.sp_settriggerorder @triggername = N'[Person].[rowtrail_t_Person_{}]', @order = N'First', @stmttype = N'{ty}';",
            &d.tables[0].trigger.as_str()["rowtrail_t_Person_".len()..]
        )), "{ty}");
    }
    assert!(
        install.contains("AND e.is_first = 1"),
        "another First trigger is detected, not silently replaced"
    );
}

#[test]
fn covers_merge_and_is_safe_under_nested_and_recursive_triggers() {
    for t in common::tables() {
        let c = Captured::new(&t).unwrap();
        let sql = trigger::create_trigger(&c, Target::Sql2016);
        assert!(
            sql.contains("AFTER INSERT, UPDATE, DELETE"),
            "one trigger for every action MERGE can take"
        );
        let w = words(&sql);
        // Rows are classified by their images, never by UPDATE()/COLUMNS_UPDATED().
        assert!(!w.contains(&"COLUMNS_UPDATED".to_string()));
        assert!(
            !w.contains(&"TRIGGER_NESTLEVEL".to_string()),
            "capture is never switched off"
        );
        // It writes only to its staging table and its own table variable: no nested trigger fires.
        for l in sql.lines().map(str::trim) {
            if l.starts_with("INSERT INTO") || l.starts_with("UPDATE ") || l.starts_with("DELETE ")
            {
                assert!(
                    l.starts_with(&format!("INSERT INTO {}", c.staging_name()))
                        || l.starts_with("INSERT INTO @pairs"),
                    "{l}"
                );
            }
        }
    }
}

#[test]
fn staging_cannot_reject_a_row() {
    let d = Deployment::generate(&common::tables(), &common::options()).unwrap();
    let install = d.install.render();
    for c in &d.tables {
        let start = install
            .find(&format!("CREATE TABLE {} (", c.staging_name()))
            .unwrap();
        let def = &install[start..start + install[start..].find(");").unwrap()];
        for (i, col) in c.table.columns.iter().enumerate() {
            let line = format!("{} {}", col.name.mssql(), c.staging_types[i]);
            let found = def
                .lines()
                .find(|l| l.trim().starts_with(&line))
                .unwrap_or_else(|| panic!("{line}"));
            assert!(
                found.trim_end_matches(',').ends_with(" NULL") && !found.contains("NOT NULL"),
                "{found}"
            );
        }
        let w = words(def);
        for banned in [
            "CHECK",
            "FOREIGN",
            "REFERENCES",
            "UNIQUE",
            "DEFAULT",
            "IDENTITY",
        ] {
            assert!(
                !w.contains(&banned.to_string()),
                "{}: {banned}",
                c.table.name
            );
        }
    }
}

#[test]
fn staging_keeps_types_collations_and_sparse() {
    let d = Deployment::generate(&common::tables(), &common::options()).unwrap();
    let install = d.install.render();
    assert!(install.contains("[FirstName] nvarchar(50) COLLATE SQL_Latin1_General_CP1_CI_AS NULL"));
    assert!(
        install.contains("[Version] binary(8) NULL"),
        "rowversion is staged as binary(8)"
    );
    assert!(install.contains("[Tag1] varchar(20) SPARSE NULL"));
    assert!(
        install.contains("[AdditionalContactInfo] xml NULL"),
        "typed xml is staged untyped"
    );
    assert!(
        install.contains("[OrganizationNode] hierarchyid NULL")
            && install.contains("[SpatialLocation] geography NULL")
    );
    assert!(
        install.contains("[LineTotal] numeric(38,6) NULL"),
        "a computed column with a stated type is captured"
    );
    assert!(
        !install.contains("[TotalDue]"),
        "a computed column of unknown type is left out"
    );
    assert!(install.contains("note: computed column TotalDue is not captured"));
    let opts = Options {
        version: "9.9.9".into(),
        ..Options::default()
    };
    let header = Deployment::generate(&[common::table("Person")], &opts)
        .unwrap()
        .install
        .render();
    assert!(header.starts_with("-- rowtrail 9.9.9: SQL Server install script"));
    assert!(header.contains("--   Person.Person\n"));
}

#[test]
fn the_2012_target_uses_nothing_newer() {
    let opts = Options {
        target: Target::Sql2012,
        ..common::options()
    };
    let d = Deployment::generate(&common::tables(), &opts).unwrap();
    for s in [d.install.render(), d.uninstall.render()] {
        for newer in [
            "CREATE OR ALTER",
            "DROP TRIGGER IF EXISTS",
            "DROP TABLE IF EXISTS",
            "CURRENT_TRANSACTION_ID",
            "STRING_AGG",
            "SESSION_CONTEXT",
        ] {
            assert!(!s.contains(newer), "{newer}");
        }
    }
}
