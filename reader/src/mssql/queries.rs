//! Every statement the reader sends to SQL Server besides generated scripts, in one place, so
//! that a test can hand them all to Microsoft's parser. Names reach them only quoted
//! ([`rowtrail_sql::Ident::mssql`]); values only as parameters (`@P1`, …).

use rowtrail_sql::mssql::{objects, SCHEMA};
use rowtrail_sql::{staging, Ident};

use crate::source::CapturedTable;

/// `[rowtrail].[name]` of a shared object.
pub fn shared(name: &str) -> String {
    format!(
        "{}.{}",
        Ident::new(SCHEMA).expect("valid").mssql(),
        Ident::new(name).expect("valid").mssql()
    )
}

/// `[rowtrail].[staging]`.
pub fn staging_name(staging: &Ident) -> String {
    format!(
        "{}.{}",
        Ident::new(SCHEMA).expect("valid").mssql(),
        staging.mssql()
    )
}

fn col(name: &str) -> String {
    Ident::new(name).expect("valid").mssql().to_string()
}

/// 1 when the table `@P1` exists.
pub const TABLE_EXISTS: &str = "SELECT CASE WHEN OBJECT_ID(@P1, N'U') IS NULL THEN 0 ELSE 1 END";

/// The incarnation, the recovery fork recorded at install and the database's current one,
/// when the meta table (`@P1`) exists (see [`super::catalog::effective_incarnation`]).
pub fn incarnation() -> String {
    format!(
        "IF OBJECT_ID(@P1, N'U') IS NOT NULL SELECT i.[value], {fork}, {current} FROM {meta} AS i \
         WHERE i.[key] = N'incarnation'",
        meta = shared(objects::META),
        fork = recorded_fork(""),
        current = CURRENT_FORK,
    )
}

/// The same, the meta rows read under a shared lock held to the end of the transaction (so
/// capture cannot be uninstalled under a delete).
pub fn incarnation_locked() -> String {
    format!(
        "SELECT i.[value], {fork}, {current} FROM {meta} AS i WITH (HOLDLOCK) \
         WHERE i.[key] = N'incarnation'",
        meta = shared(objects::META),
        fork = recorded_fork(" WITH (HOLDLOCK)"),
        current = CURRENT_FORK,
    )
}

fn recorded_fork(hint: &str) -> String {
    format!(
        "(SELECT f.[value] FROM {} AS f{hint} WHERE f.[key] = N'recovery_fork')",
        shared(objects::META)
    )
}

/// The database's current recovery fork: a restore (from a backup or a database snapshot)
/// starts a new one. Visible to every login holding VIEW ANY DATABASE (granted to public by
/// default); NULL otherwise, and then no fork change is seen.
const CURRENT_FORK: &str = "(SELECT CONVERT(nvarchar(36), recovery_fork_guid) \
     FROM sys.database_recovery_status WHERE database_id = DB_ID())";

/// The registry: staging names and definitions.
pub fn registry() -> String {
    format!(
        "SELECT [staging_name], [definition] FROM {} ORDER BY [table_schema], [table_name]",
        shared(objects::REGISTRY)
    )
}

/// Every definition of every captured table, with the first seq staged under it.
pub fn versions() -> String {
    format!(
        "SELECT [table_schema], [table_name], [first_seq], [definition] FROM {} \
         ORDER BY [table_schema], [table_name], [first_seq]",
        shared(objects::VERSIONS)
    )
}

/// One row per column of `OBJECT_ID(@P1)`, as [`rowtrail_sql::mssql::catalog::CatalogColumn`]
/// reads it.
/// The system CLR types (hierarchyid, geometry, geography) share a `system_type_id` whose
/// `TYPE_NAME` is NULL, so an assembly type is named by its own `sys.types.name`; the
/// `GENERATED ALWAYS` kind comes from `COLUMNPROPERTY`, which is NULL (read as 0) before SQL
/// Server 2016, where `sys.columns.generated_always_type` does not exist.
pub const COLUMNS: &str = "SELECT c.column_id, c.name, t.name, \
     CASE WHEN t.is_assembly_type = 1 AND t.is_user_defined = 0 THEN t.name ELSE TYPE_NAME(c.system_type_id) END, \
     t.is_user_defined, t.is_assembly_type, c.max_length, c.precision, c.scale, c.is_nullable, \
     c.is_identity, c.is_computed, CONVERT(bit, ISNULL(cc.is_persisted, 0)), c.is_sparse, \
     c.is_column_set, c.is_filestream, c.collation_name, \
     CONVERT(tinyint, ISNULL(COLUMNPROPERTY(c.object_id, c.name, 'GeneratedAlwaysType'), 0)) \
     FROM sys.columns AS c \
     JOIN sys.types AS t ON t.user_type_id = c.user_type_id \
     LEFT JOIN sys.computed_columns AS cc ON cc.object_id = c.object_id AND cc.column_id = c.column_id \
     WHERE c.object_id = OBJECT_ID(@P1) ORDER BY c.column_id";

