//! The canonical byte form of a row image (a sequence of [`Value`]s).
//!
//! The archive stores images in this form and the hash chain hashes it, so it is stable and
//! unambiguous: a version byte, the value count, then each value as a tag and its payload.
//! Integers and floats are 8 bytes little-endian (floats as their IEEE bits, so every float,
//! including `-0.0`, subnormals and NaN payloads, round-trips bit for bit); variable-length
//! values carry a LEB128 length.

use crate::{SqlError, Value};

/// The format version written as the first byte.
pub const IMAGE_FORMAT: u8 = 1;

const T_NULL: u8 = 0;
const T_INTEGER: u8 = 1;
const T_REAL: u8 = 2;
const T_TEXT: u8 = 3;
const T_BLOB: u8 = 4;
const T_DECIMAL: u8 = 5;
const T_DATETIME: u8 = 6;
const T_UUID: u8 = 7;
/// A `sql_variant` value: base type, precision, scale, maximum length (2 bytes LE), collation
/// (empty: none), then the value itself (tag and payload). Archives from before it never hold
/// it, so they decode as they always did.
const T_VARIANT: u8 = 8;

/// Appends the canonical form of `values` to `out`.
pub fn encode_into(values: &[Value], out: &mut Vec<u8>) {
    out.push(IMAGE_FORMAT);
    put_len(out, values.len());
    for v in values {
        encode_value(v, out);
    }
}

/// The canonical form of `values`.
pub fn encode(values: &[Value]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + values.len() * 9);
    encode_into(values, &mut out);
    out
}

/// Appends one value (tag and payload, no header) to `out`; the hash chain uses it for metadata.
pub fn encode_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.push(T_NULL),
        Value::Integer(i) => {
            out.push(T_INTEGER);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Value::Real(r) => {
            out.push(T_REAL);
            out.extend_from_slice(&r.to_bits().to_le_bytes());
        }
        Value::Text(b) => put_bytes(out, T_TEXT, b),
        Value::Blob(b) => put_bytes(out, T_BLOB, b),
        Value::Decimal(s) => put_bytes(out, T_DECIMAL, s.as_bytes()),
        Value::DateTime(s) => put_bytes(out, T_DATETIME, s.as_bytes()),
        Value::Uuid(u) => {
            out.push(T_UUID);
            out.extend_from_slice(u);
        }
        Value::Variant(v) => {
            put_bytes(out, T_VARIANT, v.base_type.as_bytes());
            out.push(v.precision);
            out.push(v.scale);
            out.extend_from_slice(&v.max_length.to_le_bytes());
            let collation = v.collation.as_deref().unwrap_or("");
            put_len(out, collation.len());
            out.extend_from_slice(collation.as_bytes());
            encode_value(&v.value, out);
        }
    }
}

/// Decodes an image written by [`encode`].
pub fn decode(bytes: &[u8]) -> Result<Vec<Value>, SqlError> {
    let mut r = Reader { bytes, pos: 0 };
    if r.byte()? != IMAGE_FORMAT {
        return Err(SqlError::BadImage("unknown image format version"));
    }
    let n = r.len()?;
    if n > bytes.len() {
        return Err(SqlError::BadImage("value count exceeds the image size"));
    }
    let mut values = Vec::with_capacity(n);
    for _ in 0..n {
        values.push(r.value(true)?);
    }
    if r.pos != bytes.len() {
        return Err(SqlError::BadImage("trailing bytes after the last value"));
    }
    Ok(values)
}

