//! Faults: the archive filling up, and crashes. The reader (`rowtrail read`) and the watcher
//! (`rowtrail watch`) are SIGKILLed at every labelled step of a pass (failpoints) and at random
//! moments of a 50,000-change workload; afterwards the archive holds every change exactly once,
//! in sequence order, the hash chain verifies, staging is empty after a final drain, and
//! replaying the archive into an empty copy of the schema rebuilds the source value for value
//! and type for type.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rowtrail_reader::archive::ArchivedChange;
use rowtrail_tests::{
    replay, show, stderr_lines, wait_until, Armed, Proc, Sandbox, REACH_FAILPOINT,
};
use rusqlite::types::Value as SqlValue;
use rusqlite::Connection;

const BIN: &str = env!("CARGO_BIN_EXE_rowtrail");

#[test]
fn a_full_archive_stops_the_reader_deletes_nothing_and_resumes_without_loss() {
    let sb = Sandbox::new(BIN);
    let c = sb.create_and_install("CREATE TABLE t (id INTEGER PRIMARY KEY, payload BLOB);");
    // Room for the schema but not for 2,000 changes of 1 KiB.
    let small = "\n[archive]\npath = \"trail.db\"\nmax_bytes = 200000\n";
    let big = "\n[archive]\npath = \"trail.db\"\nmax_bytes = 100000000\n";
    let with = |archive: &str| {
        format!("[source]\nengine = \"sqlite\"\npath = \"source.db\"\n{archive}\n[watcher]\nbatch_size = 500\n")
    };
    std::fs::write(sb.config(), with(small)).unwrap();
    c.execute_batch("BEGIN").unwrap();
    for i in 0..2000 {
        c.execute("INSERT INTO t VALUES (?1, randomblob(1024))", [i])
            .unwrap();
    }
    c.execute_batch("COMMIT").unwrap();
    let e = sb.fails(&["read"], 1);
    assert!(
        e.contains("is full") && e.contains("nothing was removed from staging"),
        "{e}"
    );
    let archived = sb.archived();
    assert!(archived < 2000, "the limit did not bite");
    assert_eq!(
        sb.staged() + archived,
        2000,
        "every change is either staged or archived"
    );
    std::fs::write(sb.config(), with(big)).unwrap();
    sb.ok(&["read"]);
    assert_eq!(sb.archived(), 2000);
    assert_eq!(sb.staged(), 0);
    sb.ok(&["verify"]);
}

// ---------------------------------------------------------------------------------------------
// Crashes: SIGKILL at every labelled step of a pass, and at random moments of a long workload.
// ---------------------------------------------------------------------------------------------

/// Three captured tables: a rowid table with mixed-type columns, a WITHOUT ROWID table with a
/// text key, and a table with reals and blobs. Every table has a primary key, so the archive
/// can be replayed row by row.
const SCHEMA: &str = "
    CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT NOT NULL, balance NUMERIC, note);
    CREATE TABLE tags (k TEXT PRIMARY KEY, n INTEGER NOT NULL, v) WITHOUT ROWID;
    CREATE TABLE events (id INTEGER PRIMARY KEY, account INTEGER, kind TEXT, amount REAL,
                         payload BLOB);
";

/// The four labelled steps of a pass (see `reader/src/failpoint.rs`).
const AFTER_READ: &str = "after-read";
const AFTER_ARCHIVE_COMMIT: &str = "after-archive-commit";
const DURING_STAGING_DELETE: &str = "during-staging-delete";
const AFTER_STAGING_DELETE: &str = "after-staging-delete";

