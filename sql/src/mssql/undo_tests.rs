//! T-SQL undo rendering: typed literals, exact guards, identity inserts, foreign-key order.

use super::*;
use crate::{Column, Ident};

fn name(schema: &str, table: &str) -> TableName {
    TableName {
        schema: Some(Ident::new(schema).unwrap()),
        name: Ident::new(table).unwrap(),
    }
}

fn col(n: &str, ty: &str) -> Column {
    Column::new(Ident::new(n).unwrap(), ty, true)
}

/// Sales.Order: identity key, money, datetimeoffset, text, rowversion, computed, geography, xml.
fn orders() -> Table {
    let mut cols = vec![
        col("Id", "int"),
        col("Total", "money"),
        col("At", "datetimeoffset(7)"),
        col("Note", "nvarchar(max)"),
        col("Ver", "rowversion"),
        col("Doubled", "money"),
        col("Where", "geography"),
        col("Doc", "xml"),
        col("Ratio", "float"),
        col("Flag", "bit"),
        col("Ref", "uniqueidentifier"),
    ];
    cols[0].identity = true;
    cols[0].nullable = false;
    cols[4].rowversion = true;
    cols[5].computed = true;
    Table {
        name: name("Sales", "Order"),
        columns: cols,
        primary_key: vec![0],
        unique_keys: vec![],
        rowid: false,
    }
}

fn row() -> Vec<Value> {
    vec![
        Value::Integer(7),
        Value::Decimal("12.3400".into()),
        Value::DateTime("2024-03-11T05:00:00.5000000+05:30".into()),
        Value::text("it's\r\nA "),
        Value::Blob(vec![0, 0, 0, 0, 0, 0, 7, 209]),
        Value::Decimal("24.6800".into()),
        Value::Blob(vec![0xE6, 0x10, 0, 0]),
        Value::text("<a b=\"1\"/>"),
        Value::Real(0.1),
        Value::Integer(1),
        Value::Uuid([
            0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ]),
    ]
}

