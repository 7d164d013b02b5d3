//! Drift detection without a server: catalog rows built by hand.

use rowtrail_sql::{Column, Ident, TableName};

use super::*;

fn table() -> Table {
    Table {
        name: TableName {
            schema: Some(Ident::new("dbo").unwrap()),
            name: Ident::new("T").unwrap(),
        },
        columns: vec![
            Column::new(Ident::new("Id").unwrap(), "int", false),
            Column::new(Ident::new("Name").unwrap(), "nvarchar(50)", true),
            Column::new(Ident::new("Price").unwrap(), "money", true),
            Column::new(Ident::new("At").unwrap(), "datetime2(7)", true),
        ],
        primary_key: vec![0],
        unique_keys: vec![],
        rowid: false,
    }
}

fn cat(id: i32, name: &str, base: &str, max_length: i16, scale: u8) -> CatalogColumn {
    CatalogColumn {
        column_id: id,
        name: name.into(),
        type_name: base.into(),
        system_type_name: base.into(),
        max_length,
        scale,
        is_nullable: true,
        ..Default::default()
    }
}

fn staging_rows() -> Vec<CatalogColumn> {
    vec![
        cat(1, "rowtrail_seq", "bigint", 8, 0),
        cat(2, "rowtrail_op", "char", 1, 0),
        cat(3, "rowtrail_image", "char", 1, 0),
        cat(4, "rowtrail_tx", "bigint", 8, 0),
        cat(5, "rowtrail_stmt", "bigint", 8, 0),
        cat(6, "rowtrail_time", "datetime2", 8, 7),
        cat(7, "rowtrail_login", "nvarchar", 256, 0),
        cat(8, "rowtrail_host", "nvarchar", 256, 0),
        cat(9, "rowtrail_app", "nvarchar", 256, 0),
        cat(10, "rowtrail_client_ip", "nvarchar", 96, 0),
        cat(11, "Id", "int", 4, 0),
        cat(12, "Name", "nvarchar", 100, 0),
        cat(13, "Price", "money", 8, 4),
        cat(14, "At", "datetime2", 8, 7),
    ]
}

fn healthy() -> Observed {
    let t = table();
    let c = Captured::new(&t).unwrap();
    Observed {
        captured: t.clone(),
        live: Some(t),
        trigger: Some(TriggerState {
            disabled: false,
            // As sqlcmd sends it: CRLF line ends and a splitter comment after the batch.
            definition: Some(format!(
                "{}\r\n-- '\r\n",
                create_trigger(&c, Target::Sql2016).replace('\n', "\r\n")
            )),
            parent_matches: true,
        }),
        staging: staging_rows(),
    }
}

fn problems(o: &Observed) -> Vec<String> {
    drift(o).unwrap().into_iter().map(|f| f.problem).collect()
}

#[test]
fn an_intact_installation_has_no_drift() {
    assert_eq!(problems(&healthy()), Vec::<String>::new());
    let mut o = healthy();
    let c = Captured::new(&o.captured).unwrap();
    o.trigger.as_mut().unwrap().definition = Some(create_trigger(&c, Target::Sql2012));
    assert!(
        problems(&o).is_empty(),
        "the 2012 trigger is rowtrail's too"
    );
}

#[test]
fn trigger_missing_disabled_altered_or_moved() {
    let mut o = healthy();
    o.trigger = None;
    let f = drift(&o).unwrap();
    assert!(
        f[0].problem.contains("missing")
            && f[0].fix.contains("rowtrail sql install --tables \"dbo.T\""),
        "{f:?}"
    );

    let mut o = healthy();
    o.trigger.as_mut().unwrap().disabled = true;
    let f = drift(&o).unwrap();
    assert!(f[0].problem.contains("disabled"));
    assert!(
        f[0].fix.starts_with("ENABLE TRIGGER [dbo].[rowtrail_t_T_"),
        "{}",
        f[0].fix
    );

    let mut o = healthy();
    let def = o.trigger.as_mut().unwrap().definition.as_mut().unwrap();
    *def = def.replacen("SET NOCOUNT ON;", "SET NOCOUNT ON; RETURN;", 1);
    assert!(problems(&o)[0].contains("altered"));

    let mut o = healthy();
    o.trigger.as_mut().unwrap().parent_matches = false;
    assert!(problems(&o)[0].contains("another table"));
}

