//! Verification: the hash chain, sequence order per source, decodable images, the undo
//! journal's consistency, and digests that pin the archive's state so later truncation or
//! rewriting is detected.

use std::collections::HashMap;

use rowtrail_sql::{image, Value};
use rusqlite::OptionalExtension;

use super::chain::{self, ChainFields};
use super::query::{Lookups, RawChange};
use super::Archive;
use crate::ReaderError;

/// A digest of the archive at one point: the number of changes, the last id and its chain
/// hash, and the ledger's length and last hash.
///
/// Written `rowtrail2-<changes>-<last id>-<hash>-<ledger entries>-<ledger hash>`; a digest of an
/// earlier build (`rowtrail1-<changes>-<last id>-<hash>`) still pins the changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    /// Changes in the archive.
    pub count: u64,
    /// The last change's id.
    pub last_id: i64,
    /// The last change's chain hash.
    pub hash: [u8; 32],
    /// The ledger's entries and its last hash (`None` in a `rowtrail1` digest).
    pub ledger: Option<(u64, [u8; 32])>,
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.ledger {
            Some((n, h)) => write!(
                f,
                "rowtrail2-{}-{}-{}-{}-{}",
                self.count,
                self.last_id,
                chain::hex(&self.hash),
                n,
                chain::hex(h)
            ),
            None => write!(
                f,
                "rowtrail1-{}-{}-{}",
                self.count,
                self.last_id,
                chain::hex(&self.hash)
            ),
        }
    }
}

fn unhex(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut hash = [0u8; 32];
    for (i, byte) in hash.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(hash)
}

impl std::str::FromStr for Digest {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{s:?} is not a rowtrail digest (rowtrail2-<changes>-<id>-<hash>-<ledger entries>-<ledger hash>, \
                 or rowtrail1-<changes>-<id>-<hash>)"
            )
        };
        let parts: Vec<&str> = s.trim().split('-').collect();
        let changes = |p: &[&str]| -> Option<(u64, i64, [u8; 32])> {
            Some((p[1].parse().ok()?, p[2].parse().ok()?, unhex(p[3])?))
        };
        match parts.first() {
            Some(&"rowtrail1") if parts.len() == 4 => {
                let (count, last_id, hash) = changes(&parts).ok_or_else(bad)?;
                Ok(Digest {
                    count,
                    last_id,
                    hash,
                    ledger: None,
                })
            }
            Some(&"rowtrail2") if parts.len() == 6 => {
                let (count, last_id, hash) = changes(&parts).ok_or_else(bad)?;
                let n: u64 = parts[4].parse().map_err(|_| bad())?;
                let h = unhex(parts[5]).ok_or_else(bad)?;
                Ok(Digest {
                    count,
                    last_id,
                    hash,
                    ledger: Some((n, h)),
                })
            }
            _ => Err(bad()),
        }
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
    /// The last change read, and its chain hash.
    pub last: Option<(i64, [u8; 32])>,
    /// Ranges of change ids (inclusive) that could not be read: lost with damaged pages.
    pub lost: Vec<(i64, i64)>,
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

/// The changes of an archive that may be damaged, each readable one once, in id order; the
/// ids that cannot be read are collected as ranges.
struct Salvage<'a> {
    archive: &'a Archive,
    stream: Option<super::query::RawStream<'a>>,
    /// After a read failed: the next id to try on its own, and the last id there is.
    probing: Option<(i64, i64)>,
    last_read: i64,
    lost: Vec<(i64, i64)>,
}

impl<'a> Salvage<'a> {
    fn new(archive: &'a Archive) -> Result<Self, ReaderError> {
        Ok(Self {
            archive,
            stream: Some(archive.raw_stream()?),
            probing: None,
            last_read: 0,
            lost: Vec::new(),
        })
    }

    /// Whether every id in `lo..=hi` was found unreadable.
    fn lost_covers(&self, lo: i64, hi: i64) -> bool {
        self.lost.iter().any(|&(a, b)| a <= lo && hi <= b)
    }

    fn lose(&mut self, id: i64) {
        match self.lost.last_mut() {
            Some((_, hi)) if *hi + 1 == id => *hi = id,
            _ => self.lost.push((id, id)),
        }
    }

    /// The highest id the archive can tell of, when its table cannot be read in order.
    fn last_id(&self) -> i64 {
        let archive = self.archive;
        let by_table = archive
            .conn
            .query_row("SELECT max(id) FROM changes", [], |r| {
                r.get::<_, Option<i64>>(0)
            })
            .ok()
            .flatten();
        let by_ledger = archive
            .conn
            .query_row("SELECT max(changes_tip) FROM ledger", [], |r| {
                r.get::<_, Option<i64>>(0)
            })
            .ok()
            .flatten();
        by_table
            .into_iter()
            .chain(by_ledger)
            .max()
            .unwrap_or(self.last_read)
    }

