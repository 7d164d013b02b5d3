//! Scripts as sqlcmd runs them: a header, then batches separated by `GO` lines.
//!
//! sqlcmd reads a script line by line. A line that reads `GO` ends a batch, and lines that start
//! with `:` or `!!` or read `RESET`, `ED`, `EXIT` or `QUIT` are sqlcmd commands (`!!` runs a shell
//! command), wherever they are, even inside a bracketed name. `$(name)` is replaced by a
//! scripting variable. So a name that holds such a line or `$(` could split a batch, or make
//! sqlcmd run something: [`check_name`] refuses those names before any script is generated.
//!
//! Some splitters (go-sqlcmd) also follow `'`, `"` and comments, but not `[...]` names, so a
//! quote inside a bracketed name would make them read past a `GO`. Every rendered batch ends,
//! where needed, with a comment line that brings such a splitter back to plain text
//! (`-- '`, `-- "`, `-- */`); to SQL Server it is an ordinary comment.

use std::fmt::Write as _;

/// One batch: the text sqlcmd sends to the server in one go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The SQL text, without the `GO` line.
    pub sql: String,
}

/// A generated script: what it does, and its batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// A short name, e.g. `install`, used for file names (`rowtrail-install.sql`).
    pub name: String,
    /// The header comment lines (without `-- `).
    pub header: Vec<String>,
    /// The batches, in order.
    pub batches: Vec<Batch>,
}

impl Script {
    /// An empty script with a header.
    pub(crate) fn new(name: &str, header: Vec<String>) -> Self {
        Self {
            name: name.to_string(),
            header,
            batches: Vec::new(),
        }
    }

    /// Appends a batch.
    pub(crate) fn push(&mut self, sql: impl Into<String>) {
        self.batches.push(Batch { sql: sql.into() });
    }

    /// The file name a DBA would save this script as.
    pub fn file_name(&self) -> String {
        format!("rowtrail-{}.sql", self.name)
    }

    /// The batches, in order.
    pub fn batches(&self) -> &[Batch] {
        &self.batches
    }

    /// The script as sqlcmd text: the header, then each batch followed by a `GO` line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for line in &self.header {
            let _ = writeln!(out, "-- {}", comment_text(line));
        }
        out.push('\n');
        for b in &self.batches {
            out.push_str(b.sql.trim_end());
            out.push('\n');
            if let Some(fix) = splitter_fix(&b.sql) {
                out.push_str(fix);
                out.push('\n');
            }
            out.push_str("GO\n");
        }
        out
    }
}

/// Text made safe for a `--` comment line: line breaks and other controls become `?`.
pub fn comment_text(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Why `name` cannot appear in a sqlcmd script, if it cannot.
pub fn check_name(name: &str) -> Result<(), &'static str> {
    if name.contains("$(") {
        return Err("it contains \"$(\", which sqlcmd replaces with a scripting variable");
    }
    for line in name.split(['\n', '\r']).skip(1) {
        if is_sqlcmd_command(line) {
            return Err(
                "it contains a line that sqlcmd reads as a command (GO, RESET, ED, EXIT, \
                        QUIT, :command or !!), which would split the script or run something",
            );
        }
    }
    Ok(())
}

/// Whether sqlcmd would take `line` as one of its commands rather than as SQL text.
pub fn is_sqlcmd_command(line: &str) -> bool {
    let t = line.trim_start();
    if t.starts_with(':') || t.starts_with("!!") {
        return true;
    }
    let word: String = t.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
    let after = &t[word.len()..];
    let ends_word =
        after.is_empty() || after.starts_with(|c: char| !c.is_alphanumeric() && c != '_');
    ends_word
        && ["go", "reset", "ed", "exit", "quit"]
            .iter()
            .any(|w| word.eq_ignore_ascii_case(w))
}

/// Whether `line` is a batch separator: `GO`, optionally followed by a count, spaces and a
/// `--` comment.
pub fn is_go_line(line: &str) -> bool {
    let t = line.trim();
    let Some(rest) = t
        .get(..2)
        .filter(|g| g.eq_ignore_ascii_case("go"))
        .map(|_| &t[2..])
    else {
        return false;
    };
    let rest = rest.split("--").next().unwrap_or("").trim();
    rest.is_empty() || rest.chars().all(|c| c.is_ascii_digit())
}

/// Splits sqlcmd text into batches the way sqlcmd does: at lines that read `GO`. Batches that
/// hold only whitespace and comments are dropped, as sqlcmd sends nothing for them.
pub fn split_batches(text: &str) -> Vec<String> {
    let mut batches = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        if is_go_line(line) {
            batches.push(std::mem::take(&mut cur));
        } else {
            cur.push_str(line);
            cur.push('\n');
        }
    }
    batches.push(cur);
    batches.retain(|b| {
        b.lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with("--"))
    });
    batches
}

/// The state a quote-following splitter (which knows `'`, `"`, `--` and `/* */` but not
/// `[...]`) is in at the end of `sql`, and the comment line that returns it to plain text.
fn splitter_fix(sql: &str) -> Option<&'static str> {
    #[derive(PartialEq)]
    enum S {
        Plain,
        Quote(char),
        Block,
    }
    let mut s = S::Plain;
    for line in sql.split('\n') {
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let next = chars.get(i + 1).copied();
            match s {
                S::Quote(q) => {
                    if c == q {
                        if next == Some(q) {
                            i += 1;
                        } else {
                            s = S::Plain;
                        }
                    }
                }
                S::Block => {
                    if c == '*' && next == Some('/') {
                        s = S::Plain;
                        i += 1;
                    }
                }
                S::Plain => {
                    if c == '\'' || c == '"' {
                        s = S::Quote(c);
                    } else if c == '-' && next == Some('-') {
                        break;
                    } else if c == '/' && next == Some('*') {
                        s = S::Block;
                        i += 1;
                    }
                }
            }
            i += 1;
        }
    }
    match s {
        S::Plain => None,
        S::Quote('\'') => Some("-- '"),
        S::Quote(_) => Some("-- \""),
        S::Block => Some("-- */"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_sqlcmd_lines_are_refused() {
        for bad in [
            "a\nGO\nb",
            "a\n  go 5",
            "x\n:r evil.sql",
            "x\n!! rm -rf /",
            "x\nexit",
            "$(USER)",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        for good in ["GO", "a GO", "a\nGOOD", "a\ngo_on", "it's [x]", "ünï\ncode"] {
            assert!(check_name(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn go_lines_and_splitting() {
        assert!(is_go_line("GO") && is_go_line("  go 2 ") && is_go_line("GO -- end"));
        assert!(!is_go_line("GOTO x") && !is_go_line("go]"));
        let b = split_batches("-- header\n\nSELECT 1\nGO\n\nGO\nSELECT 2\ngo\n");
        assert_eq!(
            b,
            vec![
                "-- header\n\nSELECT 1\n".to_string(),
                "SELECT 2\n".to_string()
            ]
        );
    }

    #[test]
    fn batches_that_fool_quote_splitters_get_a_closing_comment() {
        let mut s = Script::new("t", vec!["x".into()]);
        s.push("SELECT 1 AS [it's]");
        s.push("SELECT 1 AS [a/*b]");
        s.push("SELECT N'fine'");
        let text = s.render();
        assert!(text.contains("[it's]\n-- '\nGO\n"), "{text}");
        assert!(text.contains("[a/*b]\n-- */\nGO\n"), "{text}");
        assert!(text.contains("N'fine'\nGO\n"), "{text}");
    }
}
