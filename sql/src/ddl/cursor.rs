//! A cursor over the significant tokens of a T-SQL script (sqlparser's MsSqlDialect tokens,
//! without whitespace and comments), with the line each token starts on.

use sqlparser::tokenizer::Token;

use crate::SqlError;

/// A token and the line it starts on.
pub(super) struct Tok {
    pub(super) token: Token,
    pub(super) line: u64,
}

/// A cursor over the significant tokens of a script.
pub(super) struct Cursor {
    pub(super) toks: Vec<Tok>,
    pub(super) pos: usize,
}

pub(super) fn err(line: u64, message: impl Into<String>) -> SqlError {
    SqlError::BadDdl {
        line,
        message: message.into(),
    }
}

/// Whether `t` is the unquoted keyword `kw` (any case).
pub(super) fn is_kw(t: &Token, kw: &str) -> bool {
    matches!(t, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(kw))
}

impl Cursor {
    pub(super) fn peek(&self) -> Option<&Token> {
        self.toks.get(self.pos).map(|t| &t.token)
    }
    pub(super) fn peek_at(&self, n: usize) -> Option<&Token> {
        self.toks.get(self.pos + n).map(|t| &t.token)
    }
    pub(super) fn line(&self) -> u64 {
        self.toks
            .get(self.pos)
            .or_else(|| self.toks.last())
            .map_or(1, |t| t.line)
    }
    pub(super) fn at_kw(&self, kw: &str) -> bool {
        self.peek().is_some_and(|t| is_kw(t, kw))
    }
    pub(super) fn eat_kw(&mut self, kw: &str) -> bool {
        let yes = self.at_kw(kw);
        if yes {
            self.pos += 1;
        }
        yes
    }
    pub(super) fn eat(&mut self, t: &Token) -> bool {
        let yes = self.peek() == Some(t);
        if yes {
            self.pos += 1;
        }
        yes
    }
    pub(super) fn expect(&mut self, t: &Token, what: &str) -> Result<(), SqlError> {
        if self.eat(t) {
            Ok(())
        } else {
            Err(err(
                self.line(),
                format!("expected {what}, found {}", self.describe()),
            ))
        }
    }
    pub(super) fn expect_kw(&mut self, kw: &str) -> Result<(), SqlError> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(err(
                self.line(),
                format!("expected {kw}, found {}", self.describe()),
            ))
        }
    }
    pub(super) fn describe(&self) -> String {
        match self.peek() {
            None => "the end of the script".into(),
            Some(t) => format!("{t:?}").chars().take(60).collect(),
        }
    }
    /// A name part: a bracketed, double-quoted or plain word.
    pub(super) fn name_part(&mut self) -> Result<String, SqlError> {
        match self.peek() {
            Some(Token::Word(w)) => {
                let v = w.value.clone();
                self.pos += 1;
                Ok(v)
            }
            _ => Err(err(
                self.line(),
                format!("expected a name, found {}", self.describe()),
            )),
        }
    }
    /// A dotted name: `a`, `a.b`, `db.a.b` (parts in order).
    pub(super) fn object_name(&mut self) -> Result<Vec<String>, SqlError> {
        let mut parts = vec![self.name_part()?];
        while self.eat(&Token::Period) {
            parts.push(self.name_part()?);
        }
        Ok(parts)
    }
    /// Skips a balanced parenthesised group starting at `(`.
    pub(super) fn skip_group(&mut self) -> Result<(), SqlError> {
        let line = self.line();
        self.expect(&Token::LParen, "(")?;
        let mut depth = 1;
        while depth > 0 {
            match self.peek() {
                None => return Err(err(line, "a parenthesis opened here is never closed")),
                Some(Token::LParen) => depth += 1,
                Some(Token::RParen) => depth -= 1,
                _ => {}
            }
            self.pos += 1;
        }
        Ok(())
    }
}
