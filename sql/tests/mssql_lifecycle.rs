//! Install, uninstall, upgrade and permissions scripts as a whole (issue 4, part 2).

mod common;

use std::collections::BTreeSet;
use std::time::Instant;

use rowtrail_sql::mssql::{Deployment, Script};
use rowtrail_sql::{Column, Ident, Table, TableName};

/// The objects a script creates (`CREATE TABLE|SEQUENCE|TRIGGER x`, `CREATE SCHEMA x`) or drops.
fn objects(s: &Script, verb: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for b in s.batches() {
        for l in b.sql.lines().map(str::trim) {
            for kind in ["TABLE", "SEQUENCE", "TRIGGER"] {
                if let Some(rest) = l.strip_prefix(&format!("{verb} {kind} ")) {
                    let name = rest
                        .split(" ON ")
                        .next()
                        .unwrap()
                        .split(" AS ")
                        .next()
                        .unwrap()
                        .trim_end_matches([';', ' ', '(']);
                    out.insert(format!("{kind} {name}"));
                }
            }
            if l.contains(&format!("(N'{verb} SCHEMA [rowtrail]")) {
                out.insert("SCHEMA [rowtrail]".into());
            }
        }
    }
    out
}

#[test]
fn uninstall_mirrors_install() {
    let d = Deployment::generate(&common::tables(), &common::options()).unwrap();
    let created = objects(&d.install, "CREATE");
    let dropped = objects(&d.uninstall, "DROP");
    assert_eq!(created, dropped);
    assert_eq!(
        created.len(),
        // schema, sequence, meta/registry/versions/columns, the DDL guard; per table staging
        // and trigger
        1 + 1 + 4 + 1 + 2 * d.tables.len(),
        "{created:#?}"
    );
}

#[test]
fn every_create_is_guarded_so_scripts_can_run_twice() {
    let d = Deployment::generate(&common::tables(), &common::options()).unwrap();
    let batches = d.install.batches();
    for (i, b) in batches.iter().enumerate() {
        let lines: Vec<&str> = b.sql.lines().map(str::trim).collect();
        for (j, l) in lines.iter().enumerate() {
            if l.starts_with("CREATE TABLE") || l.starts_with("CREATE SEQUENCE") {
                let guard = lines[..j]
                    .iter()
                    .rev()
                    .find(|p| p.starts_with("IF "))
                    .unwrap();
                assert!(guard.contains("IS NULL"), "unguarded: {l}");
            }
            if l.starts_with("INSERT INTO [rowtrail].[rowtrail_") && !l.contains("rowtrail_s_") {
                assert!(
                    lines[..j]
                        .iter()
                        .rev()
                        .take(4)
                        .any(|p| p.contains("NOT EXISTS")),
                    "unguarded: {l}"
                );
            }
        }
        if b.sql.starts_with("CREATE TRIGGER")
            && b.sql.lines().next().unwrap().ends_with(" ON DATABASE")
        {
            // The DDL guard, a database trigger (not in sys.objects): dropped earlier in the
            // script, before any table's objects are replaced.
            assert!(
                batches[..i].iter().any(|p| p.sql.contains(
                    "IF EXISTS (SELECT 1 FROM sys.triggers WHERE parent_class = 0 AND name = N'rowtrail_ddl_guard')\n    DROP TRIGGER [rowtrail_ddl_guard] ON DATABASE;"
                )),
                "the DDL guard is created without being dropped first"
            );
        } else if b.sql.starts_with("CREATE TRIGGER") {
            let drop = &batches[i - 2].sql;
            assert!(
                drop.contains("N'TR') IS NOT NULL") && drop.contains("DROP TRIGGER"),
                "{drop}"
            );
        }
    }
}

#[test]
fn scripts_run_in_one_transaction_that_sqlcmd_cannot_half_run() {
    for s in common::realistic_scripts() {
        let b = s.batches();
        assert!(b[0].sql.contains("SET XACT_ABORT ON;") && b[0].sql.contains("BEGIN TRANSACTION;"));
        for batch in &b[1..b.len() - 1] {
            assert!(
                batch.sql.starts_with("IF @@TRANCOUNT = 0 SET NOEXEC ON;")
                    || batch.sql.starts_with("CREATE TRIGGER"),
                "{}: {}",
                s.file_name(),
                batch.sql.lines().next().unwrap()
            );
        }
        assert!(b[b.len() - 2].sql.contains("COMMIT TRANSACTION;"));
        assert_eq!(b[b.len() - 1].sql, "SET NOEXEC OFF;");
        let text = s.render();
        assert!(
            text.starts_with("-- rowtrail 0.0.0-test: SQL Server "),
            "{}",
            s.file_name()
        );
        assert!(text.contains("-- Tables ("), "{}", s.file_name());
    }
}

