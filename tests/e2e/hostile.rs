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
