//! The byte form of a row's key in the archive (`changes.row_key`, `prev_key`), which its
//! history is found by.
//!
//! Unlike an image ([`crate::image`]) it is not hashed and never decoded: it only has to be
//! injective (each value is a tag and a self-delimiting payload) and cheap to index. Integers are
//! written big-endian with the sign bit flipped, so keys of increasing integers sort in
//! increasing byte order: rows inserted with rising ids (the common case of identity and rowid
//! keys) append to the right edge of the archive's row index instead of landing all over it.
//! The first byte tells it apart from an image, which earlier archives used as the key.

use crate::image::encode_value;
use crate::Value;

/// The first byte of every key.
pub const KEY_FORMAT: u8 = 0x80;

const T_INTEGER: u8 = 1;

/// The archive key of a row whose key columns (or whole row) hold `values`.
pub fn encode_key(values: &[Value]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + values.len() * 9);
    out.push(KEY_FORMAT);
    for v in values {
        match v {
            Value::Integer(i) => {
                out.push(T_INTEGER);
                out.extend_from_slice(&((*i as u64) ^ (1 << 63)).to_be_bytes());
            }
            other => encode_value(other, &mut out),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_keys_sort_like_the_integers() {
        let ints = [i64::MIN, -300, -1, 0, 1, 2, 255, 256, 65_536, i64::MAX];
        let keys: Vec<Vec<u8>> = ints
            .iter()
            .map(|i| encode_key(&[Value::Integer(*i)]))
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
        let pairs: Vec<Vec<u8>> = [(1, 9), (1, 10), (2, -5), (2, 0)]
            .iter()
            .map(|(a, b)| encode_key(&[Value::Integer(*a), Value::Integer(*b)]))
            .collect();
        assert!(pairs.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn keys_are_injective_across_types_and_arity() {
        let rows: Vec<Vec<Value>> = vec![
            vec![Value::Integer(1)],
            vec![Value::Real(1.0)],
            vec![Value::text("1")],
            vec![Value::Blob(b"1".to_vec())],
            vec![Value::Integer(1), Value::Null],
            vec![Value::text("a"), Value::text("bc")],
            vec![Value::text("ab"), Value::text("c")],
            vec![Value::Null],
            vec![],
        ];
        let keys: Vec<Vec<u8>> = rows.iter().map(|r| encode_key(r)).collect();
        for (i, a) in keys.iter().enumerate() {
            assert_eq!(a[0], KEY_FORMAT);
            assert_ne!(a[0], crate::image::IMAGE_FORMAT);
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
