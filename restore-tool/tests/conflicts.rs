//! Conflicts of every dependency kind under every mode, guards at apply time (writes not yet
//! archived, type-exact comparison), tables without a key, and the journal's consistency.

mod common;

use common::Env;
use rowtrail_apply::ApplyError;
use rowtrail_reader::archive::ChangeQuery;
use rowtrail_restore::conflict::Dependency;
use rowtrail_restore::plan::Mode;
use rowtrail_restore::scope::Scope;
use rowtrail_restore::RestoreError;
use rowtrail_sql::Value;

/// The apply layer's error an undo ended with, if it ended with one.
fn applying<T>(r: Result<T, RestoreError>) -> Option<ApplyError> {
    match r {
        Err(RestoreError::Apply(e)) => Some(*e),
        _ => None,
    }
}

const DDL: &str = "
    CREATE TABLE parent (id INTEGER PRIMARY KEY, name TEXT);
    CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent (id), v);
    CREATE TABLE loose (v);";

fn changes(ids: &[i64]) -> Scope {
    Scope {
        changes: ids.to_vec(),
        ..Scope::default()
    }
}

/// Runs `sql` and archives it; returns the ids of the changes it made.
fn write(env: &Env, sql: &str) -> Vec<i64> {
    let before = env.drain();
    env.conn.execute_batch(sql).expect("workload");
    let after = env.drain();
    (before + 1..=after).collect()
}

fn rows(env: &Env, table: &str) -> Vec<Vec<Value>> {
    env.snapshot()
        .into_iter()
        .find(|(n, _)| n == table)
        .map(|(_, r)| r)
        .unwrap_or_default()
}

fn row(vals: &[Value]) -> Vec<Value> {
    vals.to_vec()
}

fn int(i: i64) -> Value {
    Value::Integer(i)
}

fn text(s: &str) -> Value {
    Value::text(s)
}

