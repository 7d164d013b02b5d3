//! Verification: the hash chain, sequence order per source, decodable images, the undo
//! journal's consistency, and digests that pin the archive's state so later truncation or
//! rewriting is detected.

use std::collections::HashMap;

use rowtrail_sql::{image, Value};
use rusqlite::types::ValueRef;

use super::chain::{self, ChainFields};
use super::Archive;
use crate::ReaderError;

/// A digest of the archive at one point: the number of changes, the last id and its chain hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    /// Changes in the archive.
    pub count: u64,
    /// The last change's id.
    pub last_id: i64,
    /// The last change's chain hash.
    pub hash: [u8; 32],
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "rowtrail1-{}-{}-{}",
            self.count,
            self.last_id,
            chain::hex(&self.hash)
        )
    }
}

impl std::str::FromStr for Digest {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a rowtrail digest (rowtrail1-<count>-<id>-<hash>)");
        let mut parts = s.trim().splitn(4, '-');
        if parts.next() != Some("rowtrail1") {
            return Err(bad());
        }
        let count = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let last_id = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let hex = parts.next().ok_or_else(bad)?;
        if hex.len() != 64 {
            return Err(bad());
        }
        let mut hash = [0u8; 32];
        for (i, byte) in hash.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Digest {
            count,
            last_id,
            hash,
        })
    }
}

/// The outcome of [`Archive::verify`].
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// Changes checked.
    pub changes: u64,
    /// Sources seen.
    pub sources: u64,
    /// The digest of the archive as it is now (None when empty).
    pub digest: Option<Digest>,
    /// Everything found wrong, first problems first (at most 100).
    pub problems: Vec<String>,
}

impl VerifyReport {
    /// Whether nothing was found wrong.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    fn problem(&mut self, p: String) {
        if self.problems.len() < 100 {
            self.problems.push(p);
        }
    }
}

fn meta(v: ValueRef<'_>) -> Value {
    crate::source::value_of(v)
}

/// Archives before schema 4 stored a transaction or statement label that looked like an
/// integer ('81723') as that integer, while the chain recorded the text. Such a change is
/// intact when the label's text form gives the recorded hash.
fn converted_label_matches(prev: &[u8; 32], fields: &ChainFields<'_>, stored: &[u8]) -> bool {
    let as_text = |v: &Value| match v {
        Value::Integer(i) => Some(Value::text(&i.to_string())),
        _ => None,
    };
    let (tx, stmt) = (as_text(&fields.meta[0]), as_text(&fields.meta[1]));
    let candidates = [(tx.clone(), None), (None, stmt.clone()), (tx, stmt)];
    candidates.into_iter().any(|(tx, stmt)| {
        if tx.is_none() && stmt.is_none() {
            return false;
        }
        let mut meta = fields.meta.clone();
        if let Some(t) = tx {
            meta[0] = t;
        }
        if let Some(s) = stmt {
            meta[1] = s;
        }
        let f = ChainFields {
            meta: &meta,
            ..fields.clone()
        };
        chain::link(prev, &f).as_slice() == stored
    })
}

