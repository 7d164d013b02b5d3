//! The archive's schema and its forward migrations.
//!
//! `PRAGMA user_version` holds the schema version. Each migration moves the schema one version
//! forward inside the same transaction that bumps the version; an archive newer than this build
//! is refused, never touched.

/// The marker that tells a rowtrail archive from any other SQLite file.
pub const FORMAT_MARKER: &str = "rowtrail-archive";

/// Migrations, in order: `MIGRATIONS[i]` takes the schema from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: sources, tables and their versions, changes with the hash chain.
    "CREATE TABLE archive_info (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL);
    INSERT INTO archive_info (key, value) VALUES ('format', 'rowtrail-archive');
    CREATE TABLE sources (
        id INTEGER PRIMARY KEY,
        incarnation TEXT NOT NULL UNIQUE,
        engine TEXT NOT NULL,
        location TEXT NOT NULL,
        first_seen_us INTEGER NOT NULL);
    CREATE TABLE tables (
        id INTEGER PRIMARY KEY,
        source_id INTEGER NOT NULL REFERENCES sources (id),
        schema_name TEXT NOT NULL,
        table_name TEXT NOT NULL,
        UNIQUE (source_id, schema_name, table_name));
    CREATE TABLE table_versions (
        id INTEGER PRIMARY KEY,
        table_id INTEGER NOT NULL REFERENCES tables (id),
        definition TEXT NOT NULL,
        first_seen_us INTEGER NOT NULL,
        UNIQUE (table_id, definition));
    CREATE TABLE changes (
        id INTEGER PRIMARY KEY,
        source_id INTEGER NOT NULL REFERENCES sources (id),
        seq INTEGER NOT NULL,
        table_id INTEGER NOT NULL REFERENCES tables (id),
        version_id INTEGER NOT NULL REFERENCES table_versions (id),
        op TEXT NOT NULL,
        tx ANY,
        stmt ANY,
        at TEXT,
        login TEXT,
        host TEXT,
        app TEXT,
        client_ip TEXT,
        row_key BLOB NOT NULL,
        prev_key BLOB,
        src_rowid INTEGER,
        before BLOB,
        after BLOB,
        archived_us INTEGER NOT NULL,
        hash BLOB NOT NULL);
    CREATE UNIQUE INDEX changes_by_source_seq ON changes (source_id, seq);
    CREATE INDEX changes_by_row ON changes (table_id, row_key);
    CREATE INDEX changes_by_prev_row ON changes (table_id, prev_key) WHERE prev_key IS NOT NULL;
    CREATE INDEX changes_by_time ON changes (at);
    CREATE INDEX changes_by_login ON changes (login) WHERE login IS NOT NULL;
    CREATE INDEX changes_by_tx ON changes (source_id, tx) WHERE tx IS NOT NULL;",
    // 2: the undo journal. A run is one `rowtrail undo --apply` or `rowtrail redo`; its `state`
    // (and its items' `outcome`) are the only values in the archive ever updated in place.
    // The run's writes to the source carry `tx_tag` as their transaction, linking them to it.
    "CREATE TABLE undo_runs (
        id INTEGER PRIMARY KEY,
        created_us INTEGER NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('undo', 'redo')),
        mode TEXT NOT NULL,
        scope TEXT NOT NULL,
        source_id INTEGER NOT NULL REFERENCES sources (id),
        tx_tag TEXT NOT NULL UNIQUE,
        redo_of INTEGER REFERENCES undo_runs (id),
        state TEXT NOT NULL CHECK (state IN ('applying', 'applied', 'abandoned', 'redone')),
        finished_us INTEGER);
    CREATE TABLE undo_items (
        run_id INTEGER NOT NULL REFERENCES undo_runs (id),
        ordinal INTEGER NOT NULL,
        change_id INTEGER NOT NULL REFERENCES changes (id),
        action TEXT NOT NULL CHECK (action IN ('insert', 'update', 'delete')),
        outcome TEXT NOT NULL CHECK (outcome IN ('applied', 'forced', 'skipped')),
        PRIMARY KEY (run_id, ordinal));
    CREATE INDEX undo_items_by_change ON undo_items (change_id);
    CREATE INDEX undo_runs_by_state ON undo_runs (state);",
    // 3: the link of a run to its source transaction where the capture cannot carry the run's
    // tag: SQL Server triggers record the writer's transaction id, so an undo on SQL Server
    // records its own transaction's id here (once, while that transaction is open, before any
    // write), and its captured writes are the changes with that `tx`.
    "ALTER TABLE undo_runs ADD COLUMN source_tx INTEGER;",
    // 4: `tx` and `stmt` lose their declared type. `ANY` in a table that is not STRICT means
    // NUMERIC affinity, which stored a SQLite writer's transaction label '81723' as the integer
    // 81723: not the value captured, nor the one the hash chain recorded. With no declared
    // type a column has no affinity and keeps every value as captured. The table is rebuilt
    // (same ids, same order, same hashes); labels converted before this version stay as they
    // are, and `verify` accepts them when their text form gives the recorded hash.
    "CREATE TABLE changes_v4 (
        id INTEGER PRIMARY KEY,
        source_id INTEGER NOT NULL REFERENCES sources (id),
        seq INTEGER NOT NULL,
        table_id INTEGER NOT NULL REFERENCES tables (id),
        version_id INTEGER NOT NULL REFERENCES table_versions (id),
        op TEXT NOT NULL,
        tx,
        stmt,
        at TEXT,
        login TEXT,
        host TEXT,
        app TEXT,
        client_ip TEXT,
        row_key BLOB NOT NULL,
        prev_key BLOB,
        src_rowid INTEGER,
        before BLOB,
        after BLOB,
        archived_us INTEGER NOT NULL,
        hash BLOB NOT NULL);
    INSERT INTO changes_v4 (id, source_id, seq, table_id, version_id, op, tx, stmt, at, login,
        host, app, client_ip, row_key, prev_key, src_rowid, before, after, archived_us, hash)
      SELECT id, source_id, seq, table_id, version_id, op, tx, stmt, at, login,
        host, app, client_ip, row_key, prev_key, src_rowid, before, after, archived_us, hash
      FROM changes ORDER BY id;
    DROP TABLE changes;
    ALTER TABLE changes_v4 RENAME TO changes;
    CREATE UNIQUE INDEX changes_by_source_seq ON changes (source_id, seq);
    CREATE INDEX changes_by_row ON changes (table_id, row_key);
    CREATE INDEX changes_by_prev_row ON changes (table_id, prev_key) WHERE prev_key IS NOT NULL;
    CREATE INDEX changes_by_time ON changes (at);
    CREATE INDEX changes_by_login ON changes (login) WHERE login IS NOT NULL;
    CREATE INDEX changes_by_tx ON changes (source_id, tx) WHERE tx IS NOT NULL;",
    // 5: the undo items' CHECK constraints compare with `=` instead of `IN (...)`: SQLite
    // evaluates an IN list there through two temporary b-trees opened and closed for every row
    // inserted, which was 40 % of the time an undo of 100,000 changes spent applying.
    "CREATE TABLE undo_items_v5 (
        run_id INTEGER NOT NULL REFERENCES undo_runs (id),
        ordinal INTEGER NOT NULL,
        change_id INTEGER NOT NULL REFERENCES changes (id),
        action TEXT NOT NULL CHECK (action = 'insert' OR action = 'update' OR action = 'delete'),
        outcome TEXT NOT NULL
            CHECK (outcome = 'applied' OR outcome = 'forced' OR outcome = 'skipped'),
        PRIMARY KEY (run_id, ordinal));
    INSERT INTO undo_items_v5 (run_id, ordinal, change_id, action, outcome)
      SELECT run_id, ordinal, change_id, action, outcome FROM undo_items ORDER BY run_id, ordinal;
    DROP TABLE undo_items;
    ALTER TABLE undo_items_v5 RENAME TO undo_items;
    CREATE INDEX undo_items_by_change ON undo_items (change_id);",
    // 6: row keys in the key form of `rowtrail_sql::key` (integers big-endian, so rising ids
    // append to the row index). The keys are recomputed in Rust after this statement runs
    // (`REKEY_VERSION`; see `rekey.rs`): they are derived data outside the hash chain.
    "SELECT 1;",
    // 7: the ledger, a second hash chain over what is not a change: sources and the undo
    // journal's events (see `ledger.rs`). Its first entries record every source and run as they
    // stand at the migration (written in Rust after this statement: `LEDGER_VERSION`).
    "CREATE TABLE IF NOT EXISTS ledger (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        subject INTEGER NOT NULL,
        body TEXT NOT NULL,
        changes_tip INTEGER NOT NULL,
        at_us INTEGER NOT NULL,
        hash BLOB NOT NULL);",
    // 8: the schema log: what the reader learnt of a source table's schema changing (capture
    // upgraded after columns changed, the table renamed or dropped, a new table captured), at
    // which point of the change stream, and which archived changes were captured after the
    // change but before capture followed it. Outside the hash chain: `verify` does not cover
    // it (docs/archive.md). `IF NOT EXISTS`: an archive whose version was set back (as tests
    // make older archives) migrates again.
    "CREATE TABLE IF NOT EXISTS schema_events (
        id INTEGER PRIMARY KEY,
        source_id INTEGER NOT NULL REFERENCES sources (id),
        schema_name TEXT NOT NULL,
        table_name TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind = 'upgraded' OR kind = 'renamed' OR kind = 'dropped'
            OR kind = 'captured'),
        renamed_to TEXT,
        detail TEXT NOT NULL,
        after_seq INTEGER NOT NULL,
        unsure_first_id INTEGER,
        unsure_last_id INTEGER,
        unsure_count INTEGER NOT NULL,
        recorded_us INTEGER NOT NULL,
        UNIQUE (source_id, schema_name, table_name, kind, after_seq));
    CREATE INDEX IF NOT EXISTS schema_events_by_new_name ON schema_events (schema_name, renamed_to)
        WHERE renamed_to IS NOT NULL;",
    // 9: the standby's records. `cuts`: points of a source's change stream below which every
    // transaction is complete, each placed at an archive change id (consumers apply up to a cut,
    // never "the highest seq seen"). `baselines`, `baseline_tables`, `baseline_rows`: snapshots
    // of captured tables, each table with its exact position in the stream (the seq the snapshot
    // reflects). A baseline table's rows count only once its `baseline_tables` row exists; the
    // ledger records each finished table's digest.
    "CREATE TABLE IF NOT EXISTS cuts (
        id INTEGER PRIMARY KEY,
        source_id INTEGER NOT NULL REFERENCES sources (id),
        seq INTEGER NOT NULL,
        change_id INTEGER NOT NULL,
        source_at TEXT,
        archived_us INTEGER NOT NULL);
    CREATE INDEX IF NOT EXISTS cuts_by_change ON cuts (change_id);
    CREATE TABLE IF NOT EXISTS baselines (
        id INTEGER PRIMARY KEY,
        source_id INTEGER NOT NULL REFERENCES sources (id),
        tables TEXT NOT NULL,
        started_us INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS baseline_tables (
        id INTEGER PRIMARY KEY,
        baseline_id INTEGER NOT NULL REFERENCES baselines (id),
        table_id INTEGER NOT NULL REFERENCES tables (id),
        version_id INTEGER NOT NULL REFERENCES table_versions (id),
        seq INTEGER NOT NULL,
        taken_at TEXT NOT NULL,
        row_count INTEGER NOT NULL,
        digest BLOB NOT NULL,
        finished_us INTEGER NOT NULL,
        UNIQUE (baseline_id, table_id));
    CREATE TABLE IF NOT EXISTS baseline_rows (
        baseline_id INTEGER NOT NULL,
        table_id INTEGER NOT NULL,
        ordinal INTEGER NOT NULL,
        src_rowid INTEGER,
        image BLOB NOT NULL,
        PRIMARY KEY (baseline_id, table_id, ordinal)) WITHOUT ROWID;",
    // 10: published positions: how far each change stream (a NATS JetStream stream, named by
    // its server-independent key) has acknowledged the archive's changes, in archive order.
    // A row moves only forward, and only after the stream's server acknowledged every change
    // up to it. Outside the hash chain: it is derived state, like the replica positions.
    "CREATE TABLE IF NOT EXISTS stream_positions (
        stream TEXT PRIMARY KEY,
        subjects TEXT NOT NULL,
        published_id INTEGER NOT NULL,
        published_us INTEGER NOT NULL);",
    // 11: takeovers: every failover and handback, step by step (which primary, which copy took
    // over, the incarnation capture started as there, the last change applied and the
    // data-loss window, who ran it and whether it was forced or automatic). Each state is also
    // a ledger entry, so the hash chain covers who was primary when. The newest finished row
    // names the current primary.
    "CREATE TABLE IF NOT EXISTS takeovers (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind = 'failover' OR kind = 'handback'),
        step TEXT NOT NULL,
        from_incarnation TEXT NOT NULL,
        from_engine TEXT NOT NULL,
        from_location TEXT NOT NULL,
        to_engine TEXT NOT NULL,
        to_location TEXT NOT NULL,
        to_incarnation TEXT,
        last_change_id INTEGER,
        last_seq INTEGER,
        last_at TEXT,
        primary_last_seen_us INTEGER,
        fence TEXT,
        forced INTEGER NOT NULL,
        automatic INTEGER NOT NULL,
        by_user TEXT NOT NULL,
        by_host TEXT NOT NULL,
        started_us INTEGER NOT NULL,
        finished_us INTEGER,
        detail TEXT);",
];

/// The migration after whose SQL every row key is recomputed.
pub const REKEY_VERSION: i64 = 6;

/// The migration after whose SQL the ledger's first entries are written.
pub const LEDGER_VERSION: i64 = 7;

/// The schema version this build writes and reads.
pub const LATEST: i64 = MIGRATIONS.len() as i64;
