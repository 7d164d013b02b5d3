//! Property: random workloads (inserts, updates, deletes, key changes, cascades) over several
//! tables with foreign keys, captured by the real triggers and archived by the real mover;
//! undoing back to each checkpoint, newest first, leaves the source equal to the checkpoint's
//! snapshot, value for value and type for type. Sometimes the undo is redone and undone again.
//!
//! Reproducible: `ROWTRAIL_PROPTEST_SEED` (default fixed) and `ROWTRAIL_PROPTEST_CASES`
//! (default 1000); a failure names the case's seed, and `ROWTRAIL_PROPTEST_SEED=<seed>
//! ROWTRAIL_PROPTEST_CASES=1` replays exactly that case.

mod common;

use common::{after, diff, same, Env};
use rowtrail_restore::plan::Mode;
use rusqlite::types::Value as V;

const DDL: &str = "
    CREATE TABLE parent (id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL, tag);
    CREATE TABLE child (
        id INTEGER PRIMARY KEY,
        parent_id INTEGER REFERENCES parent (id) ON UPDATE CASCADE ON DELETE CASCADE,
        v,
        note TEXT COLLATE NOCASE);
    CREATE TABLE pair (a TEXT NOT NULL, b INTEGER NOT NULL, x, PRIMARY KEY (a, b)) WITHOUT ROWID;
    CREATE TABLE loose (token INTEGER NOT NULL, v);";

/// A random value of any storage class, including the look-alikes 1, 1.0 and '1'.
fn any_value(rng: &mut fastrand::Rng) -> V {
    match rng.u8(0..12) {
        0 => V::Null,
        1 => V::Integer(1),
        2 => V::Real(1.0),
        3 => V::Text("1".into()),
        4 => V::Integer(rng.i64(..)),
        5 => V::Integer(rng.i64(-5..5)),
        6 => loop {
            let f = f64::from_bits(rng.u64(..));
            if f.is_finite() {
                break V::Real(f);
            }
        },
        7 => V::Real(rng.f64() * 1000.0 - 500.0),
        8 => V::Text(
            ["", "it's", "žluťoučký 🐎", "a\"b", "line\nbreak", "A", "a"][rng.usize(0..7)].into(),
        ),
        9 => V::Blob((0..rng.usize(0..6)).map(|_| rng.u8(..)).collect()),
        10 => V::Blob(vec![0xff, 0x00, b'x']),
        _ => V::Text(format!("t{}", rng.u32(0..50))),
    }
}

fn pid(rng: &mut fastrand::Rng) -> V {
    V::Integer(rng.i64(1..12))
}

fn text(rng: &mut fastrand::Rng) -> V {
    match rng.u8(0..4) {
        0 => V::Text("Ann".into()),
        1 => V::Text("ann".into()),
        2 => V::Text(format!("n{}", rng.u8(0..20))),
        _ => V::Text("O'Brien".into()),
    }
}

/// Runs one random statement; constraint failures (a random key already taken, a missing
/// parent) are part of the workload and change nothing.
fn step(env: &Env, rng: &mut fastrand::Rng, token: &mut i64) {
    let (sql, params): (&str, Vec<V>) = match rng.u8(0..16) {
        0 | 1 => (
            "INSERT INTO parent (id, name, score, tag) VALUES (?1, ?2, ?3, ?4)",
            vec![pid(rng), text(rng), any_value(rng), any_value(rng)],
        ),
        2 => (
            "UPDATE parent SET name = ?2, score = ?3, tag = ?4 WHERE id = ?1",
            vec![pid(rng), text(rng), any_value(rng), any_value(rng)],
        ),
        3 => (
            "UPDATE parent SET id = ?2 WHERE id = ?1",
            vec![pid(rng), pid(rng)],
        ),
        4 => ("DELETE FROM parent WHERE id = ?1", vec![pid(rng)]),
        5 | 6 => (
            "INSERT INTO child (id, parent_id, v, note) VALUES (?1, ?2, ?3, ?4)",
            vec![
                V::Integer(rng.i64(1..20)),
                if rng.bool() { pid(rng) } else { V::Null },
                any_value(rng),
                text(rng),
            ],
        ),
        7 => (
            "UPDATE child SET v = ?2, note = ?3 WHERE id = ?1",
            vec![V::Integer(rng.i64(1..20)), any_value(rng), text(rng)],
        ),
        8 => (
            "UPDATE child SET v = ?2 WHERE parent_id = ?1",
            vec![pid(rng), any_value(rng)],
        ),
        9 => (
            "DELETE FROM child WHERE id = ?1",
            vec![V::Integer(rng.i64(1..20))],
        ),
        10 => (
            "INSERT INTO pair (a, b, x) VALUES (?1, ?2, ?3)",
            vec![text(rng), V::Integer(rng.i64(0..4)), any_value(rng)],
        ),
        11 => (
            "UPDATE pair SET b = ?3, x = ?4 WHERE a = ?1 AND b = ?2",
            vec![
                text(rng),
                V::Integer(rng.i64(0..4)),
                V::Integer(rng.i64(0..4)),
                any_value(rng),
            ],
        ),
        12 => (
            "DELETE FROM pair WHERE b = ?1",
            vec![V::Integer(rng.i64(0..4))],
        ),
        13 => {
            *token += 1;
            (
                "INSERT INTO loose (token, v) VALUES (?1, ?2)",
                vec![V::Integer(*token), any_value(rng)],
            )
        }
        14 => (
            "UPDATE loose SET v = ?2 WHERE token = ?1",
            vec![V::Integer(rng.i64(0..=*token)), any_value(rng)],
        ),
        _ => (
            "DELETE FROM loose WHERE token = ?1",
            vec![V::Integer(rng.i64(0..=*token))],
        ),
    };
    match env.conn.execute(sql, rusqlite::params_from_iter(params)) {
        Ok(_) => {}
        Err(rusqlite::Error::SqliteFailure(f, _))
            if f.code == rusqlite::ErrorCode::ConstraintViolation => {}
        Err(e) => panic!("workload statement failed: {e}"),
    }
}

