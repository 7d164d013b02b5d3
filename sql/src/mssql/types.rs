//! SQL Server column types: which are captured exactly, which are refused, and why.
//!
//! Every type a column can have falls in one [`TypeClass`]. Staging columns carry the source
//! type itself (so no value is ever converted), except where noted:
//!
//! | source type | staging | why |
//! |---|---|---|
//! | exact numerics, `float`/`real`, date/time types, `char`/`varchar`/`nchar`/`nvarchar` (n or max), `binary`/`varbinary` (n or max), `uniqueidentifier`, `bit` | same type (and collation) | exact |
//! | `xml`, `xml(schema collection)` | `xml` | typed xml converts losslessly to untyped; staging needs no schema collection |
//! | `sql_variant` | `sql_variant` | keeps the base type of each value |
//! | `hierarchyid`, `geometry`, `geography` (CLR) | same type | exact; readers convert to `varbinary(max)` (the native serialisation) |
//! | `rowversion` / `timestamp` | `binary(8)` | a table holds one server-assigned rowversion; staging keeps its value |
//! | `text`, `ntext`, `image` | refused | not readable from `inserted`/`deleted` in AFTER triggers |
//! | user-defined CLR types, alias types in DDL, unknown names | refused | no exact staging type is known |

use std::fmt;

/// What rowtrail does with a column's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeClass {
    /// Captured exactly; the staging column has this type.
    Exact(String),
    /// Refused: the reason, including what to do.
    Refused(String),
}

/// A parsed SQL Server type: its lowercase base name and its arguments (`max` kept as a word).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MssqlType {
    /// The base name, lowercase, e.g. `nvarchar`; schema-qualified names keep their dots.
    pub base: String,
    /// The arguments in parentheses, as written (lowercase `max`).
    pub args: Vec<String>,
}

/// Types whose values are exact in their own type (plus their argument rules).
const PLAIN: &[&str] = &[
    "bigint",
    "int",
    "smallint",
    "tinyint",
    "bit",
    "decimal",
    "numeric",
    "money",
    "smallmoney",
    "float",
    "real",
    "date",
    "time",
    "datetime",
    "datetime2",
    "datetimeoffset",
    "smalldatetime",
    "char",
    "varchar",
    "nchar",
    "nvarchar",
    "binary",
    "varbinary",
    "uniqueidentifier",
    "sql_variant",
    "sysname",
    "hierarchyid",
    "geometry",
    "geography",
];

