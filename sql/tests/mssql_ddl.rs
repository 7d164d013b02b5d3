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

#[test]
fn reads_what_ssms_and_hand_written_scripts_add() {
    let t = parse_mssql(
        "CREATE TABLE [dbo].[Stock] (\n\
         \t[Id] [bigint] NOT NULL INDEX [IX_Id] NONCLUSTERED,\n\
         \t[Sku] [varchar](20) NOT NULL,\n\
         \t[Qty] [int] NOT NULL CONSTRAINT [DF_Qty] DEFAULT (-1),\n\
         \t[Price] [decimal](9, 2) NULL CHECK NOT FOR REPLICATION ([Price] > (0)),\n\
         \t[Parent] [bigint] NULL FOREIGN KEY REFERENCES [dbo].[Stock] ([Id]) ON DELETE NO ACTION ON UPDATE NO ACTION,\n\
         \t[Email] [nvarchar](100) MASKED WITH (FUNCTION = 'email()') NULL,\n\
         \t[ValidFrom] [datetime2](7) GENERATED ALWAYS AS ROW START HIDDEN NOT NULL,\n\
         \t[ValidTo] [datetime2](7) GENERATED ALWAYS AS ROW END HIDDEN NOT NULL,\n\
         \t[Label] AS (CONVERT([nvarchar](30), [Sku])) PERSISTED NOT NULL,\n\
         \tPERIOD FOR SYSTEM_TIME ([ValidFrom], [ValidTo]),\n\
         \tINDEX [IX_Sku] NONCLUSTERED ([Sku]),\n\
         \tCONSTRAINT [PK_Stock] PRIMARY KEY CLUSTERED ([Id] ASC) WITH (FILLFACTOR = 90) ON [PRIMARY],\n\
         \tCONSTRAINT [UQ_Sku] UNIQUE NONCLUSTERED ([Sku])\n\
         ) ON [PRIMARY] WITH (SYSTEM_VERSIONING = ON (HISTORY_TABLE = [dbo].[StockHistory]), DATA_COMPRESSION = PAGE)\n\
         GO\n\
         ALTER TABLE [dbo].[Stock] ADD CONSTRAINT [DF_Sku] DEFAULT ('') FOR [Sku]\n\
         GO\n\
         ALTER TABLE [dbo].[Stock] WITH CHECK ADD CONSTRAINT [FK_x] FOREIGN KEY ([Parent]) REFERENCES [dbo].[Stock] ([Id])\n\
         GO\n\
         ALTER TABLE [dbo].[Stock] CHECK CONSTRAINT [FK_x]\n",
    )
    .unwrap();
    assert_eq!(t.len(), 1);
    let s = &t[0];
    let names: Vec<&str> = s.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "Id",
            "Sku",
            "Qty",
            "Price",
            "Parent",
            "Email",
            "ValidFrom",
            "ValidTo",
            "Label"
        ]
    );
    assert_eq!(s.primary_key, vec![0]);
    assert_eq!(s.unique_keys, vec![vec![1]]);
    let label = &s.columns[8];
    assert!(label.computed && label.sql_type == "nvarchar(30)");
}

#[test]
fn refuses_memory_optimized_tables() {
    let (line, msg) = ddl_error(
        "CREATE TABLE dbo.Hot (\n  Id int NOT NULL PRIMARY KEY NONCLUSTERED\n)\nWITH (MEMORY_OPTIMIZED = ON, DURABILITY = SCHEMA_AND_DATA)",
    );
    assert_eq!(line, 4);
    assert!(
        msg.contains("dbo.Hot") && msg.contains("memory-optimized"),
        "{msg}"
    );
}

#[test]
fn a_refused_table_does_not_hide_the_others() {
    let script = "CREATE TABLE dbo.Old (Id int PRIMARY KEY, Body ntext)\nGO\n\
                  CREATE TABLE dbo.Hot (Id int PRIMARY KEY NONCLUSTERED) WITH (MEMORY_OPTIMIZED = ON)\nGO\n\
                  CREATE TABLE dbo.Files (Id int PRIMARY KEY, Data varbinary(max) FILESTREAM NULL)\nGO\n\
                  CREATE TABLE dbo.Good (Id int PRIMARY KEY, Name nvarchar(10))\n";
    let each = rowtrail_sql::ddl::parse_mssql_each(script).unwrap();
    let names: Vec<String> = each.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(names, ["dbo.Old", "dbo.Hot", "dbo.Files", "dbo.Good"]);
    assert!(each[0]
        .1
        .as_ref()
        .unwrap_err()
        .to_string()
        .contains("nvarchar(max)"));
    assert!(each[1]
        .1
        .as_ref()
        .unwrap_err()
        .to_string()
        .contains("memory-optimized"));
    assert!(each[2]
        .1
        .as_ref()
        .unwrap_err()
        .to_string()
        .contains("FILESTREAM"));
    assert_eq!(each[3].1.as_ref().unwrap().columns.len(), 2);
    // The strict reader reports the first refusal.
    let (line, msg) = ddl_error(script);
    assert_eq!(line, 1);
    assert!(msg.contains("dbo.Old"), "{msg}");
}