/// A known workload of inserts, multi-row updates, key-changing updates (integer and text keys),
/// no-op updates, deletes and a multi-table transaction; returns the row-level changes it made
/// (counted from each statement's own row count).
fn known_workload(c: &Connection) -> u64 {
    let mut made = 0u64;
    let mut run = |sql: &str| made += c.execute(sql, []).expect(sql) as u64;
    run(
        "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 80)
         INSERT INTO accounts (id, name, balance, note)
         SELECT i, 'acct-' || i, i * 10,
                CASE i % 5 WHEN 0 THEN NULL WHEN 1 THEN i WHEN 2 THEN i + 0.25
                           WHEN 3 THEN 'n' || i ELSE x'00ff10' END FROM s",
    );
    run(
        "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 60)
         INSERT INTO tags (k, n, v)
         SELECT printf('tag-%03d', i), i,
                CASE i % 4 WHEN 0 THEN -0.0 WHEN 1 THEN 'x' WHEN 2 THEN 1e300 ELSE NULL END FROM s",
    );
    run(
        "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 60)
         INSERT INTO events (id, account, kind, amount, payload)
         SELECT i, i % 80 + 1, 'k' || (i % 3), i * 1.5, CAST(printf('%08d', i) AS BLOB) FROM s",
    );
    // Multi-row update.
    run("UPDATE accounts SET balance = balance + 1.5, note = 'seen' WHERE id % 3 = 0");
    // Key-changing updates: integer key (the rowid), and a text key.
    run("UPDATE accounts SET id = id + 1000 WHERE id % 10 = 0");
    run("UPDATE tags SET k = k || '-moved', v = 0.1 WHERE n % 4 = 0");
    // Deletes.
    run("DELETE FROM events WHERE id % 5 = 0");
    run("DELETE FROM tags WHERE n % 7 = 1");
    // An update that changes nothing is still a captured change.
    run("UPDATE tags SET n = n WHERE n < 5");
    // One transaction across all three tables.
    c.execute_batch("BEGIN").unwrap();
    run(
        "WITH RECURSIVE s(i) AS (SELECT 81 UNION ALL SELECT i + 1 FROM s WHERE i < 100)
         INSERT INTO accounts (id, name, balance) SELECT i, 'late-' || i, i FROM s",
    );
    run("UPDATE events SET amount = amount * 2, payload = NULL WHERE account <= 20");
    run("DELETE FROM accounts WHERE id BETWEEN 1 AND 5");
    run("UPDATE tags SET v = x'deadbeef' WHERE n BETWEEN 30 AND 39");
    c.execute_batch("COMMIT").unwrap();
    made
}

/// Starts `rowtrail ARGS` with `ROWTRAIL_TEST_FAILPOINT=spec`.
fn spawn_armed(sb: &Sandbox, args: &[&str], spec: &str) -> Armed {
    Armed::spawn(
        sb.cmd(args),
        spec,
        format!("`rowtrail {}` with failpoint {spec}", args.join(" ")),
    )
}

/// A staged image: (seq, op code, image code).
type StagedImage = (i64, String, String);

/// Every staged image, in seq order, across all staging tables.
fn staged_images(sb: &Sandbox) -> Vec<StagedImage> {
    let c = sb.connect();
    let mut stmt = c
        .prepare(
            "SELECT rowtrail_seq, rowtrail_op, rowtrail_image FROM rowtrail_staging \
             WHERE rowtrail_op IS NOT 'H' ORDER BY rowtrail_seq",
        )
        .expect("read staging");
    let out = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("read staging")
        .collect::<Result<Vec<StagedImage>, _>>()
        .expect("read staging");
    out
}

/// The seqs of the changes that staged images make up (an update's after-image belongs to the
/// change named by its before-image).
fn staged_change_seqs(images: &[StagedImage]) -> BTreeSet<i64> {
    images
        .iter()
        .filter(|(_, op, image)| !(op == "U" && image == "A"))
        .map(|(seq, _, _)| *seq)
        .collect()
}

/// The archive's changes in archive (chain) order; empty when there is no archive yet.
fn archived_changes(sb: &Sandbox) -> Vec<ArchivedChange> {
    replay::archived_changes(&sb.archive())
}

