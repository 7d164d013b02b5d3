//! Undo plans on SQL Server sources, without a server: the script `--apply` sends (and the dry
//! run prints) parses in Microsoft's ScriptDom (TSql150Parser) in every mode, puts parents
//! before children, and what the server answers — outcome rows, guard errors, constraint
//! errors — becomes the journal's results or the conflicts it stands for.

use std::sync::Arc;

use rowtrail_apply::mssql::errors::refusal;
use rowtrail_apply::mssql::script::{render, results, Rendered};
use rowtrail_apply::{ApplyError, Outcome};
use rowtrail_reader::archive::{ArchivedChange as Change, RunKind};
use rowtrail_reader::mssql::error::ServerError;
use rowtrail_restore::plan::{script_header, Mode, Plan, PlannedStep};
use rowtrail_sql::mssql::script::split_batches;
use rowtrail_sql::mssql::types::MssqlType;
use rowtrail_sql::mssql::Captured;
use rowtrail_sql::staging::Op;
use rowtrail_sql::ForeignKey;
use rowtrail_sql::{Column, Dialect, Table, Value};

const ADVENTUREWORKS: &str = include_str!("../../sql/tests/fixtures/adventureworks.sql");

/// The realistic table `name`, as capture records it.
fn table(name: &str) -> Arc<Table> {
    let t = rowtrail_sql::ddl::parse_mssql(ADVENTUREWORKS)
        .expect("the fixture parses")
        .into_iter()
        .find(|t| t.name.name.as_str() == name)
        .expect("fixture table");
    Arc::new(Captured::new(&t).expect("captured").table)
}

/// A value of column `c`'s type; `n` varies keys. Text carries what could split a script.
fn sample(c: &Column, n: i64) -> Value {
    let base = MssqlType::parse(&c.sql_type)
        .map(|t| t.base)
        .unwrap_or_default();
    match base.as_str() {
        "bit" => Value::Integer(1),
        "tinyint" | "smallint" | "int" | "bigint" => Value::Integer(n),
        "decimal" | "numeric" => Value::Decimal(format!("{n}.05")),
        "money" | "smallmoney" => Value::Decimal(format!("{n}.1234")),
        "float" | "real" => Value::Real(0.1 * n as f64),
        "date" => Value::DateTime("2024-02-29".into()),
        "time" => Value::DateTime("23:59:59.9999999".into()),
        "datetime2" => Value::DateTime("2024-02-29T10:00:00.0000001".into()),
        "datetime" => Value::DateTime("2024-02-29T10:00:00.003".into()),
        "smalldatetime" => Value::DateTime("2024-02-29T10:00:00".into()),
        "datetimeoffset" => Value::DateTime("2024-03-11T05:00:00.5000000-14:00".into()),
        "uniqueidentifier" => Value::Uuid([n as u8; 16]),
        "binary" | "varbinary" | "rowversion" | "timestamp" | "hierarchyid" | "geometry"
        | "geography" => Value::Blob(vec![0, 0xff, n as u8]),
        _ => Value::text(&format!("it's {n}\nGO\n$(x) -- /* 😀 ")),
    }
}

fn row(t: &Table, n: i64) -> Vec<Value> {
    t.columns.iter().map(|c| sample(c, n)).collect()
}

fn change(id: i64, t: &Arc<Table>, op: &str, before: Option<i64>, after: Option<i64>) -> Change {
    Change {
        id,
        source_id: 1,
        incarnation: "f15a6b6c-0000".into(),
        seq: id * 10,
        table_id: 1,
        table: t.clone(),
        op: Op::from_word(op).expect("an op"),
        tx: Some(Value::Integer(81723)),
        stmt: None,
        at: Some("2026-11-21T14:05:00.000Z".into()),
        login: Some("bob".into()),
        host: None,
        app: None,
        client_ip: None,
        rowid: None,
        row_key: vec![id as u8],
        prev_key: None,
        before: before.map(|n| row(t, n)),
        after: after.map(|n| row(t, n)),
        archived_us: 0,
        hash: [0; 32],
    }
}