fn run_case(seed: u64) -> Result<(), String> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut env = Env::new(DDL);
    let mut token = 0;
    let mut checkpoints = vec![(env.drain(), env.snapshot())];
    for _ in 0..rng.usize(1..4) {
        for _ in 0..rng.usize(1..14) {
            step(&env, &mut rng, &mut token);
        }
        checkpoints.push((env.drain(), env.snapshot()));
    }
    for _ in 0..rng.usize(0..8) {
        step(&env, &mut rng, &mut token);
    }
    env.drain();
    while let Some((id, snap)) = checkpoints.pop() {
        let before = env.snapshot();
        let run = env
            .undo(&after(id), Mode::Refuse)
            .map_err(|e| format!("undo back to change {id} failed: {e}"))?;
        env.drain();
        let now = env.snapshot();
        if !same(&now, &snap) {
            return Err(format!(
                "after undo back to change {id} the source differs from its snapshot: {}",
                diff(&now, &snap)
            ));
        }
        if let Some(run) = run.filter(|_| rng.u8(0..4) == 0) {
            env.redo(run, Mode::Refuse)
                .map_err(|e| format!("redo of run {run} failed: {e}"))?;
            env.drain();
            let redone = env.snapshot();
            if !same(&redone, &before) {
                return Err(format!(
                    "redo of run {run} did not restore the state before it: {}",
                    diff(&redone, &before)
                ));
            }
            env.undo(&after(id), Mode::Refuse)
                .map_err(|e| format!("undo after redo failed: {e}"))?;
            env.drain();
            let again = env.snapshot();
            if !same(&again, &snap) {
                return Err(format!(
                    "undo after redo back to change {id} differs: {}",
                    diff(&again, &snap)
                ));
            }
        }
    }
    let report = env.archive().verify(None).map_err(|e| e.to_string())?;
    if !report.ok() {
        return Err(format!("verify failed: {:?}", report.problems));
    }
    Ok(())
}

#[test]
fn undo_back_to_every_checkpoint_restores_its_snapshot_exactly() {
    let base: u64 = std::env::var("ROWTRAIL_PROPTEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_0003);
    let cases: u64 = std::env::var("ROWTRAIL_PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let started = std::time::Instant::now();
    for case in 0..cases {
        let seed = base.wrapping_add(case);
        if let Err(e) = run_case(seed) {
            panic!(
                "case {case} failed: {e}\nreplay with ROWTRAIL_PROPTEST_SEED={seed} ROWTRAIL_PROPTEST_CASES=1"
            );
        }
    }
    eprintln!("{cases} cases in {:?}", started.elapsed());
}

/// One case of the dependency property: a random subset of the archived changes, undone with
/// cascade, must apply without a single guard or foreign-key failure (so dependency detection
/// found every later change in the way); undone with skip, every step the plan keeps must apply
/// as planned; and refuse must refuse exactly when the plan found conflicts.
fn run_dependency_case(seed: u64) -> Result<(), String> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut env = Env::new(DDL);
    let mut token = 0;
    for _ in 0..rng.usize(5..40) {
        step(&env, &mut rng, &mut token);
    }
    let last = env.drain();
    if last == 0 {
        return Ok(());
    }
    let pick: Vec<i64> = (1..=last).filter(|_| rng.u8(0..4) == 0).collect();
    if pick.is_empty() {
        return Ok(());
    }
    let scope = rowtrail_restore::scope::Scope {
        changes: pick.clone(),
        ..Default::default()
    };
    let mode = [Mode::Cascade, Mode::Skip, Mode::Refuse][rng.usize(0..3)];
    let prepared = env.prepare(&scope, mode).map_err(|e| e.to_string())?;
    let conflicts = prepared.plan.conflicts.len();
    let result = env.undo(&scope, mode);
    match (mode, result) {
        (Mode::Refuse, Err(rowtrail_restore::RestoreError::Conflicts(_))) if conflicts > 0 => {
            Ok(())
        }
        (Mode::Refuse, Ok(_)) if conflicts == 0 => Ok(()),
        (Mode::Skip, Ok(Some(run))) => {
            let items = env.archive().run_items(run).map_err(|e| e.to_string())?;
            match items.iter().find(|i| i.outcome != "applied") {
                Some(i) => Err(format!(
                    "skip: change {} failed its guard at apply time although the plan kept it",
                    i.change_id
                )),
                None => Ok(()),
            }
        }
        (Mode::Skip | Mode::Cascade, Ok(_)) => Ok(()),
        (mode, other) => Err(format!(
            "{mode:?} undo of changes {pick:?} ({conflicts} conflicts planned): {other:?}"
        )),
    }
}

#[test]
fn dependency_detection_finds_every_later_change_in_the_way() {
    let base: u64 = std::env::var("ROWTRAIL_PROPTEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0xDE9_0003);
    let cases: u64 = std::env::var("ROWTRAIL_PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    for case in 0..cases {
        let seed = base.wrapping_add(case);
        if let Err(e) = run_dependency_case(seed) {
            panic!(
                "case {case} failed: {e}\nreplay with ROWTRAIL_PROPTEST_SEED={seed} ROWTRAIL_PROPTEST_CASES=1"
            );
        }
    }
}
