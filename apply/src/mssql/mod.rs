//! A SQL Server database as an apply target, through the reader's SQL Server client.
//!
//! Applying, step by step (an undo run is already journaled as `applying`):
//!
//! 1. render the job ([`script`]): the same batch the dry run prints;
//! 2. find out how the server tells a session its transaction id (`CURRENT_TRANSACTION_ID()`,
//!    or `sys.dm_tran_current_transaction` on 2012/2014), outside any transaction;
//! 3. `SET XACT_ABORT ON; BEGIN TRANSACTION`, read the transaction's id, and record it in the
//!    caller's hooks as the job's link ([`crate::Link`]) — before any write, so every write the
//!    capture records with that id is known to be the job's;
//! 4. run the script's batches inside that transaction, one request each (its own
//!    `BEGIN`/`COMMIT` only nest), telling the hooks the progress after each; a guard that does
//!    not hold raises error 50003 and, under `XACT_ABORT`, rolls everything back. Each batch is
//!    bounded by the connection's command timeout: one that runs out is cancelled on the server
//!    and the transaction rolled back ([`ApplyError::Timeout`]);
//! 5. check that exactly the run's transaction is still open, turn the script's outcome rows
//!    into step results and journal them;
//! 6. commit. A commit whose answer is lost leaves the run `applying`: the next undo or redo
//!    settles it from the capture (the run committed exactly when a write with its transaction
//!    id exists, in staging or archived).
//!
//! An error before the commit leaves the source unchanged: the transaction is rolled back, or
//! the server rolls it back when the connection goes.

pub mod errors;
pub mod script;

use std::cell::RefCell;

use rowtrail_reader::failpoint;
use rowtrail_reader::mssql::error::server_error;
use rowtrail_reader::mssql::{catalog, undo, MssqlClient, Settings};
use rowtrail_reader::ReaderError;
use rowtrail_sql::{Dialect, ForeignKey};

use crate::{ApplyError, Hooks, Job, Link, StepResult, Target};

/// A SQL Server database rowtrail writes to.
pub struct MssqlTarget {
    client: RefCell<MssqlClient>,
    location: String,
}

impl MssqlTarget {
    /// Connects (and logs in) now, so an unreachable server or bad settings fail at once,
    /// before anything else is touched.
    pub fn connect(settings: &Settings) -> Result<Self, ApplyError> {
        let client = MssqlClient::connect(settings)?;
        let location = client.location().to_string();
        Ok(Self {
            client: RefCell::new(client),
            location,
        })
    }
}

impl Target for MssqlTarget {
    fn dialect(&self) -> Dialect {
        Dialect::Mssql
    }

    fn location(&self) -> String {
        self.location.clone()
    }

    fn incarnation(&self) -> Result<Option<String>, ApplyError> {
        Ok(catalog::incarnation(&mut self.client.borrow_mut())?)
    }

    fn foreign_keys(&self) -> Result<Vec<ForeignKey>, ApplyError> {
        Ok(undo::foreign_keys(&mut self.client.borrow_mut())?)
    }

    fn link(&self, _tag: &str, recorded_tx: Option<i64>) -> Option<Link> {
        // Without a recorded transaction the job never reached its first write.
        recorded_tx.map(Link::Transaction)
    }

    fn staged_with(&self, link: &Link, since_us: i64) -> Result<bool, ApplyError> {
        match link {
            Link::Transaction(tx) => Ok(undo::staged_in_transaction(
                &mut self.client.borrow_mut(),
                *tx,
                since_us,
            )?),
            // SQL Server's capture records transaction ids, never a job's tag.
            Link::Tag(_) => Ok(false),
        }
    }

    fn first_staged(&self, wanted: &[(Link, i64)]) -> Result<Option<usize>, ApplyError> {
        // One query per staging table for them all, from the earliest window.
        let Some(earliest) = wanted
            .iter()
            .filter(|(l, _)| matches!(l, Link::Transaction(_)))
            .map(|(_, since)| *since)
            .min()
        else {
            return Ok(None);
        };
        let staged = undo::staged_transactions(&mut self.client.borrow_mut(), earliest)?;
        Ok(wanted.iter().position(|(l, since)| match l {
            Link::Transaction(tx) => staged.get(tx).is_some_and(|latest| latest >= since),
            Link::Tag(_) => false,
        }))
    }

    fn script(&self, job: &Job<'_>, header: &str) -> Result<String, ApplyError> {
        Ok(script::render(job, header)?.script.render())
    }

    fn apply(
        &mut self,
        job: &Job<'_>,
        hooks: &mut dyn Hooks,
    ) -> Result<Vec<StepResult>, ApplyError> {
        // The capture records the connection's own login, host and application for the writes.
        let rendered = script::render(job, "rowtrail undo --apply")?;
        let location = self.location.clone();
        let c = self.client.get_mut();
        let how = undo::transaction_id_source(c)?;
        let mut tx = c.transaction()?;
        let id = undo::transaction_id(tx.client(), how)?.ok_or_else(|| ApplyError::CannotLink {
            location: location.clone(),
        })?;
        hooks.link(id)?;
        let batches: Vec<&str> = rendered.batches().collect();
        let mut outcomes = Vec::new();
        for (k, batch) in batches.iter().enumerate() {
            match undo::run_script(tx.client(), batch) {
                Ok(o) => outcomes.extend(o),
                Err(ReaderError::MssqlTimeout {
                    after, cancelled, ..
                }) => {
                    return Err(ApplyError::Timeout {
                        what: job.what.to_string(),
                        location,
                        batch: k + 1,
                        batches: batches.len(),
                        first: if k == 0 {
                            1
                        } else {
                            rendered.steps_through(k - 1) + 1
                        },
                        last: rendered.steps_through(k),
                        seconds: after.as_secs(),
                        cancelled,
                    })
                }
                Err(e) => {
                    return Err(server_error(&e)
                        .and_then(|s| errors::refusal(&s, &rendered, k, job))
                        .unwrap_or(ApplyError::Reader(e)))
                }
            }
            hooks.progress(rendered.steps_through(k));
        }
        let depth = undo::trancount(tx.client())?;
        if depth != 1 {
            // Not the state the script leaves: whether its writes committed is for the
            // capture to tell.
            return Err(ApplyError::CommitUnknown {
                what: format!(
                    "the {} script left {depth} open transaction(s) on {location} instead of 1",
                    job.what
                ),
                cause: None,
            });
        }
        let results = script::results(job, &rendered, &outcomes)?;
        hooks.before_commit(&results)?;
        failpoint::hit("undo-before-source-commit");
        tx.commit().map_err(|e| ApplyError::CommitUnknown {
            what: format!("the commit on {location} failed"),
            cause: Some(Box::new(e)),
        })?;
        failpoint::hit("undo-after-source-commit");
        Ok(results)
    }
}
