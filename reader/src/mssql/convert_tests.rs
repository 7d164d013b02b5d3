//! One test per tiberius `ColumnData` variant and per SQL Server type the generator captures.

use std::borrow::Cow;

use rowtrail_sql::{Column, Ident, Value};
use tiberius::numeric::Numeric;
use tiberius::time::{Date, DateTime, DateTime2, DateTimeOffset, SmallDateTime, Time};
use tiberius::xml::XmlData;
use tiberius::{ColumnData, Uuid};

use super::*;

fn dt(text: &str) -> Value {
    Value::DateTime(text.into())
}

/// Days from 0001-01-01 to `y-m-d` (inverse of `civil`, for building test values).
fn days_0001(y: i64, m: i64, d: i64) -> u32 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe - 719_468 + DAYS_0001_TO_1970) as u32
}

#[test]
fn integers_and_bit() {
    assert_eq!(value_of(ColumnData::U8(Some(255))), Ok(Value::Integer(255)));
    assert_eq!(
        value_of(ColumnData::I16(Some(-32768))),
        Ok(Value::Integer(-32768))
    );
    assert_eq!(
        value_of(ColumnData::I32(Some(i32::MIN))),
        Ok(Value::Integer(i32::MIN.into()))
    );
    assert_eq!(
        value_of(ColumnData::I64(Some(i64::MAX))),
        Ok(Value::Integer(i64::MAX))
    );
    assert_eq!(value_of(ColumnData::Bit(Some(true))), Ok(Value::Integer(1)));
    assert_eq!(
        value_of(ColumnData::Bit(Some(false))),
        Ok(Value::Integer(0))
    );
}

#[test]
fn floats_are_bit_exact() {
    let real = f32::from_bits(0x3DCC_CCCD); // 0.1f32
    match value_of(ColumnData::F32(Some(real))).unwrap() {
        Value::Real(r) => assert_eq!(r as f32, real),
        other => panic!("{other:?}"),
    }
    for f in [0.1f64, -0.0, f64::MIN_POSITIVE, 5e-324, f64::MAX, 1.0 / 3.0] {
        let v = value_of(ColumnData::F64(Some(f))).unwrap();
        assert!(v.same(&Value::Real(f)), "{f:e}");
    }
}

#[test]
fn decimal_precision_and_scale_are_kept() {
    let n = |v: i128, s: u8| {
        value_of(ColumnData::Numeric(Some(Numeric::new_with_scale(v, s)))).unwrap()
    };
    assert_eq!(n(-123_400, 4), Value::Decimal("-12.3400".into()));
    assert_eq!(n(5, 2), Value::Decimal("0.05".into()));
    assert_eq!(n(-5, 3), Value::Decimal("-0.005".into()));
    assert_eq!(n(7, 0), Value::Decimal("7".into()));
    assert_eq!(n(0, 2), Value::Decimal("0.00".into()));
    // decimal(38,0) and decimal(38,38) extremes.
    let max38 = 10i128.pow(38) - 1;
    assert_eq!(n(max38, 0), Value::Decimal("9".repeat(38)));
    assert_eq!(
        n(-max38, 38),
        Value::Decimal(format!("-0.{}", "9".repeat(38)))
    );
}

#[test]
fn money_and_smallmoney_are_read_as_exact_decimals() {
    let c = Column::new(Ident::new("Price").unwrap(), "money", true);
    assert_eq!(
        select_expr(&c, "money"),
        "CONVERT(decimal(19,4), [Price]) AS [Price]"
    );
    assert_eq!(
        select_expr(&c, "smallmoney"),
        "CONVERT(decimal(10,4), [Price]) AS [Price]"
    );
    // What the server then sends for money's extremes (not representable in an f64).
    let min = value_of(ColumnData::Numeric(Some(Numeric::new_with_scale(
        i64::MIN.into(),
        4,
    ))));
    assert_eq!(min, Ok(Value::Decimal("-922337203685477.5808".into())));
    let max = value_of(ColumnData::Numeric(Some(Numeric::new_with_scale(
        i64::MAX.into(),
        4,
    ))));
    assert_eq!(max, Ok(Value::Decimal("922337203685477.5807".into())));
}

#[test]
fn clr_types_are_read_as_their_serialisation_and_others_as_they_are() {
    let c = Column::new(Ident::new("Geo]x").unwrap(), "geography", true);
    assert_eq!(
        select_expr(&c, "geography"),
        "CONVERT(varbinary(max), [Geo]]x]) AS [Geo]]x]"
    );
    assert_eq!(
        select_expr(&c, "hierarchyid"),
        "CONVERT(varbinary(max), [Geo]]x]) AS [Geo]]x]"
    );
    assert!(select_expr(&c, "sql_variant").contains("CONVERT(decimal(19,4), [Geo]]x])"));
    for t in [
        "int",
        "nvarchar(max)",
        "datetime2(7)",
        "xml",
        "binary(8)",
        "decimal(19,4)",
    ] {
        assert_eq!(select_expr(&c, t), "[Geo]]x]", "{t}");
    }
}