/// The primary key's column ids of `OBJECT_ID(@P1)`, in key order.
pub const PRIMARY_KEY: &str = "SELECT ic.column_id FROM sys.indexes AS i \
     JOIN sys.index_columns AS ic ON ic.object_id = i.object_id AND ic.index_id = i.index_id \
     WHERE i.object_id = OBJECT_ID(@P1) AND i.is_primary_key = 1 AND ic.key_ordinal > 0 \
     ORDER BY ic.key_ordinal";

/// User tables outside schema `@P1` (rowtrail's).
pub const USER_TABLES: &str = "SELECT s.name, t.name FROM sys.tables AS t \
     JOIN sys.schemas AS s ON s.schema_id = t.schema_id \
     WHERE t.is_ms_shipped = 0 AND s.name <> @P1 ORDER BY s.name, t.name";

/// The trigger `@P1` on the table `@P2`: disabled, its text, whether it is on that table.
pub const TRIGGER: &str = "SELECT tr.is_disabled, OBJECT_DEFINITION(tr.object_id), \
     CASE WHEN tr.parent_id = OBJECT_ID(@P2) THEN 1 ELSE 0 END \
     FROM sys.triggers AS tr WHERE tr.object_id = OBJECT_ID(@P1, N'TR')";

/// The server's `nested triggers` setting (0: a trigger's own writes fire no further AFTER
/// trigger, so another trigger's update of a captured table is not captured).
pub const NESTED_TRIGGERS: &str = "SELECT CONVERT(int, value_in_use) FROM sys.configurations \
     WHERE name = N'nested triggers'";

/// The INSTEAD OF triggers on the table `OBJECT_ID(@P1)`.
pub const INSTEAD_OF_TRIGGERS: &str = "SELECT name FROM sys.triggers \
     WHERE parent_id = OBJECT_ID(@P1) AND is_instead_of_trigger = 1 ORDER BY name";

/// The sequence `@P1`'s current value: the probe.
pub const PROBE: &str = "SELECT CONVERT(bigint, current_value) FROM sys.sequences \
     WHERE object_id = OBJECT_ID(@P1, N'SO')";

/// The transactions open in this database (see [`super::barrier`]; needs `VIEW SERVER STATE`
/// or its equivalents), leaving out system transactions, the session's own, and those waiting
/// on a lock this session holds: a staging delete waiting on a baseline's lock holds no seq,
/// and waiting for it to end would wait for ever.
pub const OPEN_TRANSACTIONS: &str = "SELECT transaction_id FROM sys.dm_tran_database_transactions \
     WHERE database_id = DB_ID() AND database_transaction_type <> 3 \
     AND transaction_id NOT IN (SELECT transaction_id FROM sys.dm_tran_current_transaction) \
     AND transaction_id NOT IN (SELECT r.transaction_id FROM sys.dm_exec_requests AS r \
     WHERE r.blocking_session_id = @@SPID)";

/// How many of the `n` transactions `@P1`… are still open in this database.
pub fn still_open(n: usize) -> String {
    let params: Vec<String> = (1..=n.max(1)).map(|i| format!("@P{i}")).collect();
    format!(
        "SELECT COUNT_BIG(*) FROM sys.dm_tran_database_transactions \
         WHERE database_id = DB_ID() AND transaction_id IN ({})",
        params.join(", ")
    )
}

/// How many images at or below seq `@P1` the staging tables hold, read with shared locks
/// (`READCOMMITTEDLOCK`, also under `READ_COMMITTED_SNAPSHOT`): the read waits for a writer
/// still finishing its commit instead of skipping its rows, so the count includes every settled
/// image. `None` without staging tables.
pub fn settled_count(stagings: &[&Ident]) -> Option<String> {
    if stagings.is_empty() {
        return None;
    }
    let parts: Vec<String> = stagings
        .iter()
        .map(|s| {
            format!(
                "SELECT COUNT_BIG(*) AS n FROM {} WITH (READCOMMITTEDLOCK) WHERE {} <= @P1",
                staging_name(s),
                col(staging::COL_SEQ)
            )
        })
        .collect();
    Some(format!(
        "SELECT CONVERT(bigint, SUM(c.n)) FROM ({}) AS c",
        parts.join(" UNION ALL ")
    ))
}

