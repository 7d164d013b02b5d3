//! Runs linked to their source transaction, as on SQL Server (whose triggers record the
//! writer's transaction id, not the run's tag): the link keeps the run's own writes out of later
//! undo selections, and settles a run an interrupted process left `applying`.
//!
//! The archive, the journal and the captured writes are real (a SQLite source whose writes are
//! labelled with numeric transaction ids, as SQL Server's are); the source's answer to "does
//! staging still hold a write of transaction N" comes from a double, since no SQL Server runs
//! here.

mod common;

use std::collections::HashSet;

use rowtrail_apply::{ApplyError, ForeignKey, Hooks, Job, Link, StepResult, Target};
use rowtrail_reader::archive::{ChangeQuery, RunKind, RunState};
use rowtrail_restore::run;
use rowtrail_restore::scope::{self, Scope};
use rowtrail_sql::Dialect;
use rusqlite::Connection;

/// A source that links runs by transaction id; its staging holds writes of `staged`.
struct LinkedByTransaction<'a> {
    conn: &'a Connection,
    staged: HashSet<i64>,
}

impl Target for LinkedByTransaction<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Mssql
    }
    fn location(&self) -> String {
        "double".into()
    }
    fn incarnation(&self) -> Result<Option<String>, ApplyError> {
        Ok(incarnation(self.conn))
    }
    fn foreign_keys(&self) -> Result<Vec<ForeignKey>, ApplyError> {
        Ok(vec![])
    }
    fn link(&self, _tag: &str, recorded_tx: Option<i64>) -> Option<Link> {
        recorded_tx.map(Link::Transaction)
    }
    fn staged_with(&self, link: &Link, _since_us: i64) -> Result<bool, ApplyError> {
        Ok(matches!(link, Link::Transaction(tx) if self.staged.contains(tx)))
    }
    fn script(&self, _: &Job<'_>, _: &str) -> Result<String, ApplyError> {
        unreachable!("not planned here")
    }
    fn apply(&mut self, _: &Job<'_>, _: &mut dyn Hooks) -> Result<Vec<StepResult>, ApplyError> {
        unreachable!("not applied here")
    }
}

/// The source's incarnation, read as capture records it.
fn incarnation(c: &Connection) -> Option<String> {
    rowtrail_reader::sqlite::catalog::incarnation(c, "source").unwrap()
}

/// Runs `sql` in one source transaction whose writes the capture records with `tx` (an
/// integer, as SQL Server records its transaction ids).
fn in_transaction(c: &Connection, tx: i64, sql: &str) {
    c.execute_batch(&format!(
        "BEGIN; INSERT INTO rowtrail_context (id, tx, login, host, app, client_ip) \
         VALUES (1, {tx}, 'app', 'h', 'a', NULL); {sql}; DELETE FROM rowtrail_context; COMMIT;"
    ))
    .unwrap();
}

fn last(n: u64) -> Scope {
    Scope {
        last: Some(n),
        ..Scope::default()
    }
}