/// The number in the final read's "N already archived by an interrupted pass were skipped".
fn skipped_duplicates(read_stdout: &str) -> u64 {
    read_stdout
        .split(';')
        .find_map(|part| {
            let part = part.trim();
            let (n, rest) = part.split_once(' ')?;
            rest.starts_with("already archived")
                .then(|| n.parse().ok())
                .flatten()
        })
        .unwrap_or(0)
}

/// Exactly once: `expected` changes, no (incarnation, seq) twice, seqs strictly increasing in
/// archive order, one incarnation, the chain verifies, staging is empty.
fn assert_exactly_once(sb: &Sandbox, expected: u64, ctx: &str) -> Vec<ArchivedChange> {
    let changes = archived_changes(sb);
    let mut seen = HashSet::new();
    let doubled: Vec<i64> = changes
        .iter()
        .filter(|c| !seen.insert((c.incarnation.clone(), c.seq)))
        .map(|c| c.seq)
        .collect();
    assert!(
        doubled.is_empty(),
        "{ctx}: {} change(s) archived twice, seqs {:?}",
        doubled.len(),
        &doubled[..doubled.len().min(20)]
    );
    assert_eq!(
        changes.len() as u64,
        expected,
        "{ctx}: the archive must hold every change the workload made, once"
    );
    let incarnations: HashSet<&str> = changes.iter().map(|c| &*c.incarnation).collect();
    assert!(
        incarnations.len() <= 1,
        "{ctx}: one source, one incarnation"
    );
    for w in changes.windows(2) {
        assert!(
            w[1].seq > w[0].seq,
            "{ctx}: seq {} archived after seq {}",
            w[1].seq,
            w[0].seq
        );
    }
    let verify = sb.run(&["verify"]);
    assert!(
        verify.status.success(),
        "{ctx}: verify failed:\n{}",
        show(&verify)
    );
    assert_eq!(
        sb.staged(),
        0,
        "{ctx}: staging must be empty after a final drain"
    );
    changes
}

/// Replays the archive (in archive order) into an empty copy of `schema`, checking that each
/// update and delete finds the row exactly as its before-image, then compares every table with
/// the source, value for value and type for type.
fn assert_replay_rebuilds_source(
    sb: &Sandbox,
    schema: &str,
    changes: &[ArchivedChange],
    ctx: &str,
) {
    replay::assert_replay_rebuilds(&sb.connect(), schema, changes, ctx);
}

/// How many batches a pass (`reader/src/mover/pipeline.rs`) can have archived, and how many
/// deleted from staging, when the thread that reaches `label` for the `nth` time parks there.
/// The first batch fills, so the pass runs on its three threads: the read thread reads batch
/// n+1 while the calling thread archives batch n and the delete thread deletes batch n-1. A
/// read is handed over only when the archiving thread takes it; archived keys queue for the
/// delete thread one deep.
fn pipeline_at_kill(
    label: &str,
    nth: usize,
) -> (
    std::ops::RangeInclusive<usize>,
    std::ops::RangeInclusive<usize>,
) {
    match label {
        // Batch nth was read after batch nth-1 was taken for archiving.
        AFTER_READ => (
            nth.saturating_sub(2)..=nth - 1,
            nth.saturating_sub(4)..=nth - 1,
        ),
        // Batch nth's keys are not handed over yet; nth-1's went into the queue, so the delete
        // thread had taken nth-2 and committed nth-3.
        AFTER_ARCHIVE_COMMIT => (nth..=nth, nth.saturating_sub(3)..=nth - 1),
        // The delete of batch nth is open; the archiving thread can queue nth+1 and archive
        // nth+2 meanwhile.
        DURING_STAGING_DELETE => (nth..=nth + 2, nth - 1..=nth - 1),
        AFTER_STAGING_DELETE => (nth..=nth + 2, nth..=nth),
        _ => unreachable!("{label} is not a failpoint of a pass"),
    }
}

