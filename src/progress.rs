//! Progress of long work (draining a backlog; later install, undo, a baseline copy), drawn with
//! indicatif on stderr when stderr is a terminal and the user did not ask for quiet. Anywhere
//! else (cron, a pipe, a log file, tests, `--quiet`) it draws nothing, so the command's output
//! stays what scripts read.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress bar that may be hidden; every method is a no-op when it is.
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// Whether progress should be drawn: stderr is a terminal and `quiet` was not asked for.
    pub fn wanted(quiet: bool) -> bool {
        !quiet && std::io::stderr().is_terminal()
    }

    /// A bar of `total` `unit`s (a spinner counting them when the total is unknown), drawn only
    /// when `shown`; `what` names the work ("archiving").
    pub fn new(shown: bool, what: &str, unit: &str, total: Option<u64>) -> Self {
        if !shown {
            return Self { bar: None };
        }
        let (bar, template) = match total {
            Some(n) => (
                ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()),
                format!(
                    "{what} {{bar:30}} {{human_pos}}/{{human_len}} {unit} \
                     ({{per_sec}}, {{eta}} left) {{msg}}"
                ),
            ),
            None => (
                ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
                format!("{what} {{spinner}} {{human_pos}} {unit} ({{per_sec}}) {{msg}}"),
            ),
        };
        let style = ProgressStyle::with_template(&template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(200));
        Self { bar: Some(bar) }
    }

    /// Whether the bar is drawn.
    pub fn is_shown(&self) -> bool {
        self.bar.is_some()
    }

    /// Sets how many units are done.
    pub fn set(&self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        }
    }

    /// Sets the text after the counts (never row values).
    pub fn message(&self, text: String) {
        if let Some(bar) = &self.bar {
            bar.set_message(text);
        }
    }

    /// Removes the bar: the command's own summary follows.
    pub fn finish(mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // On an error path too: the error message must not be drawn over.
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Progress;

    #[test]
    fn a_hidden_bar_draws_nothing_and_takes_every_call() {
        let p = Progress::new(false, "archiving", "images", Some(10));
        assert!(!p.is_shown());
        p.set(5);
        p.message("x".into());
        p.finish();
        assert!(!Progress::wanted(true), "quiet always wins");
    }
}
