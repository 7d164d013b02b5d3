//! Statement times: SQLite's triggers store `julianday('now')` (a number is the cheapest thing a
//! trigger can store); the archive keeps ISO-8601 UTC text to the millisecond.

use rowtrail_sql::Value;

/// The statement time as the archive keeps it: ISO-8601 UTC text with milliseconds. Triggers
/// store SQLite's `julianday('now')`; text (as older installs wrote it) is kept as it is, and so
/// is a number no calendar date has.
pub(crate) fn time_text(v: Value) -> Value {
    match v {
        Value::Real(jd) => iso_bytes(jd).map_or(Value::Real(jd), Value::Text),
        other => other,
    }
}

/// `YYYY-MM-DDTHH:MM:SS.sssZ` for a Julian day number (UTC), to the millisecond, written digit
/// by digit: every staged image has a time, so this runs once per image the reader moves.
fn iso_bytes(jd: f64) -> Option<Vec<u8>> {
    let (year, month, day, ms_of_day) = civil_from_julian_day(jd)?;
    if !(0..=9999).contains(&year) {
        return Some(
            format!(
                "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
                ms_of_day / 3_600_000,
                ms_of_day / 60_000 % 60,
                ms_of_day / 1000 % 60,
                ms_of_day % 1000
            )
            .into_bytes(),
        );
    }
    let mut out = Vec::with_capacity(24);
    push_digits(&mut out, year, 4);
    let parts = [
        (b'-', month, 2),
        (b'-', day, 2),
        (b'T', ms_of_day / 3_600_000, 2),
        (b':', ms_of_day / 60_000 % 60, 2),
        (b':', ms_of_day / 1000 % 60, 2),
        (b'.', ms_of_day % 1000, 3),
    ];
    for (sep, n, width) in parts {
        out.push(sep);
        push_digits(&mut out, n, width);
    }
    out.push(b'Z');
    Some(out)
}

/// The `width` lowest decimal digits of `n` (0 ≤ n), zero-padded.
fn push_digits(out: &mut Vec<u8>, n: i64, width: u32) {
    for p in (0..width).rev() {
        out.push(b'0' + (n / 10_i64.pow(p) % 10) as u8);
    }
}

/// Year, month, day and millisecond of the day (UTC) of a Julian day number, to the millisecond;
/// `None` outside the years the date-time library represents (-9999..=9999).
fn civil_from_julian_day(jd: f64) -> Option<(i64, i64, i64, i64)> {
    let ms = ((jd - 2_440_587.5) * 86_400_000.0).round() as i64;
    let at = jiff::tz::Offset::UTC.to_datetime(jiff::Timestamp::from_millisecond(ms).ok()?);
    let ms_of_day =
        ((i64::from(at.hour()) * 60 + i64::from(at.minute())) * 60 + i64::from(at.second())) * 1000
            + i64::from(at.millisecond());
    Some((
        i64::from(at.year()),
        i64::from(at.month()),
        i64::from(at.day()),
        ms_of_day,
    ))
}

#[cfg(test)]
mod tests {
    use super::iso_bytes;

    #[test]
    fn julian_days_format_exactly_as_sqlite_formats_them() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        let mut days: Vec<f64> = vec![
            2_440_587.5,
            2_451_544.5,
            2_451_604.5,
            2_460_000.25,
            2_488_069.5,
        ];
        for _ in 0..2000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            // 1900..2100, to the millisecond, as 'now' is.
            let ms = -2_208_988_800_000_i64 + (rng % 6_311_433_600_000) as i64;
            days.push(ms as f64 / 86_400_000.0 + 2_440_587.5);
        }
        for jd in days {
            let sqlite: String = conn
                .query_row("SELECT strftime('%Y-%m-%dT%H:%M:%fZ', ?1)", [jd], |r| {
                    r.get(0)
                })
                .unwrap();
            assert_eq!(iso_bytes(jd).unwrap(), sqlite.as_bytes(), "julian day {jd}");
        }
    }
}
