//! Dependencies between archived changes, found from the archive alone.
//!
//! A later change *depends* on an earlier one when undoing the earlier one alone would break
//! it or be blocked by it:
//!
//! * **later write**: it changed or deleted the row the earlier change produced (write after
//!   write): the earlier change's after-image is gone;
//! * **key reused**: the earlier change removed a key (delete, or key change) and it put a row
//!   at that key again: the re-insert would find the key taken;
//! * **child inserted**: the earlier change inserted a parent row, and it inserted (or moved) a
//!   child row under it: deleting the parent would orphan the child;
//! * **parent deleted**: the earlier change removed a child row, and it deleted (or re-keyed)
//!   that row's parent: the re-inserted child would have no parent.

use std::collections::HashMap;
use std::fmt::Write;

use rowtrail_reader::archive::ArchivedChange as Change;
use rowtrail_sql::printable::printable;
use rowtrail_sql::{image, ForeignKey, Value};
use serde::Serialize;

/// Why a later change depends on an earlier one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dependency {
    /// It wrote the same row later.
    LaterWrite,
    /// It re-used a key the earlier change freed.
    KeyReused,
    /// It put a child row under the parent the earlier change inserted.
    ChildInserted,
    /// It deleted the parent of the child row the earlier change removed.
    ParentDeleted,
}

impl Dependency {
    /// A phrase for reports.
    pub fn phrase(self) -> &'static str {
        match self {
            Dependency::LaterWrite => "changed the same row later",
            Dependency::KeyReused => "re-used the key this change freed",
            Dependency::ChildInserted => {
                "put a child row under the key this change gave its row (insert or key change)"
            }
            Dependency::ParentDeleted => "deleted the parent of the row this change removed",
        }
    }
}

/// Who made a change and when: what a conflict report names (never row values).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangeRef {
    /// Archive change id.
    pub id: i64,
    /// Sequence number.
    pub seq: i64,
    /// Table.
    pub table: String,
    /// Operation.
    pub op: String,
    /// Login.
    pub login: Option<String>,
    /// Host.
    pub host: Option<String>,
    /// Application.
    pub app: Option<String>,
    /// Time.
    pub at: Option<String>,
    /// Transaction.
    pub tx: Option<String>,
}

impl ChangeRef {
    /// The reference to `c`.
    pub fn of(c: &Change) -> Self {
        Self {
            id: c.id,
            seq: c.seq,
            table: c.table.name.to_string(),
            op: c.op.word().to_string(),
            login: c.login.clone(),
            host: c.host.clone(),
            app: c.app.clone(),
            at: c.at.clone(),
            tx: c.tx_text(),
        }
    }
}

/// A change in scope and a later change outside it that depends on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    /// The change to undo.
    pub change: ChangeRef,
    /// The later change that blocks it.
    pub later: ChangeRef,
    /// Why.
    pub dependency: Dependency,
    /// What `--force` would do to the later change's row: each column it left holding a value
    /// other than the one the undo writes back (`overwrites name: later → written`), or the
    /// row deleted or inserted again; printable.
    pub overwritten: Vec<String>,
}

impl Conflict {
    /// The conflict between `change` (to undo) and `later`, which depends on it.
    pub fn between(change: &Change, later: &Change, dependency: Dependency) -> Self {
        Self {
            change: ChangeRef::of(change),
            later: ChangeRef::of(later),
            dependency,
            overwritten: overwritten(change, later),
        }
    }
}

/// The columns `--force` would overwrite: where `later`'s after-image (what the row holds now,
/// as far as the archive knows) differs from what undoing `change` writes (its before-image).
fn overwritten(change: &Change, later: &Change) -> Vec<String> {
    let show = |v: &Value| printable(&rowtrail_reader::archive::label_text(v)).to_string();
    match (&later.after, &change.before) {
        (Some(now), Some(back))
            if std::ptr::eq(&*later.table, &*change.table) || later.table == change.table =>
        {
            change
                .table
                .columns
                .iter()
                .zip(now.iter().zip(back))
                .filter(|(_, (n, b))| {
                    image::encode(std::slice::from_ref(*n))
                        != image::encode(std::slice::from_ref(*b))
                })
                .map(|(c, (n, b))| {
                    format!(
                        "overwrites {}: {} → {}",
                        printable(c.name.as_str()),
                        show(n),
                        show(b)
                    )
                })
                .collect()
        }
        (Some(_), None) => vec![format!("deletes the row as change {} left it", later.id)],
        (None, Some(_)) => vec![format!("inserts again the row change {} deleted", later.id)],
        _ => Vec::new(),
    }
}