/// Newest first, as the planner orders an undo: a detail and its header inserted (undone by
/// deletes), a header and its detail deleted (undone by re-inserts), a product updated.
fn plan(mode: Mode) -> (Plan, Vec<ForeignKey>) {
    let (header, detail, product) = (
        table("SalesOrderHeader"),
        table("SalesOrderDetail"),
        table("Product"),
    );
    let changes = [
        change(14, &product, "update", Some(5), Some(6)),
        change(13, &detail, "insert", None, Some(2)),
        change(12, &header, "insert", None, Some(2)),
        change(11, &detail, "delete", Some(1), None),
        change(10, &header, "delete", Some(1), None),
    ];
    let fks = vec![ForeignKey {
        child: detail.name.clone(),
        child_columns: vec!["SalesOrderID".into()],
        parent: header.name.clone(),
        parent_columns: vec!["SalesOrderID".into()],
    }];
    let plan = Plan {
        kind: RunKind::Undo,
        mode,
        steps: changes
            .into_iter()
            .map(|change| PlannedStep {
                change,
                forward: false,
            })
            .collect(),
        conflicts: vec![],
        cascaded: vec![],
        skipped: vec![],
    };
    (plan, fks)
}

/// A plan with what its job borrows.
struct Planned {
    plan: Plan,
    fks: Vec<ForeignKey>,
    comments: Vec<String>,
}

impl Planned {
    fn job(&self) -> rowtrail_apply::Job<'_> {
        self.plan.job(&self.comments, &self.fks, None)
    }
}

/// The first batch the script sends.
fn first_batch(r: &Rendered) -> &str {
    r.batches().next().expect("a batch")
}

fn rendered(mode: Mode) -> (Planned, Rendered) {
    let (plan, fks) = plan(mode);
    render_plan(plan, fks)
}

fn render_plan(plan: Plan, fks: Vec<ForeignKey>) -> (Planned, Rendered) {
    let header = script_header(&plan, "f15a6b6c-0000", Dialect::Mssql);
    let comments = plan.comments();
    let p = Planned {
        plan,
        fks,
        comments,
    };
    let r = render(&p.job(), &header).expect("renders");
    (p, r)
}

/// Runs ScriptDom over `scripts`; panics (never skips) when the validator is missing.
fn scriptdom(scripts: &[(String, String)]) -> String {
    rowtrail_tests::scriptdom::validate(scripts)
}

#[test]
fn the_script_of_a_sql_server_plan_parses_in_scriptdom_in_every_mode() {
    let mut scripts = Vec::new();
    for mode in [Mode::Refuse, Mode::Cascade, Mode::Skip, Mode::Force] {
        let (_, r) = rendered(mode);
        let text = r.script.render();
        assert_eq!(split_batches(&text).len(), 1, "{mode:?}: one batch");
        assert!(
            text.contains("-- rowtrail undo script (5 step(s)")
                && text.contains("sqlcmd -b -I")
                && !text.contains("sqlite3"),
            "{mode:?}: the header says how to run it by hand:\n{text}"
        );
        assert!(first_batch(&r).starts_with("SET XACT_ABORT ON;"));
        scripts.push((format!("undo-{}.sql", mode.word()), text));
    }
    let summary = scriptdom(&scripts);
    assert!(
        summary.starts_with("validated 4 scripts, 4 batches, 0 errors"),
        "{summary}"
    );
}

#[test]
fn re_inserts_put_parents_first_and_deletes_take_children_first() {
    let (plan, r) = rendered(Mode::Refuse);
    let ids: Vec<i64> = r
        .order
        .iter()
        .map(|&i| plan.plan.steps[i].change.id)
        .collect();
    assert_eq!(ids, [10, 11, 14, 13, 12]);
    let batch = first_batch(&r);
    let at = |needle: &str| batch.find(needle).unwrap_or_else(|| panic!("{needle}"));
    assert!(at("-- step 1: undo change 10") < at("-- step 2: undo change 11"));
    assert!(
        at("INSERT INTO [Sales].[SalesOrderHeader]") < at("INSERT INTO [Sales].[SalesOrderDetail]")
    );
    assert!(
        at("DELETE FROM [Sales].[SalesOrderDetail]") < at("DELETE FROM [Sales].[SalesOrderHeader]")
    );
}

