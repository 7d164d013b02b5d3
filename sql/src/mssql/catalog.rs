//! Catalog rows to the model: what `rowtrail-reader` reads from `sys.columns` joined to
//! `sys.types` on `user_type_id`, mapped to a [`Table`] without any I/O.
//!
//! The reader's query is expected to return, per column, `sys.columns` facts and both the
//! column's own type name (`sys.types.name`, an alias type's name for alias columns) and its
//! base type name (`TYPE_NAME(c.system_type_id)`), so alias types resolve to their base type.

use crate::{Column, Ident, SqlError, Table, TableName};

/// One row of `sys.columns c JOIN sys.types t ON t.user_type_id = c.user_type_id`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CatalogColumn {
    /// `c.column_id`.
    pub column_id: i32,
    /// `c.name`.
    pub name: String,
    /// `t.name`: the column's type as declared (an alias type's own name for alias columns).
    pub type_name: String,
    /// `TYPE_NAME(c.system_type_id)`: the base system type (same as `type_name` for system types).
    pub system_type_name: String,
    /// `t.is_user_defined`.
    pub is_user_defined: bool,
    /// `t.is_assembly_type` (CLR types: hierarchyid, geometry, geography, user CLR types).
    pub is_assembly_type: bool,
    /// `c.max_length` in bytes; -1 for `(max)`, xml and CLR types.
    pub max_length: i16,
    /// `c.precision`.
    pub precision: u8,
    /// `c.scale`.
    pub scale: u8,
    /// `c.is_nullable`.
    pub is_nullable: bool,
    /// `c.is_identity`.
    pub is_identity: bool,
    /// `c.is_computed`.
    pub is_computed: bool,
    /// `sys.computed_columns.is_persisted` (false for other columns).
    pub is_persisted: bool,
    /// `c.is_sparse`.
    pub is_sparse: bool,
    /// `c.is_column_set`.
    pub is_column_set: bool,
    /// `c.is_filestream`.
    pub is_filestream: bool,
    /// `c.collation_name` (NULL for non-character types).
    pub collation_name: Option<String>,
    /// `COLUMNPROPERTY(…, 'GeneratedAlwaysType')` (`sys.columns.generated_always_type` from
    /// SQL Server 2016; 0 before): 1/2 a temporal period's start/end, 7–10 a ledger column.
    pub generated_always_type: u8,
}