/// Stages [`known_workload`] with 50-image batches, runs `rowtrail MODE` with `label:nth` armed,
/// SIGKILLs it at the failpoint, checks what the crash left, then drains with `rowtrail read`
/// and checks exactly-once and the replay.
fn crash_at(mode: &str, label: &str, nth: usize) {
    const BATCH: usize = 50;
    let ctx = format!("`rowtrail {mode}` killed at {label}:{nth}");
    let sb = Sandbox::new(BIN);
    sb.write_config(&format!("batch_size = {BATCH}"));
    let c = sb.create_and_install(SCHEMA);
    let made = known_workload(&c);
    let staged_before = staged_images(&sb);
    let all_seqs = staged_change_seqs(&staged_before);
    assert_eq!(all_seqs.len() as u64, made, "every change is staged");
    assert!(
        staged_before.len() > BATCH * (nth + 3),
        "the workload spans more than {} batches, so every batch a parked pass can have \
         archived is full",
        nth + 3
    );

    let mut p = spawn_armed(&sb, &[mode], &format!("{label}:{nth}"));
    p.kill_at(label);

    // What the crash left: every change staged or archived (or both, for the batch whose
    // staging delete did not commit), and exactly the batches committed before it archived.
    let archived = archived_changes(&sb);
    let staged_now = staged_images(&sb);
    let archived_seqs: BTreeSet<i64> = archived.iter().map(|a| a.seq).collect();
    let staged_seqs = staged_change_seqs(&staged_now);
    let union: BTreeSet<i64> = archived_seqs.union(&staged_seqs).copied().collect();
    assert_eq!(
        union, all_seqs,
        "{ctx}: a change is neither staged nor archived"
    );
    assert_eq!(
        archived_seqs.len(),
        archived.len(),
        "{ctx}: doubled in the archive"
    );
    // Every batch holds BATCH images, or BATCH + 1 when it ends inside an update's pair, so
    // whole batches can be counted from images while there are fewer than BATCH of them.
    let archived_images: usize = archived.iter().map(replay::images).sum();
    let kept_images: usize = archived
        .iter()
        .filter(|a| staged_seqs.contains(&a.seq))
        .map(replay::images)
        .sum();
    let overlap = archived_seqs.intersection(&staged_seqs).count();
    let (committed, deleted) = (
        archived_images / BATCH,
        (archived_images - kept_images) / BATCH,
    );
    let (may_commit, may_delete) = pipeline_at_kill(label, nth);
    assert!(
        may_commit.contains(&committed) && may_delete.contains(&deleted),
        "{ctx}: {committed} batch(es) archived ({archived_images} images) and {deleted} deleted \
         from staging; a pass parked there has archived {may_commit:?} and deleted {may_delete:?}"
    );
    assert!(
        deleted <= committed,
        "{ctx}: a batch is deleted only after it is archived"
    );
    assert!(
        (BATCH * committed..=(BATCH + 1) * committed).contains(&archived_images)
            && (BATCH * (committed - deleted)..=(BATCH + 1) * (committed - deleted))
                .contains(&kept_images),
        "{ctx}: {archived_images} images archived, {kept_images} of them still staged: not \
         whole batches"
    );
    assert_eq!(
        staged_now.len() + archived_images - kept_images,
        staged_before.len(),
        "{ctx}: staged images = all images - images archived and deleted"
    );
    if !archived.is_empty() {
        let verify = sb.run(&["verify"]);
        assert!(
            verify.status.success(),
            "{ctx}: the archive left by the crash must verify:\n{}",
            show(&verify)
        );
    }

    let out = sb.ok(&["read"]);
    assert_eq!(
        skipped_duplicates(&out),
        overlap as u64,
        "{ctx}: the final read skips exactly the changes archived but still staged:\n{out}"
    );
    let changes = assert_exactly_once(&sb, made, &ctx);
    assert_replay_rebuilds_source(&sb, SCHEMA, &changes, &ctx);
    eprintln!(
        "{ctx}: {made} changes ({} images); at the kill {} archived ({committed} batches, \
         {deleted} deleted), {} images staged; the final read skipped {overlap} duplicate(s)",
        staged_before.len(),
        archived.len(),
        staged_now.len()
    );
}

