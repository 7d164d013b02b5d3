//! SQL Server's foreign keys (`sys.foreign_keys` ⨝ `sys.foreign_key_columns`), named as the
//! archive names tables and columns.
//!
//! The archive names a table after the definition in the source's registry. Catalog names are
//! matched to it exactly first, then ignoring case (SQL Server's usual collations ignore it,
//! and a registry written from a DBA's DDL script may spell a name differently); a name that
//! matches no captured table is kept as the catalog spells it (no change can be of it).

use rowtrail_sql::{ForeignKey, Ident, Table, TableName};

use super::undo::ForeignKeyColumn;

/// The captured table `schema.name` names, if any: an exact match, else the only one that
/// matches ignoring case.
fn captured<'a>(schema: &str, name: &str, tables: &'a [Table]) -> Option<&'a Table> {
    let schema_of = |t: &Table| {
        t.name
            .schema
            .as_ref()
            .map_or("dbo", |s| s.as_str())
            .to_string()
    };
    if let Some(t) = tables
        .iter()
        .find(|t| schema_of(t) == schema && t.name.name.as_str() == name)
    {
        return Some(t);
    }
    let mut loose = tables.iter().filter(|t| {
        schema_of(t).to_lowercase() == schema.to_lowercase()
            && t.name.name.as_str().to_lowercase() == name.to_lowercase()
    });
    match (loose.next(), loose.next()) {
        (Some(t), None) => Some(t),
        _ => None,
    }
}

/// The table's name as the archive has it, or as the catalog spells it.
fn table_name(schema: &str, name: &str, tables: &[Table]) -> Option<TableName> {
    match captured(schema, name, tables) {
        Some(t) => Some(t.name.clone()),
        None => Some(TableName {
            schema: Some(Ident::new(schema).ok()?),
            name: Ident::new(name).ok()?,
        }),
    }
}

/// The column as the captured definition spells it (exact, else ignoring case).
fn column_name(table: Option<&Table>, column: &str) -> String {
    let Some(t) = table else {
        return column.to_string();
    };
    t.columns
        .iter()
        .find(|c| c.name.as_str() == column)
        .or_else(|| {
            t.columns
                .iter()
                .find(|c| c.name.as_str().to_lowercase() == column.to_lowercase())
        })
        .map_or_else(|| column.to_string(), |c| c.name.as_str().to_string())
}

/// Groups the catalog's rows (ordered by key, then column position) into foreign keys, named
/// as the captured `tables` are.
pub fn group(rows: &[ForeignKeyColumn], tables: &[Table]) -> Vec<ForeignKey> {
    let mut out: Vec<ForeignKey> = Vec::new();
    let mut last: Option<i32> = None;
    let mut current: Option<usize> = None;
    for r in rows {
        if last != Some(r.key) {
            last = Some(r.key);
            current = match (
                table_name(&r.child_schema, &r.child_table, tables),
                table_name(&r.parent_schema, &r.parent_table, tables),
            ) {
                (Some(child), Some(parent)) => {
                    out.push(ForeignKey {
                        child,
                        child_columns: Vec::new(),
                        parent,
                        parent_columns: Vec::new(),
                    });
                    Some(out.len() - 1)
                }
                _ => None,
            };
        }
        if let Some(fk) = current.map(|i| &mut out[i]) {
            let child = captured(&r.child_schema, &r.child_table, tables);
            let parent = captured(&r.parent_schema, &r.parent_table, tables);
            fk.child_columns.push(column_name(child, &r.child_column));
            fk.parent_columns
                .push(column_name(parent, &r.parent_column));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rowtrail_sql::Column;

    fn table(schema: &str, name: &str, cols: &[&str]) -> Table {
        Table {
            name: TableName {
                schema: Some(Ident::new(schema).unwrap()),
                name: Ident::new(name).unwrap(),
            },
            columns: cols
                .iter()
                .map(|c| Column::new(Ident::new(*c).unwrap(), "int", false))
                .collect(),
            primary_key: vec![0],
            unique_keys: vec![],
            rowid: false,
        }
    }

    fn row(
        key: i32,
        ordinal: i32,
        child: (&str, &str, &str),
        parent: (&str, &str, &str),
    ) -> ForeignKeyColumn {
        ForeignKeyColumn {
            key,
            ordinal,
            child_schema: child.0.into(),
            child_table: child.1.into(),
            child_column: child.2.into(),
            parent_schema: parent.0.into(),
            parent_table: parent.1.into(),
            parent_column: parent.2.into(),
        }
    }

    #[test]
    fn catalog_rows_become_schema_qualified_keys_named_as_the_archive_names_tables() {
        let tables = [
            table("Sales", "Order", &["Id", "Region", "Year"]),
            table("Sales", "OrderLine", &["Id", "OrderId", "Region", "Year"]),
            table("Other", "Order", &["Id"]),
        ];
        let rows = [
            // A two-column key: Sales.OrderLine (Region, Year) → Sales.Order (Region, Year).
            row(
                7,
                1,
                ("Sales", "OrderLine", "Region"),
                ("Sales", "Order", "Region"),
            ),
            row(
                7,
                2,
                ("Sales", "OrderLine", "Year"),
                ("Sales", "Order", "Year"),
            ),
            // Case differs from the registry's spelling: the archive's names win.
            row(
                9,
                1,
                ("sales", "orderline", "orderid"),
                ("SALES", "ORDER", "ID"),
            ),
            // A key between tables that are not captured keeps the catalog's names.
            row(11, 1, ("hr", "Badge", "StaffId"), ("hr", "Staff", "Id")),
        ];
        let fks = group(&rows, &tables);
        assert_eq!(fks.len(), 3);
        assert_eq!(fks[0].child, tables[1].name);
        assert_eq!(fks[0].parent, tables[0].name);
        assert_eq!(fks[0].child_columns, ["Region", "Year"]);
        assert_eq!(fks[0].parent_columns, ["Region", "Year"]);
        assert_eq!(fks[1].child, tables[1].name);
        assert_eq!(
            fks[1].parent, tables[0].name,
            "Sales.Order, not Other.Order"
        );
        assert_eq!(fks[1].child_columns, ["OrderId"]);
        assert_eq!(fks[1].parent_columns, ["Id"]);
        assert_eq!(fks[2].child.to_string(), "hr.Badge");
        assert_eq!(fks[2].parent.to_string(), "hr.Staff");
        assert_eq!(fks[2].child_columns, ["StaffId"]);
    }

    #[test]
    fn a_name_two_captured_tables_match_ignoring_case_only_matches_exactly() {
        // A case-sensitive database may hold both.
        let tables = [table("dbo", "T", &["Id"]), table("dbo", "t", &["Id"])];
        let rows = [row(1, 1, ("dbo", "t", "Id"), ("DBO", "T", "Id"))];
        let fks = group(&rows, &tables);
        assert_eq!(fks[0].child, tables[1].name);
        assert_eq!(
            fks[0].parent.to_string(),
            "DBO.T",
            "ambiguous ignoring case: kept as the catalog spells it"
        );
    }
}
