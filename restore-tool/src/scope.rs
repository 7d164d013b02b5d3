//! What to undo: the scopes of `rowtrail undo`, turned into archived change ids.

use rowtrail_reader::archive::{Archive, ChangeQuery};
use rowtrail_sql::{Ident, TableName};
use serde::Serialize;

use crate::RestoreError;

/// Which changes an undo covers: one selector, narrowed by the optional filters.
///
/// Changes written by undo or redo runs, and changes already undone, are never selected.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Scope {
    /// The last N changes (after the filters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last: Option<u64>,
    /// Every change of this transaction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tx: Option<String>,
    /// Every change of this statement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statement: Option<String>,
    /// Every change at or after this UTC time (`2026-11-21T14:05:00Z`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Every change archived after this archive change id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_change: Option<i64>,
    /// These archive change ids.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<i64>,
    /// Only this table (`schema.table` on SQL Server).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// The table's schema (SQL Server).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Only this row of `table` (one value per key column).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub key: Vec<String>,
    /// Only changes by this login.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

impl Scope {
    /// The scope as JSON, for the undo journal.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a scope always serialises")
    }

    fn selectors(&self) -> usize {
        [
            self.last.is_some(),
            self.tx.is_some(),
            self.statement.is_some(),
            self.since.is_some(),
            self.after_change.is_some(),
            !self.changes.is_empty(),
        ]
        .iter()
        .filter(|s| **s)
        .count()
    }
}

/// Normalises a UTC time as the archive writes it (`YYYY-MM-DDTHH:MM:SS.fffZ`), so that text
/// comparison orders correctly; accepts a space for `T`, and omitted seconds or fraction. The
/// date and time must exist (`2026-02-30` and `25:00` are refused, with the reason).
pub fn normalise_time(text: &str) -> Result<String, RestoreError> {
    let bad = |why: &str| {
        RestoreError::BadRequest(format!(
            "{text:?} is not a UTC time like 2026-11-21T14:05:00Z (or \"2026-11-21 14:05\"){why}"
        ))
    };
    let t = text.trim().trim_end_matches(['Z', 'z']).replace(' ', "T");
    let (date, time) = t.split_once('T').unwrap_or((t.as_str(), "00:00"));
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let d: Vec<&str> = date.split('-').collect();
    if d.len() != 3 || !digits(d[0], 4) || !digits(d[1], 2) || !digits(d[2], 2) {
        return Err(bad(""));
    }
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let h: Vec<&str> = hms.split(':').collect();
    if !(2..=3).contains(&h.len()) || !h.iter().all(|p| digits(p, 2)) {
        return Err(bad(""));
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 9 {
        return Err(bad(""));
    }
    let sec = h.get(2).copied().unwrap_or("00");
    let num = |s: &str| s.parse::<i16>().unwrap_or(i16::MAX);
    let nanos = format!("{frac:0<9}").parse::<i32>().unwrap_or(0);
    jiff::civil::DateTime::new(
        num(d[0]),
        num(d[1]) as i8,
        num(d[2]) as i8,
        num(h[0]) as i8,
        num(h[1]) as i8,
        num(sec) as i8,
        nanos,
    )
    .map_err(|e| bad(&format!(": {e}")))?;
    let frac = format!("{frac:0<3}");
    Ok(format!("{date}T{}:{}:{sec}.{frac}Z", h[0], h[1]))
}

/// The eligible changes of the source incarnation `incarnation` that `scope` selects, oldest
/// first (ids).
pub fn select(
    archive: &Archive,
    incarnation: &str,
    scope: &Scope,
) -> Result<Vec<i64>, RestoreError> {
    if scope.selectors() != 1 {
        return Err(RestoreError::BadRequest(
            "give exactly one of --last, --tx, --statement, --since, --after-change, --change"
                .into(),
        ));
    }
    if !scope.key.is_empty() && scope.table.is_none() {
        return Err(RestoreError::BadRequest("--key needs --table".into()));
    }
    let mut q = ChangeQuery {
        incarnation: Some(incarnation.to_string()),
        undo_eligible: true,
        login: scope.user.clone(),
        tx: scope.tx.clone(),
        statement: scope.statement.clone(),
        since: scope.since.as_deref().map(normalise_time).transpose()?,
        after_id: scope.after_change,
        newest_first: true,
        limit: scope.last,
        ..ChangeQuery::default()
    };
    let mut ids: Option<Vec<i64>> = (!scope.changes.is_empty()).then(|| scope.changes.clone());
    if let Some(name) = &scope.table {
        let table = TableName {
            schema: scope.schema.clone().map(Ident::new).transpose()?,
            name: Ident::new(name.clone())?,
        };
        if !scope.key.is_empty() {
            let of_row: Vec<i64> = crate::history::row_history(archive, &table, &scope.key)?
                .iter()
                .map(|c| c.id)
                .collect();
            ids = Some(match ids {
                None => of_row,
                Some(given) => given.into_iter().filter(|i| of_row.contains(i)).collect(),
            });
        }
        q.table = Some(table);
    }
    q.ids = ids;
    let mut ids = archive.change_ids(&q)?;
    ids.reverse();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_normalise_to_the_archive_form() {
        assert_eq!(
            normalise_time("2026-11-21T14:05:00Z").unwrap(),
            "2026-11-21T14:05:00.000Z"
        );
        assert_eq!(
            normalise_time("2026-11-21 14:05").unwrap(),
            "2026-11-21T14:05:00.000Z"
        );
        assert_eq!(
            normalise_time("2026-11-21T14:05:07.5").unwrap(),
            "2026-11-21T14:05:07.500Z"
        );
        assert!(normalise_time("yesterday").is_err());
        assert!(normalise_time("2026-11-21T14").is_err());
        for impossible in [
            "2026-02-30",
            "2026-11-21T25:00",
            "2026-13-99",
            "2026-11-21T14:60",
        ] {
            let e = normalise_time(impossible).unwrap_err().to_string();
            assert!(
                e.contains("invalid") || e.contains("range"),
                "{impossible}: {e}"
            );
        }
        assert_eq!(
            normalise_time("2024-02-29T23:59:59.9999999Z").unwrap(),
            "2024-02-29T23:59:59.9999999Z",
            "a leap day and sub-millisecond digits are kept"
        );
    }
}