#[test]
fn install_refuses_to_clobber_a_changed_definition_and_upgrade_keeps_rows() {
    let d = Deployment::generate(&[common::table("Product")], &common::options()).unwrap();
    assert!(d
        .install
        .render()
        .contains("is already captured with another definition; run the upgrade script"));
    let [added, dropped, changed] =
        <[Script; 3]>::try_from(common::upgraded(&common::table("Product"))).unwrap();
    let a = added.render();
    assert!(
        a.contains("IF COL_LENGTH(N'[rowtrail].[rowtrail_s_Product_")
            && a.contains("ADD [Color] nvarchar(15) NULL;")
    );
    assert!(
        !a.contains("IF EXISTS (SELECT 1 FROM [rowtrail].[rowtrail_s_"),
        "adding a column needs no drain"
    );
    let dr = dropped.render();
    assert!(
        !dr.contains("DROP COLUMN"),
        "a dropped column stays in staging with its staged values"
    );
    let c = changed.render();
    assert!(c.contains("holds rows and a column''s type changed"));
    assert!(
        c.contains("ALTER COLUMN [Weight] decimal(10,3) NULL;")
            && c.contains("ALTER COLUMN [Weight] ADD SPARSE;")
    );
    for s in [&a, &dr, &c] {
        assert!(
            s.contains("INSERT INTO [rowtrail].[rowtrail_versions]")
                && s.contains("NEXT VALUE FOR [rowtrail].[rowtrail_seq]")
        );
        assert!(s.contains("sp_settriggerorder"));
    }
}

#[test]
fn permissions_grant_the_reader_only_what_it_needs() {
    let d = Deployment::generate(&common::tables(), &common::options()).unwrap();
    let p = d
        .permissions(&Ident::new("rowtrail_reader").unwrap())
        .unwrap()
        .render();
    let grants: Vec<&str> = p.lines().filter(|l| l.starts_with("GRANT")).collect();
    assert_eq!(grants.len(), 2 * d.tables.len() + 4);
    // On the captured tables: VIEW DEFINITION only (their trigger's text, for `sql check`).
    let metadata: Vec<String> = d
        .tables
        .iter()
        .map(|t| {
            format!(
                "GRANT VIEW DEFINITION ON OBJECT::{} TO [rowtrail_reader];",
                t.table.name.quoted(rowtrail_sql::Dialect::Mssql)
            )
        })
        .collect();
    for m in &metadata {
        assert!(grants.contains(&m.as_str()), "missing {m}");
    }
    for g in &grants {
        let ok = metadata.iter().any(|m| m == g)
            || (g.starts_with("GRANT SELECT, DELETE ON [rowtrail].[rowtrail_s_"))
            || g.starts_with("GRANT SELECT ON [rowtrail].[rowtrail_registry]")
            || g.starts_with("GRANT SELECT ON [rowtrail].[rowtrail_versions]")
            || g.starts_with("GRANT SELECT ON [rowtrail].[rowtrail_meta]")
            || g.starts_with("GRANT VIEW DEFINITION ON OBJECT::[rowtrail].[rowtrail_seq]");
        assert!(ok && g.ends_with("TO [rowtrail_reader];"), "{g}");
    }
    // Application users need nothing: the install checks the ownership chain instead.
    assert!(d
        .install
        .render()
        .contains("'OwnerId') <> (SELECT principal_id FROM sys.schemas WHERE name = N'rowtrail')"));
}

/// 300 tables of 20 columns, composite keys on some.
fn many_tables() -> Vec<Table> {
    let types = [
        "int",
        "nvarchar(50)",
        "decimal(19,4)",
        "datetime2(7)",
        "varbinary(max)",
        "uniqueidentifier",
        "bit",
    ];
    (0..300)
        .map(|t| Table {
            name: TableName {
                schema: Some(Ident::new(format!("s{}", t % 7)).unwrap()),
                name: Ident::new(format!("Table {t}")).unwrap(),
            },
            columns: (0..20)
                .map(|c| {
                    Column::new(
                        Ident::new(format!("Col{c}")).unwrap(),
                        types[(t + c) % types.len()],
                        c > 1,
                    )
                })
                .collect(),
            primary_key: if t % 3 == 0 { vec![0, 1] } else { vec![0] },
            unique_keys: vec![],
            rowid: false,
        })
        .collect()
}

#[test]
fn generating_300_tables_is_fast() {
    let tables = many_tables();
    let start = Instant::now();
    let d = Deployment::generate(&tables, &common::options()).unwrap();
    let text = d.install.render();
    let _ = d.uninstall.render();
    let elapsed = start.elapsed();
    eprintln!(
        "generated the deployment for 300 tables in {:?} ({} install batches, {} KiB)",
        elapsed,
        d.install.batches().len(),
        text.len() / 1024
    );
    // The target is well under 1 s in a release build; allow for unoptimised test builds.
    assert!(elapsed.as_secs_f64() < 5.0, "{elapsed:?}");
}