#[test]
fn read_killed_after_read_loses_and_doubles_nothing() {
    crash_at("read", AFTER_READ, 2);
}

#[test]
fn read_killed_after_archive_commit_loses_and_doubles_nothing() {
    crash_at("read", AFTER_ARCHIVE_COMMIT, 3);
}

#[test]
fn read_killed_during_staging_delete_loses_and_doubles_nothing() {
    crash_at("read", DURING_STAGING_DELETE, 2);
}

#[test]
fn read_killed_after_staging_delete_loses_and_doubles_nothing() {
    crash_at("read", AFTER_STAGING_DELETE, 3);
}

#[test]
fn watcher_killed_after_read_loses_and_doubles_nothing() {
    crash_at("watch", AFTER_READ, 3);
}

#[test]
fn watcher_killed_after_archive_commit_loses_and_doubles_nothing() {
    crash_at("watch", AFTER_ARCHIVE_COMMIT, 2);
}

#[test]
fn watcher_killed_during_staging_delete_loses_and_doubles_nothing() {
    crash_at("watch", DURING_STAGING_DELETE, 3);
}

#[test]
fn watcher_killed_after_staging_delete_loses_and_doubles_nothing() {
    crash_at("watch", AFTER_STAGING_DELETE, 2);
}

#[test]
fn a_kill_during_the_staging_delete_rolls_the_delete_back() {
    let ctx = "`rowtrail read` killed at during-staging-delete:1";
    const BATCH: usize = 3000;
    let schema =
        format!("{SCHEMA} CREATE TABLE docs (id INTEGER PRIMARY KEY, body BLOB NOT NULL);");
    let sb = Sandbox::new(BIN);
    sb.write_config(&format!("batch_size = {BATCH}"));
    let c = sb.create_and_install(&schema);
    // The first batch spans all four tables.
    let mut made = known_workload(&c);
    made += c
        .execute(
            "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 3500)
             INSERT INTO docs (id, body) SELECT i, randomblob(500) FROM s",
            [],
        )
        .unwrap() as u64;
    made += c
        .execute(
            "UPDATE docs SET body = randomblob(10) WHERE id % 97 = 0",
            [],
        )
        .unwrap() as u64;
    drop(c);
    let staged_before = staged_images(&sb);
    assert!(staged_before.len() > BATCH && staged_before.len() <= 2 * BATCH);

    let mut p = spawn_armed(&sb, &["read"], &format!("{DURING_STAGING_DELETE}:1"));
    p.wait_parked(DURING_STAGING_DELETE);
    // Parked with the delete transaction open and half done: its rollback journal holds the
    // pages the first deletes changed.
    let journal = sb.path().join("source.db-journal");
    let journal_bytes = std::fs::metadata(&journal).map_or(0, |m| m.len());
    assert!(
        journal_bytes > 0,
        "{ctx}: the half-done delete should have a rollback journal"
    );
    p.proc.kill9();

    // Before any new read: the delete never committed (whatever reached the file is rolled back
    // from the journal), so staging is exactly what it was before the pass, and the batch is
    // archived too.
    let staged_after = staged_images(&sb);
    assert_eq!(
        staged_after.len(),
        staged_before.len(),
        "{ctx}: staged images after the kill vs before the pass"
    );
    assert!(
        staged_after == staged_before,
        "{ctx}: staging must hold exactly the images it held before the pass"
    );
    // The first batch was archived before its delete began; while the delete was parked, the
    // second and last batch (short) may have been archived too.
    let archived = archived_changes(&sb);
    let archived_images: usize = archived.iter().map(replay::images).sum();
    assert!(
        (BATCH..=BATCH + 1).contains(&archived_images) || archived_images == staged_before.len(),
        "{ctx}: {archived_images} images archived before the kill: the first batch, or all"
    );

    let out = sb.ok(&["read"]);
    assert_eq!(
        skipped_duplicates(&out),
        archived.len() as u64,
        "{ctx}: the read skips exactly the batch archived before the kill:\n{out}"
    );
    let changes = assert_exactly_once(&sb, made, ctx);
    assert_replay_rebuilds_source(&sb, &schema, &changes, ctx);
    eprintln!(
        "{ctx}: {made} changes ({} images); while parked the journal held {journal_bytes} bytes; \
         after the kill {} images staged (as before the pass), {} changes archived; the read \
         skipped {} duplicate(s)",
        staged_before.len(),
        staged_after.len(),
        archived.len(),
        skipped_duplicates(&out)
    );
}