#[test]
fn outcome_rows_become_the_journal_results_in_script_order() {
    let (plan, r) = rendered(Mode::Skip);
    let got = results(&plan.job(), &r, &[(2, "skipped".into())]).unwrap();
    let ids: Vec<(i64, &str, Outcome)> = got.iter().map(|s| (s.id, s.action, s.outcome)).collect();
    assert_eq!(
        ids,
        [
            (10, "insert", Outcome::Applied),
            (11, "insert", Outcome::Skipped),
            (14, "update", Outcome::Applied),
            (13, "delete", Outcome::Applied),
            (12, "delete", Outcome::Applied),
        ]
    );
    let (plan, r) = rendered(Mode::Force);
    let forced = results(&plan.job(), &r, &[(5, "forced".into())]).unwrap();
    assert_eq!(forced[4].outcome, Outcome::Forced);
    assert!(
        results(&plan.job(), &r, &[(6, "forced".into())]).is_err(),
        "no step 6"
    );
    assert!(results(&plan.job(), &r, &[(1, "maybe".into())]).is_err());
}

#[test]
fn guard_and_constraint_errors_are_conflicts_naming_the_change_and_no_values() {
    let (plan, r) = rendered(Mode::Refuse);
    let guard = ServerError {
        code: 50003,
        line: 0,
        message: "rowtrail undo: step 2 conflicts: the row no longer equals its archived image, or its key is taken".into(),
    };
    let Some(ApplyError::Guards { rows: g, .. }) = refusal(&guard, &r, 0, &plan.job()) else {
        panic!("50003 is a guard failure")
    };
    assert_eq!(g.len(), 1);
    assert!(
        g[0].starts_with("step 2: undo change 11 (delete of Sales.SalesOrderDetail")
            && g[0].contains("by bob"),
        "{}",
        g[0]
    );
    // A constraint error names the step holding the line it was raised on.
    let line = first_batch(&r)
        .lines()
        .position(|l| l.starts_with("-- step 5: "))
        .unwrap() as u32
        + 2;
    assert_eq!(r.step_at_line(0, line), Some(5));
    assert_eq!(r.step_at_line(0, 1), None, "before the first step");
    let fk = ServerError {
        code: 547,
        line,
        message: "The DELETE statement conflicted with the REFERENCE constraint \"FK_x\"".into(),
    };
    let Some(ApplyError::Guards { rows: g, .. }) = refusal(&fk, &r, 0, &plan.job()) else {
        panic!("547 is a conflict")
    };
    assert!(
        g[0].starts_with("step 5: undo change 12") && g[0].contains("foreign-key"),
        "{}",
        g[0]
    );
    let dup = ServerError {
        code: 2627,
        line,
        message: "Violation of PRIMARY KEY constraint 'PK'. The duplicate key value is (42)."
            .into(),
    };
    let Some(e @ ApplyError::Guards { .. }) = refusal(&dup, &r, 0, &plan.job()) else {
        panic!("2627 is a conflict")
    };
    let text = e.to_string();
    assert!(
        text.contains("unique key") && !text.contains("(42)"),
        "the server's text (which quotes key values) stays out: {text}"
    );
    let other = ServerError {
        code: 208,
        line,
        message: "Invalid object name 'Sales.SalesOrderHeader'.".into(),
    };
    assert!(
        refusal(&other, &r, 0, &plan.job()).is_none(),
        "any other error is reported as it is"
    );
}

