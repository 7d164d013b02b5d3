//! Staged rows that cannot be decoded, even with every text read as its bytes: found one by one
//! and kept in staging (quarantined), while the reader goes on with the other rows and tables.
//!
//! A batch of one staging table that fails to decode (the driver cannot decode a value, a
//! value does not convert, a row breaks the staging contract) is read again by halves of its
//! seqs, down to single rows; each row that still fails is left out of the batch, so it is
//! never archived and never deleted. It stays in staging, where:
//!
//! * the log says once which staging table, seq and column (never the value);
//! * the backlog alert fires once it is older than `backlog_age`, since the oldest staged image
//!   no longer moves;
//! * the consistent cut stays below it ([`super::cut`]: the images at or below a cut must all
//!   be archived), so no replica or rebuild goes past a change it does not have;
//! * `rowtrail sql uninstall` refuses, as for any staged row.
//!
//! An operator who has saved the row elsewhere (or fixed it in place) deletes it from staging
//! (or lets the reader read the fixed row); reading goes on by itself.

use tiberius::ToSql;

use super::client::MssqlClient;
use super::queries;
use crate::source::{CapturedTable, StagedImage};
use crate::ReaderError;

/// Images read around the undecodable rows, and each of those rows' seq with why it failed.
pub type ReadAround = (Vec<StagedImage>, Vec<(i64, ReaderError)>);

/// Whether `e` is a row that cannot be read into an image (so it is quarantined, not retried).
/// A staging table whose shape is wrong (its columns are not the ones expected: every row would
/// fail) is not a row's problem: it stops the read, as before.
pub fn is_undecodable_row(e: &ReaderError) -> bool {
    e.is_undecodable()
        || matches!(
            e,
            ReaderError::Conversion { .. } | ReaderError::BadStaging { seq: 1.., .. }
        )
}

/// Why a row is quarantined, without any value.
pub fn reason(e: &ReaderError) -> String {
    match e {
        ReaderError::Conversion { column, .. } => {
            format!("its column {column} does not convert to an archive value")
        }
        ReaderError::BadStaging { reason, .. } => reason.clone(),
        _ => "the driver cannot decode one of its values".into(),
    }
}

/// The seqs of the oldest `@P1` images of a staging table.
pub fn seqs_select(staging: &rowtrail_sql::Ident) -> String {
    format!(
        "SELECT TOP (@P1) [rowtrail_seq] FROM {} WITH (READPAST) ORDER BY [rowtrail_seq]",
        queries::staging_name(staging)
    )
}

/// The raw staging select ([`queries::staging_select_raw`]) limited to the seqs from `@P2` to
/// `@P3`.
pub fn range_select(t: &CapturedTable) -> Result<String, ReaderError> {
    let raw = queries::staging_select_raw(t)?;
    let order = " ORDER BY [rowtrail_seq]";
    let body = raw.strip_suffix(order).unwrap_or(&raw);
    Ok(format!(
        "{body} WHERE [rowtrail_seq] >= @P2 AND [rowtrail_seq] <= @P3{order}"
    ))
}

/// The statements this module sends for `t` (for validation).
pub fn one_row_selects(t: &CapturedTable) -> Result<Vec<String>, ReaderError> {
    Ok(vec![seqs_select(&t.staging), range_select(t)?])
}

/// Reads the images with the seqs `seqs` (ascending) through `read(first, last)`, which reads
/// the images from seq `first` to `last`, by halves where a range fails to decode: returns the
/// images read and the seqs that fail alone, with why. Other errors stop it.
pub fn read_around(
    seqs: &[i64],
    read: &mut dyn FnMut(i64, i64) -> Result<Vec<StagedImage>, ReaderError>,
) -> Result<ReadAround, ReaderError> {
    let mut images = Vec::new();
    let mut failed = Vec::new();
    let mut todo: Vec<&[i64]> = vec![seqs];
    while let Some(part) = todo.pop() {
        let (Some(&first), Some(&last)) = (part.first(), part.last()) else {
            continue;
        };
        match read(first, last) {
            Ok(mut got) => {
                // Only the seqs asked for: a row committed since the seqs were read may lie
                // between them; it is read by a later pass.
                got.retain(|i| part.binary_search(&i.seq).is_ok());
                images.extend(got);
            }
            Err(e) if is_undecodable_row(&e) && part.len() == 1 => failed.push((first, e)),
            Err(e) if is_undecodable_row(&e) => {
                let (a, b) = part.split_at(part.len() / 2);
                // The lower half first: pushed last.
                todo.push(b);
                todo.push(a);
            }
            Err(e) => return Err(e),
        }
    }
    images.sort_by_key(|i| i.seq);
    Ok((images, failed))
}