#[test]
fn date() {
    let d = |y, m, day| value_of(ColumnData::Date(Some(Date::new(days_0001(y, m, day))))).unwrap();
    assert_eq!(d(1, 1, 1), dt("0001-01-01"));
    assert_eq!(d(2024, 2, 29), dt("2024-02-29"));
    assert_eq!(d(9999, 12, 31), dt("9999-12-31"));
    assert_eq!(
        value_of(ColumnData::Date(Some(Date::new(0)))).unwrap(),
        dt("0001-01-01")
    );
}

#[test]
fn time_keeps_its_scale() {
    let t = |inc, scale| value_of(ColumnData::Time(Some(Time::new(inc, scale)))).unwrap();
    assert_eq!(t(863_999_999_999, 7), dt("23:59:59.9999999"));
    assert_eq!(t(0, 7), dt("00:00:00.0000000"));
    assert_eq!(t(452_965, 1), dt("12:34:56.5"));
    assert_eq!(t(45_296, 0), dt("12:34:56"));
    assert_eq!(t(1, 3), dt("00:00:00.001"));
    assert!(value_of(ColumnData::Time(Some(Time::new(86_400, 0)))).is_err());
}

#[test]
fn datetime2_7_keeps_every_digit() {
    let v = DateTime2::new(
        Date::new(days_0001(2024, 3, 10)),
        Time::new(452_961_234_567, 7),
    );
    assert_eq!(
        value_of(ColumnData::DateTime2(Some(v))).unwrap(),
        dt("2024-03-10T12:34:56.1234567")
    );
    let v0 = DateTime2::new(Date::new(days_0001(1, 1, 1)), Time::new(0, 0));
    assert_eq!(
        value_of(ColumnData::DateTime2(Some(v0))).unwrap(),
        dt("0001-01-01T00:00:00")
    );
}

#[test]
fn datetimeoffset_is_local_time_with_its_offset() {
    // 2024-03-10T23:30:00.5000000 at UTC is 2024-03-11T05:00:00.5 at +05:30.
    let utc = DateTime2::new(
        Date::new(days_0001(2024, 3, 10)),
        Time::new((23 * 3600 + 1800) * 10_000_000 + 5_000_000, 7),
    );
    let v = value_of(ColumnData::DateTimeOffset(Some(DateTimeOffset::new(
        utc, 330,
    ))))
    .unwrap();
    assert_eq!(v, dt("2024-03-11T05:00:00.5000000+05:30"));
    let v = value_of(ColumnData::DateTimeOffset(Some(DateTimeOffset::new(
        utc,
        -14 * 60,
    ))))
    .unwrap();
    assert_eq!(v, dt("2024-03-10T09:30:00.5000000-14:00"));
    // The first instant SQL Server holds, shown at a negative offset, is still 0001-01-01 locally
    // only when the offset is not negative; at UTC it is exactly the epoch.
    let epoch = DateTime2::new(Date::new(0), Time::new(0, 3));
    let v = value_of(ColumnData::DateTimeOffset(Some(DateTimeOffset::new(
        epoch, 0,
    ))))
    .unwrap();
    assert_eq!(v, dt("0001-01-01T00:00:00.000+00:00"));
    assert!(
        value_of(ColumnData::DateTimeOffset(Some(DateTimeOffset::new(
            epoch,
            15 * 60
        ))))
        .is_err()
    );
}

#[test]
fn datetime_ticks_round_as_sql_server_shows_them() {
    let days_1900 =
        |y, m, d| (i64::from(days_0001(y, m, d)) - DAYS_0001_TO_1970 + DAYS_1900_TO_1970) as i32;
    let v = |frags| {
        value_of(ColumnData::DateTime(Some(DateTime::new(
            days_1900(2024, 1, 2),
            frags,
        ))))
        .unwrap()
    };
    assert_eq!(v(0), dt("2024-01-02T00:00:00.000"));
    assert_eq!(v(1), dt("2024-01-02T00:00:00.003"));
    assert_eq!(v(2), dt("2024-01-02T00:00:00.007"));
    assert_eq!(v(300 * 86_400 - 1), dt("2024-01-02T23:59:59.997"));
    // datetime reaches back to 1753 (negative days from 1900).
    let early = value_of(ColumnData::DateTime(Some(DateTime::new(
        days_1900(1753, 1, 1),
        0,
    ))))
    .unwrap();
    assert_eq!(early, dt("1753-01-01T00:00:00.000"));
}

