//! A SQL Server source as an undo target, through the reader's SQL Server client.
//!
//! Applying, step by step (the run is already journaled as `applying`):
//!
//! 1. render the plan ([`super::mssql_script`]): the same batch the dry run prints;
//! 2. find out how the server tells a session its transaction id (`CURRENT_TRANSACTION_ID()`,
//!    or `sys.dm_tran_current_transaction` on 2012/2014), outside any transaction;
//! 3. `SET XACT_ABORT ON; BEGIN TRANSACTION`, read the transaction's id, and record it in the
//!    journal as the run's link ([`crate::link`]) — before any write, so every write the capture
//!    records with that id is known to be the run's;
//! 4. run the script inside that transaction (its own `BEGIN`/`COMMIT` only nest); a guard that
//!    does not hold raises error 50003 and, under `XACT_ABORT`, rolls everything back;
//! 5. check that exactly the run's transaction is still open, turn the script's outcome rows
//!    into step results and journal them;
//! 6. commit. A commit whose answer is lost leaves the run `applying`: the next undo or redo
//!    settles it from the capture (the run committed exactly when a write with its transaction
//!    id exists, in staging or archived).
//!
//! An error before the commit leaves the source unchanged: the transaction is rolled back, or
//! the server rolls it back when the connection goes.

use std::cell::RefCell;

use rowtrail_reader::archive::UndoRun;
use rowtrail_reader::failpoint;
use rowtrail_reader::mssql::error::server_error;
use rowtrail_reader::mssql::{catalog, undo, MssqlClient, Settings};
use rowtrail_reader::ReaderError;
use rowtrail_sql::Dialect;

use super::{mssql_errors, mssql_keys, mssql_script, Journal, UndoTarget};
use crate::apply::{Label, StepResult};
use crate::conflict::ForeignKey;
use crate::link::Link;
use crate::plan::Plan;
use crate::RestoreError;

/// A SQL Server database with rowtrail capture installed.
pub struct MssqlTarget {
    client: RefCell<MssqlClient>,
    location: String,
}

impl MssqlTarget {
    /// Connects (and logs in) now, so an unreachable server or bad settings fail at once,
    /// before anything else is touched.
    pub fn connect(settings: &Settings) -> Result<Self, RestoreError> {
        let client = MssqlClient::connect(settings)?;
        let location = client.location().to_string();
        Ok(Self {
            client: RefCell::new(client),
            location,
        })
    }
}

impl UndoTarget for MssqlTarget {
    fn dialect(&self) -> Dialect {
        Dialect::Mssql
    }

    fn location(&self) -> String {
        self.location.clone()
    }

    fn incarnation(&self) -> Result<String, RestoreError> {
        let mut c = self.client.borrow_mut();
        catalog::incarnation(&mut c)?.ok_or_else(|| {
            RestoreError::Reader(ReaderError::NotInstalled {
                location: self.location.clone(),
            })
        })
    }

    fn foreign_keys(&self) -> Result<Vec<ForeignKey>, RestoreError> {
        let mut c = self.client.borrow_mut();
        let rows = undo::foreign_keys(&mut c)?;
        let tables: Vec<_> = catalog::registry(&mut c)?
            .into_iter()
            .map(|t| t.table)
            .collect();
        Ok(mssql_keys::foreign_keys(&rows, &tables))
    }

    fn link(&self, _run: &UndoRun, recorded_tx: Option<i64>) -> Option<Link> {
        // Without a recorded transaction the run never reached its first write.
        recorded_tx.map(Link::Transaction)
    }

    fn staged_with(&self, link: &Link) -> Result<bool, RestoreError> {
        match link {
            Link::Transaction(tx) => Ok(undo::staged_in_transaction(
                &mut self.client.borrow_mut(),
                *tx,
            )?),
            // SQL Server's capture records transaction ids, never a run's tag.
            Link::Tag(_) => Ok(false),
        }
    }

    fn script(
        &self,
        plan: &Plan,
        fks: &[ForeignKey],
        header: &str,
    ) -> Result<String, RestoreError> {
        Ok(mssql_script::render(plan, fks, header)?.script.render())
    }

    fn apply(
        &mut self,
        plan: &Plan,
        fks: &[ForeignKey],
        _label: &Label,
        journal: &mut dyn Journal,
    ) -> Result<Vec<StepResult>, RestoreError> {
        // The capture records the connection's own login, host and application for the writes.
        let rendered = mssql_script::render(plan, fks, "rowtrail undo --apply")?;
        let location = self.location.clone();
        let c = self.client.get_mut();
        let how = undo::transaction_id_source(c)?;
        let mut tx = c.transaction()?;
        let id =
            undo::transaction_id(tx.client(), how)?.ok_or_else(|| RestoreError::CannotLink {
                location: location.clone(),
            })?;
        journal.link(id)?;
        let outcomes = match undo::run_script(tx.client(), rendered.batch()) {
            Ok(o) => o,
            Err(e) => {
                return Err(server_error(&e)
                    .and_then(|s| mssql_errors::refusal(&s, &rendered, plan))
                    .unwrap_or(RestoreError::Reader(e)))
            }
        };
        let depth = undo::trancount(tx.client())?;
        if depth != 1 {
            // Not the state the script leaves: whether its writes committed is for the
            // capture to tell.
            return Err(RestoreError::CommitUnknown {
                what: format!(
                    "the undo script left {depth} open transaction(s) on {location} instead of 1"
                ),
                cause: None,
            });
        }
        let results = mssql_script::results(plan, &rendered, &outcomes)?;
        journal.before_commit(&results)?;
        failpoint::hit("undo-before-source-commit");
        tx.commit().map_err(|e| RestoreError::CommitUnknown {
            what: format!("the commit on {location} failed"),
            cause: Some(Box::new(e)),
        })?;
        failpoint::hit("undo-after-source-commit");
        Ok(results)
    }
}