#[test]
fn a_linked_run_settles_from_staging_or_the_archive_and_its_writes_are_never_selected() {
    let env = common::Env::new("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);");
    let c = &env.conn;
    in_transaction(c, 500, "INSERT INTO t VALUES (1, 'a')");
    // What an undo writing in source transaction 981 would leave in the capture.
    in_transaction(c, 981, "UPDATE t SET v = 'b' WHERE id = 1");
    env.drain();
    let archive = env.archive();
    let incarnation = incarnation(c).unwrap();
    let source_id = incarnation.as_str();
    let user_change: i64 = archive
        .change_ids(&ChangeQuery {
            tx: Some("500".into()),
            ..ChangeQuery::default()
        })
        .unwrap()[0];
    assert_eq!(
        scope::select(&archive, source_id, &last(10)).unwrap().len(),
        2,
        "before any run links it, transaction 981 is an ordinary one"
    );

    let begin = || {
        archive
            .begin_run(RunKind::Undo, "refuse", "{}", &incarnation, None)
            .unwrap()
            .id
    };
    // Run 1 wrote in 981 (archived); run 2 in 982 (still staged); run 3 never linked; run 4
    // linked 983 but no write carries it.
    let (r1, r2, r3, r4) = (begin(), begin(), begin(), begin());
    archive.link_run(r1, 981).unwrap();
    archive.link_run(r2, 982).unwrap();
    archive.link_run(r4, 983).unwrap();
    assert!(
        archive.link_run(r1, 999).is_err(),
        "a run's link is written once"
    );
    assert_eq!(archive.run(r1).unwrap().unwrap().source_tx, Some(981));
    assert_eq!(archive.run(r3).unwrap().unwrap().source_tx, None);
    assert_eq!(
        scope::select(&archive, source_id, &last(10)).unwrap(),
        [user_change],
        "the writes of a pending linked run are not selected"
    );
    let since =
        rowtrail_reader::archive::window_start(archive.run(r1).unwrap().unwrap().created_us);
    assert!(archive
        .has_changes_in_tx(&incarnation, &rowtrail_sql::Value::Integer(981), since)
        .unwrap());
    assert!(!archive
        .has_changes_in_tx(&incarnation, &rowtrail_sql::Value::Integer(982), since)
        .unwrap());

    let source = LinkedByTransaction {
        conn: c,
        staged: [982].into(),
    };
    let mut settled = run::settle_pending(&archive, &source).unwrap();
    settled.sort();
    assert_eq!(
        settled,
        [(r1, true), (r2, true), (r3, false), (r4, false)],
        "committed exactly when a write of its transaction is archived or staged"
    );
    let state = |id| archive.run(id).unwrap().unwrap().state;
    assert_eq!(state(r1), RunState::Applied);
    assert_eq!(state(r3), RunState::Abandoned);
    assert_eq!(
        scope::select(&archive, source_id, &last(10)).unwrap(),
        [user_change],
        "an applied run's writes stay out of every later undo"
    );

    // A transaction id an abandoned run held links nothing: a later write with it (a server
    // that numbers transactions anew after a restart) is an ordinary change.
    drop(archive);
    in_transaction(c, 983, "UPDATE t SET v = 'c' WHERE id = 1");
    env.drain();
    let archive = env.archive();
    assert_eq!(
        scope::select(&archive, source_id, &last(10)).unwrap().len(),
        2
    );
}

#[test]
fn sqlite_runs_are_linked_by_their_tag() {
    let env = common::Env::new("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);");
    let archive = env.archive();
    let inc = incarnation(&env.conn).unwrap();
    let target = env.target();
    env.conn
        .execute_batch("INSERT INTO t VALUES (1, 'a')")
        .unwrap();
    env.drain();
    let run = archive
        .begin_run(RunKind::Undo, "refuse", "{}", &inc, None)
        .unwrap();
    assert_eq!(
        target.link(&run.tx_tag, None),
        Some(Link::Tag(run.tx_tag.clone())),
        "SQLite never needs a recorded transaction"
    );
    assert!(!target
        .staged_with(&Link::Tag(run.tx_tag.clone()), 0)
        .unwrap());
    env.conn
        .execute_batch(&format!(
            "BEGIN; INSERT INTO rowtrail_context (id, tx, login, host, app, client_ip) \
             VALUES (1, '{}', 'u', NULL, 'rowtrail undo', NULL); UPDATE t SET v = 'b'; \
             DELETE FROM rowtrail_context; COMMIT;",
            run.tx_tag
        ))
        .unwrap();
    assert!(target
        .staged_with(&Link::Tag(run.tx_tag.clone()), 0)
        .unwrap());
    assert_eq!(
        run::settle_pending(&archive, &target).unwrap(),
        [(run.id, true)]
    );
}

/// Moves what the archive says of transaction `tx` (its changes' source times) and of run
/// `run` (when it began and ended) two days into the past: a clock the test cannot wind back
/// otherwise. (The hash chain no longer matches; nothing here verifies it.)
fn two_days_ago(env: &common::Env, tx: i64, run: Option<i64>) {
    let a = Connection::open(&env.archive).unwrap();
    a.execute(
        "UPDATE changes SET at = strftime('%Y-%m-%dT%H:%M:%fZ', at, '-2 days') WHERE tx = ?1",
        [tx],
    )
    .unwrap();
    if let Some(run) = run {
        let two_days: i64 = 2 * 86_400 * 1_000_000;
        a.execute(
            "UPDATE undo_runs SET created_us = created_us - ?2, \
             finished_us = finished_us - ?2 WHERE id = ?1",
            [run, two_days],
        )
        .unwrap();
    }
}

