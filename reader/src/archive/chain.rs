//! The hash chain: each change's SHA-256 over the previous change's hash and its canonical bytes.
//!
//! The canonical bytes are a domain tag, then every recorded field in a fixed order, each
//! length-prefixed or tagged (see [`canonical`]), so no two different changes share bytes.

use rowtrail_sql::image;
use rowtrail_sql::Value;
use sha2::{Digest, Sha256};

/// The hash that precedes the first change.
pub const GENESIS: [u8; 32] = [0; 32];

/// Every field of an archived change that the chain covers.
#[derive(Debug, Clone)]
pub struct ChainFields<'a> {
    /// Archive position.
    pub id: i64,
    /// The source's incarnation.
    pub incarnation: &'a str,
    /// Sequence number in that incarnation.
    pub seq: i64,
    /// Schema (empty on SQLite) and table name.
    pub schema: &'a str,
    /// Table name.
    pub table: &'a str,
    /// SHA-256 of the table version's definition JSON ([`definition_digest`]).
    pub definition: &'a [u8; 32],
    /// `insert`, `update`, `delete` or `keychange`.
    pub op: &'a str,
    /// Transaction, statement, time, login, host, application, client address, rowid.
    pub meta: &'a [Value; 8],
    /// The before-image in canonical form, if any.
    pub before: Option<&'a [u8]>,
    /// The after-image in canonical form, if any.
    pub after: Option<&'a [u8]>,
    /// When the archive received it (µs since the epoch).
    pub archived_us: i64,
}

fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn put_opt(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => out.push(0),
        Some(b) => {
            out.push(1);
            put(out, b);
        }
    }
}

/// The canonical bytes of one change.
pub fn canonical(f: &ChainFields<'_>) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(256 + f.before.map_or(0, |b| b.len()) + f.after.map_or(0, |a| a.len()));
    out.extend_from_slice(b"rowtrail/change/v1");
    out.extend_from_slice(&f.id.to_le_bytes());
    put(&mut out, f.incarnation.as_bytes());
    out.extend_from_slice(&f.seq.to_le_bytes());
    put(&mut out, f.schema.as_bytes());
    put(&mut out, f.table.as_bytes());
    out.extend_from_slice(f.definition);
    put(&mut out, f.op.as_bytes());
    for m in f.meta {
        image::encode_value(m, &mut out);
    }
    put_opt(&mut out, f.before);
    put_opt(&mut out, f.after);
    out.extend_from_slice(&f.archived_us.to_le_bytes());
    out
}

/// The digest of a table definition that the chain covers (computed once per table version).
pub fn definition_digest(definition: &str) -> [u8; 32] {
    Sha256::digest(definition.as_bytes()).into()
}

/// The chain hash of a change whose predecessor's hash is `prev`.
pub fn link(prev: &[u8; 32], fields: &ChainFields<'_>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(canonical(fields));
    h.finalize().into()
}

/// Lower-case hex of a hash.
pub fn hex(hash: &[u8]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}