impl MssqlType {
    /// Parses a type as written in DDL or rebuilt from the catalog: `nvarchar(50)`,
    /// `decimal(19, 4)`, `varchar(max)`, `[dbo].[Phone]`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let (name, rest) = match t.find('(') {
            Some(i) => (&t[..i], Some(&t[i..])),
            None => (t, None),
        };
        let base: String = name
            .split('.')
            .map(|p| p.trim().trim_start_matches('[').trim_end_matches(']'))
            .collect::<Vec<_>>()
            .join(".")
            .to_lowercase();
        if base.is_empty() {
            return Err(format!("the type {t:?} has no name"));
        }
        let args = match rest {
            None => Vec::new(),
            Some(r) => {
                let inner = r
                    .strip_prefix('(')
                    .and_then(|r| r.trim_end().strip_suffix(')'))
                    .ok_or_else(|| format!("the type {t:?} has unbalanced parentheses"))?;
                inner.split(',').map(|a| a.trim().to_lowercase()).collect()
            }
        };
        Ok(Self { base, args })
    }

    /// The canonical text of this type (lowercase, no spaces), as rowtrail records it.
    pub fn canonical(&self) -> String {
        if self.base == "xml" {
            // Typed xml is captured (and recorded) as xml: its schema collection does not travel.
            return "xml".into();
        }
        self.to_string()
    }

    /// Whether this is `rowversion` (or its old name `timestamp`).
    pub fn is_rowversion(&self) -> bool {
        self.base == "rowversion" || self.base == "timestamp"
    }

    /// What rowtrail does with a column of this type.
    pub fn classify(&self) -> TypeClass {
        let b = self.base.as_str();
        match b {
            "text" | "ntext" | "image" => {
                let instead = match b {
                    "text" => "varchar(max)",
                    "ntext" => "nvarchar(max)",
                    _ => "varbinary(max)",
                };
                TypeClass::Refused(format!(
                    "{b} columns cannot be read in AFTER triggers; convert the column with \
                     ALTER TABLE ... ALTER COLUMN ... {instead} (the deprecated {b} type's \
                     replacement), then generate again"
                ))
            }
            "rowversion" | "timestamp" => TypeClass::Exact("binary(8)".into()),
            "xml" => TypeClass::Exact("xml".into()),
            _ if PLAIN.contains(&b) => match self.check_args() {
                Ok(()) => TypeClass::Exact(self.canonical()),
                Err(e) => TypeClass::Refused(e),
            },
            _ if b.contains('.') => TypeClass::Refused(format!(
                "{b} is a user-defined (alias or CLR) type; generate from the live catalog, which \
                 resolves alias types to their base type, or declare the base type in the script"
            )),
            "vector" | "json" => TypeClass::Refused(format!(
                "the {b} type is not supported by this rowtrail version; leave the table out with --tables"
            )),
            _ => TypeClass::Refused(format!(
                "{b} is not a SQL Server type rowtrail knows; if it is an alias type, generate from \
                 the live catalog (which resolves it) or declare the base type"
            )),
        }
    }

    /// Whether every value of type `self` converts to `to` unchanged, so a staging column can be
    /// altered from one to the other while it holds rows: a longer (or `max`) string or binary
    /// type of the same kind, a wider integer, a decimal with more integer digits and the same
    /// scale, a time type with more fractional digits.
    pub fn widens_to(&self, to: &MssqlType) -> bool {
        const INTS: [&str; 4] = ["tinyint", "smallint", "int", "bigint"];
        fn arg(t: &MssqlType, i: usize) -> Option<&str> {
            t.args.get(i).map(String::as_str)
        }
        let size = |t: &MssqlType| match arg(t, 0) {
            Some("max") => Some(u32::MAX),
            Some(n) => n.parse::<u32>().ok(),
            None => Some(1),
        };
        let (a, b) = (self.base.as_str(), to.base.as_str());
        if let (Some(i), Some(j)) = (
            INTS.iter().position(|x| *x == a),
            INTS.iter().position(|x| *x == b),
        ) {
            return i <= j;
        }
        if a != b {
            return matches!(
                (a, b),
                ("char", "varchar") | ("nchar", "nvarchar") | ("binary", "varbinary")
            ) && size(self) <= size(to);
        }
        match a {
            "varchar" | "nvarchar" | "varbinary" => size(self) <= size(to),
            "decimal" | "numeric" => {
                let p = |t: &MssqlType| arg(t, 0).and_then(|n| n.parse::<u32>().ok()).unwrap_or(18);
                let sc = |t: &MssqlType| arg(t, 1).and_then(|n| n.parse::<u32>().ok()).unwrap_or(0);
                sc(self) == sc(to) && p(self) <= p(to)
            }
            "time" | "datetime2" | "datetimeoffset" => {
                let f = |t: &MssqlType| arg(t, 0).and_then(|n| n.parse::<u32>().ok()).unwrap_or(7);
                f(self) <= f(to)
            }
            _ => self == to,
        }
    }

    fn check_args(&self) -> Result<(), String> {
        let n = self.args.len();
        let (min, max) = match self.base.as_str() {
            "decimal" | "numeric" => (0, 2),
            "float" | "time" | "datetime2" | "datetimeoffset" | "char" | "varchar" | "nchar"
            | "nvarchar" | "binary" | "varbinary" => (0, 1),
            _ => (0, 0),
        };
        if n < min || n > max {
            return Err(format!(
                "the type {self} has {n} argument(s); {} takes at most {max}",
                self.base
            ));
        }
        for a in &self.args {
            let ok = a.parse::<u32>().is_ok()
                || (a == "max"
                    && matches!(self.base.as_str(), "varchar" | "nvarchar" | "varbinary"));
            if !ok {
                return Err(format!(
                    "the type {self} has an argument that is not a size: {a:?}"
                ));
            }
        }
        Ok(())
    }
}