/// The text of a refusal: every conflict with who and when.
pub fn describe(conflicts: &[Conflict]) -> String {
    describe_with(
        &format!(
            "undo refused: {} conflict(s) with later changes (nothing was changed; use --cascade to undo \
             them too, --skip-conflicts to leave those rows alone, or --force)",
            conflicts.len()
        ),
        conflicts,
        false,
    )
}

/// The conflicts a plan that goes ahead anyway found (skip or force mode), with what the mode
/// does to those rows.
pub fn describe_found(conflicts: &[Conflict], mode: crate::plan::Mode) -> String {
    let what = match mode {
        crate::plan::Mode::Force => "--force makes each of these rows equal its earlier image, overwriting what the later change left",
        crate::plan::Mode::Skip => "--skip-conflicts leaves these rows alone",
        _ => "these later changes are undone too",
    };
    describe_with(
        &format!(
            "{} conflict(s) with later changes ({what}):",
            conflicts.len()
        ),
        conflicts,
        mode == crate::plan::Mode::Force,
    )
}

fn describe_with(header: &str, conflicts: &[Conflict], values: bool) -> String {
    let mut s = header.to_string();
    for c in conflicts {
        let l = &c.later;
        let _ = write!(
            s,
            "\n  change {} ({} of {}): change {} ({} of {}, seq {}) by {} at {}{}{} {}",
            c.change.id,
            c.change.op,
            printable(&c.change.table),
            l.id,
            l.op,
            printable(&l.table),
            l.seq,
            printable(l.login.as_deref().unwrap_or("(unknown login)")),
            printable(l.at.as_deref().unwrap_or("(unknown time)")),
            l.host
                .as_deref()
                .map(|h| format!(" from host {}", printable(h)))
                .unwrap_or_default(),
            l.tx.as_deref()
                .map(|t| format!(" in tx {}", printable(t)))
                .unwrap_or_default(),
            c.dependency.phrase()
        );
        if values {
            for o in &c.overwritten {
                let _ = write!(s, "\n    --force {o}");
            }
        }
    }
    s
}

/// (table id, row key) → positions of changes, oldest first; keys borrowed from the changes.
type RowIndex<'a> = HashMap<(i64, &'a [u8]), Vec<usize>>;
/// (foreign key, referenced values) → positions of changes, oldest first.
type RefIndex = HashMap<(i64, Vec<u8>), Vec<usize>>;

/// Indexes over a slice of changes (oldest first) that answer "which later changes depend on
/// this one" in time proportional to the answer.
pub struct Dependencies<'a> {
    changes: &'a [Change],
    /// (table id, key) → changes that found a row at that key (updates, deletes).
    writes: RowIndex<'a>,
    /// (table id, key) → changes that brought a row to that key (inserts, key changes).
    arrivals: RowIndex<'a>,
    /// (fk index, parent values) → changes that put a child row under that parent.
    children: RefIndex,
    /// (fk index, parent values) → changes that removed that parent row (or its key).
    departures: RefIndex,
    /// Per fk: (child table id set by name, column positions) resolved per table definition.
    fks: &'a [ForeignKey],
}

fn cols(c: &Change, names: &[String]) -> Option<Vec<usize>> {
    if names.is_empty() {
        return c.table.key().map(<[usize]>::to_vec);
    }
    names
        .iter()
        .map(|n| {
            c.table
                .columns
                .iter()
                .position(|col| col.name.as_str() == n)
        })
        .collect()
}

/// The encoded values of `positions` in `row`, or None when one is NULL (no reference).
fn values_at(row: &[Value], positions: &[usize]) -> Option<Vec<u8>> {
    let vals: Vec<Value> = positions.iter().map(|&i| row[i].clone()).collect();
    (!vals.contains(&Value::Null)).then(|| image::encode(&vals))
}