impl Archive {
    /// Checks the whole archive; with `against`, also that the state a digest pinned is intact.
    pub fn verify(&self, against: Option<&Digest>) -> Result<VerifyReport, ReaderError> {
        let path = self.path.clone();
        let e = |cause| ReaderError::archive(&path, "cannot read the archive", cause);
        let mut report = VerifyReport::default();
        let check: String = self
            .conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(e)?;
        if check != "ok" {
            report.problem(format!("SQLite integrity check failed: {check}"));
        }
        let mut stmt = self
            .conn
            .prepare(
                "SELECT c.id, s.incarnation, c.seq, t.schema_name, t.table_name, v.definition, c.op, \
                 c.tx, c.stmt, c.at, c.login, c.host, c.app, c.client_ip, c.src_rowid, c.before, \
                 c.after, c.archived_us, c.hash, c.source_id, c.version_id, s.engine \
                 FROM changes c JOIN sources s ON s.id = c.source_id \
                 JOIN tables t ON t.id = c.table_id JOIN table_versions v ON v.id = c.version_id \
                 ORDER BY c.id",
            )
            .map_err(e)?;
        let mut rows = stmt.query([]).map_err(e)?;
        let mut prev = chain::GENESIS;
        let mut last_seq: HashMap<i64, i64> = HashMap::new();
        let mut sources = std::collections::HashSet::new();
        let mut pinned_seen = false;
        let mut digests: HashMap<i64, [u8; 32]> = HashMap::new();
        while let Some(r) = rows.next().map_err(e)? {
            let id: i64 = r.get(0).map_err(e)?;
            let seq: i64 = r.get(2).map_err(e)?;
            let source_id: i64 = r.get(19).map_err(e)?;
            let blob = |i: usize| -> Result<Option<Vec<u8>>, ReaderError> {
                Ok(match r.get_ref(i).map_err(e)? {
                    ValueRef::Blob(b) => Some(b.to_vec()),
                    _ => None,
                })
            };
            let before = blob(15)?;
            let after = blob(16)?;
            let stored: Vec<u8> = blob(18)?.unwrap_or_default();
            let text =
                |i: usize| -> Result<String, ReaderError> { r.get::<_, String>(i).map_err(e) };
            let version_id: i64 = r.get(20).map_err(e)?;
            let definition = match digests.get(&version_id) {
                Some(d) => *d,
                None => {
                    let d = chain::definition_digest(&text(5)?);
                    digests.insert(version_id, d);
                    d
                }
            };
            let fields = ChainFields {
                id,
                incarnation: &text(1)?,
                seq,
                schema: &text(3)?,
                table: &text(4)?,
                definition: &definition,
                op: &text(6)?,
                meta: &[
                    meta(r.get_ref(7).map_err(e)?),
                    meta(r.get_ref(8).map_err(e)?),
                    meta(r.get_ref(9).map_err(e)?),
                    meta(r.get_ref(10).map_err(e)?),
                    meta(r.get_ref(11).map_err(e)?),
                    meta(r.get_ref(12).map_err(e)?),
                    meta(r.get_ref(13).map_err(e)?),
                    meta(r.get_ref(14).map_err(e)?),
                ],
                before: before.as_deref(),
                after: after.as_deref(),
                archived_us: r.get(17).map_err(e)?,
            };
            let expected = chain::link(&prev, &fields);
            if stored.as_slice() != expected.as_slice()
                && !converted_label_matches(&prev, &fields, &stored)
            {
                report.problem(format!(
                    "change {id} (seq {seq}): its hash does not match its contents and its predecessor \
                     (a change was altered, removed or reordered here)"
                ));
            }
            for (what, img) in [("before", &before), ("after", &after)] {
                if let Some(b) = img {
                    if image::decode(b).is_err() {
                        report.problem(format!("change {id}: its {what}-image cannot be decoded"));
                    }
                }
            }
            // SQLite serialises writers, so its commits arrive in seq order. SQL Server can
            // commit a lower seq after a higher one was archived; it is checked per row below.
            let serial = r
                .get_ref(21)
                .map_err(e)?
                .as_str()
                .is_ok_and(|engine| engine == "sqlite");
            sources.insert(source_id);
            if !serial {
                // Checked per row after the scan.
            } else if let Some(last) = last_seq.insert(source_id, seq) {
                if seq <= last {
                    report.problem(format!(
                        "change {id}: seq {seq} is not after the previous seq {last} of its source"
                    ));
                }
            }
            if let Some(d) = against {
                if id == d.last_id {
                    pinned_seen = true;
                    if stored.as_slice() != d.hash.as_slice() {
                        report.problem(format!(
                            "change {id} differs from the digest: the archive was rewritten at or before it"
                        ));
                    }
                }
            }
            prev = stored.as_slice().try_into().unwrap_or(chain::GENESIS);
            report.changes += 1;
            report.digest = Some(super::Digest {
                count: report.changes,
                last_id: id,
                hash: prev,
            });
        }
        report.sources = sources.len() as u64;
        drop(rows);
        drop(stmt);
        // Engines whose commits may arrive out of seq order: each row's changes still arrive in
        // seq order (a second writer waits for the first's row lock, and takes a later seq).
        let mut per_row = self
            .conn
            .prepare(
                "SELECT id, seq, prev FROM (SELECT c.id, c.seq, lag(c.seq) OVER \
                 (PARTITION BY c.source_id, c.table_id, c.row_key ORDER BY c.id) AS prev \
                 FROM changes c JOIN sources s ON s.id = c.source_id WHERE s.engine <> 'sqlite') \
                 WHERE prev >= seq ORDER BY id LIMIT 100",
            )
            .map_err(e)?;
        let mut late = per_row.query([]).map_err(e)?;
        while let Some(r) = late.next().map_err(e)? {
            let (id, seq, prev): (i64, i64, i64) = (
                r.get(0).map_err(e)?,
                r.get(1).map_err(e)?,
                r.get(2).map_err(e)?,
            );
            report.problem(format!(
                "change {id}: seq {seq} is not after seq {prev}, an earlier change to the same row"
            ));
        }
        drop(late);
        drop(per_row);
        for p in super::journal::check(self).map_err(e)? {
            report.problem(p);
        }
        if let Some(d) = against {
            if !pinned_seen {
                report.problem(format!(
                    "change {} that the digest pins is missing: the archive was truncated or rewritten",
                    d.last_id
                ));
            } else if report.changes < d.count {
                report.problem(format!(
                    "the digest pinned {} changes but only {} remain",
                    d.count, report.changes
                ));
            }
        }
        Ok(report)
    }
}
