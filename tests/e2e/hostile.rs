//! What a hostile tester found (issue 20), each as a regression test that failed before its fix:
//! numbers a user copies, output a source can spoof, damaged and read-only archives, bad input.

use rowtrail_tests::{show, Sandbox};
use rusqlite::Connection;

const BIN: &str = env!("CARGO_BIN_EXE_rowtrail");

/// Runs `sql` in one transaction labelled as `login` (a rowtrail-aware writer's context row).
fn as_login(c: &Connection, login: &str, sql: &str) {
    c.execute(
        "INSERT INTO rowtrail_context (id, tx, login, host, app, client_ip) \
         VALUES (1, 'T', ?1, 'pc', 'app', NULL)",
        [login],
    )
    .map(|_| ())
    .and_then(|_| c.execute_batch(sql))
    .and_then(|_| c.execute_batch("DELETE FROM rowtrail_context"))
    .unwrap();
}

#[test]
fn issue20_the_number_history_shows_is_the_one_undo_change_takes() {
    let sb = Sandbox::new(BIN);
    let c = sb.create_and_install("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);");
    // Updates take two seqs each, so archive ids and seqs part ways at once.
    c.execute_batch(
        "INSERT INTO t VALUES (1, 'a'), (2, 'b');
         UPDATE t SET v = 'a2' WHERE id = 1;
         UPDATE t SET v = 'b2' WHERE id = 2;
         UPDATE t SET v = 'a3' WHERE id = 1;",
    )
    .unwrap();
    sb.ok(&["read", "--quiet"]);
    let history = sb.ok(&["history", "--table", "t", "--key", "1"]);
    let last = history
        .lines()
        .rfind(|l| l.starts_with('#'))
        .unwrap_or_else(|| panic!("no change lines:\n{history}"));
    let number: String = last[1..].chars().take_while(char::is_ascii_digit).collect();
    assert!(last.contains(", seq "), "the seq is shown as a seq: {last}");
    sb.ok(&["undo", "--change", &number, "--apply"]);
    let rows: Vec<(i64, String)> = c
        .prepare("SELECT id, v FROM t ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        rows,
        [(1, "a2".to_string()), (2, "b2".to_string())],
        "undoing the number history printed undid row 1's last change:\n{history}"
    );
}