impl<'a> Dependencies<'a> {
    /// Indexes `changes` (oldest first) under the source's foreign keys.
    pub fn new(changes: &'a [Change], fks: &'a [ForeignKey]) -> Self {
        let mut d = Self {
            changes,
            writes: HashMap::new(),
            arrivals: HashMap::new(),
            children: HashMap::new(),
            departures: HashMap::new(),
            fks,
        };
        for (i, c) in changes.iter().enumerate() {
            let (bk, ak) = (c.before_key(), c.after_key());
            if let Some(k) = bk {
                d.writes.entry((c.table_id, k)).or_default().push(i);
            }
            if let Some(k) = ak.filter(|k| Some(*k) != bk) {
                d.arrivals.entry((c.table_id, k)).or_default().push(i);
            }
            let name = &c.table.name;
            for (f, fk) in fks.iter().enumerate() {
                if &fk.child == name {
                    if let Some(pos) = cols(c, &fk.child_columns) {
                        let new = c.after.as_ref().and_then(|a| values_at(a, &pos));
                        let old = c.before.as_ref().and_then(|b| values_at(b, &pos));
                        if let Some(v) = new.filter(|v| Some(v) != old.as_ref()) {
                            d.children.entry((f as i64, v)).or_default().push(i);
                        }
                    }
                }
                if &fk.parent == name {
                    if let Some(pos) = cols(c, &fk.parent_columns) {
                        let new = c.after.as_ref().and_then(|a| values_at(a, &pos));
                        let old = c.before.as_ref().and_then(|b| values_at(b, &pos));
                        if let Some(v) = old.filter(|v| Some(v) != new.as_ref()) {
                            d.departures.entry((f as i64, v)).or_default().push(i);
                        }
                    }
                }
            }
        }
        d
    }

    /// Whether change `j` still describes its row: no later change wrote that row.
    fn current(&self, j: usize) -> bool {
        let c = &self.changes[j];
        c.after_key().is_some_and(|k| {
            self.writes
                .get(&(c.table_id, k))
                .is_none_or(|list| list.last().is_none_or(|&w| w <= j))
        })
    }

    /// The changes that depend on change `i`, with why, in order: later ones, and children an
    /// `ON UPDATE CASCADE` moved under a parent key this change created (captured just before
    /// it, in the same statement).
    pub fn of(&self, i: usize) -> Vec<(usize, Dependency)> {
        let c = &self.changes[i];
        let mut out = Vec::new();
        let mut extra = Vec::new();
        let mut later = |list: Option<&Vec<usize>>, why: Dependency| {
            if let Some(list) = list {
                let from = list.partition_point(|&j| j <= i);
                out.extend(list[from..].iter().map(|&j| (j, why)));
            }
        };
        let (bk, ak) = (c.before_key(), c.after_key());
        if let Some(k) = ak {
            later(self.writes.get(&(c.table_id, k)), Dependency::LaterWrite);
        }
        if let Some(k) = bk.filter(|k| Some(*k) != ak) {
            later(self.arrivals.get(&(c.table_id, k)), Dependency::KeyReused);
        }
        let name = &c.table.name;
        for (f, fk) in self.fks.iter().enumerate() {
            if &fk.parent == name {
                if let Some(pos) = cols(c, &fk.parent_columns) {
                    let new = c.after.as_ref().and_then(|a| values_at(a, &pos));
                    let old = c.before.as_ref().and_then(|b| values_at(b, &pos));
                    if let Some(v) = new.filter(|v| Some(v) != old.as_ref()) {
                        let key = (f as i64, v);
                        // Children an ON UPDATE CASCADE moved under the new key were captured
                        // before the parent's own change: earlier, but still there.
                        if let Some(list) = self.children.get(&key) {
                            let earlier = list.iter().take_while(|&&j| j < i);
                            extra.extend(
                                earlier
                                    .filter(|&&j| self.current(j))
                                    .map(|&j| (j, Dependency::ChildInserted)),
                            );
                        }
                        later(self.children.get(&key), Dependency::ChildInserted);
                    }
                }
            }
            if &fk.child == name {
                if let Some(pos) = cols(c, &fk.child_columns) {
                    let new = c.after.as_ref().and_then(|a| values_at(a, &pos));
                    let old = c.before.as_ref().and_then(|b| values_at(b, &pos));
                    if let Some(v) = old.filter(|v| Some(v) != new.as_ref()) {
                        later(
                            self.departures.get(&(f as i64, v)),
                            Dependency::ParentDeleted,
                        );
                    }
                }
            }
        }
        out.extend(extra);
        out.sort_by_key(|(j, _)| *j);
        out.dedup_by_key(|(j, _)| *j);
        out
    }
}
