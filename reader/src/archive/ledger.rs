//! The ledger: a second hash chain, beside the changes', over everything else a reader relies on
//! — the sources (incarnation, engine, location) and every event of the undo journal (a run
//! begun, linked to its source transaction, its items, its state). Later schema versions add
//! their own records (baselines, replica positions, failovers) the same way.
//!
//! The tables those records describe (`sources`, `undo_runs`, `undo_items`) stay as they are,
//! for queries; [`check`] replays the ledger and requires them to say exactly what it says, so
//! a row forged, altered or removed there is found, as an altered change is by the changes'
//! chain. Each entry also records the last change id when it was written (`changes_tip`), which
//! places it among the changes. A digest (`rowtrail verify --digest`) pins both chains' tips.
//!
//! An archive migrated from before the ledger gets one `snapshot` entry per source and run as it
//! stood then: what was forged before the migration is not found.

use std::collections::{BTreeMap, HashMap};

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Value as Json};
use sha2::{Digest as _, Sha256};

use super::chain::GENESIS;

/// The hash of entry `id` of the ledger, after `prev`.
fn link(
    prev: &[u8; 32],
    id: i64,
    kind: &str,
    subject: i64,
    body: &str,
    tip: i64,
    at_us: i64,
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"rowtrail/ledger/v1");
    h.update(prev);
    h.update(id.to_le_bytes());
    for part in [kind.as_bytes(), body.as_bytes()] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.update(subject.to_le_bytes());
    h.update(tip.to_le_bytes());
    h.update(at_us.to_le_bytes());
    h.finalize().into()
}

/// Appends an entry (inside the caller's transaction, so it commits with what it records).
pub(super) fn record(
    conn: &Connection,
    kind: &str,
    subject: i64,
    body: &Json,
) -> rusqlite::Result<()> {
    let (last_id, prev): (i64, [u8; 32]) = conn
        .query_row(
            "SELECT id, hash FROM ledger ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get::<_, Vec<u8>>(1)?)),
        )
        .optional()?
        .map(|(id, h)| (id, h.try_into().unwrap_or(GENESIS)))
        .unwrap_or((0, GENESIS));
    let tip: i64 = conn.query_row("SELECT coalesce(max(id), 0) FROM changes", [], |r| r.get(0))?;
    let at_us = crate::now_micros();
    let id = last_id + 1;
    let text = body.to_string();
    let hash = link(&prev, id, kind, subject, &text, tip, at_us);
    conn.execute(
        "INSERT INTO ledger (id, kind, subject, body, changes_tip, at_us, hash) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![id, kind, subject, text, tip, at_us, hash.as_slice()],
    )?;
    Ok(())
}

/// A source's record.
pub(super) fn source_body(
    incarnation: &str,
    engine: &str,
    location: &str,
    first_seen_us: i64,
) -> Json {
    json!({"incarnation": incarnation, "engine": engine, "location": location, "first_seen_us": first_seen_us})
}

/// A run as the journal holds it, rebuilt from the ledger or read from the tables: its fields,
/// and its items as a count and a digest (a run can hold a great many).
#[derive(Debug, Clone, PartialEq)]
struct Run {
    fields: BTreeMap<String, Json>,
    items: Json,
}

/// The columns of `undo_runs` a run's record covers, in the order the ledger writes them.
const RUN_FIELDS: [&str; 11] = [
    "id",
    "created_us",
    "kind",
    "mode",
    "scope",
    "source_id",
    "tx_tag",
    "redo_of",
    "state",
    "finished_us",
    "source_tx",
];

fn run_fields(r: &rusqlite::Row<'_>) -> rusqlite::Result<BTreeMap<String, Json>> {
    let mut m = BTreeMap::new();
    for (i, name) in RUN_FIELDS.iter().enumerate() {
        let v = match r.get_ref(i)? {
            rusqlite::types::ValueRef::Null => Json::Null,
            rusqlite::types::ValueRef::Integer(n) => json!(n),
            rusqlite::types::ValueRef::Real(f) => json!(f),
            rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                json!(String::from_utf8_lossy(t))
            }
        };
        m.insert((*name).to_string(), v);
    }
    Ok(m)
}

