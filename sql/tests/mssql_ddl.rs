//! Reading DBAs' CREATE TABLE scripts (issue 4, part 1).

mod common;

use rowtrail_sql::ddl::parse_mssql;
use rowtrail_sql::SqlError;

#[test]
fn reads_every_realistic_table() {
    let tables = common::tables();
    let names: Vec<String> = tables.iter().map(|t| t.name.to_string()).collect();
    assert_eq!(
        names,
        [
            "Person.Person",
            "Sales.SalesOrderHeader",
            "Sales.SalesOrderDetail",
            "Production.Product",
            "Production.ProductInventory",
            "HumanResources.Employee",
            "Person.Address",
            "dbo.AuditEvent",
            "dbo.ImportLog",
            "Sales.Order Lines",
        ]
    );
}

#[test]
fn maps_types_keys_and_column_properties() {
    let p = common::table("Person");
    assert_eq!(p.primary_key, vec![0]);
    let col = |t: &rowtrail_sql::Table, n: &str| {
        t.columns
            .iter()
            .find(|c| c.name.as_str() == n)
            .unwrap()
            .clone()
    };
    assert_eq!(col(&p, "PersonType").sql_type, "nchar(2)");
    assert_eq!(
        col(&p, "FirstName").collation.as_deref(),
        Some("SQL_Latin1_General_CP1_CI_AS")
    );
    assert_eq!(col(&p, "AdditionalContactInfo").sql_type, "xml");
    assert!(!col(&p, "NameStyle").nullable && col(&p, "Title").nullable);

    let h = common::table("SalesOrderHeader");
    let id = col(&h, "SalesOrderID");
    assert!(id.identity && !id.nullable && id.sql_type == "int");
    let total = col(&h, "TotalDue");
    assert!(
        total.computed && total.sql_type.is_empty(),
        "the DDL states no type for TotalDue"
    );

    let d = common::table("SalesOrderDetail");
    assert_eq!(d.primary_key, vec![0, 1], "composite key in key order");
    let line = col(&d, "LineTotal");
    assert!(line.computed && line.sql_type == "numeric(38,6)");

    let pr = common::table("Product");
    assert_eq!(pr.primary_key, vec![0]);
    assert_eq!(pr.unique_keys, vec![vec![1]]);
    assert_eq!(col(&pr, "StandardCost").sql_type, "decimal(19,4)");
    assert_eq!(col(&pr, "LargePhoto").sql_type, "varbinary(max)");
    let v = col(&pr, "Version");
    assert!(v.rowversion && v.sql_type == "rowversion" && !v.nullable);

    let e = common::table("Employee");
    assert_eq!(
        e.primary_key,
        vec![0],
        "the key comes from ALTER TABLE … ADD CONSTRAINT"
    );
    assert_eq!(col(&e, "OrganizationNode").sql_type, "hierarchyid");

    let a = common::table("AuditEvent");
    assert!(col(&a, "Tag1").sparse && col(&a, "Tag2").sparse);
    assert_eq!(col(&a, "OccurredAt").sql_type, "datetimeoffset(7)");
    assert_eq!(col(&a, "Detail").sql_type, "sql_variant");

    assert!(
        common::table("ImportLog").primary_key.is_empty(),
        "a heap is allowed and has no key"
    );
    let o = common::table("Order Lines");
    assert_eq!(o.primary_key, vec![0, 1]);
    assert_eq!(col(&o, "Order ID").sql_type, "uniqueidentifier");
}

fn ddl_error(text: &str) -> (u64, String) {
    match parse_mssql(text) {
        Err(SqlError::BadDdl { line, message }) => (line, message),
        other => panic!("expected a DDL error, got {other:?}"),
    }
}

#[test]
fn refuses_unreadable_types_naming_table_column_and_remedy() {
    let (line, msg) =
        ddl_error("CREATE TABLE dbo.Doc (\n  Id int PRIMARY KEY,\n  Body ntext NULL\n)");
    assert_eq!(line, 3);
    assert!(
        msg.contains("dbo.Doc") && msg.contains("\"Body\"") && msg.contains("nvarchar(max)"),
        "{msg}"
    );
    let (_, msg) = ddl_error("CREATE TABLE t (p dbo.Phone NOT NULL)");
    assert!(msg.contains("alias") && msg.contains("catalog"), "{msg}");
    let (_, msg) = ddl_error("CREATE TABLE t (f varbinary(max) FILESTREAM NULL)");
    assert!(msg.contains("FILESTREAM"), "{msg}");
    let (_, msg) = ddl_error("CREATE TABLE t (x image)");
    assert!(msg.contains("varbinary(max)"), "{msg}");
}

#[test]
fn malformed_ddl_says_what_and_where() {
    let (line, msg) =
        ddl_error("SET NOCOUNT ON\nGO\nCREATE TABLE t (\n  a int,\n  b int NOT NUL\n)");
    assert_eq!(line, 5);
    assert!(msg.contains("\"b\""), "{msg}");
    let (line, _) = ddl_error("CREATE TABLE t (a int,\n b decimal(10, 2)\n");
    assert_eq!(line, 2);
    let (_, msg) = ddl_error("CREATE TABLE t (a int, CONSTRAINT pk PRIMARY KEY (zz))");
    assert!(msg.contains("\"zz\""), "{msg}");
    let (_, msg) = ddl_error("CREATE TABLE t (a int, A int)");
    assert!(msg.contains("twice"), "{msg}");
}

#[test]
fn names_over_128_characters_are_refused() {
    let long = "x".repeat(129);
    let (_, msg) = ddl_error(&format!("CREATE TABLE [{long}] (a int)"));
    assert!(msg.contains("128"), "{msg}");
    assert!(parse_mssql(&format!("CREATE TABLE [{}] (a int)", "é".repeat(128))).is_ok());
}

#[test]
fn skips_temp_tables_and_other_statements() {
    let t = parse_mssql(
        "CREATE TABLE #scratch (a int)\nGO\nCREATE PROCEDURE p AS SELECT 1\nGO\n\
         CREATE TABLE [a]]b].[c d] ([x]]y] int NOT NULL, CONSTRAINT k PRIMARY KEY ([x]]y]))\nGO\n\
         CREATE INDEX ix ON [a]]b].[c d] ([x]]y])",
    )
    .unwrap();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].name.schema.as_ref().unwrap().as_str(), "a]b");
    assert_eq!(t[0].columns[0].name.as_str(), "x]y");
    assert_eq!(t[0].primary_key, vec![0]);
}