/// Maps catalog rows to a table. `primary_key` lists the key's `column_id`s in key order.
pub fn table_from_catalog(
    schema: &str,
    name: &str,
    columns: &[CatalogColumn],
    primary_key: &[i32],
) -> Result<Table, SqlError> {
    let table_name = TableName {
        schema: Some(Ident::new(schema)?),
        name: Ident::new(name)?,
    };
    let refuse = |col: &str, reason: &str| SqlError::Uncapturable {
        table: table_name.to_string(),
        reason: format!("column {col:?}: {reason}"),
    };
    let mut rows: Vec<&CatalogColumn> = columns.iter().collect();
    rows.sort_by_key(|c| c.column_id);
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        if r.is_column_set {
            return Err(refuse(
                &r.name,
                "it is a sparse column set; tables with a column set cannot be \
                 staged (their sparse columns may exceed 1024); leave the table out with --tables",
            ));
        }
        if r.is_filestream {
            return Err(refuse(
                &r.name,
                "it is a FILESTREAM column: capture would copy every file into \
                 staging on each change; leave the table out with --tables",
            ));
        }
        if r.is_assembly_type && r.is_user_defined {
            return Err(refuse(&r.name, &format!(
                "its type {} is a user-defined CLR type, which rowtrail cannot stage exactly; leave \
                 the table out with --tables",
                r.type_name
            )));
        }
        // `TYPE_NAME(system_type_id)` is NULL for the system CLR types (hierarchyid, geometry
        // and geography share system_type_id 240): their own name is the type.
        let base = if r.system_type_name.is_empty() && r.is_assembly_type {
            r.type_name.to_lowercase()
        } else {
            r.system_type_name.to_lowercase()
        };
        let rowversion = base == "timestamp" || base == "rowversion";
        let len = |chars_per_unit: i16| -> String {
            if r.max_length == -1 {
                "max".into()
            } else {
                (r.max_length / chars_per_unit).to_string()
            }
        };
        let sql_type = match base.as_str() {
            "char" | "varchar" | "binary" | "varbinary" => format!("{base}({})", len(1)),
            "nchar" | "nvarchar" => format!("{base}({})", len(2)),
            "decimal" | "numeric" => format!("{base}({},{})", r.precision, r.scale),
            "datetime2" | "time" | "datetimeoffset" => format!("{base}({})", r.scale),
            "timestamp" | "rowversion" => "rowversion".into(),
            _ => base.clone(),
        };
        // A computed column that is not persisted is evaluated on every read, and reading it in
        // the trigger could fail where the user's statement did not: recorded without a type,
        // it is not captured.
        let sql_type = if r.is_computed && !r.is_persisted {
            String::new()
        } else {
            sql_type
        };
        let mut c = Column::new(Ident::new(r.name.as_str())?, sql_type, r.is_nullable);
        c.identity = r.is_identity;
        c.computed = r.is_computed;
        c.sparse = r.is_sparse;
        c.rowversion = rowversion;
        c.collation = r.collation_name.clone();
        c.generated = r.generated_always_type != 0;
        out.push(c);
    }
    let mut pk = Vec::with_capacity(primary_key.len());
    for id in primary_key {
        let pos = rows
            .iter()
            .position(|r| r.column_id == *id)
            .ok_or_else(|| SqlError::Uncapturable {
                table: table_name.to_string(),
                reason: format!(
                    "its primary key names column_id {id}, which the catalog rows lack"
                ),
            })?;
        pk.push(pos);
    }
    let t = Table {
        name: table_name,
        columns: out,
        primary_key: pk,
        unique_keys: Vec::new(),
        rowid: false,
    };
    t.validate()?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i32, name: &str, ty: &str, base: &str, max_length: i16) -> CatalogColumn {
        CatalogColumn {
            column_id: id,
            name: name.into(),
            type_name: ty.into(),
            system_type_name: base.into(),
            max_length,
            is_nullable: true,
            ..Default::default()
        }
    }

    #[test]
    fn maps_sizes_precision_alias_and_flags() {
        let mut id = row(1, "Id", "int", "int", 4);
        id.is_identity = true;
        id.is_nullable = false;
        let mut name = row(2, "Name", "nvarchar", "nvarchar", 100);
        name.collation_name = Some("Latin1_General_CI_AS".into());
        // An alias type (dbo.Phone AS nvarchar(25)) resolves to its base type.
        let mut phone = row(3, "Phone", "Phone", "nvarchar", 50);
        phone.is_user_defined = true;
        let mut total = row(4, "Total", "money", "money", 8);
        total.is_computed = true;
        total.is_persisted = true;
        let mut price = row(5, "Price", "decimal", "decimal", 9);
        price.precision = 19;
        price.scale = 4;
        let blob = row(6, "Doc", "varbinary", "varbinary", -1);
        let ver = row(7, "Ver", "timestamp", "timestamp", 8);
        let mut at = row(8, "At", "datetimeoffset", "datetimeoffset", 10);
        at.scale = 7;
        let geo = CatalogColumn {
            is_assembly_type: true,
            ..row(9, "Geo", "geography", "geography", -1)
        };
        let t = table_from_catalog(
            "Sales",
            "Order",
            &[at, name, id, phone, total, price, blob, ver, geo],
            &[1],
        )
        .unwrap();
        let types: Vec<_> = t.columns.iter().map(|c| c.sql_type.as_str()).collect();
        assert_eq!(
            types,
            [
                "int",
                "nvarchar(50)",
                "nvarchar(25)",
                "money",
                "decimal(19,4)",
                "varbinary(max)",
                "rowversion",
                "datetimeoffset(7)",
                "geography"
            ]
        );
        assert!(t.columns[0].identity && t.columns[3].computed && t.columns[6].rowversion);
        assert_eq!(
            t.columns[1].collation.as_deref(),
            Some("Latin1_General_CI_AS")
        );
        assert_eq!(t.primary_key, vec![0]);
    }

    #[test]
    fn system_clr_types_take_their_own_name_and_period_columns_are_generated() {
        // TYPE_NAME(240) is NULL: the reader's row then carries only the type's own name.
        let h = CatalogColumn {
            is_assembly_type: true,
            ..row(1, "Node", "hierarchyid", "", -1)
        };
        let from = CatalogColumn {
            generated_always_type: 1,
            scale: 7,
            ..row(2, "ValidFrom", "datetime2", "datetime2", 8)
        };
        let plain = row(3, "V", "int", "int", 4);
        let t = table_from_catalog("dbo", "T", &[h, from, plain], &[]).unwrap();
        assert_eq!(t.columns[0].sql_type, "hierarchyid");
        assert_eq!(t.columns[1].sql_type, "datetime2(7)");
        assert!(t.columns[1].generated && !t.columns[1].writable());
        assert!(!t.columns[2].generated && t.columns[2].writable());
        assert!(
            !t.to_json().contains("generated\":false"),
            "absent when false"
        );
    }

    #[test]
    fn computed_columns_that_are_not_persisted_carry_no_type() {
        let mut c = row(1, "Ratio", "decimal", "decimal", 9);
        c.is_computed = true;
        let t = table_from_catalog("dbo", "T", &[c], &[]).unwrap();
        assert!(t.columns[0].computed && t.columns[0].sql_type.is_empty());
    }

    #[test]
    fn refuses_user_clr_types_filestream_and_column_sets() {
        let clr = CatalogColumn {
            is_assembly_type: true,
            is_user_defined: true,
            ..row(1, "P", "Point", "Point", -1)
        };
        let err = table_from_catalog("dbo", "T", &[clr], &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"P\"") && err.contains("CLR"), "{err}");
        let fs = CatalogColumn {
            is_filestream: true,
            ..row(1, "F", "varbinary", "varbinary", -1)
        };
        assert!(table_from_catalog("dbo", "T", &[fs], &[])
            .unwrap_err()
            .to_string()
            .contains("FILESTREAM"));
        let cs = CatalogColumn {
            is_column_set: true,
            ..row(1, "S", "xml", "xml", -1)
        };
        assert!(table_from_catalog("dbo", "T", &[cs], &[]).is_err());
    }
}
