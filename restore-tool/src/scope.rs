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
    /// With `tx`: the transaction of that id that was under way around this UTC time (SQL
    /// Server numbers transactions anew after a restart, so one id can name several).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tx_at: Option<String>,
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

/// How far apart in time two changes carrying one transaction id must be to belong to two
/// transactions: no transaction stays open this long between two writes, while a server that
/// numbers transactions anew after a restart reaches an old number again only much later.
pub const TX_GAP_SECONDS: i64 = 3600;

/// A change's time (`c.at`: ISO-8601 UTC, with or without `Z`) in seconds since the epoch.
pub(crate) fn seconds(at: &str) -> Option<i64> {
    let civil: jiff::civil::DateTime = at.trim_end_matches(['Z', 'z']).parse().ok()?;
    jiff::tz::TimeZone::UTC
        .to_timestamp(civil)
        .ok()
        .map(|t| t.as_second())
}

/// The changes of one transaction id, `(id, time)` in time order, split into the transactions
/// that carried it: runs of changes no more than [`TX_GAP_SECONDS`] apart. A change without a
/// readable time joins the first.
fn transactions(mut changes: Vec<(i64, Option<i64>)>) -> Vec<Vec<(i64, Option<i64>)>> {
    changes.sort_by_key(|&(id, t)| (t, id));
    let mut groups: Vec<Vec<(i64, Option<i64>)>> = Vec::new();
    for c in changes {
        let joins = match (groups.last().and_then(|g| g.last()), c.1) {
            (None, _) => false,
            (Some(&(_, Some(prev))), Some(t)) => t - prev <= TX_GAP_SECONDS,
            _ => true,
        };
        if joins {
            groups.last_mut().expect("a group").push(c);
        } else {
            groups.push(vec![c]);
        }
    }
    groups
}

/// The one transaction among those that carried id `tx` that `--tx-at` names (or the only
/// one), as change ids; an error listing them when the choice is not clear.
fn one_transaction(
    archive: &Archive,
    tx: &str,
    tx_at: Option<&str>,
    ids: Vec<i64>,
) -> Result<Vec<i64>, RestoreError> {
    if ids.is_empty() {
        return Ok(ids);
    }
    let changes = archive.changes(&ChangeQuery {
        ids: Some(ids),
        ..ChangeQuery::default()
    })?;
    let timed: Vec<(i64, Option<i64>)> = changes
        .iter()
        .map(|c| (c.id, c.at.as_deref().and_then(seconds)))
        .collect();
    let text: std::collections::HashMap<i64, String> = changes
        .iter()
        .map(|c| (c.id, c.at.clone().unwrap_or_default()))
        .collect();
    let groups = transactions(timed);
    let chosen = match (groups.len(), tx_at) {
        (1, None) => Some(0),
        (_, None) => None,
        (_, Some(at)) => {
            let t = seconds(&normalise_time(at)?)
                .ok_or_else(|| RestoreError::BadRequest(format!("--tx-at {at:?} is not a time")))?;
            groups.iter().position(|g| {
                let times: Vec<i64> = g.iter().filter_map(|c| c.1).collect();
                match (times.first(), times.last()) {
                    (Some(&a), Some(&b)) => a - TX_GAP_SECONDS <= t && t <= b + TX_GAP_SECONDS,
                    _ => false,
                }
            })
        }
    };
    match chosen {
        Some(k) => {
            let mut ids: Vec<i64> = groups[k].iter().map(|c| c.0).collect();
            ids.sort_unstable();
            Ok(ids)
        }
        None => {
            let list: String = groups
                .iter()
                .map(|g| {
                    format!(
                        "\n  {} change(s) from {} to {}",
                        g.len(),
                        text[&g[0].0],
                        text[&g[g.len() - 1].0]
                    )
                })
                .collect();
            Err(RestoreError::BadRequest(format!(
                "transaction id {tx} was carried by {} transactions of this source (the server \
                 numbers transactions anew after a restart or failover){}{list}\nname one with \
                 --tx-at TIME (a time while it was under way)",
                groups.len(),
                if tx_at.is_some() {
                    ", and none was under way at --tx-at"
                } else {
                    ""
                },
            )))
        }
    }
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
    if scope.tx_at.is_some() && scope.tx.is_none() {
        return Err(RestoreError::BadRequest("--tx-at needs --tx".into()));
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
    match &scope.tx {
        Some(tx) => one_transaction(archive, tx, scope.tx_at.as_deref(), ids),
        None => Ok(ids),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue15_one_transaction_id_carried_twice_is_two_transactions() {
        assert_eq!(seconds("1970-01-01T00:01:00.5Z"), Some(60));
        assert_eq!(seconds("1970-01-01T01:00:00.1234567"), Some(3600));
        assert_eq!(seconds("yesterday"), None);
        let day = 86_400;
        let groups = transactions(vec![
            (5, Some(day + 10)),
            (1, Some(0)),
            (2, Some(30)),
            (6, Some(day + 3000)),
            (3, None),
        ]);
        assert_eq!(
            groups
                .iter()
                .map(|g| g.iter().map(|c| c.0).collect::<Vec<_>>())
                .collect::<Vec<_>>(),
            [vec![3, 1, 2], vec![5, 6]]
        );
        // Changes of one long transaction, minutes apart, stay one.
        assert_eq!(
            transactions(vec![(1, Some(0)), (2, Some(3000)), (3, Some(6000))]).len(),
            1
        );
    }

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
