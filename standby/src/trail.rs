//! The trail as plain tables: with `trail_tables`, a replica also holds, per table it copies, a
//! table `rowtrail_trail_<table>` with one row per row image of each archived change of it (an
//! insert's after-image, a delete's before-image, an update's both): the source's columns, and
//! who, when, where and in which transaction, so auditors can query the trail with plain SQL.
//!
//! A trail row is written in the replica transaction that moves the replica past its change,
//! so the trail holds exactly the changes up to the replica's position, each once; a rewind
//! removes the trail rows of the changes it undoes. The changes already in a table's baseline
//! are in its trail too (a new replica's trail starts with every archived change it stands on).

use rowtrail_reader::archive::ArchivedChange;
use rowtrail_reader::sqlite::Param;
use rowtrail_sql::{Column, Ident, Table, TableName, Value};

use crate::tables::create_sql;
use crate::StandbyError;

/// The trail's own columns, before the source's: name and declared type.
const META: [(&str, &str); 12] = [
    ("rowtrail_change_id", "INTEGER"),
    ("rowtrail_seq", "INTEGER"),
    ("rowtrail_op", "TEXT"),
    ("rowtrail_image", "TEXT"),
    ("rowtrail_at", "TEXT"),
    ("rowtrail_login", "TEXT"),
    ("rowtrail_host", "TEXT"),
    ("rowtrail_app", "TEXT"),
    ("rowtrail_client_ip", "TEXT"),
    ("rowtrail_tx", ""),
    ("rowtrail_stmt", ""),
    ("rowtrail_rowid", "INTEGER"),
];

/// The trail table of `form` (a replica table): its name, and the table it is.
pub(crate) fn table(form: &Table) -> Result<Table, StandbyError> {
    let name = Ident::new(format!("rowtrail_trail_{}", form.name.name.as_str())).map_err(|e| {
        StandbyError::Refused(format!(
            "table {} cannot have a trail table ({e}): build the replica without --trail-tables",
            form.name
        ))
    })?;
    let mut columns: Vec<Column> = META
        .iter()
        .map(|(n, t)| Column::new(Ident::new(*n).expect("a short fixed name"), *t, true))
        .collect();
    for c in &form.columns {
        if META
            .iter()
            .any(|(n, _)| c.name.as_str().eq_ignore_ascii_case(n))
        {
            return Err(StandbyError::Refused(format!(
                "table {} has a column named {}, which its trail table uses for itself: build \
                 the replica without --trail-tables",
                form.name, c.name
            )));
        }
        columns.push(Column {
            nullable: true,
            ..c.clone()
        });
    }
    Ok(Table {
        name: TableName::bare(name),
        columns,
        primary_key: Vec::new(),
        unique_keys: Vec::new(),
        rowid: true,
    })
}

/// `CREATE TABLE` of `trail`, and an index on its change ids (rewinds delete by them).
pub(crate) fn create(trail: &Table, sqlite_source: bool) -> String {
    format!(
        "{}; CREATE INDEX {} ON {} (rowtrail_change_id)",
        create_sql(trail, sqlite_source),
        Ident::new(format!("{}_by_change", trail.name.name.as_str()))
            .map(|i| i.sqlite().to_string())
            .unwrap_or_else(|_| "\"rowtrail_trail_by_change\"".to_string()),
        trail.name.name.sqlite()
    )
}

/// Writes the row images of `change` into `trail`.
pub(crate) fn record(
    tx: &rusqlite::Transaction<'_>,
    trail: &Table,
    change: &ArchivedChange,
) -> Result<(), rusqlite::Error> {
    let marks: Vec<String> = (1..=trail.columns.len()).map(|i| format!("?{i}")).collect();
    let sql = format!(
        "INSERT INTO {} ({}) VALUES ({})",
        trail.name.name.sqlite(),
        trail
            .columns
            .iter()
            .map(|c| c.name.sqlite().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        marks.join(", ")
    );
    let mut stmt = tx.prepare_cached(&sql)?;
    let text = |s: &Option<String>| s.as_deref().map_or(Value::Null, |s| Value::Text(s.into()));
    for (image, values) in [("before", &change.before), ("after", &change.after)] {
        let Some(values) = values else { continue };
        let meta = [
            Value::Integer(change.id),
            Value::Integer(change.seq),
            Value::Text(change.op.word().into()),
            Value::Text(image.into()),
            text(&change.at),
            text(&change.login),
            text(&change.host),
            text(&change.app),
            text(&change.client_ip),
            change.tx.clone().unwrap_or(Value::Null),
            change.stmt.clone().unwrap_or(Value::Null),
            change.rowid.map_or(Value::Null, Value::Integer),
        ];
        stmt.execute(rusqlite::params_from_iter(
            meta.iter().chain(values.iter()).map(Param),
        ))?;
    }
    Ok(())
}

/// Removes from `trail` the rows of changes after archive change `change_id`.
pub(crate) fn forget_after(
    tx: &rusqlite::Transaction<'_>,
    trail: &Table,
    change_id: i64,
) -> Result<(), rusqlite::Error> {
    tx.execute(
        &format!(
            "DELETE FROM {} WHERE rowtrail_change_id > ?1",
            trail.name.name.sqlite()
        ),
        [change_id],
    )?;
    Ok(())
}