#[test]
fn a_watcher_stopped_during_a_long_pass_has_deleted_every_batch_it_archived() {
    let ctx = "`rowtrail watch` stopped by SIGTERM during a long pass";
    const BATCH: usize = 100;
    let sb = Sandbox::new(BIN);
    sb.write_config(&format!("batch_size = {BATCH}"));
    let c = sb.create_and_install(SCHEMA);
    let made = c
        .execute(
            "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 40000)
             INSERT INTO accounts (id, name) SELECT i, 'n' || i FROM s",
            [],
        )
        .unwrap() as u64;
    let staged_before = staged_images(&sb);

    let mut w = sb.start_watcher();
    wait_until(REACH_FAILPOINT, "the watcher has archived a batch", || {
        sb.archived() > 0
    });
    let status = w.terminate();
    assert!(
        status.success(),
        "{ctx}: it should stop cleanly, got {status}"
    );

    // The pass stopped after the batch in hand, and waited for the deletes of every batch it
    // had archived: nothing is both archived and staged, and what was archived is whole batches.
    let archived = archived_changes(&sb);
    let staged_now = staged_images(&sb);
    assert!(
        !staged_now.is_empty(),
        "{ctx}: the pass ended before the stop reached it ({} changes archived); the backlog \
         must outlast it",
        archived.len()
    );
    let staged_seqs = staged_change_seqs(&staged_now);
    let overlap = archived
        .iter()
        .filter(|a| staged_seqs.contains(&a.seq))
        .count();
    assert_eq!(
        overlap, 0,
        "{ctx}: archived but still staged after a clean stop"
    );
    assert_eq!(
        archived.len() + staged_now.len(),
        staged_before.len(),
        "{ctx}: every insert archived or staged"
    );
    assert_eq!(archived.len() % BATCH, 0, "{ctx}: whole batches archived");

    let out = sb.ok(&["read"]);
    assert_eq!(skipped_duplicates(&out), 0, "{ctx}: {out}");
    assert_exactly_once(&sb, made, ctx);
    eprintln!(
        "{ctx}: {made} inserts; at the stop {} archived, {} staged",
        archived.len(),
        staged_now.len()
    );
}

/// Ids the random writer has handed out.
#[derive(Default)]
struct Ids {
    account: i64,
    tag: i64,
    event: i64,
    moved: i64,
}

/// A value of any storage class, for the untyped columns.
fn mixed(rng: &mut fastrand::Rng) -> SqlValue {
    match rng.u8(0..7) {
        0 => SqlValue::Null,
        1 => SqlValue::Integer(rng.i64(..)),
        2 => SqlValue::Real(rng.f64() * 1e6 - 5e5),
        3 => SqlValue::Real(-0.0),
        4 => SqlValue::Text(format!("t{}", rng.u32(..))),
        5 => SqlValue::Text(String::new()),
        _ => SqlValue::Blob((0..rng.usize(0..24)).map(|_| rng.u8(..)).collect()),
    }
}

