//! An undo never undoes half a transaction: when the reader has archived only part of one
//! (a transaction larger than its batch), the undo is refused until the rest is archived.
//! A real SQLite source with capture, the real mover stopped after one batch, a real archive.

mod common;

use rowtrail_reader::archive::{Archive, ArchiveOptions};
use rowtrail_reader::mover;
use rowtrail_reader::sqlite::SqliteSource;
use rowtrail_restore::plan::Mode;
use rowtrail_restore::scope::Scope;
use rowtrail_restore::RestoreError;

/// Runs `sql` in one source transaction its writer labels `tx` (an SQL literal).
fn in_transaction(env: &common::Env, tx: &str, sql: &str) {
    env.conn
        .execute_batch(&format!(
            "BEGIN; INSERT INTO rowtrail_context (id, tx, login, host, app, client_ip) \
             VALUES (1, {tx}, 'app', 'h', 'a', NULL); {sql}; DELETE FROM rowtrail_context; COMMIT;"
        ))
        .unwrap();
}

/// Archives one batch of `batch` images, no more.
fn archive_one_batch(env: &common::Env, batch: usize) {
    let mut src = SqliteSource::open(&env.source).expect("open source");
    let mut arch = Archive::open(&env.archive, &ArchiveOptions::default()).expect("archive");
    let (_, drained) = mover::drain_while(&mut src, &mut arch, batch, &mut |_| false)
        .map_err(|e| e.to_string())
        .expect("one batch");
    assert!(
        !drained,
        "the batch must stop the pass before staging is empty"
    );
}

fn last(n: u64) -> Scope {
    Scope {
        last: Some(n),
        ..Scope::default()
    }
}

fn tx(t: &str) -> Scope {
    Scope {
        tx: Some(t.into()),
        ..Scope::default()
    }
}

#[test]
fn issue15_an_undo_of_a_partly_archived_transaction_is_refused_until_the_rest_is_archived() {
    for (label, literal) in [("batch-7", "'batch-7'"), ("981", "981")] {
        let env = common::Env::new("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);");
        in_transaction(
            &env,
            literal,
            "INSERT INTO t VALUES (1, 'a'); INSERT INTO t VALUES (2, 'b'); \
             INSERT INTO t VALUES (3, 'c')",
        );
        archive_one_batch(&env, 1);
        for scope in [last(10), tx(label)] {
            match env.prepare(&scope, Mode::Refuse) {
                Err(RestoreError::PartlyStaged(p)) => {
                    assert_eq!(p.tx, label);
                    assert_eq!(p.changes.len(), 1, "one change of it is archived");
                    let msg = RestoreError::PartlyStaged(p).to_string();
                    assert!(msg.contains(&format!("transaction {label} ")), "{msg}");
                    assert!(msg.contains("rowtrail read"), "{msg}");
                    assert!(msg.contains("rowtrail signal --wait"), "{msg}");
                }
                other => panic!(
                    "an undo of half of transaction {label} must be refused, got {:?}",
                    other.map(|p| p.plan.steps.len())
                ),
            }
        }
        // Once the rest is archived, the whole transaction is undone.
        env.drain();
        let prepared = env.prepare(&tx(label), Mode::Refuse).expect("plan");
        assert_eq!(prepared.plan.steps.len(), 3);
    }
}

#[test]
fn an_unlabelled_or_other_staged_transaction_does_not_refuse_the_undo() {
    let env = common::Env::new("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);");
    in_transaction(&env, "'one'", "INSERT INTO t VALUES (1, 'a')");
    env.drain();
    // Another transaction is staged, not yet archived: the undo of `one` is unaffected.
    in_transaction(&env, "'two'", "INSERT INTO t VALUES (2, 'b')");
    env.conn
        .execute("INSERT INTO t VALUES (3, 'c')", [])
        .unwrap();
    let prepared = env.prepare(&tx("one"), Mode::Refuse).expect("plan");
    assert_eq!(prepared.plan.steps.len(), 1);
}