    fn next(&mut self) -> Option<RawChange> {
        if let Some(stream) = &mut self.stream {
            match stream.next() {
                Some(Ok(raw)) => {
                    self.last_read = raw.id;
                    return Some(raw);
                }
                None => return None,
                Some(Err(_)) => {
                    // From here each id is read on its own: the pages around the damage cannot
                    // be walked in order, but rows beyond them often can be reached by id.
                    self.stream = None;
                    self.probing = Some((self.last_read + 1, self.last_id()));
                }
            }
        }
        while let Some((id, last)) = self.probing {
            if id > last {
                self.probing = None;
                return None;
            }
            self.probing = Some((id + 1, last));
            match self.archive.raw_change(id) {
                Ok(Some(raw)) => {
                    self.last_read = raw.id;
                    return Some(raw);
                }
                // An id never used (ids rise by one, so there are none in a sound archive)
                // cannot be told from one whose row was lost with its page.
                Ok(None) | Err(_) => self.lose(id),
            }
        }
        None
    }
}

impl Archive {
    /// Checks the whole archive; with `against`, also that the state a digest pinned is intact.
    ///
    /// A damaged file is checked as far as it can be read: every change that can still be read
    /// is checked, and the ids that cannot are reported (the chain cannot be checked across
    /// them).
    pub fn verify(&self, against: Option<&Digest>) -> Result<VerifyReport, ReaderError> {
        let mut report = VerifyReport::default();
        match super::quick_check(&self.conn) {
            Ok(Ok(())) => {}
            Ok(Err(detail)) => report.problem(format!("SQLite integrity check failed: {detail}")),
            Err(e) => report.problem(format!("SQLite integrity check could not run: {e}")),
        }
        let mut lookups = Lookups::default();
        let mut prev = chain::GENESIS;
        let mut last_seq: HashMap<i64, i64> = HashMap::new();
        let mut sources = std::collections::HashSet::new();
        let mut pinned_seen = false;
        let mut digests: HashMap<i64, [u8; 32]> = HashMap::new();
        let mut last_id = 0;
        let mut salvage = Salvage::new(self)?;
        while let Some(raw) = salvage.next() {
            let (id, seq, source_id) = (raw.id, raw.seq, raw.source_id);
            // Ids rise by one. A gap of ids that could not be read (damaged pages) breaks the
            // chain: it resumes from this change's own hash. Any other gap is checked as it is
            // (a removed change breaks the chain).
            let lost_gap = id > last_id + 1 && salvage.lost_covers(last_id + 1, id - 1);
            let checked_chain = !lost_gap;
            last_id = id;
            let records = (|| {
                let source = lookups.source(self, source_id)?;
                let table = lookups.table(self, raw.table_id)?;
                let text = lookups.definition_text(self, raw.version_id)?;
                let owner = lookups.version_owner(self, raw.version_id)?;
                Ok::<_, ReaderError>((source, table, text, owner))
            })();
            let ((incarnation, engine), (schema, table), text, owner) = match records {
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
            if owner != (raw.table_id, raw.source_id) {
                report.problem(format!(
                    "change {id} (seq {seq}): its table version belongs to another table or source \
                     than the change names (a derived link was edited)"
                ));
            }
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
            if checked_chain
                && stored != expected.as_slice()
                && !converted_label_matches(&prev, &fields, stored)
            {
                report.problem(format!(
                    "change {id} (seq {seq}): its hash does not match its contents and its predecessor \
                     (a change was altered, removed or reordered here)"
                ));
            }
            let mut images: [Option<Vec<Value>>; 2] = [None, None];
            for (n, (what, img)) in [("before", before), ("after", after)]
                .into_iter()
                .enumerate()
            {
                if let Some(b) = img {
                    match image::decode(b) {
                        Ok(v) => images[n] = Some(v),
                        Err(_) => report
                            .problem(format!("change {id}: its {what}-image cannot be decoded")),
                    }
                }
            }
            // The row keys are derived from the images, outside the chain: derive them again.
            if let Ok(t) = lookups.version(self, raw.version_id) {
                let rowid = match raw.meta[7] {
                    Value::Integer(r) => Some(r),
                    _ => None,
                };
                let [b, a] = &images;
                if let Some(main) = a.as_ref().or(b.as_ref()) {
                    let key = super::append::row_key(&t, main, rowid);
                    let prev_key = match (b, a) {
                        (Some(b), Some(_)) => {
                            Some(super::append::row_key(&t, b, rowid)).filter(|k| *k != key)
                        }
                        _ => None,
                    };
                    if key != raw.row_key || prev_key != raw.prev_key {
                        report.problem(format!(
                            "change {id} (seq {seq}): its row keys do not follow from its images \
                             (history and undo by key would find it under another row)"
                        ));
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
            report.last = Some((id, prev));
        }
        for &(lo, hi) in &salvage.lost {
            report.lost.push((lo, hi));
            report.problem(if lo == hi {
                format!("change {lo} cannot be read: it was lost with a damaged page")
            } else {
                format!("changes {lo} to {hi} cannot be read: they were lost with damaged pages")
            });
        }
        report.sources = sources.len() as u64;
        if let Err(e) = self.check_row_order(&mut report) {
            report.problem(format!(
                "the per-row order of changes could not be checked: {e}"
            ));
        }
        match super::journal::check(self) {
            Ok(problems) => problems.into_iter().for_each(|p| report.problem(p)),
            Err(e) => report.problem(format!("the undo journal could not be checked: {e}")),
        }
        let ledger = match super::ledger::check(&self.conn) {
            Ok(l) => {
                l.problems.into_iter().for_each(|p| report.problem(p));
                Some((l.count, l.tip))
            }
            Err(e) => {
                report.problem(format!("the ledger could not be read: {e}"));
                None
            }
        };
        if let Some((id, hash)) = report.last {
            report.digest = Some(Digest {
                count: report.changes,
                last_id: id,
                hash,
                ledger,
            });
        } else if let Some(l) = ledger {
            report.digest = Some(Digest {
                count: 0,
                last_id: 0,
                hash: chain::GENESIS,
                ledger: Some(l),
            });
        }
        if let Some(d) = against {
            if d.count > 0 && !pinned_seen {
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
            if let (Some((n, h)), Some((now_n, _))) = (d.ledger, ledger) {
                match self.ledger_hash_at(n) {
                    Ok(Some(found)) if found == h => {}
                    Ok(Some(_)) => report.problem(format!(
                        "ledger entry {n} differs from the digest: the ledger was rewritten at or before it"
                    )),
                    Ok(None) => report.problem(format!(
                        "the digest pinned {n} ledger entries but only {now_n} remain: the ledger was truncated"
                    )),
                    Err(e) => report.problem(format!("the ledger could not be compared with the digest: {e}")),
                }
            }
        }
        Ok(report)
    }

    /// The digest of the archive as it stands, read from the tips of its two chains without a
    /// scan (what the watcher publishes after each pass). Its change count is the last id: ids
    /// rise by one from 1, so they agree in an intact archive, and `verify --against` checks the
    /// rest.
    pub fn tip_digest(&self) -> Result<Digest, ReaderError> {
        let tip = |sql: &str| -> rusqlite::Result<(i64, [u8; 32])> {
            Ok(self
                .conn
                .query_row(sql, [], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
                })
                .optional()?
                .map(|(id, h)| (id, h.try_into().unwrap_or(chain::GENESIS)))
                .unwrap_or((0, chain::GENESIS)))
        };
        let (last_id, hash) = tip("SELECT id, hash FROM changes ORDER BY id DESC LIMIT 1")
            .map_err(self.err("cannot read the chain's tip"))?;
        let (entries, ledger) = tip("SELECT id, hash FROM ledger ORDER BY id DESC LIMIT 1")
            .map_err(self.err("cannot read the ledger's tip"))?;
        Ok(Digest {
            count: last_id as u64,
            last_id,
            hash,
            ledger: Some((entries as u64, ledger)),
        })
    }

    /// The hash of ledger entry `n`, if there is one.
    fn ledger_hash_at(&self, n: u64) -> rusqlite::Result<Option<[u8; 32]>> {
        Ok(self
            .conn
            .query_row("SELECT hash FROM ledger WHERE id = ?1", [n as i64], |r| {
                r.get::<_, Vec<u8>>(0)
            })
            .optional()?
            .and_then(|h| h.try_into().ok()))
    }

    /// Engines whose commits may arrive out of seq order: each row's changes still arrive in
    /// seq order (a second writer waits for the first's row lock, and takes a later seq).
    fn check_row_order(&self, report: &mut VerifyReport) -> rusqlite::Result<()> {
        let mut per_row = self.conn.prepare(
            "SELECT id, seq, prev FROM (SELECT c.id, c.seq, lag(c.seq) OVER \
             (PARTITION BY c.source_id, c.table_id, c.row_key ORDER BY c.id) AS prev \
             FROM changes c JOIN sources s ON s.id = c.source_id WHERE s.engine <> 'sqlite') \
             WHERE prev >= seq ORDER BY id LIMIT 100",
        )?;
        let mut late = per_row.query([])?;
        while let Some(r) = late.next()? {
            let (id, seq, prev): (i64, i64, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
            report.problem(format!(
                "change {id}: seq {seq} is not after seq {prev}, an earlier change to the same row"
            ));
        }
        Ok(())
    }
}