/// One random statement; returns the row-level changes it made.
fn random_statement(c: &Connection, rng: &mut fastrand::Rng, ids: &mut Ids) -> usize {
    use rusqlite::params;
    let any_account = |rng: &mut fastrand::Rng, ids: &Ids| rng.i64(1..=ids.account.max(1));
    let run = |sql: &str, p: &[&dyn rusqlite::ToSql]| c.execute(sql, p).expect(sql);
    match rng.u32(0..100) {
        0..=29 => {
            ids.account += 1;
            let balance = match rng.u8(0..3) {
                0 => SqlValue::Integer(rng.i64(-1000..1000)),
                1 => SqlValue::Real(rng.f64() * 100.0),
                _ => SqlValue::Text(format!("{}.{:02}", rng.u16(..), rng.u8(0..100))),
            };
            run(
                "INSERT INTO accounts (id, name, balance, note) VALUES (?1, ?2, ?3, ?4)",
                params![
                    ids.account,
                    format!("a{}", ids.account),
                    balance,
                    mixed(rng)
                ],
            )
        }
        30..=42 => {
            ids.tag += 1;
            run(
                "INSERT INTO tags (k, n, v) VALUES (?1, ?2, ?3)",
                params![format!("t{:07}", ids.tag), rng.i64(0..1000), mixed(rng)],
            )
        }
        43..=57 => {
            ids.event += 1;
            let payload = if rng.bool() {
                SqlValue::Blob((0..rng.usize(0..64)).map(|_| rng.u8(..)).collect())
            } else {
                SqlValue::Null
            };
            let account = any_account(rng, ids);
            run(
                "INSERT INTO events (id, account, kind, amount, payload) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![ids.event, account, format!("k{}", rng.u8(0..5)), rng.f64() * 1e3, payload],
            )
        }
        58..=69 => {
            let lo = any_account(rng, ids);
            run(
                "UPDATE accounts SET balance = balance + ?1, note = ?2 WHERE id BETWEEN ?3 AND ?3 + ?4",
                params![rng.f64(), mixed(rng), lo, rng.i64(0..8)],
            )
        }
        70..=74 => {
            // A key-changing update of the rowid key, to an id nobody else uses.
            ids.moved += 1;
            let from = any_account(rng, ids);
            run(
                "UPDATE accounts SET id = ?1 WHERE id = ?2",
                params![1_000_000_000 + ids.moved, from],
            )
        }
        75..=78 => {
            // A key-changing update of the text key (keys only ever grow, so never collide).
            let k = format!("t{:07}", rng.i64(1..=ids.tag.max(1)));
            run(
                "UPDATE tags SET k = k || '.m', n = n + 1 WHERE k = ?1",
                params![k],
            )
        }
        79..=84 => {
            let account = any_account(rng, ids);
            run(
                "UPDATE events SET amount = -amount, kind = ?1 WHERE account = ?2",
                params![format!("r{}", rng.u8(..)), account],
            )
        }
        85..=92 => {
            let lo = rng.i64(1..=ids.event.max(1));
            run(
                "DELETE FROM events WHERE id BETWEEN ?1 AND ?1 + ?2",
                params![lo, rng.i64(0..4)],
            )
        }
        93..=96 => {
            let id = any_account(rng, ids);
            run("DELETE FROM accounts WHERE id = ?1", params![id])
        }
        _ => {
            let k = format!("t{:07}", rng.i64(1..=ids.tag.max(1)));
            run("DELETE FROM tags WHERE k = ?1", params![k])
        }
    }
}

/// Commits transactions of 1-200 random statements until they made `target` row-level changes;
/// returns (changes, transactions). Each statement's own row count is what is counted.
fn random_workload(source: &Path, mut rng: fastrand::Rng, target: u64) -> (u64, u64) {
    let c = Connection::open(source).expect("open source");
    c.busy_timeout(Duration::from_secs(60)).unwrap();
    let mut ids = Ids::default();
    let (mut made, mut transactions) = (0u64, 0u64);
    while made < target {
        let size = rng.usize(1..=200);
        c.execute_batch("BEGIN IMMEDIATE").expect("begin");
        for _ in 0..size {
            made += random_statement(&c, &mut rng, &mut ids) as u64;
        }
        c.execute_batch("COMMIT").expect("commit");
        transactions += 1;
        // A source that is never idle starves the reader's staging delete (SQLite's busy
        // handler polls and keeps missing the writer's back-to-back transactions): pause 0-3 ms
        // between transactions so passes complete and kills land at every step of them.
        std::thread::sleep(Duration::from_millis(rng.u64(0..=3)));
    }
    (made, transactions)
}

