//! Taking a baseline: every captured table (or the ones named) snapshot into the archive, one
//! table at a time, each at its exact position in the change stream.
//!
//! A baseline cut short (a kill, an error) resumes: the next run for the same tables continues
//! the unfinished baseline, keeping the tables it finished and taking the rest (a table that
//! was half written is taken again from its start, in a new snapshot).

use rowtrail_reader::archive::Archive;
use rowtrail_reader::source::Source;
use rowtrail_sql::TableName;

use crate::StandbyError;

/// Rows read from the source and written to the archive per chunk.
pub const CHUNK: usize = 5_000;

/// One table a baseline took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakenTable {
    /// The table.
    pub table: TableName,
    /// Its rows.
    pub rows: u64,
    /// The seq its snapshot reflects.
    pub seq: i64,
}

/// What a baseline run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaselineReport {
    /// The baseline's id in the archive.
    pub baseline: i64,
    /// Whether it continued one an earlier run left unfinished.
    pub resumed: bool,
    /// Tables an earlier run had finished (kept as they were).
    pub kept: Vec<TableName>,
    /// Tables this run took.
    pub taken: Vec<TakenTable>,
}

/// Progress of a baseline: the table being taken and the rows written of it so far.
pub trait BaselineProgress {
    /// A table's snapshot starts.
    fn table(&mut self, _table: &TableName) {}
    /// `rows` of the current table are written.
    fn rows(&mut self, _rows: u64) {}
}

/// No progress shown.
pub struct Silent;
impl BaselineProgress for Silent {}

/// Takes a baseline of `source`'s captured tables (`only` names some of them) into `archive`.
pub fn take(
    source: &mut dyn Source,
    archive: &mut Archive,
    only: Option<&[String]>,
    progress: &mut dyn BaselineProgress,
) -> Result<BaselineReport, StandbyError> {
    source.refresh()?;
    archive.check_home(source)?;
    // A source may list a table more than once (SQL Server lists older definitions still
    // staged after the current ones): each table is taken once, as currently defined.
    let mut captured: Vec<TableName> = Vec::new();
    for t in source.tables() {
        if !captured.contains(&t.table.name) {
            captured.push(t.table.name.clone());
        }
    }
    if captured.is_empty() {
        return Err(StandbyError::Refused(format!(
            "{} has no captured tables: run `rowtrail sql install` first",
            source.info().location
        )));
    }
    let wanted: Vec<TableName> = match only {
        None => captured.clone(),
        Some(names) => {
            let mut out = Vec::new();
            for n in names {
                match captured
                    .iter()
                    .find(|c| c.to_string() == *n || c.name.as_str() == n)
                {
                    Some(c) => out.push(c.clone()),
                    None => {
                        return Err(StandbyError::Refused(format!(
                            "table {n:?} is not captured on {}; captured tables: {}",
                            source.info().location,
                            captured
                                .iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join(", ")
                        )))
                    }
                }
            }
            out
        }
    };
    let info = source.info().clone();
    let (baseline, resumed, kept) = match archive.unfinished_baseline(&info.incarnation)? {
        Some(u) if same_set(&u.tables, &wanted) => (u.id, true, u.done),
        _ => (archive.begin_baseline(&info, &wanted)?, false, Vec::new()),
    };
    let mut taken = Vec::new();
    for name in &wanted {
        if kept.contains(name) {
            continue;
        }
        let Some(table) = source
            .tables()
            .iter()
            .find(|t| &t.table.name == name)
            .cloned()
        else {
            continue;
        };
        progress.table(name);
        let mut writer = archive.baseline_writer(baseline, &info, &table)?;
        let mut written = 0u64;
        let pos = source.snapshot_table(&table, CHUNK, &mut |rows| {
            writer.add(rows)?;
            written += rows.len() as u64;
            progress.rows(written);
            Ok(())
        })?;
        let rows = writer.finish(pos.seq, &pos.taken_at)?;
        tracing::info!(table = %name, rows, seq = pos.seq, "baseline table taken");
        taken.push(TakenTable {
            table: name.clone(),
            rows,
            seq: pos.seq,
        });
    }
    Ok(BaselineReport {
        baseline,
        resumed,
        kept,
        taken,
    })
}

fn same_set(a: &[TableName], b: &[TableName]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x))
}
