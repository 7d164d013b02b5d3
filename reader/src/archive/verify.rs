//! Verification: the hash chain, sequence order per source, decodable images, the undo
//! journal's consistency, and digests that pin the archive's state so later truncation or
//! rewriting is detected.

use std::collections::HashMap;

use rowtrail_sql::{image, Value};

use super::chain::{self, ChainFields};
use super::query::{Lookups, RawChange};
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
        let mut lookups = Lookups::default();
        let mut prev = chain::GENESIS;
        let mut last_seq: HashMap<i64, i64> = HashMap::new();
        let mut sources = std::collections::HashSet::new();
        let mut pinned_seen = false;
        let mut digests: HashMap<i64, [u8; 32]> = HashMap::new();
        for raw in self.raw_stream()? {
            let raw = raw?;
            let (id, seq, source_id) = (raw.id, raw.seq, raw.source_id);
            let records = (|| {
                let source = lookups.source(self, source_id)?;
                let table = lookups.table(self, raw.table_id)?;
                let text = lookups.definition_text(self, raw.version_id)?;
                Ok::<_, ReaderError>((source, table, text))
            })();
            let ((incarnation, engine), (schema, table), text) = match records {
                Ok(r) => r,
                Err(e) => {
                    report.problem(format!(
                        "change {id} (seq {seq}): the source, table or table version it names cannot be read ({e})"
                    ));
                    prev = raw.hash.as_slice().try_into().unwrap_or(chain::GENESIS);
                    report.changes += 1;
                    continue;
                }
            };
            let definition = *digests
                .entry(raw.version_id)
                .or_insert_with(|| chain::definition_digest(&text));
            let before = RawChange::image_bytes(&raw.before);
            let after = RawChange::image_bytes(&raw.after);
            let fields = ChainFields {
                id,
                incarnation: &incarnation,
                seq,
                schema: &schema,
                table: &table,
                definition: &definition,
                op: &raw.op,
                meta: &raw.meta,
                before,
                after,
                archived_us: raw.archived_us,
            };
            let stored = raw.hash.as_slice();
            let expected = chain::link(&prev, &fields);
            if stored != expected.as_slice() && !converted_label_matches(&prev, &fields, stored) {
                report.problem(format!(
                    "change {id} (seq {seq}): its hash does not match its contents and its predecessor \
                     (a change was altered, removed or reordered here)"
                ));
            }
            for (what, img) in [("before", before), ("after", after)] {
                if let Some(b) = img {
                    if image::decode(b).is_err() {
                        report.problem(format!("change {id}: its {what}-image cannot be decoded"));
                    }
                }
            }
            // SQLite serialises writers, so its commits arrive in seq order. SQL Server can
            // commit a lower seq after a higher one was archived; it is checked per row below.
            let serial = &*engine == "sqlite";
            sources.insert(source_id);
            if serial {
                if let Some(last) = last_seq.insert(source_id, seq) {
                    if seq <= last {
                        report.problem(format!(
                            "change {id}: seq {seq} is not after the previous seq {last} of its source"
                        ));
                    }
                }
            }
            if let Some(d) = against {
                if id == d.last_id {
                    pinned_seen = true;
                    if stored != d.hash.as_slice() {
                        report.problem(format!(
                            "change {id} differs from the digest: the archive was rewritten at or before it"
                        ));
                    }
                }
            }
            prev = stored.try_into().unwrap_or(chain::GENESIS);
            report.changes += 1;
            report.digest = Some(super::Digest {
                count: report.changes,
                last_id: id,
                hash: prev,
            });
        }
        report.sources = sources.len() as u64;
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
