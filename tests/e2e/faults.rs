//! Faults: the archive filling up. (Crash tests at every labelled step live here too.)

use rowtrail_tests::Sandbox;

const BIN: &str = env!("CARGO_BIN_EXE_rowtrail");

#[test]
fn a_full_archive_stops_the_reader_deletes_nothing_and_resumes_without_loss() {
    let sb = Sandbox::new(BIN);
    let c = sb.create_and_install("CREATE TABLE t (id INTEGER PRIMARY KEY, payload BLOB);");
    // Room for the schema but not for 2,000 changes of 1 KiB.
    let small = "\n[archive]\npath = \"trail.db\"\nmax_bytes = 200000\n";
    let big = "\n[archive]\npath = \"trail.db\"\nmax_bytes = 100000000\n";
    let with = |archive: &str| {
        format!("[source]\nengine = \"sqlite\"\npath = \"source.db\"\n{archive}\n[watcher]\nbatch_size = 500\n")
    };
    std::fs::write(sb.config(), with(small)).unwrap();
    c.execute_batch("BEGIN").unwrap();
    for i in 0..2000 {
        c.execute("INSERT INTO t VALUES (?1, randomblob(1024))", [i])
            .unwrap();
    }
    c.execute_batch("COMMIT").unwrap();
    let e = sb.fails(&["read"], 1);
    assert!(
        e.contains("is full") && e.contains("nothing was removed from staging"),
        "{e}"
    );
    let archived = sb.archived();
    assert!(archived < 2000, "the limit did not bite");
    assert_eq!(
        sb.staged() + archived,
        2000,
        "every change is either staged or archived"
    );
    std::fs::write(sb.config(), with(big)).unwrap();
    sb.ok(&["read"]);
    assert_eq!(sb.archived(), 2000);
    assert_eq!(sb.staged(), 0);
    sb.ok(&["verify"]);
}
