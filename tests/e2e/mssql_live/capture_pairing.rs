//! How the capture trigger pairs an update's before- and after-images, live (issue 15, medium
//! item "key permutations"): a multi-row update that sets the key is recorded whole (op K), so
//! a permutation of keys is never paired by key; one that sets no key column is paired by key.

use super::*;

/// An archived change: its op, before-image and after-image.
type Archived = (Op, Option<Vec<Value>>, Option<Vec<Value>>);

/// The archived changes, oldest first.
fn archived(cli: &Cli<'_>) -> Vec<Archived> {
    Archive::open_read_only(&cli.sb.archive())
        .unwrap()
        .changes(&ChangeQuery::default())
        .unwrap()
        .into_iter()
        .map(|c| (c.op, c.before, c.after))
        .collect()
}

#[test]
#[ignore = "needs ROWTRAIL_MSSQL_URL (a SQL Server to run against)"]
fn issue15_a_key_permutation_is_recorded_whole_and_undone_exactly() {
    let db = TestDb::new();
    let mut c = db.client();
    db.run(
        &mut c,
        "CREATE TABLE dbo.Perm (K int NOT NULL PRIMARY KEY, V nvarchar(20) NULL);",
    );
    let cli = Cli::new(&db);
    cli.ok(&["sql", "install", "--tables", "dbo.Perm"]);
    db.run(
        &mut c,
        "INSERT INTO dbo.Perm (K, V) VALUES (1, N'a'), (2, N'b');",
    );
    cli.ok(&["read", "--quiet"]);
    let before = archived(&cli).len();
    // Row 1 becomes row 2 and row 2 becomes row 1: the set of keys is the same.
    db.run(&mut c, "UPDATE dbo.Perm SET K = 3 - K;");
    cli.ok(&["read", "--quiet"]);
    let changes = archived(&cli);
    let permuted = &changes[before..];
    assert_eq!(permuted.len(), 4, "{permuted:?}");
    assert!(
        permuted.iter().all(|(op, _, _)| *op == Op::KeyChange),
        "paired by key, each row was given the other's values: {permuted:?}"
    );
    // The before-images are the rows as they were, the after-images as they are.
    let image = |k: i64, v: &str| vec![Value::Integer(k), Value::text(v)];
    let befores: Vec<_> = permuted.iter().filter_map(|c| c.1.clone()).collect();
    let afters: Vec<_> = permuted.iter().filter_map(|c| c.2.clone()).collect();
    assert!(befores.contains(&image(1, "a")) && befores.contains(&image(2, "b")));
    assert!(afters.contains(&image(2, "a")) && afters.contains(&image(1, "b")));
    // A multi-row update that sets no key column is still paired by key.
    db.run(&mut c, "UPDATE dbo.Perm SET V = V + N'!';");
    cli.ok(&["read", "--quiet"]);
    let changes = archived(&cli);
    assert!(changes[before + 4..]
        .iter()
        .all(|(op, _, _)| *op == Op::Update));
    // Undone newest first, the table is as it was before the permutation.
    cli.ok(&["undo", "--last", "6", "--apply"]);
    let rows = c
        .query("test query", "SELECT K, V FROM dbo.Perm ORDER BY K", &[])
        .unwrap();
    let got: Vec<(i32, String)> = rows
        .iter()
        .map(|r| {
            (
                r.get::<i32, _>(0).unwrap(),
                r.get::<&str, _>(1).unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(got, [(1, "a".to_string()), (2, "b".to_string())]);
}