fn render(steps: &[ScriptStep<'_>], mode: OnConflict) -> String {
    let s = script("undo test", steps, mode).unwrap();
    assert_eq!(
        s.batches().len(),
        1,
        "one batch: @n and the transaction span every step"
    );
    s.batches()[0].sql.clone()
}

#[test]
fn a_reinsert_into_an_identity_table_is_wrapped_and_leaves_server_columns_alone() {
    let t = orders();
    let r = row();
    let sql = render(
        &[ScriptStep {
            comment: "undo delete",
            step: Step {
                table: &t,
                expect: None,
                target: Some(&r),
                rowid: None,
            },
        }],
        OnConflict::Stop,
    );
    assert!(
        sql.starts_with("SET XACT_ABORT ON;\nSET NOCOUNT ON;\nBEGIN TRANSACTION;"),
        "{sql}"
    );
    assert!(sql.contains("SET IDENTITY_INSERT [Sales].[Order] ON;\nINSERT INTO [Sales].[Order] ([Id], [Total], [At], [Note], [Where], [Doc], [Ratio], [Flag], [Ref])"), "{sql}");
    assert!(
        !sql.contains("[Ver],") && !sql.contains("[Doubled],"),
        "rowversion and computed are not written"
    );
    assert!(sql.contains(
        "WHERE NOT EXISTS (SELECT 1 FROM [Sales].[Order] WITH (UPDLOCK, HOLDLOCK) WHERE [Id] = 7)"
    ));
    // @@ROWCOUNT is read before SET IDENTITY_INSERT resets it.
    assert!(sql.contains(");\nSET @n = @@ROWCOUNT;\nSET IDENTITY_INSERT [Sales].[Order] OFF;\nIF @n <> 1 THROW 50003"), "{sql}");
    assert!(sql.ends_with("COMMIT TRANSACTION;\nPRINT N'rowtrail undo: applied';"));
}

#[test]
fn literals_are_typed_and_exact() {
    let t = orders();
    let r = row();
    let sql = render(
        &[ScriptStep {
            comment: "c",
            step: Step {
                table: &t,
                expect: None,
                target: Some(&r),
                rowid: None,
            },
        }],
        OnConflict::Stop,
    );
    for want in [
        "CAST(12.3400 AS money)",
        "CAST(N'2024-03-11T05:00:00.5000000+05:30' AS datetimeoffset(7))",
        "CONVERT(nvarchar(max), N'it''s') + NCHAR(13) + NCHAR(10) + N'A '",
        "CAST(0xE6100000 AS geography)",
        "N'<a b=\"1\"/>'",
        "CAST(1E-1 AS float)",
        "CAST(1 AS bit)",
        "CAST(N'00112233-4455-6677-8899-aabbccddeeff' AS uniqueidentifier)",
    ] {
        assert!(sql.contains(want), "{want} missing from\n{sql}");
    }
    // Every double's text reads back to the same bits.
    for f in [0.1, 1.0 / 3.0, -0.0, 5e-324, f64::MAX, 1.0000000000000002] {
        let text = float_text(f);
        assert_eq!(
            text.parse::<f64>().unwrap().to_bits(),
            f.to_bits(),
            "{text}"
        );
    }
}

#[test]
fn guards_compare_exactly() {
    let t = orders();
    let r = row();
    let mut after = r.clone();
    after[1] = Value::Decimal("99.0000".into());
    let sql = render(
        &[ScriptStep {
            comment: "undo update",
            step: Step {
                table: &t,
                expect: Some(&after),
                target: Some(&r),
                rowid: None,
            },
        }],
        OnConflict::Stop,
    );
    assert!(
        sql.contains("UPDATE [Sales].[Order] SET [Total] = CAST(12.3400 AS money), [At] ="),
        "identity is never assigned:\n{sql}"
    );
    assert!(
        sql.contains("WHERE [Id] = 7\n      AND [Total] = CAST(99.0000 AS money)"),
        "{sql}"
    );
    assert!(sql.contains("DATEPART(TZOFFSET, [At]) = DATEPART(TZOFFSET, CAST(N'2024-03-11T05:00:00.5000000+05:30' AS datetimeoffset(7)))"));
    assert!(sql.contains("CONVERT(nvarchar(max), [Note]) COLLATE Latin1_General_100_BIN2 = "));
    assert!(sql.contains("DATALENGTH(CONVERT(nvarchar(max), [Note])) = DATALENGTH("));
    assert!(
        !sql.contains("[Ver]"),
        "a rowversion is never guarded: every write changes it, the undo's own earlier steps on \
         the row and the undo a redo follows included"
    );
    assert!(
        sql.contains("AND [Doubled] = CAST(24.6800 AS money)"),
        "a computed column is guarded (its value follows from the others):\n{sql}"
    );
    assert!(sql.contains("CONVERT(varbinary(max), [Where]) = 0xE6100000"));
    assert!(sql.contains(
        "(CONVERT(nvarchar(max), [Doc]) COLLATE Latin1_General_100_BIN2 = N'<a b=\"1\"/>'"
    ));
}

#[test]
fn keyless_tables_touch_a_row_only_when_it_is_the_only_match() {
    let t = Table {
        name: name("dbo", "log"),
        columns: vec![col("msg", "varchar(20)"), col("n", "int")],
        primary_key: vec![],
        unique_keys: vec![],
        rowid: false,
    };
    let r = vec![Value::text("x"), Value::Null];
    let sql = render(
        &[ScriptStep {
            comment: "c",
            step: Step {
                table: &t,
                expect: Some(&r),
                target: None,
                rowid: None,
            },
        }],
        OnConflict::Force,
    );
    assert!(
        sql.contains("AND (SELECT COUNT(*) FROM (SELECT TOP (2) 1 AS [x] FROM [dbo].[log] WHERE"),
        "{sql}"
    );
    assert!(
        sql.contains(
            "IF @n <> 1\nBEGIN\n    INSERT INTO @outcome ([step], [outcome]) VALUES (1, N'forced');\n    DELETE TOP (1) FROM [dbo].[log] WHERE"
        ),
        "{sql}"
    );
}

#[test]
fn skip_and_force_modes() {
    let t = orders();
    let r = row();
    let step = ScriptStep {
        comment: "c",
        step: Step {
            table: &t,
            expect: None,
            target: Some(&r),
            rowid: None,
        },
    };
    let skip = render(&[step], OnConflict::Skip);
    assert!(
        skip.contains("IF @n <> 1 PRINT N'rowtrail undo: step 1 skipped (conflict)';")
            && !skip.contains("THROW")
    );
    // Skip and force report each step whose guard failed in one result set before the commit.
    assert!(
        skip.contains(
            "IF @n <> 1 INSERT INTO @outcome ([step], [outcome]) VALUES (1, N'skipped');"
        ),
        "{skip}"
    );
    let select = "SELECT [step], [outcome] FROM @outcome ORDER BY [step];\nCOMMIT TRANSACTION;";
    assert!(skip.contains(select), "{skip}");
    let refuse = render(&[step], OnConflict::Stop);
    assert!(
        !refuse.contains("@outcome"),
        "refuse mode has no outcomes to report: every step applied or none did"
    );
    let force = render(&[step], OnConflict::Force);
    assert!(
        force.contains(
            "IF @n <> 1\nBEGIN\n    INSERT INTO @outcome ([step], [outcome]) VALUES (1, N'forced');\n    UPDATE [Sales].[Order] SET"
        ),
        "{force}"
    );
    assert!(force.contains(select), "{force}");
    assert!(
        force.contains("    IF @n = 0\n    BEGIN\n        SET IDENTITY_INSERT [Sales].[Order] ON;"),
        "{force}"
    );
}

#[test]
fn foreign_keys_order_inserts_parents_first_and_deletes_children_first() {
    let mut parent = orders();
    parent.name = name("Sales", "Header");
    let mut child = orders();
    child.name = name("Sales", "Detail");
    let fks = [ForeignKey {
        child: child.name.clone(),
        parent: parent.name.clone(),
        child_columns: vec![],
        parent_columns: vec![],
    }];
    let rows: Vec<Vec<Value>> = (0..4)
        .map(|i| {
            let mut r = row();
            r[0] = Value::Integer(i);
            r
        })
        .collect();
    let st = |t, i: usize, c: &'static str| -> ScriptStep<'_> {
        ScriptStep {
            comment: c,
            step: Step {
                table: t,
                expect: None,
                target: Some(&rows[i]),
                rowid: None,
            },
        }
    };
    // Planner order (newest first): re-insert child, re-insert parent, delete child, delete parent.
    let steps = vec![
        st(&child, 0, "insert child"),
        st(&parent, 1, "insert parent"),
        ScriptStep {
            comment: "delete parent",
            step: Step {
                table: &parent,
                expect: Some(&rows[2]),
                target: None,
                rowid: None,
            },
        },
        ScriptStep {
            comment: "delete child",
            step: Step {
                table: &child,
                expect: Some(&rows[3]),
                target: None,
                rowid: None,
            },
        },
    ];
    assert_eq!(foreign_key_order(&steps, &fks), [1, 0, 3, 2]);
    let order: Vec<&str> = order_for_foreign_keys(&steps, &fks)
        .iter()
        .map(|s| s.comment)
        .collect();
    assert_eq!(
        order,
        [
            "insert parent",
            "insert child",
            "delete child",
            "delete parent"
        ]
    );
    // Without foreign keys, or when a row has two steps, the planner's order stands.
    let same: Vec<&str> = order_for_foreign_keys(&steps, &[])
        .iter()
        .map(|s| s.comment)
        .collect();
    assert_eq!(
        same,
        [
            "insert child",
            "insert parent",
            "delete parent",
            "delete child"
        ]
    );
    let mut twice = steps.clone();
    twice.push(ScriptStep {
        comment: "again",
        step: Step {
            table: &child,
            expect: Some(&rows[0]),
            target: None,
            rowid: None,
        },
    });
    assert_eq!(
        order_for_foreign_keys(&twice, &fks)[0].comment,
        "insert child"
    );
}

#[test]
fn refuses_images_of_the_wrong_width_and_names_sqlcmd_would_act_on() {
    let t = orders();
    let short = vec![Value::Integer(1)];
    assert!(script(
        "h",
        &[ScriptStep {
            comment: "c",
            step: Step {
                table: &t,
                expect: Some(&short),
                target: None,
                rowid: None
            }
        }],
        OnConflict::Stop
    )
    .is_err());
    let mut evil = orders();
    evil.name = name("dbo", "x\n:!! rm -rf /");
    let r = row();
    assert!(script(
        "h",
        &[ScriptStep {
            comment: "c",
            step: Step {
                table: &evil,
                expect: Some(&r),
                target: None,
                rowid: None
            }
        }],
        OnConflict::Stop
    )
    .is_err());
}

#[test]
fn long_text_with_control_characters_is_never_truncated_by_its_concatenation() {
    // 5,000 characters with line breaks: every partial sum must already be nvarchar(max),
    // or SQL Server truncates it at 4,000 characters before any outer CONVERT.
    let text = "x".repeat(2_500) + "\r\n" + &"y".repeat(2_500) + "\n";
    let lit = text_literal(text.as_bytes());
    assert!(
        lit.starts_with("CONVERT(nvarchar(max), N'xxx")
            && lit.contains("') + NCHAR(13) + NCHAR(10) + N'yyy"),
        "{}",
        &lit[..60]
    );
    assert!(lit.ends_with("' + NCHAR(10)"), "{}", &lit[lit.len() - 40..]);
    assert_eq!(lit.matches("CONVERT(").count(), 1, "one widening, first");
    // No control character: one literal, which SQL Server types nvarchar(max) past 4,000.
    assert_eq!(text_literal(b"plain"), "N'plain'");
    // Bytes are one 0x literal, whatever their length: nothing is concatenated.
    let big = hex(&vec![0xAB; 9_000]);
    assert!(big.starts_with("0xABAB") && !big.contains('+') && big.len() == 2 + 18_000);
}

#[test]
fn only_foreign_keys_move_steps_so_a_reused_unique_key_undoes_in_planner_order() {
    // History: row 1 (natural key X) deleted, then row 2 inserted with X. Newest first, the
    // undo deletes row 2, then re-inserts row 1; re-inserting first breaks the unique key.
    let t = orders();
    let mut parent = orders();
    parent.name = name("Sales", "Customer");
    let fks = [ForeignKey {
        child: t.name.clone(),
        parent: parent.name.clone(),
        child_columns: vec![],
        parent_columns: vec![],
    }];
    let (mut a, mut b) = (row(), row());
    a[0] = Value::Integer(1);
    b[0] = Value::Integer(2);
    let steps = [
        ScriptStep {
            comment: "delete the new row",
            step: Step {
                table: &t,
                expect: Some(&b),
                target: None,
                rowid: None,
            },
        },
        ScriptStep {
            comment: "re-insert the old",
            step: Step {
                table: &t,
                expect: None,
                target: Some(&a),
                rowid: None,
            },
        },
    ];
    assert_eq!(dependency_order(&steps, &fks), [0, 1]);
    assert_eq!(
        foreign_key_order(&steps, &fks),
        [1, 0],
        "the phase order moved it"
    );
    // A parent's re-insert still goes before its child's, and a child's delete before its
    // parent's, whatever else the planner put between them.
    let (mut p, mut c) = (row(), row());
    p[0] = Value::Integer(7);
    c[0] = Value::Integer(8);
    let steps = [
        ScriptStep {
            comment: "re-insert child",
            step: Step {
                table: &t,
                expect: None,
                target: Some(&c),
                rowid: None,
            },
        },
        ScriptStep {
            comment: "update",
            step: Step {
                table: &parent,
                expect: Some(&a),
                target: Some(&b),
                rowid: None,
            },
        },
        ScriptStep {
            comment: "re-insert parent",
            step: Step {
                table: &parent,
                expect: None,
                target: Some(&p),
                rowid: None,
            },
        },
    ];
    assert_eq!(dependency_order(&steps, &fks), [1, 2, 0]);
}

#[test]
fn consecutive_reinserts_into_one_table_are_one_statement_in_refuse_mode() {
    // A self-referencing table's rows, deleted by one statement: re-inserted one by one in
    // key order, a child can come before its parent (Msg 547); one INSERT is checked at its end.
    let t = orders();
    let rows: Vec<Vec<Value>> = (1..=3)
        .map(|i| {
            let mut r = row();
            r[0] = Value::Integer(i);
            r
        })
        .collect();
    let steps: Vec<ScriptStep<'_>> = rows
        .iter()
        .map(|r| ScriptStep {
            comment: "re-insert",
            step: Step {
                table: &t,
                expect: None,
                target: Some(r),
                rowid: None,
            },
        })
        .collect();
    let sql = render(&steps, OnConflict::Stop);
    assert_eq!(
        sql.matches("INSERT INTO [Sales].[Order]").count(),
        1,
        "{sql}"
    );
    assert_eq!(
        sql.matches("\n    UNION ALL\n    SELECT ").count(),
        2,
        "{sql}"
    );
    assert_eq!(sql.matches("WHERE NOT EXISTS (SELECT 1 FROM [Sales].[Order] WITH (UPDLOCK, HOLDLOCK) WHERE [Id] = ").count(), 3);
    assert!(
        sql.contains("IF @n <> 3 THROW 50003, N'rowtrail undo: steps 1 to 3 conflict"),
        "{sql}"
    );
    for n in 1..=3 {
        assert!(sql.contains(&format!("-- step {n}: re-insert")));
    }
    // Skip and force modes keep one statement per step (each has its own outcome).
    let skip = render(&steps, OnConflict::Skip);
    assert_eq!(skip.matches("INSERT INTO [Sales].[Order]").count(), 3);
}

#[test]
fn varchar_keys_are_compared_through_typed_literals_and_xml_as_code_units() {
    let mut code = col("Code", "varchar(20)");
    code.collation = Some("Latin1_General_100_CI_AS_SC_UTF8".into());
    code.nullable = false;
    let t = Table {
        name: name("dbo", "Item"),
        columns: vec![code, col("Doc", "xml")],
        primary_key: vec![0],
        unique_keys: vec![],
        rowid: false,
    };
    let (a, b) = (
        vec![Value::text("café"), Value::text("<x/>")],
        vec![Value::text("café"), Value::text("<y/>")],
    );
    let steps = [
        ScriptStep {
            comment: "update",
            step: Step {
                table: &t,
                expect: Some(&b),
                target: Some(&a),
                rowid: None,
            },
        },
        ScriptStep {
            comment: "re-insert",
            step: Step {
                table: &t,
                expect: None,
                target: Some(&a),
                rowid: None,
            },
        },
    ];
    let sql = render(&steps, OnConflict::Stop);
    let typed = "CAST((N'café') COLLATE Latin1_General_100_CI_AS_SC_UTF8 AS varchar(20))";
    // The key's index is used: the literal converts, never the column.
    assert!(
        sql.contains(&format!("WHERE ([Code] = {typed} AND ")),
        "{sql}"
    );
    assert!(
        sql.contains(&format!("WITH (UPDLOCK, HOLDLOCK) WHERE [Code] = {typed})")),
        "{sql}"
    );
    // No comparison converts the column (the SET clause's assignment converts the literal).
    assert!(
        !sql.contains("([Code] = N'café'") && !sql.contains("WHERE [Code] = N'café'"),
        "{sql}"
    );
    assert!(sql.contains("SET [Code] = N'café'"), "{sql}");
    // xml text compared by code units, whatever the database's collation.
    assert!(
        sql.contains(
            "(CONVERT(nvarchar(max), [Doc]) COLLATE Latin1_General_100_BIN2 = N'<y/>' AND "
        ),
        "{sql}"
    );
}

/// Issue 15 (medium, xml guard under the database collation): xml text usually holds line
/// breaks, so its literal is a concatenation (`… + NCHAR(10) + …`); a `COLLATE` written after
/// it binds to its last part only, leaving the comparison to collation precedence. The binary
/// collation goes on the column's side, where it governs the whole comparison.
#[test]
fn issue15_an_xml_guard_is_binary_over_the_whole_multi_line_literal() {
    let mut id = col("Id", "int");
    id.nullable = false;
    let t = Table {
        name: name("dbo", "Doc"),
        columns: vec![id, col("Body", "xml")],
        primary_key: vec![0],
        unique_keys: vec![],
        rowid: false,
    };
    let now = vec![Value::Integer(1), Value::text("<a>\n<B/>\n</a>")];
    let was = vec![Value::Integer(1), Value::text("<a/>")];
    let steps = [ScriptStep {
        comment: "update",
        step: Step {
            table: &t,
            expect: Some(&now),
            target: Some(&was),
            rowid: None,
        },
    }];
    let sql = render(&steps, OnConflict::Stop);
    let lit = "CONVERT(nvarchar(max), N'<a>') + NCHAR(10) + N'<B/>' + NCHAR(10) + N'</a>'";
    assert!(
        sql.contains(&format!(
            "(CONVERT(nvarchar(max), [Body]) COLLATE Latin1_General_100_BIN2 = {lit} AND \
             DATALENGTH(CONVERT(nvarchar(max), [Body])) = DATALENGTH({lit}))"
        )),
        "{sql}"
    );
    assert!(!sql.contains(&format!("{lit} COLLATE")), "{sql}");
}