/// The database's row versioning: `ALLOW_SNAPSHOT_ISOLATION` is on (state 1) and whether
/// `READ_COMMITTED_SNAPSHOT` is.
pub const ROW_VERSIONING: &str = "SELECT CONVERT(int, snapshot_isolation_state), \
     CONVERT(int, is_read_committed_snapshot_on) FROM sys.databases WHERE database_id = DB_ID()";

/// The application lock a baseline holds while staging must keep every image (exclusive, for
/// the session) and a staging delete takes first (shared, for its transaction).
pub const BASELINE_LOCK: &str = "rowtrail_baseline";

/// Takes the baseline's lock: no staging delete starts until it is released, and one running
/// is waited for. A second baseline waits at most 30 s, then fails with error 50010.
pub fn hold_baseline_lock() -> String {
    format!(
        "DECLARE @r int; EXEC @r = sys.sp_getapplock @Resource = N'{BASELINE_LOCK}', \
         @LockMode = N'Exclusive', @LockOwner = N'Session', @LockTimeout = 30000; \
         IF @r < 0 THROW 50010, N'rowtrail: another baseline of this database is being taken (or \
         a staging delete does not end); try again when it is done', 1;"
    )
}

/// Releases the baseline's lock (when the session holds it).
pub fn release_baseline_lock() -> String {
    format!(
        "IF APPLOCK_MODE(N'public', N'{BASELINE_LOCK}', N'Session') <> N'NoLock' \
         EXEC sys.sp_releaseapplock @Resource = N'{BASELINE_LOCK}', @LockOwner = N'Session';"
    )
}

/// The first statement of a staging delete's transaction: waits while a baseline needs staging
/// to keep its images (the command timeout bounds the wait).
pub fn staging_delete_gate() -> String {
    format!(
        "DECLARE @r int; EXEC @r = sys.sp_getapplock @Resource = N'{BASELINE_LOCK}', \
         @LockMode = N'Shared', @LockOwner = N'Transaction', @LockTimeout = -1; \
         IF @r < 0 THROW 50011, N'rowtrail: the staging delete could not wait for a baseline', 1;"
    )
}

/// Starts a snapshot transaction (`ALLOW_SNAPSHOT_ISOLATION`): every read in it sees the
/// database as of its first read.
pub const BEGIN_SNAPSHOT: &str =
    "SET TRANSACTION ISOLATION LEVEL SNAPSHOT; SET XACT_ABORT ON; BEGIN TRANSACTION;";
/// Ends it (nothing was written) and puts the session back to `READ COMMITTED`.
pub const END_SNAPSHOT: &str =
    "IF @@TRANCOUNT > 0 COMMIT TRANSACTION; SET TRANSACTION ISOLATION LEVEL READ COMMITTED;";

/// How many images a staging table holds.
pub fn count(staging: &Ident) -> String {
    format!("SELECT COUNT_BIG(*) FROM {}", staging_name(staging))
}

/// Every image of a staging table (uninstall with `--discard-staged`).
pub fn discard(staging: &Ident) -> String {
    format!("DELETE FROM {}", staging_name(staging))
}

/// How many images a staging table holds and the age of the oldest in microseconds.
/// (`DATEDIFF` in milliseconds overflows after 24 days, and `DATEDIFF_BIG` needs 2016.)
pub fn backlog(staging: &Ident) -> String {
    let time = col(staging::COL_TIME);
    format!(
        "SELECT COUNT_BIG(*), (SELECT TOP (1) CASE WHEN DATEDIFF(hour, {time}, SYSUTCDATETIME()) < 500 \
         THEN CONVERT(bigint, DATEDIFF(millisecond, {time}, SYSUTCDATETIME())) * 1000 \
         ELSE CONVERT(bigint, DATEDIFF(second, {time}, SYSUTCDATETIME())) * 1000000 END \
         FROM {stg} ORDER BY {seq}) FROM {stg}",
        stg = staging_name(staging),
        seq = col(staging::COL_SEQ),
    )
}