#[test]
fn staging_columns_must_match_the_definition() {
    let mut o = healthy();
    o.staging[11].max_length = 40; // Name nvarchar(20) instead of nvarchar(50)
    let p = problems(&o);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].contains("Name nvarchar(50)") && p[0].contains("Name nvarchar(20)"),
        "{}",
        p[0]
    );
    let mut o = healthy();
    o.staging.clear();
    assert!(problems(&o)[0].contains("staging table is missing"));
}

#[test]
fn new_dropped_and_retyped_columns_need_an_upgrade() {
    let mut o = healthy();
    let live = o.live.as_mut().unwrap();
    live.columns.push(Column::new(
        Ident::new("Note").unwrap(),
        "nvarchar(max)",
        true,
    ));
    live.columns[3].sql_type = "datetime2(3)".into();
    live.columns.remove(1);
    let f = drift(&o).unwrap();
    let p: Vec<&str> = f.iter().map(|f| f.problem.as_str()).collect();
    assert_eq!(p.len(), 3, "{p:?}");
    assert!(p[0].contains("not captured: Note"));
    assert!(p[1].contains("dropped or renamed: Name"));
    assert!(p[2].contains("At datetime2(7) → datetime2(3)"));
    assert!(f
        .iter()
        .all(|f| f.needs_upgrade && f.fix.contains("--write-upgrade")));
}

#[test]
fn a_dropped_table_is_reported_alone() {
    let mut o = healthy();
    o.live = None;
    o.trigger = None;
    let f = drift(&o).unwrap();
    assert_eq!(f.len(), 1);
    assert!(f[0].problem.contains("dropped") && f[0].fix.contains("uninstall"));
}

#[test]
fn types_compare_as_the_catalog_spells_them() {
    assert_eq!(normal_type("float(24)"), "real");
    assert_eq!(normal_type("float(53)"), "float");
    assert_eq!(normal_type("decimal"), "decimal(18,0)");
    assert_eq!(normal_type("datetime2"), "datetime2(7)");
    assert_eq!(normal_type("sysname"), "nvarchar(128)");
    assert_eq!(normal_type("varchar(max)"), "varchar(max)");
    assert_eq!(normal_type("timestamp"), "binary(8)");
}

#[test]
fn issue15_a_restored_database_gets_an_incarnation_of_its_own() {
    use crate::mssql::catalog::effective_incarnation;
    let inc = "5F0E2C6A-0000-4000-8000-000000000001";
    let fork = "AAAAAAAA-0000-4000-8000-000000000001";
    let other = "BBBBBBBB-0000-4000-8000-000000000002";
    assert_eq!(
        effective_incarnation(inc, Some(fork), Some(fork)).unwrap(),
        inc.to_lowercase()
    );
    assert_eq!(
        effective_incarnation(inc, Some(fork), Some(other)).unwrap(),
        format!("{}/fork-{}", inc.to_lowercase(), other.to_lowercase())
    );
    // Installed by an older rowtrail, or the fork not visible: the installation's own.
    assert_eq!(
        effective_incarnation(inc, None, Some(other)).unwrap(),
        inc.to_lowercase()
    );
    assert_eq!(
        effective_incarnation(inc, Some(""), Some(other)).unwrap(),
        inc.to_lowercase()
    );
    assert_eq!(
        effective_incarnation(inc, Some(fork), None).unwrap(),
        inc.to_lowercase()
    );
    assert_eq!(effective_incarnation(" ", Some(fork), None), None);
}