#[test]
fn smalldatetime_has_minutes() {
    let v = value_of(ColumnData::SmallDateTime(Some(SmallDateTime::new(0, 61)))).unwrap();
    assert_eq!(v, dt("1900-01-01T01:01:00"));
    let last = value_of(ColumnData::SmallDateTime(Some(SmallDateTime::new(
        65_535, 1439,
    ))))
    .unwrap();
    assert_eq!(last, dt("2079-06-06T23:59:00"));
}

#[test]
fn uniqueidentifier_keeps_the_order_of_its_text() {
    // SQL Server stores 33221100-5544-7766-8899-aabbccddeeff's first three groups little-endian;
    // the driver reorders them, and the archive holds the bytes in the order the text shows.
    let text = "00112233-4455-6677-8899-aabbccddeeff";
    let g = Uuid::parse_str(text).unwrap();
    let v = value_of(ColumnData::Guid(Some(g))).unwrap();
    assert_eq!(
        v,
        Value::Uuid([
            0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff
        ])
    );
    assert_eq!(v.to_string(), text);
}

#[test]
fn strings_of_every_width_and_max() {
    let s = "é'ü 😀 \u{0} end";
    assert_eq!(
        value_of(ColumnData::String(Some(Cow::Borrowed(s)))),
        Ok(Value::text(s))
    );
    let big = "x".repeat(1 << 20); // an nvarchar(max) of 1 MiB
    assert_eq!(
        value_of(ColumnData::String(Some(Cow::Owned(big.clone())))),
        Ok(Value::text(&big))
    );
    assert_eq!(
        value_of(ColumnData::String(Some(Cow::Borrowed("")))),
        Ok(Value::text(""))
    );
}

#[test]
fn binary_varbinary_max_and_rowversion() {
    let b = vec![0u8, 1, 0xff, 0];
    assert_eq!(
        value_of(ColumnData::Binary(Some(Cow::Borrowed(&b)))),
        Ok(Value::Blob(b.clone()))
    );
    let big = vec![0xabu8; 3 << 20];
    assert_eq!(
        value_of(ColumnData::Binary(Some(Cow::Owned(big.clone())))),
        Ok(Value::Blob(big))
    );
    assert_eq!(
        value_of(ColumnData::Binary(Some(Cow::Borrowed(&[])))),
        Ok(Value::Blob(vec![]))
    );
}

#[test]
fn xml_is_the_servers_text() {
    let x = XmlData::new("<a b=\"1\">é</a>");
    assert_eq!(
        value_of(ColumnData::Xml(Some(Cow::Owned(x)))),
        Ok(Value::text("<a b=\"1\">é</a>"))
    );
}

#[test]
fn nulls_of_every_variant() {
    for c in [
        ColumnData::U8(None),
        ColumnData::I16(None),
        ColumnData::I32(None),
        ColumnData::I64(None),
        ColumnData::F32(None),
        ColumnData::F64(None),
        ColumnData::Bit(None),
        ColumnData::String(None),
        ColumnData::Guid(None),
        ColumnData::Binary(None),
        ColumnData::Numeric(None),
        ColumnData::Xml(None),
        ColumnData::DateTime(None),
        ColumnData::SmallDateTime(None),
        ColumnData::Time(None),
        ColumnData::Date(None),
        ColumnData::DateTime2(None),
        ColumnData::DateTimeOffset(None),
    ] {
        assert_eq!(value_of(c.clone()), Ok(Value::Null), "{c:?}");
    }
}

#[test]
fn decimal_text_handles_every_scale() {
    assert_eq!(decimal_text(-1, 38), format!("-0.{}1", "0".repeat(37)));
    assert_eq!(
        decimal_text(i128::from(u64::MAX), 10),
        "1844674407.3709551615"
    );
}

#[test]
fn char_and_varchar_are_transcoded_by_the_server() {
    // The driver decodes varchar by the collation's LCID and ignores the UTF-8 flag (and knows
    // no code page of sort ids 30–61): the server converts to UTF-16 instead, without loss.
    let c = Column::new(Ident::new("Name").unwrap(), "varchar(50)", true);
    for (ty, want) in [
        ("varchar(50)", "CONVERT(nvarchar(50), [Name]) AS [Name]"),
        ("char(10)", "CONVERT(nvarchar(10), [Name]) AS [Name]"),
        ("varchar(4000)", "CONVERT(nvarchar(4000), [Name]) AS [Name]"),
        ("varchar(8000)", "CONVERT(nvarchar(max), [Name]) AS [Name]"),
        ("char(8000)", "CONVERT(nvarchar(max), [Name]) AS [Name]"),
        ("varchar(max)", "CONVERT(nvarchar(max), [Name]) AS [Name]"),
    ] {
        assert_eq!(select_expr(&c, ty), want, "{ty}");
    }
    // A varchar inside a sql_variant is transcoded too, when it fits an nvarchar(4000).
    let v = select_expr(&c, "sql_variant");
    assert!(
        v.contains("IN (N'char', N'varchar') AND DATALENGTH(CONVERT(nvarchar(max), [Name])) <= 8000 THEN CONVERT(sql_variant, CONVERT(nvarchar(4000), [Name]))"),
        "{v}"
    );
}