/// The dependencies a refused undo reports, as (change, later change, kind).
fn refused(env: &mut Env, scope: &Scope) -> Vec<(i64, i64, Dependency)> {
    match env.undo(scope, Mode::Refuse) {
        Err(RestoreError::Conflicts(cs)) => cs
            .iter()
            .map(|c| (c.change.id, c.later.id, c.dependency))
            .collect(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn later_write_refuse_cascade_skip_force() {
    for mode in [Mode::Refuse, Mode::Cascade, Mode::Skip, Mode::Force] {
        let mut env = Env::new(DDL);
        let c1 = write(&env, "INSERT INTO parent VALUES (1, 'a')")[0];
        let c2 = write(&env, "UPDATE parent SET name = 'b' WHERE id = 1")[0];
        let before = env.snapshot();
        match mode {
            Mode::Refuse => {
                assert_eq!(
                    refused(&mut env, &changes(&[c1])),
                    [(c1, c2, Dependency::LaterWrite)]
                );
                assert_eq!(env.snapshot(), before, "a refusal changes nothing");
            }
            Mode::Cascade => {
                env.undo(&changes(&[c1]), mode).unwrap().expect("a run");
                assert!(rows(&env, "parent").is_empty());
            }
            Mode::Skip => {
                let p = env.prepare(&changes(&[c1]), mode).unwrap();
                assert!(p.plan.steps.is_empty() && p.plan.skipped.len() == 1);
                assert_eq!(env.undo(&changes(&[c1]), mode).unwrap(), None);
                assert_eq!(env.snapshot(), before);
            }
            Mode::Force => {
                env.undo(&changes(&[c1]), mode).unwrap().expect("a run");
                assert!(rows(&env, "parent").is_empty());
            }
        }
    }
}

#[test]
fn key_reused_refuse_cascade_skip_force() {
    for mode in [Mode::Refuse, Mode::Cascade, Mode::Skip, Mode::Force] {
        let mut env = Env::new(DDL);
        write(&env, "INSERT INTO parent VALUES (2, 'old')");
        let del = write(&env, "DELETE FROM parent WHERE id = 2")[0];
        let reuse = write(&env, "INSERT INTO parent VALUES (2, 'new')")[0];
        let before = env.snapshot();
        match mode {
            Mode::Refuse => {
                assert_eq!(
                    refused(&mut env, &changes(&[del])),
                    [(del, reuse, Dependency::KeyReused)]
                );
                assert_eq!(env.snapshot(), before);
            }
            Mode::Skip => {
                assert_eq!(env.undo(&changes(&[del]), mode).unwrap(), None);
                assert_eq!(env.snapshot(), before);
            }
            Mode::Cascade | Mode::Force => {
                env.undo(&changes(&[del]), mode).unwrap().expect("a run");
                assert_eq!(rows(&env, "parent"), [row(&[int(2), text("old")])]);
            }
        }
    }
}

#[test]
fn child_inserted_refuse_cascade_skip_and_force_stops_at_the_foreign_key() {
    for mode in [Mode::Refuse, Mode::Cascade, Mode::Skip, Mode::Force] {
        let mut env = Env::new(DDL);
        let parent = write(&env, "INSERT INTO parent VALUES (3, 'p')")[0];
        let kid = write(&env, "INSERT INTO child VALUES (10, 3, 'k')")[0];
        let before = env.snapshot();
        match mode {
            Mode::Refuse => {
                assert_eq!(
                    refused(&mut env, &changes(&[parent])),
                    [(parent, kid, Dependency::ChildInserted)]
                );
            }
            Mode::Cascade => {
                env.undo(&changes(&[parent]), mode).unwrap().expect("a run");
                assert!(rows(&env, "parent").is_empty() && rows(&env, "child").is_empty());
                continue;
            }
            Mode::Skip => assert_eq!(env.undo(&changes(&[parent]), mode).unwrap(), None),
            Mode::Force => match env.undo(&changes(&[parent]), mode) {
                Err(RestoreError::Apply(e))
                    if matches!(*e, ApplyError::ForeignKeys { count: 1, .. }) => {}
                other => panic!("force must not orphan a child: {other:?}"),
            },
        }
        assert_eq!(env.snapshot(), before, "{mode:?} changed the source");
    }
}

#[test]
fn parent_deleted_refuse_cascade_skip_and_force_stops_at_the_foreign_key() {
    for mode in [Mode::Refuse, Mode::Cascade, Mode::Skip, Mode::Force] {
        let mut env = Env::new(DDL);
        write(
            &env,
            "INSERT INTO parent VALUES (4, 'p'); INSERT INTO child VALUES (11, 4, 'k')",
        );
        let gone = write(&env, "DELETE FROM child WHERE id = 11")[0];
        let orphaning = write(&env, "DELETE FROM parent WHERE id = 4")[0];
        let before = env.snapshot();
        match mode {
            Mode::Refuse => assert_eq!(
                refused(&mut env, &changes(&[gone])),
                [(gone, orphaning, Dependency::ParentDeleted)]
            ),
            Mode::Cascade => {
                env.undo(&changes(&[gone]), mode).unwrap().expect("a run");
                assert_eq!(rows(&env, "parent"), [row(&[int(4), text("p")])]);
                assert_eq!(rows(&env, "child"), [row(&[int(11), int(4), text("k")])]);
                continue;
            }
            Mode::Skip => assert_eq!(env.undo(&changes(&[gone]), mode).unwrap(), None),
            Mode::Force => assert!(matches!(
                applying(env.undo(&changes(&[gone]), mode)),
                Some(ApplyError::ForeignKeys { count: 1, .. })
            )),
        }
        assert_eq!(env.snapshot(), before, "{mode:?} changed the source");
    }
}

#[test]
fn a_write_not_yet_archived_fails_the_guard_in_every_mode_but_force() {
    for mode in [Mode::Refuse, Mode::Skip, Mode::Force] {
        let mut env = Env::new(DDL);
        let ins = write(&env, "INSERT INTO parent VALUES (5, 'a')")[0];
        env.conn
            .execute_batch("UPDATE parent SET name = 'unarchived' WHERE id = 5")
            .unwrap();
        let result = env.undo(&changes(&[ins]), mode);
        match mode {
            Mode::Refuse => {
                let shown = format!("{result:?}");
                assert!(
                    matches!(applying(result), Some(ApplyError::Guards { ref rows, .. }) if rows.len() == 1),
                    "{shown}"
                );
                assert_eq!(rows(&env, "parent"), [row(&[int(5), text("unarchived")])]);
            }
            Mode::Skip => {
                let run = result.unwrap().expect("a run");
                let items = env.archive().run_items(run).unwrap();
                assert_eq!(items[0].outcome, "skipped");
                assert_eq!(rows(&env, "parent"), [row(&[int(5), text("unarchived")])]);
            }
            _ => {
                let run = result.unwrap().expect("a run");
                assert_eq!(env.archive().run_items(run).unwrap()[0].outcome, "forced");
                assert!(rows(&env, "parent").is_empty());
            }
        }
    }
}

#[test]
fn guards_compare_storage_class_not_just_value() {
    // 1, 1.0 and '1' compare equal in SQL; the guard must tell them apart.
    for (now, then) in [("1.0", "1"), ("'1'", "1"), ("1", "'1'"), ("'A'", "'a'")] {
        let mut env =
            Env::new("CREATE TABLE t (id INTEGER PRIMARY KEY, v, w TEXT COLLATE NOCASE);");
        let ins = write(&env, &format!("INSERT INTO t VALUES (1, {then}, {then})"))[0];
        env.conn
            .execute_batch(&format!("UPDATE t SET v = {now}, w = {now}"))
            .unwrap();
        let r = env.undo(&changes(&[ins]), Mode::Refuse);
        assert!(
            matches!(&r, Err(RestoreError::Apply(e)) if matches!(**e, ApplyError::Guards { .. })),
            "{then} → {now}: {r:?}"
        );
    }
}

#[test]
fn a_table_without_a_key_touches_exactly_one_row_and_refuses_ambiguity() {
    let mut env = Env::new(DDL);
    let ids = write(&env, "INSERT INTO loose VALUES ('x'); INSERT INTO loose VALUES ('x'); INSERT INTO loose VALUES ('y')");
    let r = env.undo(&changes(&[ids[1]]), Mode::Refuse);
    assert!(
        matches!(
            &r,
            Err(RestoreError::Apply(e)) if matches!(**e, ApplyError::Ambiguous { count: 2, .. })
        ),
        "{r:?}"
    );
    let msg = r.unwrap_err().to_string();
    assert!(msg.contains("--force"), "{msg}");
    assert_eq!(rows(&env, "loose").len(), 3);
    // Unambiguous: exactly the one row.
    env.undo(&changes(&[ids[2]]), Mode::Refuse)
        .unwrap()
        .expect("a run");
    assert_eq!(rows(&env, "loose"), [row(&[text("x")]), row(&[text("x")])]);
    // Forced: exactly one of the two equal rows.
    env.undo(&changes(&[ids[1]]), Mode::Force)
        .unwrap()
        .expect("a run");
    assert_eq!(rows(&env, "loose"), [row(&[text("x")])]);
}

#[test]
fn undone_changes_are_not_undone_twice_and_undo_writes_are_never_selected() {
    let mut env = Env::new(DDL);
    write(&env, "INSERT INTO parent VALUES (1, 'a')");
    write(&env, "UPDATE parent SET name = 'b' WHERE id = 1");
    let last = Scope {
        last: Some(1),
        ..Scope::default()
    };
    env.undo(&last, Mode::Refuse).unwrap().expect("first run");
    env.drain();
    assert_eq!(rows(&env, "parent"), [row(&[int(1), text("a")])]);
    // The next --last 1 is the insert, not the undo's own write, not the update again.
    env.undo(&last, Mode::Refuse).unwrap().expect("second run");
    env.drain();
    assert!(rows(&env, "parent").is_empty());
    assert_eq!(env.undo(&last, Mode::Refuse).unwrap(), None);
    let archive = env.archive();
    let tagged = archive
        .changes(&ChangeQuery::default())
        .unwrap()
        .iter()
        .filter(|c| c.tx_text().is_some_and(|t| t.starts_with("undo:")))
        .count();
    assert_eq!(tagged, 2, "each undo's writes are archived with its tag");
    let enforced: bool = env
        .conn
        .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
        .unwrap();
    assert!(
        enforced,
        "undo gives the connection its foreign-key setting back"
    );
    assert!(archive.verify(None).unwrap().ok());
}

#[test]
fn verify_finds_journal_inconsistencies() {
    let mut env = Env::new(DDL);
    let ins = write(&env, "INSERT INTO parent VALUES (1, 'a')")[0];
    let run = env
        .undo(&changes(&[ins]), Mode::Refuse)
        .unwrap()
        .expect("a run");
    env.drain();
    let archive = env.archive();
    assert!(archive.verify(None).unwrap().ok());
    // A hostile edit of the journal, straight into the file.
    let c = rusqlite::Connection::open(&env.archive).unwrap();
    // A second applied run claiming the same change.
    c.execute_batch(&format!(
        "INSERT INTO undo_runs (id, created_us, kind, mode, scope, source_id, tx_tag, state) \
         SELECT 90, created_us, 'undo', mode, scope, source_id, 'undo:90', 'applied' FROM undo_runs WHERE id = {run};
         INSERT INTO undo_items VALUES (90, 1, {ins}, 'delete', 'applied');"
    ))
    .unwrap();
    let problems = archive.verify(None).unwrap().problems;
    assert!(
        problems
            .iter()
            .any(|p| p.contains("undone by more than one")),
        "{problems:?}"
    );
    c.execute_batch(
        "DELETE FROM undo_items WHERE run_id = 90; DELETE FROM undo_runs WHERE id = 90;",
    )
    .unwrap();
    assert!(archive.verify(None).unwrap().ok());
    // A write labelled as an undo run's that the journal says never committed.
    c.execute_batch(&format!(
        "UPDATE undo_runs SET state = 'abandoned' WHERE id = {run}"
    ))
    .unwrap();
    let problems = archive.verify(None).unwrap().problems;
    assert!(
        problems
            .iter()
            .any(|p| p.contains("no such run that committed")),
        "{problems:?}"
    );
}