/// The oldest `limit` images of staging table `t`, read around the rows that cannot be
/// decoded; `image` turns a raw row into an image. Returns the images and the quarantined seqs
/// with why.
pub fn read_table(
    c: &mut MssqlClient,
    t: &CapturedTable,
    limit: i64,
    image: &mut dyn FnMut(tiberius::Row) -> Result<StagedImage, ReaderError>,
) -> Result<ReadAround, ReaderError> {
    let rows = c.query("cannot read staging", &seqs_select(&t.staging), &[&limit])?;
    let seqs: Vec<i64> = rows.iter().filter_map(|r| r.get::<i64, _>(0)).collect();
    let sql = range_select(t)?;
    read_around(&seqs, &mut |first, last| {
        let n = limit;
        let params: [&dyn ToSql; 3] = [&n, &first, &last];
        let rows = c.query("cannot read staging", &sql, &params)?;
        rows.into_iter().map(&mut *image).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{ImageKind, Meta};
    use rowtrail_sql::staging::Op;

    fn img(seq: i64) -> StagedImage {
        StagedImage {
            table: 0,
            seq,
            op: Op::Insert,
            image: ImageKind::After,
            meta: Meta::default(),
            rowid: None,
            values: vec![],
        }
    }

    fn bad() -> ReaderError {
        ReaderError::Conversion {
            location: "db on host".into(),
            staging: "rowtrail_s_t".into(),
            column: "C".into(),
            reason: "secret value 42 out of range".into(),
        }
    }

    #[test]
    fn rows_that_cannot_be_decoded_are_left_out_and_the_rest_is_read() {
        let seqs: Vec<i64> = (1..=64).map(|i| i * 2).collect();
        let broken = [10i64, 11 * 2, 128];
        let mut calls = 0;
        let (images, failed) = read_around(&seqs, &mut |first, last| {
            calls += 1;
            if broken.iter().any(|b| (first..=last).contains(b)) {
                return Err(bad());
            }
            Ok(seqs
                .iter()
                .filter(|s| (first..=last).contains(*s))
                .map(|&s| img(s))
                .collect())
        })
        .unwrap();
        let got: Vec<i64> = images.iter().map(|i| i.seq).collect();
        let want: Vec<i64> = seqs
            .iter()
            .copied()
            .filter(|s| !broken.contains(s))
            .collect();
        assert_eq!(got, want, "every other row is read, in seq order");
        let mut quarantined: Vec<i64> = failed.iter().map(|(s, _)| *s).collect();
        quarantined.sort();
        assert_eq!(quarantined, [10, 22, 128]);
        assert!(calls <= 3 * 2 * 7 + 1, "by halves, not row by row: {calls}");
    }

    #[test]
    fn a_staging_table_of_the_wrong_shape_stops_the_read() {
        let shape = ReaderError::BadStaging {
            staging: "rowtrail_s_t".into(),
            seq: 0,
            reason: "it returned 3 columns where 12 were expected".into(),
        };
        assert!(!is_undecodable_row(&shape));
        let row = ReaderError::BadStaging {
            staging: "rowtrail_s_t".into(),
            seq: 8,
            reason: "unknown op code".into(),
        };
        assert!(is_undecodable_row(&row));
    }

    #[test]
    fn the_reason_names_the_column_never_the_value() {
        let r = reason(&bad());
        assert!(r.contains('C') && !r.contains("42"), "{r}");
    }

    #[test]
    fn other_errors_stop_the_read() {
        let e = read_around(&[2, 4], &mut |_, _| {
            Err(ReaderError::Connection {
                reason: "lost".into(),
            })
        })
        .unwrap_err();
        assert!(matches!(e, ReaderError::Connection { .. }));
    }

    #[test]
    fn rows_committed_between_the_seqs_asked_for_wait_for_a_later_pass() {
        let (images, failed) =
            read_around(&[2, 8], &mut |_, _| Ok(vec![img(2), img(5), img(8)])).unwrap();
        assert_eq!(images.iter().map(|i| i.seq).collect::<Vec<_>>(), [2, 8]);
        assert!(failed.is_empty());
    }
}