/// Issue 15, item 11: a large undo is one transaction over several batches of at most
/// `STEPS_PER_BATCH` steps (one batch would answer nothing until its end, so a command timeout
/// could not tell slow from stuck); a re-insert run is never split; step numbers run on, and
/// an error in a later batch names the step it came from.
#[test]
fn issue15_a_large_undo_is_one_transaction_in_several_batches() {
    use rowtrail_sql::mssql::undo::STEPS_PER_BATCH;
    let (header, product) = (table("SalesOrderHeader"), table("Product"));
    // Newest first: 250 products updated, then 150 headers deleted (undone by re-inserts,
    // consecutive, so one statement).
    let mut changes = Vec::new();
    for n in 0..250 {
        changes.push(change(1000 + n, &product, "update", Some(n), Some(n + 1)));
    }
    for n in 0..150 {
        changes.push(change(500 + n, &header, "delete", Some(n), None));
    }
    let steps: Vec<PlannedStep> = changes
        .into_iter()
        .map(|change| PlannedStep {
            change,
            forward: false,
        })
        .collect();
    for mode in [Mode::Refuse, Mode::Skip] {
        let plan = Plan {
            kind: RunKind::Undo,
            mode,
            steps: steps.clone(),
            conflicts: vec![],
            cascaded: vec![],
            skipped: vec![],
        };
        let (p, r) = render_plan(plan, vec![]);
        let batches: Vec<&str> = r.batches().collect();
        let text = r.script.render();
        assert_eq!(split_batches(&text).len(), batches.len(), "{mode:?}");
        assert!(batches[0].starts_with("SET XACT_ABORT ON;\nSET NOCOUNT ON;\nBEGIN TRANSACTION;"));
        assert_eq!(
            text.matches("BEGIN TRANSACTION;").count(),
            1,
            "one transaction"
        );
        assert_eq!(text.matches("COMMIT TRANSACTION;").count(), 1);
        assert!(batches.last().unwrap().contains("COMMIT TRANSACTION;"));
        for b in &batches[1..] {
            assert!(
                b.starts_with("IF @@TRANCOUNT = 0 SET NOEXEC ON;\nDECLARE @n int;"),
                "after a failure nothing runs outside the transaction:\n{}",
                &b[..80]
            );
        }
        let mut total = 0;
        for (k, b) in batches.iter().enumerate() {
            let held = b.matches("\n-- step ").count();
            total += held;
            assert_eq!(r.steps_through(k), total, "{mode:?} batch {k}");
            if mode == Mode::Refuse && b.contains("INSERT INTO [Sales].[SalesOrderHeader]") {
                assert_eq!(
                    held, 150,
                    "the re-insert run stays in one batch and one statement"
                );
            } else {
                assert!(held <= STEPS_PER_BATCH, "{mode:?} batch {k} holds {held}");
            }
            if mode == Mode::Skip {
                assert!(
                    b.contains("SELECT [step], [outcome] FROM @outcome"),
                    "each batch reports its outcomes"
                );
            }
        }
        assert_eq!(total, 400);
        match mode {
            Mode::Refuse => assert_eq!(
                batches.len(),
                4,
                "100 + 100 + 50 updates, then the 150-row re-insert"
            ),
            _ => assert_eq!(batches.len(), 4, "400 steps, 100 a batch"),
        }
        // An error raised on a line of the second batch names that batch's step.
        let line = batches[1]
            .lines()
            .position(|l| l.starts_with("-- step 150: "))
            .unwrap() as u32
            + 2;
        assert_eq!(r.step_at_line(1, line), Some(150));
        let fk = ServerError {
            code: 547,
            line,
            message: "conflict".into(),
        };
        let Some(ApplyError::Guards { rows, .. }) = refusal(&fk, &r, 1, &p.job()) else {
            panic!("547 is a conflict")
        };
        assert!(
            rows[0].starts_with("step 150: undo change 1149 "),
            "{}",
            rows[0]
        );
        // Outcome rows of any batch land on their step.
        if mode == Mode::Skip {
            let got = results(
                &p.job(),
                &r,
                &[(2, "skipped".into()), (399, "skipped".into())],
            )
            .unwrap();
            assert_eq!(got[1].outcome, Outcome::Skipped);
            assert_eq!(got[398].outcome, Outcome::Skipped);
            assert_eq!(
                got.iter().filter(|s| s.outcome == Outcome::Applied).count(),
                398
            );
        }
        let summary = scriptdom(&[(format!("large-undo-{}.sql", mode.word()), text)]);
        assert!(
            summary.starts_with(&format!(
                "validated 1 scripts, {} batches, 0 errors",
                batches.len()
            )),
            "{summary}"
        );
    }
}
