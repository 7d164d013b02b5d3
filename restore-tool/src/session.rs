//! An undo or redo session: the source reached first, then (to apply) the archive's undo lock,
//! the archive opened for writing and any run an interrupted process left pending settled; then
//! plans made, shown and applied. The command line only prints what a session returns.

use std::path::Path;

use rowtrail_apply::{StepResult, Target};
use rowtrail_reader::archive::{Archive, ArchiveOptions, RunState, UndoRun};
use rowtrail_reader::lock::ArchiveLock;
use rowtrail_reader::source::SourceSpec;

use crate::plan::{script_header, Mode};
use crate::run::{self, Actor, Prepared};
use crate::scope::Scope;
use crate::RestoreError;

/// An open session on one archive and the source it records.
pub struct Session {
    archive: Archive,
    source: Box<dyn Target>,
    _lock: Option<ArchiveLock>,
    settled: Vec<(i64, bool)>,
}

/// The lock that serialises undo and redo runs on `archive`: `<archive>.undo.lock`.
fn undo_lock(archive: &Path) -> Result<ArchiveLock, RestoreError> {
    let mut name = archive.file_name().unwrap_or_default().to_os_string();
    name.push(".undo");
    ArchiveLock::acquire(&archive.with_file_name(name))
        .map_err(|e| RestoreError::Busy(e.to_string()))
}

/// Reaches the source `spec` names before anything else is touched.
fn reach(spec: &SourceSpec) -> Result<Box<dyn Target>, RestoreError> {
    rowtrail_apply::open(spec).map_err(|cause| RestoreError::Unreachable {
        engine: match spec {
            SourceSpec::Sqlite { .. } => "SQLite",
            SourceSpec::Mssql(_) => "SQL Server",
        },
        location: spec.location(),
        cause: Box::new(cause),
    })
}

impl Session {
    /// A session that only plans (dry runs, scripts): the archive is opened read-only and
    /// nothing is locked or written.
    pub fn dry_run(archive: &Path, spec: &SourceSpec) -> Result<Self, RestoreError> {
        let source = reach(spec)?;
        Ok(Self {
            archive: Archive::open_read_only(archive)?,
            source,
            _lock: None,
            settled: Vec::new(),
        })
    }

    /// A session that applies: the source reached, the undo lock taken, the archive opened for
    /// writing, and every run an interrupted process left `applying` settled.
    pub fn to_apply(
        archive: &Path,
        options: &ArchiveOptions,
        spec: &SourceSpec,
    ) -> Result<Self, RestoreError> {
        let source = reach(spec)?;
        let lock = undo_lock(archive)?;
        let archive = Archive::open(archive, options)?;
        let settled = run::settle_pending(&archive, source.as_ref())?;
        Ok(Self {
            archive,
            source,
            _lock: Some(lock),
            settled,
        })
    }

    /// The runs settled when the session opened, and whether each had committed.
    pub fn settled(&self) -> &[(i64, bool)] {
        &self.settled
    }

    /// The archive.
    pub fn archive(&self) -> &Archive {
        &self.archive
    }

    /// Whether an interrupted undo or redo is still pending (an apply session settles it).
    pub fn pending(&self) -> Result<bool, RestoreError> {
        Ok(!self.archive.runs(Some(RunState::Applying))?.is_empty())
    }

    /// Plans undoing `scope`.
    pub fn prepare_undo(&self, scope: &Scope, mode: Mode) -> Result<Prepared, RestoreError> {
        run::prepare_undo(&self.archive, self.source.as_ref(), scope, mode)
    }

    /// Plans re-applying what undo run `run` undid.
    pub fn prepare_redo(&self, run: i64, mode: Mode) -> Result<Prepared, RestoreError> {
        run::prepare_redo(&self.archive, self.source.as_ref(), run, mode)
    }

    /// Plans re-applying, to a source restored from an old backup, what the archive holds of
    /// incarnation `from` after seq `after` (see [`run::prepare_reapply`]).
    pub fn prepare_reapply(
        &self,
        from: &str,
        after: i64,
        mode: Mode,
    ) -> Result<Prepared, RestoreError> {
        run::prepare_reapply(&self.archive, self.source.as_ref(), from, after, mode)
    }

    /// The plan as the exact script `--apply` runs (or a DBA runs by hand), with its header.
    pub fn script(&self, prepared: &Prepared) -> Result<String, RestoreError> {
        let plan = &prepared.plan;
        let header = script_header(plan, &prepared.incarnation, self.source.dialect());
        let comments = plan.comments();
        let job = plan.job(&comments, &prepared.fks, None);
        Ok(self.source.script(&job, &header)?)
    }

    /// Applies a prepared plan and journals it (see [`run::execute`]), telling `progress` now
    /// and then how many steps have run.
    pub fn execute(
        &mut self,
        prepared: &Prepared,
        actor: &Actor,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Option<(UndoRun, Vec<StepResult>)>, RestoreError> {
        run::execute_with_progress(
            &self.archive,
            self.source.as_mut(),
            prepared,
            actor,
            progress,
        )
    }
}