/// A run's whole record as the tables hold it now.
fn run_now(conn: &Connection, run: i64) -> rusqlite::Result<Option<Run>> {
    let fields = conn
        .query_row(
            &format!(
                "SELECT {} FROM undo_runs WHERE id = ?1",
                RUN_FIELDS.join(", ")
            ),
            [run],
            run_fields,
        )
        .optional()?;
    let Some(fields) = fields else {
        return Ok(None);
    };
    let mut stmt = conn.prepare_cached(
        "SELECT ordinal, change_id, action, outcome FROM undo_items WHERE run_id = ?1 ORDER BY ordinal",
    )?;
    let mut rows = stmt.query([run])?;
    let mut h = Sha256::new();
    let mut n = 0u64;
    while let Some(r) = rows.next()? {
        h.update(r.get::<_, i64>(0)?.to_le_bytes());
        h.update(r.get::<_, i64>(1)?.to_le_bytes());
        for i in [2, 3] {
            let t: String = r.get(i)?;
            h.update((t.len() as u64).to_le_bytes());
            h.update(t.as_bytes());
        }
        n += 1;
    }
    let digest: [u8; 32] = h.finalize().into();
    let items = json!({"count": n, "sha256": super::chain::hex(&digest)});
    Ok(Some(Run { fields, items }))
}

/// Records run `run`'s whole record as the tables hold it now (`kind`: what happened to it).
pub(super) fn record_run(conn: &Connection, kind: &str, run: i64) -> rusqlite::Result<()> {
    let Some(r) = run_now(conn, run)? else {
        return Ok(());
    };
    let body = json!({"run": r.fields, "items": r.items});
    record(conn, kind, run, &body)
}

/// Writes the first entries of an archive migrated to the ledger: every source and run as it
/// stands now (nothing when the ledger has entries already).
pub(super) fn backfill(conn: &Connection) -> rusqlite::Result<()> {
    // The archive's own id: a source records it, so a new or emptied archive pointed at a source
    // another archive already took changes from is noticed.
    conn.execute(
        "INSERT OR IGNORE INTO archive_info (key, value) SELECT 'archive_id', lower(hex(randomblob(16)))",
        [],
    )?;
    let entries: i64 = conn.query_row("SELECT count(*) FROM ledger", [], |r| r.get(0))?;
    if entries > 0 {
        return Ok(());
    }
    let sources: Vec<(i64, String, String, String, i64)> = conn
        .prepare(
            "SELECT id, incarnation, engine, location, first_seen_us FROM sources ORDER BY id",
        )?
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<Result<_, _>>()?;
    for (id, inc, engine, location, first) in sources {
        record(
            conn,
            "source",
            id,
            &source_body(&inc, &engine, &location, first),
        )?;
    }
    let runs: Vec<i64> = conn
        .prepare("SELECT id FROM undo_runs ORDER BY id")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for run in runs {
        record_run(conn, "snapshot", run)?;
    }
    Ok(())
}

/// What [`check`] found: problems, and the ledger's tip (entries, last hash).
pub(super) struct Checked {
    pub problems: Vec<String>,
    pub count: u64,
    pub tip: [u8; 32],
}