impl fmt::Display for MssqlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base)?;
        if !self.args.is_empty() {
            write!(f, "({})", self.args.join(","))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(t: &str) -> TypeClass {
        MssqlType::parse(t).unwrap().classify()
    }

    #[test]
    fn exact_types_keep_their_text() {
        assert_eq!(
            class("NVARCHAR(50)"),
            TypeClass::Exact("nvarchar(50)".into())
        );
        assert_eq!(
            class("decimal(19, 4)"),
            TypeClass::Exact("decimal(19,4)".into())
        );
        assert_eq!(
            class("varbinary(MAX)"),
            TypeClass::Exact("varbinary(max)".into())
        );
        assert_eq!(class("geography"), TypeClass::Exact("geography".into()));
        assert_eq!(class("xml(CONTENT dbo.S)"), TypeClass::Exact("xml".into()));
    }

    #[test]
    fn rowversion_is_staged_as_binary_8() {
        assert_eq!(class("timestamp"), TypeClass::Exact("binary(8)".into()));
        assert_eq!(class("rowversion"), TypeClass::Exact("binary(8)".into()));
    }

    #[test]
    fn lob_types_are_refused_with_the_replacement() {
        for (t, instead) in [
            ("text", "varchar(max)"),
            ("ntext", "nvarchar(max)"),
            ("image", "varbinary(max)"),
        ] {
            match class(t) {
                TypeClass::Refused(why) => assert!(why.contains(instead), "{why}"),
                other => panic!("{t}: {other:?}"),
            }
        }
    }

    #[test]
    fn nothing_but_a_type_reaches_sql() {
        for evil in [
            "int); DROP TABLE t; --",
            "int x",
            "decimal(1,2) x",
            "decimal(1)(2)",
            "nvarchar(max) COLLATE x",
            "varchar(1;2)",
            "[int]]; --]",
            "int\nGO",
        ] {
            match MssqlType::parse(evil).map(|t| t.classify()) {
                Err(_) | Ok(TypeClass::Refused(_)) => {}
                Ok(TypeClass::Exact(s)) => panic!("{evil:?} became {s:?}"),
            }
        }
    }

    #[test]
    fn widening_is_recognised_and_nothing_else() {
        let w = |a: &str, b: &str| {
            MssqlType::parse(a)
                .unwrap()
                .widens_to(&MssqlType::parse(b).unwrap())
        };
        for (a, b) in [
            ("varchar(50)", "varchar(200)"),
            ("varchar(50)", "varchar(max)"),
            ("int", "bigint"),
            ("tinyint", "int"),
            ("decimal(10,2)", "decimal(12,2)"),
            ("datetime2(3)", "datetime2(7)"),
            ("nvarchar(10)", "nvarchar(10)"),
        ] {
            assert!(w(a, b), "{a} -> {b}");
        }
        for (a, b) in [
            ("varchar(200)", "varchar(50)"),
            ("bigint", "int"),
            ("decimal(10,2)", "decimal(12,4)"),
            ("varchar(50)", "nvarchar(50)"),
            ("char(10)", "varchar(5)"),
            ("datetime", "datetime2(7)"),
            ("int", "decimal(10,0)"),
        ] {
            assert!(!w(a, b), "{a} -> {b}");
        }
    }

    #[test]
    fn unknown_alias_and_bad_arguments_are_refused() {
        assert!(matches!(class("dbo.Phone"), TypeClass::Refused(_)));
        assert!(matches!(class("money(4)"), TypeClass::Refused(_)));
        assert!(matches!(class("int(max)"), TypeClass::Refused(_)));
        assert!(matches!(class("decimal(x)"), TypeClass::Refused(_)));
        assert!(matches!(class("frobnicate"), TypeClass::Refused(_)));
    }
}
