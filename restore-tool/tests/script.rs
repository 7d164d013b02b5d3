//! The printed script is what `--apply` does: run by hand (as `sqlite3 -bail` would), it
//! restores the same values bit for bit, and a failed guard stops it with nothing changed.

mod common;

use common::{after, diff, same, Env};
use rowtrail_restore::plan::Mode;
use rusqlite::types::Value as V;

const DDL: &str = "CREATE TABLE t (id INTEGER PRIMARY KEY, r REAL, v, s TEXT);
                   CREATE TABLE k (v, w);";

fn random(rng: &mut fastrand::Rng) -> V {
    match rng.u8(0..6) {
        0 => V::Null,
        1 => V::Integer(rng.i64(..)),
        2 | 3 => loop {
            let f = f64::from_bits(rng.u64(..));
            if f.is_finite() {
                break V::Real(f);
            }
        },
        4 => V::Text(["x", "it's", "🐎\n", ""][rng.usize(0..4)].into()),
        _ => V::Blob((0..rng.usize(0..5)).map(|_| rng.u8(..)).collect()),
    }
}

/// Runs a script the way `sqlite3 -bail` does: stop at the first error; closing the session
/// then rolls the open transaction back.
fn run_by_hand(env: &Env, script: &str) -> Result<(), rusqlite::Error> {
    env.conn.execute_batch(script).inspect_err(|_| {
        let _ = env.conn.execute_batch("ROLLBACK");
    })
}

#[test]
fn the_script_restores_random_values_bit_for_bit() {
    for seed in 0..40u64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let env = Env::new(DDL);
        for id in 0..10 {
            env.conn
                .execute(
                    "INSERT INTO t VALUES (?1, ?2, ?3, ?4)",
                    rusqlite::params![id, random(&mut rng), random(&mut rng), random(&mut rng)],
                )
                .unwrap();
            env.conn
                .execute(
                    "INSERT INTO k VALUES (?1, ?2)",
                    rusqlite::params![id, random(&mut rng)],
                )
                .unwrap();
        }
        let cp = env.drain();
        let snap = env.snapshot();
        for _ in 0..15 {
            let id = rng.i64(0..12);
            let sql = match rng.u8(0..4) {
                0 => "UPDATE t SET r = ?2, v = ?3 WHERE id = ?1",
                1 => "DELETE FROM t WHERE id = ?1 AND ?2 IS ?2 AND ?3 IS ?3",
                2 => "UPDATE k SET w = ?2 WHERE v = ?1 AND ?3 IS ?3",
                _ => "DELETE FROM k WHERE v = ?1 AND ?2 IS ?2 AND ?3 IS ?3",
            };
            env.conn
                .execute(
                    sql,
                    rusqlite::params![id, random(&mut rng), random(&mut rng)],
                )
                .unwrap();
        }
        env.drain();
        let prepared = env.prepare(&after(cp), Mode::Refuse).unwrap();
        let script = env.script(&prepared);
        run_by_hand(&env, &script).unwrap_or_else(|e| panic!("seed {seed}: {e}\n{script}"));
        let now = env.snapshot();
        assert!(same(&now, &snap), "seed {seed}: {}", diff(&now, &snap));
    }
}

#[test]
fn a_failed_guard_stops_the_script_and_changes_nothing() {
    let env = Env::new(DDL);
    env.conn
        .execute_batch("INSERT INTO t VALUES (1, 1.5, 'a', 'x'), (2, 2.5, 'b', 'y')")
        .unwrap();
    let cp = env.drain();
    env.conn
        .execute_batch("UPDATE t SET v = 'changed'; DELETE FROM k")
        .unwrap();
    env.drain();
    let prepared = env.prepare(&after(cp), Mode::Refuse).unwrap();
    let script = env.script(&prepared);
    // A write the archive has not seen yet.
    env.conn
        .execute_batch("UPDATE t SET s = 'late' WHERE id = 1")
        .unwrap();
    let before = env.snapshot();
    let err = run_by_hand(&env, &script).unwrap_err().to_string();
    assert!(
        err.contains("rowtrail undo: a row no longer equals"),
        "{err}"
    );
    assert!(same(&env.snapshot(), &before));
    // Skip mode leaves that row alone and undoes the other.
    let prepared = env.prepare(&after(cp), Mode::Skip).unwrap();
    let script = env.script(&prepared);
    run_by_hand(&env, &script).unwrap();
    let rows: Vec<(i64, String)> = env
        .conn
        .prepare("SELECT id, v FROM t ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows, [(1, "changed".into()), (2, "b".into())]);
}