/// What the watchers' debug logs said about their completed passes.
#[derive(Default)]
struct PassLog {
    /// Passes that moved something and finished before their watcher was killed.
    passes: AtomicU64,
    /// Changes those passes found already archived.
    duplicates: AtomicU64,
}

/// Starts `rowtrail watch` (not waiting for it: a kill may land during its start-up too); a
/// thread reads its stderr and adds up what its completed passes report.
fn spawn_watcher(sb: &Sandbox, log: &Arc<PassLog>) -> Proc {
    let mut cmd = sb.cmd(&["watch"]);
    cmd.env("RUST_LOG", "info,rowtrail_watcher=debug")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn watcher");
    let lines = stderr_lines(&mut child);
    let log = Arc::clone(log);
    std::thread::spawn(move || {
        for line in lines {
            if let Some((_, rest)) = line.split_once("duplicates=") {
                let n: String = rest.chars().take_while(char::is_ascii_digit).collect();
                log.passes.fetch_add(1, Ordering::Relaxed);
                log.duplicates
                    .fetch_add(n.parse().unwrap_or(0), Ordering::Relaxed);
            }
        }
    });
    Proc { child }
}

#[test]
fn random_kills_during_a_50000_change_workload_lose_and_double_nothing() {
    const TARGET: u64 = 50_000;
    const MIN_KILLS: usize = 10;
    let seed: u64 = std::env::var("ROWTRAIL_FAULTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    let ctx = format!("random kills, seed {seed} (rerun with ROWTRAIL_FAULTS_SEED={seed})");
    eprintln!("{ctx}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let sb = Sandbox::new(BIN);
    drop(sb.create_and_install(SCHEMA));

    let started = Instant::now();
    let writer_rng = rng.fork();
    let source = sb.source();
    let writer = std::thread::spawn(move || random_workload(&source, writer_rng, TARGET));
    let log = Arc::new(PassLog::default());
    let mut watcher = spawn_watcher(&sb, &log);
    let mut kills = 0usize;
    let mut archived_at_kills = Vec::new();
    while !writer.is_finished() || kills < MIN_KILLS {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "{ctx}: the workload did not finish"
        );
        // The randomness itself, not a wait for a condition.
        std::thread::sleep(Duration::from_millis(rng.u64(10..=300)));
        watcher.kill9();
        kills += 1;
        archived_at_kills.push(sb.archived());
        watcher = spawn_watcher(&sb, &log);
    }
    let (made, transactions) = writer.join().unwrap_or_else(|e| {
        let why = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()));
        panic!("{ctx}: the writer failed: {why:?}")
    });
    let workload = started.elapsed();
    watcher.kill9();
    kills += 1;
    let archived_before_read = sb.archived();
    let staged_before_read = sb.staged();

    let read_started = Instant::now();
    let out = sb.ok(&["read"]);
    let read_time = read_started.elapsed();
    assert!(made >= TARGET);
    let changes = assert_exactly_once(&sb, made, &ctx);
    assert_replay_rebuilds_source(&sb, SCHEMA, &changes, &ctx);
    eprintln!(
        "{ctx}: {made} changes in {transactions} transactions; {kills} SIGKILLs (archived at each: \
         {archived_at_kills:?}); workload {:.1} s; before the final read {archived_before_read} \
         archived and {staged_before_read} images staged; final read {:.1} s, skipped {} \
         duplicate(s); {} completed watcher passes skipped {} duplicate(s); \
         total {:.1} s",
        workload.as_secs_f64(),
        read_time.as_secs_f64(),
        skipped_duplicates(&out),
        log.passes.load(Ordering::Relaxed),
        log.duplicates.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
}