/// The oldest `@P1` images of one staging table: metadata, then the columns read exactly.
pub fn staging_select(t: &CapturedTable) -> Result<String, crate::ReaderError> {
    let captured = rowtrail_sql::mssql::Captured::new(&t.table)?;
    let mut cols: Vec<String> = staging::METADATA_COLUMNS.iter().map(|m| col(m)).collect();
    cols.extend(
        captured
            .table
            .columns
            .iter()
            .zip(&captured.staging_types)
            .map(|(c, ty)| super::convert::select_expr(c, ty)),
    );
    // Each sql_variant's base type, after the table's columns.
    cols.extend(
        super::convert::variant_columns(&captured.table)
            .into_iter()
            .map(|i| super::convert::variant_type_expr(&captured.table.columns[i])),
    );
    Ok(format!(
        "SELECT TOP (@P1) {} FROM {} WITH (READPAST) ORDER BY {}",
        cols.join(", "),
        staging_name(&t.staging),
        col(staging::COL_SEQ)
    ))
}

/// [`staging_select`] with every text column read as its UTF-16 bytes
/// ([`super::convert::raw_select_expr`]): the fallback for a batch the driver cannot decode.
pub fn staging_select_raw(t: &CapturedTable) -> Result<String, crate::ReaderError> {
    let captured = rowtrail_sql::mssql::Captured::new(&t.table)?;
    let mut cols: Vec<String> = staging::METADATA_COLUMNS.iter().map(|m| col(m)).collect();
    cols.extend(
        captured
            .table
            .columns
            .iter()
            .zip(&captured.staging_types)
            .map(|(c, ty)| super::convert::raw_select_expr(c, ty)),
    );
    // Each sql_variant's base type, after the table's columns.
    cols.extend(
        super::convert::variant_columns(&captured.table)
            .into_iter()
            .map(|i| super::convert::variant_type_expr(&captured.table.columns[i])),
    );
    Ok(format!(
        "SELECT TOP (@P1) {} FROM {} WITH (READPAST) ORDER BY {}",
        cols.join(", "),
        staging_name(&t.staging),
        col(staging::COL_SEQ)
    ))
}

/// A staging select ([`staging_select`], [`staging_select_raw`]) limited to the seqs at or
/// below `@P2`: a batch over several staging tables first reads their seqs alone, then each
/// table's rows up to the batch's last seq, so rows (and their LOBs) that the merge would drop
/// are never fetched.
pub fn bounded(select: &str) -> String {
    let order = format!(" ORDER BY {}", col(staging::COL_SEQ));
    let body = select.strip_suffix(&order).unwrap_or(select);
    format!("{body} WHERE {} <= @P2{order}", col(staging::COL_SEQ))
}

/// The parameterised DELETE of `n` keys from one staging table.
pub fn staging_delete(staging: &Ident, n: usize) -> String {
    let params: Vec<String> = (1..=n).map(|i| format!("@P{i}")).collect();
    format!(
        "DELETE FROM {} WHERE {} IN ({})",
        staging_name(staging),
        col(staging::COL_SEQ),
        params.join(", ")
    )
}

/// Every column of every foreign key, in key order: the key's id, the column's position, the
/// referencing (child) table's schema, name and column, and the referenced (parent) table's.
/// (In `sys.foreign_keys`, `parent_object_id` is the referencing table.)
pub const FOREIGN_KEYS: &str = "SELECT fk.object_id, fkc.constraint_column_id, \
     cs.name, ct.name, cc.name, ps.name, pt.name, pc.name \
     FROM sys.foreign_keys AS fk \
     JOIN sys.foreign_key_columns AS fkc ON fkc.constraint_object_id = fk.object_id \
     JOIN sys.tables AS ct ON ct.object_id = fk.parent_object_id \
     JOIN sys.schemas AS cs ON cs.schema_id = ct.schema_id \
     JOIN sys.columns AS cc ON cc.object_id = fkc.parent_object_id AND cc.column_id = fkc.parent_column_id \
     JOIN sys.tables AS pt ON pt.object_id = fk.referenced_object_id \
     JOIN sys.schemas AS ps ON ps.schema_id = pt.schema_id \
     JOIN sys.columns AS pc ON pc.object_id = fkc.referenced_object_id AND pc.column_id = fkc.referenced_column_id \
     ORDER BY fk.object_id, fkc.constraint_column_id";

