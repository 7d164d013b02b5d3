//! Staged rows that span a capture upgrade, each labelled with the definition it was staged
//! under.
//!
//! An upgrade keeps every staged row: dropped columns stay in staging, added columns are NULL in
//! rows staged before, widened columns hold the same values. `rowtrail_versions` records each
//! definition with the first sequence value written under it, so a staged row belongs to the
//! latest version whose `first_seq` is below its seq. The reader reads each staging table once,
//! with the columns of every version it holds (the current ones first), and gives each image
//! the values and the definition of its own version: the archive then records an image staged
//! before an upgrade with the table as it was, never with columns it did not have.

use rowtrail_sql::Table;

use crate::source::{CapturedTable, StagedImage};

/// One definition a table had, as `rowtrail_versions` records it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedVersion {
    /// The table's schema.
    pub schema: String,
    /// The table's name.
    pub name: String,
    /// The first sequence value written under this definition.
    pub first_seq: i64,
    /// The definition.
    pub table: Table,
}

/// How one staging table is read and its images labelled.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The staging table with the columns of every version (current ones first), as read.
    pub read: CapturedTable,
    /// The versions, oldest first.
    versions: Vec<Version>,
}

#[derive(Debug, Clone)]
struct Version {
    first_seq: i64,
    /// Its index in the source's tables.
    entry: usize,
    /// For each of its columns, the position in [`Layout::read`].
    positions: Vec<usize>,
}

/// The source's tables (the registry's, in order, then every older definition still recorded)
/// and a layout per registry table.
pub fn layouts(
    registry: &[CapturedTable],
    recorded: &[RecordedVersion],
) -> (Vec<CapturedTable>, Vec<Layout>) {
    let mut entries: Vec<CapturedTable> = registry.to_vec();
    let mut out = Vec::with_capacity(registry.len());
    for (i, current) in registry.iter().enumerate() {
        let schema = current
            .table
            .name
            .schema
            .as_ref()
            .map_or("dbo", |s| s.as_str())
            .to_string();
        let name = current.table.name.name.as_str().to_string();
        let mut mine: Vec<&RecordedVersion> = recorded
            .iter()
            .filter(|v| v.schema == schema && v.name == name)
            .collect();
        mine.sort_by_key(|v| v.first_seq);
        let mut read = current.table.clone();
        // Columns only older versions have (dropped, kept in staging), newest first.
        for v in mine.iter().rev() {
            for c in &v.table.columns {
                if !read.columns.iter().any(|r| r.name == c.name) {
                    read.columns.push(c.clone());
                }
            }
        }
        let mut versions = Vec::with_capacity(mine.len().max(1));
        for v in &mine {
            let entry = if v.table == current.table {
                i
            } else {
                entries.push(CapturedTable {
                    table: v.table.clone(),
                    staging: current.staging.clone(),
                });
                entries.len() - 1
            };
            let positions = v
                .table
                .columns
                .iter()
                .map(|c| {
                    read.columns
                        .iter()
                        .position(|r| r.name == c.name)
                        .expect("in the union")
                })
                .collect();
            versions.push(Version {
                first_seq: v.first_seq,
                entry,
                positions,
            });
        }
        // The current definition always labels rows staged after the last recorded version.
        if versions.last().is_none_or(|v| v.entry != i) {
            versions.push(Version {
                first_seq: versions.last().map_or(i64::MIN, |v| v.first_seq),
                entry: i,
                positions: (0..current.table.columns.len()).collect(),
            });
        }
        out.push(Layout {
            read: CapturedTable {
                table: read,
                staging: current.staging.clone(),
            },
            versions,
        });
    }
    (entries, out)
}

impl Layout {
    /// `img` (read with [`Layout::read`]'s columns) with the values and the table of the
    /// version it was staged under.
    pub fn label(&self, mut img: StagedImage) -> StagedImage {
        let v = self
            .versions
            .iter()
            .rev()
            .find(|v| v.first_seq < img.seq)
            .unwrap_or(&self.versions[0]);
        img.values = v
            .positions
            .iter()
            .map(|&p| {
                img.values
                    .get(p)
                    .cloned()
                    .unwrap_or(rowtrail_sql::Value::Null)
            })
            .collect();
        img.table = v.entry;
        img
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{ImageKind, Meta};
    use rowtrail_sql::staging::Op;
    use rowtrail_sql::{Column, Ident, TableName, Value};

    fn table(cols: &[(&str, &str)]) -> Table {
        Table {
            name: TableName {
                schema: Some(Ident::new("dbo").unwrap()),
                name: Ident::new("T").unwrap(),
            },
            columns: cols
                .iter()
                .map(|(n, t)| Column::new(Ident::new(*n).unwrap(), *t, true))
                .collect(),
            primary_key: vec![0],
            unique_keys: vec![],
            rowid: false,
        }
    }

    fn img(seq: i64, values: Vec<Value>) -> StagedImage {
        StagedImage {
            table: 0,
            seq,
            op: Op::Insert,
            image: ImageKind::After,
            meta: Meta::default(),
            rowid: None,
            values,
        }
    }

    #[test]
    fn each_image_gets_the_definition_it_was_staged_under() {
        // v1 (A, B varchar(10), C); upgraded at seq 10 to v2 (A, B varchar(200), D): C dropped
        // (kept in staging), D added.
        let v1 = table(&[("A", "int"), ("B", "varchar(10)"), ("C", "int")]);
        let v2 = table(&[("A", "int"), ("B", "varchar(200)"), ("D", "int")]);
        let staging = Ident::new("rowtrail_s_T_0123456789").unwrap();
        let registry = [CapturedTable {
            table: v2.clone(),
            staging: staging.clone(),
        }];
        let rec = |first_seq, table: &Table| RecordedVersion {
            schema: "dbo".into(),
            name: "T".into(),
            first_seq,
            table: table.clone(),
        };
        let (entries, layouts) = layouts(&registry, &[rec(10, &v2), rec(2, &v1)]);
        assert_eq!(entries.len(), 2, "the current definition, then v1");
        assert_eq!(entries[1].table, v1);
        assert_eq!(entries[1].staging, staging);
        let read: Vec<&str> = layouts[0]
            .read
            .table
            .columns
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            read,
            ["A", "B", "D", "C"],
            "the dropped column is still read"
        );
        let row = |a| {
            vec![
                Value::Integer(a),
                Value::text("b"),
                Value::Null,
                Value::Integer(7),
            ]
        };
        let old = layouts[0].label(img(4, row(1)));
        assert_eq!(
            (old.table, old.values),
            (
                1,
                vec![Value::Integer(1), Value::text("b"), Value::Integer(7)]
            )
        );
        let new = layouts[0].label(img(12, row(2)));
        assert_eq!(
            (new.table, new.values),
            (0, vec![Value::Integer(2), Value::text("b"), Value::Null])
        );
        // No versions recorded: everything is the current definition.
        let (entries, layouts) = layouts_of_registry_only(&registry);
        assert_eq!(entries.len(), 1);
        assert_eq!(layouts[0].label(img(4, row(3))).table, 0);
    }

    fn layouts_of_registry_only(r: &[CapturedTable]) -> (Vec<CapturedTable>, Vec<Layout>) {
        layouts(r, &[])
    }
}
