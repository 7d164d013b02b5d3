//! The moments a rebuild can be asked for: a time, a seq of the source's change stream, or the
//! state just before a transaction; and what each means in the archive (which baselines, up to
//! which cut).

use rowtrail_reader::archive::{Archive, BaselineTable, ChangeQuery, Cut};

use crate::replica::parse_time;
use crate::StandbyError;

/// A moment of the source, as `restore --as-of` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AsOf {
    /// A time (the archive's text form): the last complete state made by then.
    Time(String),
    /// The state after every change with a seq at or below this one, none above.
    Seq(i64),
    /// The state just before the first change of this transaction (its id as the archive
    /// labels it).
    BeforeTx(String),
}

impl AsOf {
    /// Reads `seq:N`, `before-tx:ID` or a time (see [`parse_time`]).
    pub fn parse(text: &str) -> Result<Self, StandbyError> {
        let t = text.trim();
        if let Some(n) = t.strip_prefix("seq:") {
            return n.trim().parse::<i64>().map(AsOf::Seq).map_err(|_| {
                StandbyError::Refused(format!(
                    "{text:?}: a seq is a whole number, as in seq:1234 (`rowtrail history` shows \
                     each change's seq)"
                ))
            });
        }
        if let Some(id) = t.strip_prefix("before-tx:") {
            let id = id.trim();
            if id.is_empty() {
                return Err(StandbyError::Refused(format!(
                    "{text:?}: name the transaction, as in before-tx:81723 (`rowtrail history` \
                     shows each change's transaction)"
                )));
            }
            return Ok(AsOf::BeforeTx(id.to_string()));
        }
        parse_time(t).map(AsOf::Time)
    }

    /// The time, for a moment named by one.
    pub fn time(&self) -> Option<&str> {
        match self {
            AsOf::Time(t) => Some(t),
            _ => None,
        }
    }
}

impl std::fmt::Display for AsOf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AsOf::Time(t) => f.write_str(t),
            AsOf::Seq(n) => write!(f, "seq {n}"),
            AsOf::BeforeTx(id) => write!(f, "before transaction {id}"),
        }
    }
}

/// `as_of` with a transaction resolved to the seq just below its first change.
pub(crate) fn resolve(
    archive: &Archive,
    incarnation: &str,
    as_of: &AsOf,
) -> Result<AsOf, StandbyError> {
    let AsOf::BeforeTx(id) = as_of else {
        return Ok(as_of.clone());
    };
    let first = archive.changes(&ChangeQuery {
        incarnation: Some(incarnation.to_string()),
        tx: Some(id.clone()),
        limit: Some(1),
        ..ChangeQuery::default()
    })?;
    match first.first() {
        Some(c) => Ok(AsOf::Seq(c.seq - 1)),
        None => Err(StandbyError::Refused(format!(
            "the archive holds no change of transaction {id:?} of source {incarnation}: \
             `rowtrail history` and `rowtrail audit` show the transactions it holds"
        ))),
    }
}

/// The newest baseline of each table taken at or before `as_of` (a resolved one), by name.
pub(crate) fn baselines(
    archive: &Archive,
    incarnation: &str,
    as_of: Option<&AsOf>,
) -> Result<Vec<BaselineTable>, StandbyError> {
    Ok(match as_of {
        None => archive.latest_baselines(incarnation, None)?,
        Some(AsOf::Time(t)) => archive.latest_baselines(incarnation, Some(t))?,
        Some(AsOf::Seq(n)) => {
            let mut out: Vec<BaselineTable> = Vec::new();
            for b in archive.baseline_tables(incarnation)? {
                if b.seq <= *n && !out.iter().any(|o| o.table.name == b.table.name) {
                    out.push(b);
                }
            }
            out.sort_by(|a, b| a.table.name.cmp(&b.table.name));
            out
        }
        Some(AsOf::BeforeTx(_)) => {
            return Err(StandbyError::Refused(
                "a transaction must be resolved to its seq first".into(),
            ))
        }
    })
}

/// The cut a resolved `as_of` names.
pub(crate) fn cut(
    archive: &Archive,
    incarnation: &str,
    as_of: &AsOf,
) -> Result<Option<Cut>, StandbyError> {
    Ok(match as_of {
        AsOf::Time(t) => archive.cut_as_of(incarnation, t)?,
        AsOf::Seq(n) => Some(
            archive
                .cut_at_seq(incarnation, *n)
                .map_err(|e| StandbyError::Refused(e.to_string()))?,
        ),
        AsOf::BeforeTx(_) => cut(archive, incarnation, &resolve(archive, incarnation, as_of)?)?,
    })
}