impl Reader<'_> {
    /// One value (tag and payload); a variant only where `variant` allows it (not inside one).
    fn value(&mut self, variant: bool) -> Result<Value, SqlError> {
        let r = self;
        Ok(match r.byte()? {
            T_NULL => Value::Null,
            T_INTEGER => Value::Integer(i64::from_le_bytes(r.array()?)),
            T_REAL => Value::Real(f64::from_bits(u64::from_le_bytes(r.array()?))),
            T_TEXT => Value::Text(r.bytes()?.to_vec()),
            T_BLOB => Value::Blob(r.bytes()?.to_vec()),
            T_DECIMAL => Value::Decimal(r.utf8()?),
            T_DATETIME => Value::DateTime(r.utf8()?),
            T_UUID => Value::Uuid(r.array()?),
            T_VARIANT if variant => {
                let base_type = r.utf8()?;
                let precision = r.byte()?;
                let scale = r.byte()?;
                let max_length = u16::from_le_bytes(r.array()?);
                let collation = Some(r.utf8()?).filter(|c| !c.is_empty());
                let v = crate::value::Variant {
                    base_type,
                    precision,
                    scale,
                    max_length,
                    collation,
                    value: r.value(false)?,
                };
                v.check().map_err(SqlError::BadImage)?;
                Value::Variant(Box::new(v))
            }
            _ => return Err(SqlError::BadImage("unknown value tag")),
        })
    }
}

fn put_bytes(out: &mut Vec<u8>, tag: u8, b: &[u8]) {
    out.push(tag);
    put_len(out, b.len());
    out.extend_from_slice(b);
}

fn put_len(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let low = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, SqlError> {
        let b = *self
            .bytes
            .get(self.pos)
            .ok_or(SqlError::BadImage("image ends early"))?;
        self.pos += 1;
        Ok(b)
    }

    fn len(&mut self) -> Result<usize, SqlError> {
        let mut n: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return usize::try_from(n).map_err(|_| SqlError::BadImage("length too large"));
            }
        }
        Err(SqlError::BadImage("length is not a valid varint"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], SqlError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(SqlError::BadImage("value runs past the end of the image"))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], SqlError> {
        Ok(self.take(N)?.try_into().expect("take returned N bytes"))
    }

    fn bytes(&mut self) -> Result<&'a [u8], SqlError> {
        let n = self.len()?;
        self.take(n)
    }

    fn utf8(&mut self) -> Result<String, SqlError> {
        String::from_utf8(self.bytes()?.to_vec())
            .map_err(|_| SqlError::BadImage("text is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_exactly() {
        let values = vec![
            Value::Null,
            Value::Integer(i64::MIN),
            Value::Integer(i64::MAX),
            Value::Real(-0.0),
            Value::Real(f64::from_bits(1)),
            Value::Real(f64::MAX),
            Value::Real(f64::from_bits(0x7ff8_0000_0000_beef)),
            Value::Text(vec![0xff, 0x00, b'a']),
            Value::text("žluťoučký 🐎"),
            Value::Blob(vec![0; 300]),
            Value::Decimal("-12.3400".into()),
            Value::DateTime("2026-11-21T04:05:06.1234567+01:00".into()),
            Value::Uuid([7; 16]),
            Value::Variant(Box::new(crate::value::Variant {
                base_type: "money".into(),
                precision: 19,
                scale: 4,
                max_length: 8,
                collation: None,
                value: Value::Decimal("12.5000".into()),
            })),
            Value::Variant(Box::new(crate::value::Variant {
                base_type: "varchar".into(),
                precision: 0,
                scale: 0,
                max_length: 30,
                collation: Some("Latin1_General_100_CI_AS_SC_UTF8".into()),
                value: Value::text("café"),
            })),
        ];
        let back = decode(&encode(&values)).unwrap();
        assert_eq!(back.len(), values.len());
        for (a, b) in values.iter().zip(&back) {
            assert!(a.same(b), "{a:?} came back as {b:?}");
        }
    }

    #[test]
    fn damaged_images_are_refused_not_misread() {
        let good = encode(&[Value::text("abc"), Value::Integer(5)]);
        for cut in 0..good.len() {
            assert!(
                decode(&good[..cut]).is_err(),
                "prefix of {cut} bytes decoded"
            );
        }
        let mut extra = good.clone();
        extra.push(0);
        assert!(decode(&extra).is_err());
        let mut bad_tag = good;
        bad_tag[2] = 99;
        assert!(decode(&bad_tag).is_err());
    }
}