/// Replays the ledger: its chain must hold, and `sources`, `undo_runs` and `undo_items` must say
/// exactly what it says.
pub(super) fn check(conn: &Connection) -> rusqlite::Result<Checked> {
    let mut problems = Vec::new();
    let mut prev = GENESIS;
    let mut count = 0u64;
    let mut sources: HashMap<i64, Json> = HashMap::new();
    let mut runs: BTreeMap<i64, Run> = BTreeMap::new();
    let mut baselines: BTreeMap<i64, Json> = BTreeMap::new();
    let mut baseline_tables: BTreeMap<i64, Json> = BTreeMap::new();
    let mut takeovers: BTreeMap<i64, Json> = BTreeMap::new();
    let mut stmt = conn.prepare(
        "SELECT id, kind, subject, body, changes_tip, at_us, hash FROM ledger ORDER BY id",
    )?;
    let mut rows = stmt.query([])?;
    let mut expected_id = 1;
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let kind: String = r.get(1)?;
        let subject: i64 = r.get(2)?;
        let body: String = r.get(3)?;
        let tip: i64 = r.get(4)?;
        let at_us: i64 = r.get(5)?;
        let stored: Vec<u8> = r.get(6)?;
        if id != expected_id {
            problems.push(format!(
                "ledger: entry {expected_id} is missing (the next is {id}): entries were removed"
            ));
        }
        expected_id = id + 1;
        let hash = link(&prev, id, &kind, subject, &body, tip, at_us);
        if stored.as_slice() != hash.as_slice() {
            problems.push(format!(
                "ledger: entry {id} ({kind}) does not match its contents and its predecessor \
                 (an entry was altered, removed or reordered here)"
            ));
        }
        prev = stored.as_slice().try_into().unwrap_or(GENESIS);
        count += 1;
        let Ok(parsed) = serde_json::from_str::<Json>(&body) else {
            problems.push(format!("ledger: entry {id} has a body that is not JSON"));
            continue;
        };
        match kind.as_str() {
            "source" => {
                sources.insert(subject, parsed);
            }
            "snapshot" | "run" => {
                let fields = parsed["run"]
                    .as_object()
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default();
                runs.insert(
                    subject,
                    Run {
                        fields,
                        items: parsed["items"].clone(),
                    },
                );
            }
            "baseline" => {
                baselines.insert(subject, parsed);
            }
            "baseline-table" => {
                baseline_tables.insert(subject, parsed);
            }
            // Each state of a takeover; the newest is what its row must say.
            "takeover" => {
                takeovers.insert(subject, parsed);
            }
            other => problems.push(format!(
                "ledger: entry {id} is of an unknown kind {other:?}"
            )),
        }
    }
    drop(rows);
    drop(stmt);
    // The sources as the tables hold them.
    let mut stmt = conn.prepare(
        "SELECT id, incarnation, engine, location, first_seen_us FROM sources ORDER BY id",
    )?;
    let now: Vec<(i64, Json)> = stmt
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                source_body(
                    &r.get::<_, String>(1)?,
                    &r.get::<_, String>(2)?,
                    &r.get::<_, String>(3)?,
                    r.get(4)?,
                ),
            ))
        })?
        .collect::<Result<_, _>>()?;
    for (id, body) in &now {
        match sources.remove(id) {
            None => problems.push(format!(
                "ledger: source {id} ({}) has no ledger record: it was added outside rowtrail",
                body["incarnation"]
            )),
            Some(recorded) if recorded != *body => problems.push(format!(
                "ledger: source {id} differs from its ledger record (its incarnation, engine or \
                 location was edited: recorded {recorded}, found {body})"
            )),
            Some(_) => {}
        }
    }
    for id in sources.keys() {
        problems.push(format!(
            "ledger: source {id} was removed from the sources table"
        ));
    }
    // The journal as the tables hold it.
    let ids: Vec<i64> = conn
        .prepare("SELECT id FROM undo_runs UNION SELECT run_id FROM undo_items ORDER BY 1")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in ids {
        let found = run_now(conn, id)?;
        match (runs.remove(&id), found) {
            (None, _) => problems.push(format!(
                "undo journal: run {id} has no ledger record: it was added outside rowtrail"
            )),
            (Some(_), None) => problems.push(format!(
                "undo journal: run {id} has items but no run: its run was removed"
            )),
            (Some(recorded), Some(now)) => {
                if recorded.fields != now.fields {
                    problems.push(format!(
                        "undo journal: run {id} differs from its ledger record (its state, link \
                         or scope was edited outside rowtrail)"
                    ));
                }
                if recorded.items != now.items {
                    problems.push(format!(
                        "undo journal: run {id}'s items differ from its ledger record ({} \
                         recorded, {} found): items were forged, altered or removed",
                        recorded.items["count"], now.items["count"]
                    ));
                }
            }
        }
    }
    for id in runs.keys() {
        problems.push(format!("undo journal: run {id} was removed"));
    }
    super::baseline::check(conn, baselines, baseline_tables, &mut problems)?;
    super::takeover::check(conn, takeovers, &mut problems)?;
    Ok(Checked {
        problems,
        count,
        tip: prev,
    })
}
