//! Out-of-order commits, as SQL Server produces them, through a protocol test double: a
//! transaction that took a lower sequence number commits after one with a higher number, and
//! the reader (which skips uncommitted rows, `READPAST`) archives the higher one first. Nothing
//! may be lost, nothing deleted that was not copied. SQLite cannot produce this order (its
//! writers are serialised), hence the double.

use rowtrail_reader::archive::{Archive, ArchiveOptions};
use rowtrail_reader::mover;
use rowtrail_reader::mssql::source::merge;
use rowtrail_reader::source::{
    CapturedTable, ImageKind, Meta, Source, SourceInfo, StagedImage, StagedKey,
};
use rowtrail_reader::ReaderError;
use rowtrail_sql::staging::Op;
use rowtrail_sql::{Column, Ident, Table, TableName, Value};

/// Staging as SQL Server shows it to a `READPAST` reader: committed rows only, in seq order.
struct Double {
    info: SourceInfo,
    tables: Vec<CapturedTable>,
    /// (committed, image)
    staged: Vec<(bool, StagedImage)>,
    deleted: Vec<StagedKey>,
}

impl Double {
    fn write(&mut self, seq: i64, id: i64) {
        self.staged.push((
            false,
            StagedImage {
                table: 0,
                seq,
                op: Op::Insert,
                image: ImageKind::After,
                meta: Meta {
                    stmt: Some(Value::Integer(seq - 1)),
                    ..Meta::default()
                },
                rowid: None,
                values: vec![Value::Integer(id), Value::text("v")],
            },
        ));
    }
    fn commit(&mut self, seq: i64) {
        self.staged
            .iter_mut()
            .filter(|(_, i)| i.seq == seq)
            .for_each(|(c, _)| *c = true);
    }
}

impl Source for Double {
    fn info(&self) -> &SourceInfo {
        &self.info
    }
    fn tables(&self) -> &[CapturedTable] {
        &self.tables
    }
    fn refresh(&mut self) -> Result<(), ReaderError> {
        Ok(())
    }
    fn read_batch(
        &mut self,
        limit: usize,
        _above: Option<i64>,
    ) -> Result<Vec<StagedImage>, ReaderError> {
        let mut run: Vec<StagedImage> = self
            .staged
            .iter()
            .filter(|(c, _)| *c)
            .map(|(_, i)| i.clone())
            .collect();
        run.sort_by_key(|i| i.seq);
        Ok(merge(vec![run], limit))
    }
    fn delete_staged(&mut self, keys: &[StagedKey]) -> Result<(), ReaderError> {
        self.deleted.extend_from_slice(keys);
        self.staged
            .retain(|(_, i)| !keys.contains(&(i.table, i.seq)));
        Ok(())
    }
    fn probe(&mut self) -> Result<i64, ReaderError> {
        Ok(self.staged.iter().map(|(_, i)| i.seq).max().unwrap_or(0))
    }
    fn staged_count(&mut self) -> Result<u64, ReaderError> {
        Ok(self.staged.len() as u64)
    }
}

fn double() -> Double {
    let name = TableName {
        schema: Some(Ident::new("dbo").unwrap()),
        name: Ident::new("T").unwrap(),
    };
    let table = Table {
        name: name.clone(),
        columns: vec![
            Column::new(Ident::new("id").unwrap(), "int", false),
            Column::new(Ident::new("v").unwrap(), "nvarchar(10)", true),
        ],
        primary_key: vec![0],
        unique_keys: vec![],
        rowid: false,
    };
    Double {
        info: SourceInfo {
            incarnation: "6f1c2d3e-0000-4000-8000-000000000001".into(),
            engine: "mssql",
            location: "test on double".into(),
        },
        tables: vec![CapturedTable {
            staging: rowtrail_sql::staging::derived_name(&name, "s"),
            table,
        }],
        staged: Vec::new(),
        deleted: Vec::new(),
    }
}

#[test]
fn a_late_commit_with_a_lower_seq_is_archived_later_and_nothing_else_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let mut archive = Archive::open(&dir.path().join("a.db"), &ArchiveOptions::default()).unwrap();
    let mut s = double();
    s.write(10, 1); // a long transaction takes seq 10 ...
    s.write(12, 2); // ... another takes 12 and commits first
    s.commit(12);
    let first = mover::drain(&mut s, &mut archive, 100).unwrap();
    assert_eq!(first.archived, 1);
    assert_eq!(
        s.deleted,
        vec![(0, 12)],
        "only the copied key; never `seq <= 12`"
    );
    assert_eq!(s.staged.len(), 1, "seq 10 is still staged, uncommitted");
    s.commit(10);
    let second = mover::drain(&mut s, &mut archive, 100).unwrap();
    assert_eq!(second.archived, 1);
    assert_eq!(s.deleted, vec![(0, 12), (0, 10)]);
    assert!(s.staged.is_empty());
    // Reading again archives nothing twice.
    s.write(10, 1);
    s.commit(10);
    let again = mover::drain(&mut s, &mut archive, 100).unwrap();
    assert_eq!((again.archived, again.duplicates), (0, 1));

    // A late commit is no fault: verify checks SQL Server's order per row, not per source.
    let report = archive.verify(None).unwrap();
    assert_eq!(report.changes, 2);
    assert!(report.ok(), "{:?}", report.problems);
}

#[test]
fn verify_still_catches_a_row_whose_changes_arrive_out_of_seq_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut archive = Archive::open(&dir.path().join("a.db"), &ArchiveOptions::default()).unwrap();
    let mut s = double();
    // The same row twice, the later seq archived first: a real server cannot do this (the second
    // writer waits for the first's row lock), so verify must call it out.
    s.write(12, 7);
    s.commit(12);
    mover::drain(&mut s, &mut archive, 100).unwrap();
    s.write(10, 7);
    s.commit(10);
    mover::drain(&mut s, &mut archive, 100).unwrap();
    let report = archive.verify(None).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("seq 10 is not after seq 12, an earlier change to the same row")),
        "{:?}",
        report.problems
    );
}