/// The session's transaction id, as the capture triggers record it (SQL Server 2016 and later;
/// needs no permission).
pub const CURRENT_TRANSACTION_ID: &str = "SELECT CONVERT(bigint, CURRENT_TRANSACTION_ID());";

/// The session's transaction id on SQL Server 2012 and 2014, read as the triggers generated for
/// them read it: only with `VIEW SERVER STATE` (no row without it).
pub const CURRENT_TRANSACTION_ID_2012: &str =
    "IF HAS_PERMS_BY_NAME(NULL, NULL, N'VIEW SERVER STATE') = 1 \
     SELECT CONVERT(bigint, transaction_id) FROM sys.dm_tran_current_transaction;";

/// How deep the session's transactions are nested.
pub const TRANCOUNT: &str = "SELECT CONVERT(int, @@TRANCOUNT);";

/// 1 when a staging table holds an image written in transaction `@P1` at or after the UTC time
/// `@P2` (ISO-8601 text; the server numbers transactions anew after a restart, so an earlier
/// image with that number is another transaction's). A plain read: it waits for a writer still
/// deciding, rather than skipping its rows.
pub fn staged_in_transaction(staging: &Ident) -> String {
    format!(
        "SELECT TOP (1) 1 FROM {} WHERE {} = @P1 AND {} >= CONVERT(datetime2(7), @P2, 126)",
        staging_name(staging),
        col(staging::COL_TX),
        col(staging::COL_TIME)
    )
}

/// Each transaction id a staging table holds images of, stamped at or after `@P1` (ISO-8601
/// text), with the latest such stamp as ISO-8601 text.
pub fn staged_transactions(staging: &Ident) -> String {
    format!(
        "SELECT {tx}, CONVERT(nvarchar(30), MAX({time}), 126) FROM {t} \
         WHERE {tx} IS NOT NULL AND {time} >= CONVERT(datetime2(7), @P1, 126) GROUP BY {tx}",
        t = staging_name(staging),
        tx = col(staging::COL_TX),
        time = col(staging::COL_TIME)
    )
}

/// Starts the reader's transactions.
pub const BEGIN: &str = "SET XACT_ABORT ON; BEGIN TRANSACTION;";
/// Commits them.
pub const COMMIT: &str = "COMMIT TRANSACTION;";
/// Rolls back whatever is open.
pub const ROLLBACK: &str = "IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION;";
/// After a failed script: roll back and run again.
pub const AFTER_FAILED_SCRIPT: &str = "IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION; SET NOEXEC OFF;";

/// Every statement above, for the tables `tables` (for validation).
pub fn all(tables: &[CapturedTable]) -> Result<Vec<String>, crate::ReaderError> {
    let mut out: Vec<String> = [
        TABLE_EXISTS,
        COLUMNS,
        PRIMARY_KEY,
        USER_TABLES,
        TRIGGER,
        PROBE,
        BEGIN,
        COMMIT,
        ROLLBACK,
        AFTER_FAILED_SCRIPT,
        FOREIGN_KEYS,
        CURRENT_TRANSACTION_ID,
        CURRENT_TRANSACTION_ID_2012,
        TRANCOUNT,
        NESTED_TRIGGERS,
        INSTEAD_OF_TRIGGERS,
        OPEN_TRANSACTIONS,
        ROW_VERSIONING,
        BEGIN_SNAPSHOT,
        END_SNAPSHOT,
        super::output_clause::FROM_QUERY_STORE,
        super::output_clause::FROM_PLAN_CACHE,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    out.extend([
        incarnation(),
        incarnation_locked(),
        registry(),
        versions(),
        still_open(3),
        hold_baseline_lock(),
        release_baseline_lock(),
        staging_delete_gate(),
    ]);
    let stagings: Vec<&Ident> = tables.iter().map(|t| &t.staging).collect();
    out.extend(settled_count(&stagings));
    for t in tables {
        out.push(staging_select(t)?);
        out.push(staging_select_raw(t)?);
        out.push(bounded(&staging_select(t)?));
        out.push(bounded(&staging_select_raw(t)?));
        out.push(staging_delete(&t.staging, 3));
        out.push(count(&t.staging));
        out.push(discard(&t.staging));
        out.push(backlog(&t.staging));
        out.push(staged_in_transaction(&t.staging));
        out.push(staged_transactions(&t.staging));
        out.extend(super::quarantine::one_row_selects(t)?);
        if !t.table.primary_key.is_empty() {
            out.extend(super::baseline::sample_chunks(t)?);
        }
    }
    Ok(out)
}
