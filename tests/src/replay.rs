//! The archive read back and replayed: what crash and workload tests check the archive against.

use std::collections::HashMap;
use std::path::Path;

use rowtrail_reader::archive::{Archive, ArchivedChange, ChangeQuery};
use rowtrail_sql::staging::Op;
use rowtrail_sql::Value;
use rusqlite::types::Value as SqlValue;
use rusqlite::{params_from_iter, Connection};

use crate::tables::{
    key_where, quote, read_row, same_row, select_list, shapes, to_sql, Row, Shape,
};

/// Every change in the archive at `path`, in archive (chain) order, read through the archive's
/// own query; empty when there is no archive yet (or an empty file a reader just created).
pub fn archived_changes(path: &Path) -> Vec<ArchivedChange> {
    if !path.exists() || std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) == 0 {
        return Vec::new();
    }
    let archive = match Archive::open_read_only(path) {
        Ok(a) => a,
        Err(e) if e.to_string().contains("not yet a rowtrail archive") => return Vec::new(),
        Err(e) => panic!("open the archive {}: {e}", path.display()),
    };
    archive
        .changes(&ChangeQuery::default())
        .expect("read the archived changes")
}

/// How many staged images a change was made of.
pub fn images(c: &ArchivedChange) -> usize {
    if c.op == Op::Update {
        2
    } else {
        1
    }
}

/// Replays `changes` (in archive order) into `replay`, a database with the source's schema,
/// checking that each update and delete finds its row exactly as its before-image and that
/// each statement touches one row.
pub fn replay_into(replay: &Connection, changes: &[ArchivedChange], ctx: &str) {
    let tables = shapes(replay);
    let by_name: HashMap<&str, &Shape> = tables.iter().map(|t| (t.name.as_str(), t)).collect();
    for ch in changes {
        let name = ch.table.name.name.as_str();
        let t = by_name
            .get(name)
            .unwrap_or_else(|| panic!("{ctx}: a change to unknown table {name}"));
        let key_of =
            |img: &[Value]| -> Vec<SqlValue> { t.key.iter().map(|&i| to_sql(&img[i])).collect() };
        if let Some(before) = &ch.before {
            let sql = format!(
                "SELECT {} FROM {} WHERE {}",
                select_list(t),
                quote(&t.name),
                key_where(t, 1)
            );
            let found: Vec<Row> = replay
                .prepare(&sql)
                .unwrap()
                .query_map(params_from_iter(key_of(before)), |r| {
                    read_row(r, t.columns.len())
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let want: Row = before
                .iter()
                .map(|v| (v.kind().to_string(), v.clone()))
                .collect();
            assert!(
                found.len() == 1 && same_row(&found[0], &want),
                "{ctx}: seq {} ({} on {name}): the replayed row is {found:?}, its before-image {want:?}",
                ch.seq,
                ch.op.word(),
            );
        }
        let n = match (ch.op, &ch.before, &ch.after) {
            (Op::Insert, None, Some(after)) => {
                let marks: Vec<String> = (1..=after.len()).map(|i| format!("?{i}")).collect();
                let sql = format!(
                    "INSERT INTO {} ({}) VALUES ({})",
                    quote(&t.name),
                    t.columns
                        .iter()
                        .map(|c| quote(c))
                        .collect::<Vec<_>>()
                        .join(", "),
                    marks.join(", ")
                );
                replay
                    .execute(&sql, params_from_iter(after.iter().map(to_sql)))
                    .unwrap()
            }
            (Op::Delete, Some(before), None) => {
                let sql = format!("DELETE FROM {} WHERE {}", quote(&t.name), key_where(t, 1));
                replay
                    .execute(&sql, params_from_iter(key_of(before)))
                    .unwrap()
            }
            (Op::Update, Some(before), Some(after)) => {
                let set: Vec<String> = t
                    .columns
                    .iter()
                    .enumerate()
                    .map(|(i, c)| format!("{} = ?{}", quote(c), i + 1))
                    .collect();
                let sql = format!(
                    "UPDATE {} SET {} WHERE {}",
                    quote(&t.name),
                    set.join(", "),
                    key_where(t, after.len() + 1)
                );
                let args: Vec<SqlValue> = after.iter().map(to_sql).chain(key_of(before)).collect();
                replay.execute(&sql, params_from_iter(args)).unwrap()
            }
            _ => panic!("{ctx}: seq {}: unexpected change {ch:?}", ch.seq),
        };
        assert_eq!(
            n,
            1,
            "{ctx}: seq {} ({}) touched {n} rows on replay",
            ch.seq,
            ch.op.word()
        );
    }
}

/// Replays `changes` into an empty copy of `schema` and checks that every table equals
/// `source`'s, value for value and type for type.
pub fn assert_replay_rebuilds(
    source: &Connection,
    schema: &str,
    changes: &[ArchivedChange],
    ctx: &str,
) {
    let replay = Connection::open_in_memory().unwrap();
    replay.execute_batch(schema).unwrap();
    replay_into(&replay, changes, ctx);
    crate::tables::assert_same_tables(source, &replay, &format!("{ctx}: rebuilt from the archive"));
}