/// Issue 15, item 9: SQL Server numbers transactions anew after a restart, so a transaction id
/// an undo run wrote in comes back later on other transactions. A run's writes are the changes
/// carrying its id *within its time window*: a later transaction with the same id is an
/// ordinary change (undone like any other, `--tx` finds it), an earlier one does not make a
/// pending run look committed, and `--tx` refuses an id carried by two transactions until
/// `--tx-at` names one.
#[test]
fn issue15_a_transaction_id_reused_after_a_restart_is_another_transaction() {
    let env = common::Env::new("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);");
    let c = &env.conn;
    in_transaction(c, 500, "INSERT INTO t VALUES (1, 'a')");
    env.drain();
    let archive = env.archive();
    let inc = incarnation(c).unwrap();
    // Two days ago, undo run r1 wrote in source transaction 981 and was applied.
    let r1 = archive
        .begin_run(RunKind::Undo, "refuse", "{}", &inc, None)
        .unwrap()
        .id;
    archive.link_run(r1, 981).unwrap();
    in_transaction(c, 981, "UPDATE t SET v = 'b' WHERE id = 1");
    env.drain();
    archive.settle_run(r1, true).unwrap();
    two_days_ago(&env, 981, Some(r1));
    let selected = |s: &Scope| scope::select(&archive, &inc, s).unwrap();
    assert_eq!(
        selected(&last(10)).len(),
        1,
        "r1's own write is still left out"
    );
    // Today, after a restart, an application transaction is numbered 981 again.
    in_transaction(c, 981, "UPDATE t SET v = 'c' WHERE id = 1");
    env.drain();
    let today: i64 = *archive
        .change_ids(&ChangeQuery::default())
        .unwrap()
        .last()
        .unwrap();
    assert_eq!(
        selected(&last(10)).len(),
        2,
        "a later transaction carrying r1's id is an ordinary change"
    );
    let by_tx = Scope {
        tx: Some("981".into()),
        ..Scope::default()
    };
    assert_eq!(
        selected(&by_tx),
        [today],
        "--tx finds it, and not r1's write"
    );

    // An application transaction 700 two days ago and another today: --tx 700 is ambiguous.
    in_transaction(c, 700, "INSERT INTO t VALUES (2, 'x')");
    env.drain();
    two_days_ago(&env, 700, None);
    in_transaction(c, 700, "INSERT INTO t VALUES (3, 'y')");
    env.drain();
    let e = scope::select(
        &archive,
        &inc,
        &Scope {
            tx: Some("700".into()),
            ..Scope::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("carried by 2 transactions") && e.contains("--tx-at"),
        "{e}"
    );
    let now_text = jiff::Timestamp::now().to_string();
    let picked = selected(&Scope {
        tx: Some("700".into()),
        tx_at: Some(now_text),
        ..Scope::default()
    });
    assert_eq!(picked.len(), 1, "only today's transaction 700");
    assert_eq!(picked[0], archive.last_id().unwrap());

    // A run pending today, linked to 982: an archived change of an older transaction 982 does
    // not make it look committed.
    in_transaction(c, 982, "UPDATE t SET v = 'd' WHERE id = 1");
    env.drain();
    two_days_ago(&env, 982, None);
    let r2 = archive
        .begin_run(RunKind::Undo, "refuse", "{}", &inc, None)
        .unwrap()
        .id;
    archive.link_run(r2, 982).unwrap();
    let source = LinkedByTransaction {
        conn: c,
        staged: HashSet::new(),
    };
    assert_eq!(
        run::settle_pending(&archive, &source).unwrap(),
        [(r2, false)],
        "committed only when a write of its transaction is stamped within its window"
    );
}
