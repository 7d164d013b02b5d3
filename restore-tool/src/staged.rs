//! Transactions an undo would split: part archived (and selected), part still in staging.
//!
//! The reader archives staging in batches, so a transaction larger than a batch (or one the
//! reader was in the middle of when the undo started) can be half archived. Undoing only the
//! archived half would leave the source in a state no transaction ever produced. Before an
//! undo is planned, every transaction its steps belong to is looked up in the source's staging
//! ([`rowtrail_apply::Target::first_staged`], asking what settles interrupted runs asks, for all
//! of them at once); one that
//! is still partly staged refuses the undo, naming the transaction and how to archive the rest.
//! The check is the same for every engine: SQL Server records transaction ids, SQLite the
//! transaction label a writer declared (a transaction without one cannot be looked up).

use std::collections::BTreeMap;

use rowtrail_apply::{Link, Target};
use rowtrail_reader::archive::window_start;
use rowtrail_sql::Value;

use crate::plan::PlannedStep;
use crate::RestoreError;

/// A transaction of the undo that still has images in staging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartlyStaged {
    /// The transaction as the archive shows it (an id, or a writer's label).
    pub tx: String,
    /// The archived changes of it that the undo selected, oldest first.
    pub changes: Vec<i64>,
    /// Where the source is (never credentials).
    pub location: String,
}

impl std::fmt::Display for PartlyStaged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<String> = self.changes.iter().map(i64::to_string).collect();
        write!(
            f,
            "transaction {} is only partly archived: the undo selects its archived change(s) {} \
             but staging on {} still holds more of it, and undoing half a transaction would leave \
             rows no transaction ever produced; nothing was changed. Archive the rest first \
             (`rowtrail signal --wait` when a watcher runs, `rowtrail read` when none does), \
             then run the undo again",
            self.tx,
            ids.join(", "),
            self.location
        )
    }
}

/// What the capture records as the transaction of a change whose archived transaction is
/// `tx`, as a link the source can look up in its staging.
fn link_of(tx: &Value) -> Option<Link> {
    match tx {
        Value::Integer(n) => Some(Link::Transaction(*n)),
        Value::Text(bytes) => std::str::from_utf8(bytes)
            .ok()
            .map(|t| Link::Tag(t.to_string())),
        _ => None,
    }
}

/// The first transaction of `steps` that staging on `source` still holds images of, if any.
/// Each transaction is looked up once, from the earliest time among its steps (less the
/// clock margin): the images left in staging were written in the same transaction, no
/// earlier, and a transaction id the server reused long before is another transaction.
pub fn partly_staged(
    source: &dyn Target,
    steps: &[PlannedStep],
) -> Result<Option<PartlyStaged>, RestoreError> {
    // By (is a label, transaction text): a label "9" and transaction id 9 are not the same.
    let mut txs: BTreeMap<(bool, String), Seen> = BTreeMap::new();
    for s in steps {
        let c = &s.change;
        let Some(link) = c.tx.as_ref().and_then(link_of) else {
            continue;
        };
        let at_us =
            c.at.as_deref()
                .and_then(crate::scope::seconds)
                .map(|s| s.saturating_mul(1_000_000));
        let seen = txs
            .entry((matches!(link, Link::Tag(_)), link.to_string()))
            .or_insert_with(|| Seen {
                link,
                earliest_us: None,
                changes: Vec::new(),
            });
        seen.earliest_us = match (seen.earliest_us, at_us) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        seen.changes.push(c.id);
    }
    let txs: Vec<((bool, String), Seen)> = txs.into_iter().collect();
    // Without a readable time, any image of the id counts.
    let wanted: Vec<(Link, i64)> = txs
        .iter()
        .map(|(_, seen)| {
            let since = seen.earliest_us.map(window_start).unwrap_or(0);
            (seen.link.clone(), since)
        })
        .collect();
    Ok(source.first_staged(&wanted)?.map(|k| {
        let ((_, tx), seen) = &txs[k];
        let mut changes = seen.changes.clone();
        changes.sort_unstable();
        PartlyStaged {
            tx: tx.clone(),
            changes,
            location: source.location(),
        }
    }))
}

/// One transaction of the plan: its link, the earliest time among its changes (µs), and the
/// changes.
struct Seen {
    link: Link,
    earliest_us: Option<i64>,
    changes: Vec<i64>,
}
