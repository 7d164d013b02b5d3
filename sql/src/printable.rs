//! Text as rowtrail prints it for people: names, logins, hosts, applications and labels come
//! from the source (a login can hold a line break, a host an escape sequence), so every
//! human-readable output shows their control characters as escapes. A forged audit line or a
//! sequence that rewrites the auditor's terminal cannot get through.

use std::borrow::Cow;

/// `text` with every control character written as an escape (`\n`, `\t`, `\u{1b}`, …); the
/// rest, printable Unicode included, as it is. Borrows when there is nothing to escape.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs_escape(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Control characters (C0, DEL, C1) and the line and paragraph separators some terminals and
/// editors break lines at.
fn needs_escape(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert!(matches!(printable("alice"), Cow::Borrowed("alice")));
        assert_eq!(printable("naïve 😀"), "naïve 😀");
        assert_eq!(
            printable("bob\n  42  2026-01-01  staff  delete  mallory"),
            "bob\\n  42  2026-01-01  staff  delete  mallory"
        );
        assert_eq!(printable("\u{1b}[2J\u{7}"), "\\u{1b}[2J\\u{7}");
        assert_eq!(printable("a\u{85}b\u{2028}c\r"), "a\\u{85}b\\u{2028}c\\r");
    }
}