#[test]
fn issue20_logins_and_names_cannot_forge_audit_lines_or_reach_the_terminal() {
    let sb = Sandbox::new(BIN);
    let c = sb.create_and_install("CREATE TABLE \"t\u{1b}[2J\" (id INTEGER PRIMARY KEY, v TEXT);");
    let forged = "mallory\n      99  2026-01-01T00:00:00.000Z  t  delete  alice";
    as_login(&c, forged, "INSERT INTO \"t\u{1b}[2J\" VALUES (1, 'x')");
    as_login(
        &c,
        "eve\u{1b}]0;owned\u{7}",
        "UPDATE \"t\u{1b}[2J\" SET v = 'y'",
    );
    sb.ok(&["read", "--quiet"]);
    for args in [
        &["audit"][..],
        &["history", "--table", "t\u{1b}[2J", "--key", "1"][..],
        &["undo", "--last", "2", "--table", "t\u{1b}[2J"][..],
    ] {
        let out = sb.run(args);
        assert!(out.status.success(), "{args:?}: {}", show(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        let plan: Vec<&str> = text.lines().filter(|l| !l.starts_with("--")).collect();
        assert!(
            !out.stdout.iter().any(|&b| b == 0x1b || b == 0x07),
            "{args:?}: an escape sequence reached the terminal:\n{text}"
        );
        assert!(
            !plan.iter().any(|l| l.trim_start().starts_with("99 ")),
            "{args:?}: a login forged an audit line:\n{text}"
        );
        assert!(
            text.contains("mallory\\n") || args[0] == "undo",
            "{args:?}: the line break is shown as an escape:\n{text}"
        );
    }
}

#[test]
fn issue20_commands_whose_reader_went_away_exit_quietly() {
    let sb = Sandbox::new(BIN);
    let c = sb.create_and_install("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);");
    c.execute_batch("INSERT INTO t VALUES (1, 'a'); UPDATE t SET v = 'b'")
        .unwrap();
    sb.ok(&["read", "--quiet"]);
    sb.ok(&["undo", "--last", "1", "--apply"]);
    sb.ok(&["read", "--quiet"]);
    for args in [
        &["undo", "--last", "1"][..],
        &["redo", "--run", "1"][..],
        &["verify"][..],
        &["verify", "--digest"][..],
        &["sql", "generate"][..],
        &["history", "--table", "t", "--key", "1"][..],
        &["audit"][..],
        &["undo", "--list"][..],
    ] {
        // A pipe whose reading end is closed before the command starts: its first write fails.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = sb
            .cmd(args)
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && !err.contains("panicked"),
            "{args:?}: {} {err}",
            out.status
        );
    }
}

#[test]
fn issue20_impossible_times_and_unknown_tables_are_refused_not_answered_empty() {
    let sb = Sandbox::new(BIN);
    let c = sb.create_and_install("CREATE TABLE staff (id INTEGER PRIMARY KEY, v TEXT);");
    c.execute_batch("INSERT INTO staff VALUES (1, 'a')")
        .unwrap();
    sb.ok(&["read", "--quiet"]);
    for time in ["2026-02-30", "25:00", "2026-11-21T25:00", "2026-13-99"] {
        for cmd in [
            &["audit", "--since", time][..],
            &["undo", "--since", time][..],
        ] {
            let e = sb.fails(cmd, 1);
            assert!(e.contains("is not a UTC time"), "{cmd:?}: {e}");
        }
    }
    let e = sb.fails(&["audit", "--table", "nosuch"], 1);
    assert!(
        e.contains("\"nosuch\" has no archived changes") && e.contains("staff"),
        "{e}"
    );
    let e = sb.fails(&["audit", "--table", "STAFF"], 1);
    assert!(e.contains("did you mean staff?"), "{e}");
    assert!(sb.ok(&["audit", "--table", "staff"]).contains("insert"));
}

/// Runs `rowtrail ARGS` in `dir` as a user that cannot write there: as `nobody` when the tests
/// run as root (root writes anywhere), else as the test's own user.
fn run_unprivileged(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let mut cmd = if root {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(BIN);
        c
    } else {
        std::process::Command::new(BIN)
    };
    cmd.args(args).current_dir(dir).env("RUST_LOG", "warn");
    cmd.output().expect("run rowtrail")
}

#[test]
fn issue20_an_archive_on_storage_that_cannot_be_written_can_still_be_verified_and_audited() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new(BIN);
    let c = sb.create_and_install("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);");
    c.execute_batch("INSERT INTO t VALUES (1, 'a'); UPDATE t SET v = 'b'")
        .unwrap();
    sb.ok(&["read", "--quiet"]);
    // A copy of the (cleanly closed) archive in a folder nobody may write, itself read-only.
    let shelf = tempfile::tempdir().unwrap();
    let worm = shelf.path().join("worm");
    std::fs::create_dir(&worm).unwrap();
    std::fs::copy(sb.archive(), worm.join("trail.db")).unwrap();
    std::fs::set_permissions(
        worm.join("trail.db"),
        std::fs::Permissions::from_mode(0o444),
    )
    .unwrap();
    std::fs::set_permissions(&worm, std::fs::Permissions::from_mode(0o555)).unwrap();
    std::fs::set_permissions(shelf.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for args in [
        &["--archive", "trail.db", "verify"][..],
        &["--archive", "trail.db", "audit"][..],
        &[
            "--archive",
            "trail.db",
            "history",
            "--table",
            "t",
            "--key",
            "1",
        ][..],
    ] {
        let out = run_unprivileged(&worm, args);
        assert!(out.status.success(), "{args:?}: {}", show(&out));
    }
    let verified = run_unprivileged(&worm, &["--archive", "trail.db", "verify"]);
    assert!(
        String::from_utf8_lossy(&verified.stdout).contains("archive verified: 2 change(s)"),
        "{}",
        show(&verified)
    );
    assert_eq!(
        std::fs::read_dir(&worm).unwrap().count(),
        1,
        "nothing was written beside the archive"
    );
    std::fs::set_permissions(&worm, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Overwrites one leaf page of the archive's `changes` table from the middle of the file with
/// bytes no SQLite page holds; returns the page number.
fn damage_a_page_of_changes(archive: &std::path::Path) -> i64 {
    let (page, size): (i64, i64) = {
        let c = Connection::open(archive).unwrap();
        let leaves: Vec<i64> = c
            .prepare("SELECT pageno FROM dbstat WHERE name = 'changes' AND pagetype = 'leaf' ORDER BY pageno")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(leaves.len() > 10, "the archive spans many pages");
        let size: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
        (leaves[leaves.len() / 2], size)
    };
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(archive)
        .unwrap();
    f.seek(SeekFrom::Start(((page - 1) * size) as u64)).unwrap();
    let junk: Vec<u8> = (0..size).map(|i| (i * 7 + 13) as u8).collect();
    f.write_all(&junk).unwrap();
    page
}

#[test]
fn issue20_a_damaged_archive_takes_nothing_from_staging_and_verify_says_what_is_left() {
    let sb = Sandbox::new(BIN);
    let c = sb.create_and_install("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);");
    c.execute_batch(
        "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 3000)
         INSERT INTO t SELECT i, printf('%0200d', i) FROM s",
    )
    .unwrap();
    sb.ok(&["read", "--quiet"]);
    damage_a_page_of_changes(&sb.archive());
    // New changes arrive; the reader must not take them into the damaged file.
    c.execute_batch("INSERT INTO t VALUES (5001, 'new'), (5002, 'new')")
        .unwrap();
    let staged = sb.staged();
    assert_eq!(staged, 2);
    let e = sb.fails(&["read"], 1);
    assert!(
        e.contains("damaged") && e.contains("nothing was archived or removed from staging"),
        "{e}"
    );
    assert_eq!(sb.staged(), staged, "staging keeps every change");
    // verify checks what can still be read and names what cannot.
    let out = sb.run(&["verify"]);
    let text = show(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("SQLite integrity check failed"), "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("the file is damaged:"))
        .unwrap_or_else(|| panic!("verify reports what is left:\n{text}"));
    let numbers: Vec<i64> = line
        .split(|ch: char| !ch.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    let (readable, lost) = (numbers[0], numbers[1]);
    assert!(lost > 0 && readable > 2000, "{line}");
    assert_eq!(
        readable + lost,
        3000,
        "every change is either readable or named lost: {line}"
    );
}

#[test]
fn issue20_verify_checks_derived_keys_the_journal_and_the_sources() {
    let sb = Sandbox::new(BIN);
    let c = sb.create_and_install("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);");
    c.execute_batch("INSERT INTO t VALUES (1, 'a'), (2, 'b'); UPDATE t SET v = 'c' WHERE id = 1")
        .unwrap();
    sb.ok(&["read", "--quiet"]);
    sb.ok(&["undo", "--last", "1", "--apply"]);
    sb.ok(&["read", "--quiet"]);
    let digest = sb.ok(&["verify", "--digest"]).trim().to_string();
    assert!(digest.starts_with("rowtrail2-"), "{digest}");
    let tamper = |what: &str, sql: &str, finds: &str| {
        let copy = sb.path().join("tampered.db");
        std::fs::copy(sb.archive(), &copy).unwrap();
        Connection::open(&copy).unwrap().execute_batch(sql).unwrap();
        let out = sb.run(&["--archive", "tampered.db", "verify", "--against", &digest]);
        let text = show(&out);
        assert_eq!(out.status.code(), Some(1), "{what} goes unnoticed:\n{text}");
        assert!(text.contains(finds), "{what}: {text}");
    };
    tamper(
        "a row key pointed at another row",
        "UPDATE changes SET row_key = (SELECT row_key FROM changes WHERE id = 2) WHERE id = 1",
        "row keys do not follow from its images",
    );
    tamper(
        "a forged undo item",
        "INSERT INTO undo_items (run_id, ordinal, change_id, action, outcome) \
         SELECT 1, 99, 1, 'delete', 'applied'",
        "items differ from its ledger record",
    );
    tamper(
        "a run's state edited",
        "UPDATE undo_runs SET state = 'abandoned'",
        "differs from its ledger record",
    );
    tamper(
        "a source's location edited",
        "UPDATE sources SET location = '/elsewhere.db'",
        "differs from its ledger record",
    );
    tamper(
        "a source's engine edited",
        "UPDATE sources SET engine = 'mssql'",
        "differs from its ledger record",
    );
    tamper(
        "the ledger's last entry removed",
        "DELETE FROM ledger WHERE id = (SELECT max(id) FROM ledger)",
        "the ledger was truncated",
    );
    sb.ok(&["verify", "--against", &digest]);
}

#[test]
fn issue20_an_archive_emptied_or_replaced_is_not_silently_started_again() {
    let sb = Sandbox::new(BIN);
    let c = sb.create_and_install("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);");
    c.execute_batch("INSERT INTO t VALUES (1, 'a'), (2, 'b')")
        .unwrap();
    sb.ok(&["read", "--quiet"]);
    // The archive cut to nothing (or lost, and a new file in its place).
    std::fs::write(sb.archive(), b"").unwrap();
    c.execute_batch("INSERT INTO t VALUES (3, 'c')").unwrap();
    let e = sb.fails(&["read"], 1);
    assert!(
        e.contains("is archived into another archive") && e.contains("which holds none of them"),
        "{e}"
    );
    assert_eq!(sb.staged(), 1, "the change stays staged");
    // The watcher refuses the same way, and keeps the change staged.
    let _w = sb.start_watcher();
    rowtrail_tests::wait_until(
        std::time::Duration::from_secs(10),
        "status shows the refusal",
        || String::from_utf8_lossy(&sb.run(&["status"]).stdout).contains("another archive"),
    );
    assert_eq!(sb.staged(), 1);
    drop(_w);
    // On purpose: --adopt starts the new archive.
    sb.ok(&["read", "--adopt", "--quiet"]);
    assert_eq!(sb.staged(), 0);
    assert_eq!(sb.archived(), 1);
    c.execute_batch("INSERT INTO t VALUES (4, 'd')").unwrap();
    sb.ok(&["read", "--quiet"]);
    assert_eq!(sb.archived(), 2, "from then on it is the source's archive");
}

#[test]
fn issue20_the_watcher_keeps_a_digest_elsewhere_that_finds_a_cut_back_archive() {
    let sb = Sandbox::new(BIN);
    let offhost = tempfile::tempdir().unwrap();
    let digest_file = offhost.path().join("trail.digest");
    sb.write_config(&format!(
        "digest_file = {:?}\ndigest_command = \"cat > digest-from-command.txt\"",
        digest_file.display().to_string()
    ));
    let c = sb.create_and_install("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);");
    let w = sb.start_watcher();
    c.execute_batch("INSERT INTO t VALUES (1, 'a'), (2, 'b'); INSERT INTO t VALUES (3, 'c')")
        .unwrap();
    let read_digest = || std::fs::read_to_string(&digest_file).unwrap_or_default();
    rowtrail_tests::wait_until(
        std::time::Duration::from_secs(10),
        "the digest names 3 changes",
        || read_digest().starts_with("rowtrail2-3-3-"),
    );
    rowtrail_tests::wait_until(
        std::time::Duration::from_secs(10),
        "the command got it too",
        || {
            std::fs::read_to_string(sb.path().join("digest-from-command.txt")).unwrap_or_default()
                == read_digest()
        },
    );
    drop(w);
    let digest = read_digest().trim().to_string();
    sb.ok(&["verify", "--against", &digest]);
    // Cut back to an earlier state: a valid archive, found only against the kept digest.
    Connection::open(sb.archive())
        .unwrap()
        .execute_batch("DELETE FROM changes WHERE id = 3")
        .unwrap();
    assert!(sb.ok(&["verify"]).contains("archive verified"));
    let e = sb.fails(&["verify", "--against", &digest], 1);
    assert!(e.contains("truncated"), "{e}");
}

#[test]
fn issue20_small_things_a_new_user_trips_on() {
    let sb = Sandbox::new(BIN);
    let c = sb.create_and_install(
        "CREATE TABLE lines (b INTEGER, a INTEGER, v TEXT, PRIMARY KEY (b, a));
         CREATE TABLE n (id INTEGER PRIMARY KEY, v TEXT);",
    );
    c.execute_batch("INSERT INTO lines VALUES (2, 1, 'x'); INSERT INTO n VALUES (1, 'y')")
        .unwrap();
    // The first command on a new archive is quiet under --quiet (no migration log at info).
    let out = sb.run(&["read", "--quiet"]);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        show(&out)
    );
    // A composite key is shown in key order, as --key takes it.
    let json = sb.ok(&["audit", "--table", "lines", "--format", "json"]);
    assert!(json.contains(r#""key":{"b":2,"a":1}"#), "{json}");
    let table = sb.ok(&["audit", "--table", "lines"]);
    assert!(table.contains("b=2 a=1"), "{table}");
    // An integer key typed as 1.0 finds the row, as SQLite's affinity would store it.
    assert!(sb
        .ok(&["history", "--table", "n", "--key", "1.0"])
        .contains("insert"));
    // -v shows what a one-shot command does.
    c.execute_batch("UPDATE n SET v = 'z'").unwrap();
    let out = sb
        .cmd(&["-v", "read"])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("batch archived"),
        "{}",
        show(&out)
    );
    // A missing archive folder is named as such, by the reader and by verify.
    let e = sb.fails(&["--archive", "no/such/folder/trail.db", "read"], 1);
    assert!(e.contains("its folder does not exist"), "{e}");
    let e = sb.fails(&["--archive", "no/such/folder/trail.db", "verify"], 1);
    assert!(e.contains("neither the file nor its folder exists"), "{e}");
    // init says when what it names is not there.
    let out = std::process::Command::new(BIN)
        .args([
            "--source",
            "missing.db",
            "--archive",
            "nowhere/trail.db",
            "init",
            "--out",
            "new.toml",
        ])
        .current_dir(sb.path())
        .output()
        .unwrap();
    let text = show(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("missing.db does not exist yet")
            && text.contains("folder")
            && text.contains("nowhere"),
        "{text}"
    );
}
