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

use rowtrail_reader::archive::{RunKind, RunState, UndoRun};
use rowtrail_restore::apply::{Label, StepResult};
use rowtrail_restore::conflict::ForeignKey;
use rowtrail_restore::link::{self, Link};
use rowtrail_restore::plan::Plan;
use rowtrail_restore::run;
use rowtrail_restore::scope::{self, Scope};
use rowtrail_restore::target::{Journal, UndoTarget};
use rowtrail_restore::RestoreError;
use rowtrail_sql::Dialect;
use rusqlite::Connection;

/// A source that links runs by transaction id; its staging holds writes of `staged`.
struct LinkedByTransaction<'a> {
    conn: &'a Connection,
    staged: HashSet<i64>,
}

impl UndoTarget for LinkedByTransaction<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Mssql
    }
    fn location(&self) -> String {
        "double".into()
    }
    fn incarnation(&self) -> Result<String, RestoreError> {
        self.conn.incarnation()
    }
    fn foreign_keys(&self) -> Result<Vec<ForeignKey>, RestoreError> {
        Ok(vec![])
    }
    fn link(&self, _run: &UndoRun, recorded_tx: Option<i64>) -> Option<Link> {
        recorded_tx.map(Link::Transaction)
    }
    fn staged_with(&self, link: &Link) -> Result<bool, RestoreError> {
        Ok(matches!(link, Link::Transaction(tx) if self.staged.contains(tx)))
    }
    fn script(&self, _: &Plan, _: &[ForeignKey], _: &str) -> Result<String, RestoreError> {
        unreachable!("not planned here")
    }
    fn apply(
        &mut self,
        _: &Plan,
        _: &[ForeignKey],
        _: &Label,
        _: &mut dyn Journal,
    ) -> Result<Vec<StepResult>, RestoreError> {
        unreachable!("not applied here")
    }
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
    let incarnation = c.incarnation().unwrap();
    let source_id = rowtrail_restore::load::source_id(&archive, &incarnation)
        .unwrap()
        .unwrap();
    let user_change: i64 = archive
        .connection()
        .query_row("SELECT id FROM changes WHERE tx = 500", [], |r| r.get(0))
        .unwrap();
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
    link::record(&archive, r1, 981).unwrap();
    link::record(&archive, r2, 982).unwrap();
    link::record(&archive, r4, 983).unwrap();
    assert!(
        link::record(&archive, r1, 999).is_err(),
        "a run's link is written once"
    );
    assert_eq!(link::recorded(&archive, r1).unwrap(), Some(981));
    assert_eq!(link::recorded(&archive, r3).unwrap(), None);
    assert_eq!(
        scope::select(&archive, source_id, &last(10)).unwrap(),
        [user_change],
        "the writes of a pending linked run are not selected"
    );
    assert!(link::archived(&archive, &incarnation, &Link::Transaction(981)).unwrap());
    assert!(!link::archived(&archive, &incarnation, &Link::Transaction(982)).unwrap());

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
    let inc = env.conn.incarnation().unwrap();
    env.conn
        .execute_batch("INSERT INTO t VALUES (1, 'a')")
        .unwrap();
    env.drain();
    let run = archive
        .begin_run(RunKind::Undo, "refuse", "{}", &inc, None)
        .unwrap();
    assert_eq!(
        env.conn.link(&run, None),
        Some(Link::Tag(run.tx_tag.clone())),
        "SQLite never needs a recorded transaction"
    );
    assert!(!env
        .conn
        .staged_with(&Link::Tag(run.tx_tag.clone()))
        .unwrap());
    env.conn
        .execute_batch(&format!(
            "BEGIN; INSERT INTO rowtrail_context (id, tx, login, host, app, client_ip) \
             VALUES (1, '{}', 'u', NULL, 'rowtrail undo', NULL); UPDATE t SET v = 'b'; \
             DELETE FROM rowtrail_context; COMMIT;",
            run.tx_tag
        ))
        .unwrap();
    assert!(env
        .conn
        .staged_with(&Link::Tag(run.tx_tag.clone()))
        .unwrap());
    assert_eq!(
        run::settle_pending(&archive, &env.conn).unwrap(),
        [(run.id, true)]
    );
}