#[test]
fn undecodable_text_is_read_as_its_utf16_bytes_and_kept_exactly() {
    let c = Column::new(Ident::new("N").unwrap(), "nvarchar(20)", true);
    assert_eq!(
        raw_select_expr(&c, "nvarchar(20)"),
        "CONVERT(varbinary(max), [N]) AS [N]"
    );
    assert_eq!(
        raw_select_expr(&c, "varchar(20)"),
        "CONVERT(varbinary(max), CONVERT(nvarchar(20), [N])) AS [N]"
    );
    assert_eq!(raw_select_expr(&c, "int"), "[N]");
    let utf16 = |units: &[u16]| Value::Blob(units.iter().flat_map(|u| u.to_le_bytes()).collect());
    // "é😀" decodes back to text.
    assert_eq!(
        text_from_utf16(utf16(&[0xE9, 0xD83D, 0xDE00])),
        (Value::text("é😀"), false)
    );
    // An unpaired surrogate stays exactly its bytes, flagged.
    let lone = utf16(&[0x61, 0xD800]);
    assert_eq!(text_from_utf16(lone.clone()), (lone, true));
    assert_eq!(text_from_utf16(Value::Null), (Value::Null, false));
}

/// Issue 15, item 12: a sql_variant's base type is read server-side beside its value and kept
/// with it; NULL stays NULL, and anything but a base type the server can report is refused.
#[test]
fn issue15_sql_variant_values_are_read_with_their_base_type() {
    let c = Column::new(Ident::new("V]x").unwrap(), "sql_variant", true);
    assert_eq!(
        variant_type_expr(&c),
        "CASE WHEN [V]]x] IS NULL THEN NULL ELSE CONCAT(CONVERT(sysname, SQL_VARIANT_PROPERTY([V]]x], 'BaseType')), N'|', \
         CONVERT(int, SQL_VARIANT_PROPERTY([V]]x], 'Precision')), N'|', CONVERT(int, SQL_VARIANT_PROPERTY([V]]x], 'Scale')), N'|', \
         CONVERT(int, SQL_VARIANT_PROPERTY([V]]x], 'MaxLength')), N'|', CONVERT(sysname, SQL_VARIANT_PROPERTY([V]]x], 'Collation'))) END"
    );
    let money = with_base_type(
        Value::Decimal("12.5000".into()),
        Value::text("money|19|4|8|"),
    )
    .unwrap();
    let Value::Variant(v) = &money else {
        panic!("{money:?}")
    };
    assert_eq!(
        (
            v.base_type.as_str(),
            v.precision,
            v.scale,
            v.max_length,
            v.collation.as_deref()
        ),
        ("money", 19, 4, 8, None)
    );
    assert_eq!(v.value, Value::Decimal("12.5000".into()));
    assert_eq!(v.declared_type(), "money");
    let text = with_base_type(
        Value::text("é"),
        Value::text("varchar|0|0|30|Latin1_General_100_CI_AS_SC_UTF8"),
    )
    .unwrap();
    let Value::Variant(v) = &text else {
        panic!("{text:?}")
    };
    assert_eq!(v.declared_type(), "varchar(30)");
    assert_eq!(
        v.collation.as_deref(),
        Some("Latin1_General_100_CI_AS_SC_UTF8")
    );
    assert_eq!(
        with_base_type(Value::Null, Value::Null).unwrap(),
        Value::Null
    );
    assert!(with_base_type(Value::Integer(1), Value::Null).is_err());
    assert!(with_base_type(Value::Integer(1), Value::text("int|10|0")).is_err());
    assert!(with_base_type(Value::Integer(1), Value::text("geometry|0|0|0|")).is_err());
    assert!(with_base_type(Value::text("x"), Value::text("varchar|0|0|30|a b")).is_err());
    assert_eq!(
        variant_columns(
            &rowtrail_sql::ddl::parse_mssql(
                "CREATE TABLE t (a int, b sql_variant, c nvarchar(3), d sql_variant);"
            )
            .unwrap()[0]
        ),
        [1, 3]
    );
}
