//! Where in a statement an error is, and showing it: the statement's line with a caret under
//! the part at fault, the way compilers do.
//!
//! Positions come from sqlparser (our statement extensions, and parse errors whose message
//! ends "at Line: l, Column: c") or from DataFusion's diagnostics (planning errors such as an
//! unknown table or column carry the span of the offending identifier).

use unicode_width::UnicodeWidthStr;

/// A 1-based line and column in a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    pub line: u64,
    pub column: u64,
}

/// A stretch of a statement: from `start` up to, not including, `end` (as sqlparser's spans).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: Location,
    pub end: Location,
}

impl Span {
    /// A span of one character at `line`:`column`.
    pub fn at(line: u64, column: u64) -> Self {
        Span {
            start: Location { line, column },
            end: Location {
                line,
                column: column + 1,
            },
        }
    }

    /// From start and end (line, column) pairs; line 0 means "unknown". An empty span
    /// becomes one character wide.
    fn from_parts(start: (u64, u64), end: (u64, u64)) -> Option<Self> {
        (start.0 > 0).then(|| Span {
            start: Location {
                line: start.0,
                column: start.1,
            },
            end: Location {
                line: end.0.max(start.0),
                column: end.1.max(start.1 + 1),
            },
        })
    }

    /// Convert sqlparser's span.
    pub fn from_sqlparser(span: datafusion::sql::sqlparser::tokenizer::Span) -> Option<Self> {
        Self::from_parts(
            (span.start.line, span.start.column),
            (span.end.line, span.end.column),
        )
    }

    /// Convert a DataFusion diagnostic's span.
    pub fn from_datafusion(span: &datafusion::common::Span) -> Option<Self> {
        Self::from_parts(
            (span.start.line, span.start.column),
            (span.end.line, span.end.column),
        )
    }

    /// The position sqlparser appends to its messages: "… at Line: 1, Column: 8".
    pub fn from_message(message: &str) -> Option<Self> {
        let at = message.rfind("at Line: ")?;
        let rest = &message[at + "at Line: ".len()..];
        let (line, rest) = rest.split_once(", Column: ")?;
        let column: String = rest.chars().take_while(char::is_ascii_digit).collect();
        Some(Span::at(line.trim().parse().ok()?, column.parse().ok()?))
    }
}

/// The statement's line(s) around `span` with carets under it, each line prefixed by its
/// number, ready to print under the error message.
pub fn snippet(statement: &str, span: Span) -> String {
    let lines: Vec<&str> = statement.lines().collect();
    let Some(text) = lines.get(span.start.line.saturating_sub(1) as usize) else {
        return String::new();
    };
    let number = span.start.line.to_string();
    let gutter = " ".repeat(number.len());
    let start = (span.start.column.max(1) - 1) as usize;
    let end = if span.end.line == span.start.line {
        (span.end.column.max(1) as usize - 1).max(start + 1)
    } else {
        text.chars().count().max(start + 1)
    };
    let before: String = text.chars().take(start).collect();
    let marked: String = text.chars().skip(start).take(end - start).collect();
    // Columns count characters; carets line up by display width (Hangul is two cells wide).
    let pad = " ".repeat(before.width());
    let carets = "^".repeat(marked.width().max(1));
    format!("{number} | {text}\n{gutter} | {pad}{carets}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_read_from_parser_messages() {
        assert_eq!(
            Span::from_message("Expected: end of statement, found: x at Line: 2, Column: 14"),
            Some(Span::at(2, 14))
        );
        assert_eq!(Span::from_message("no position here"), None);
    }

    #[test]
    fn carets_sit_under_the_span() {
        let statement = "SELECT *\nFROM ad_perfomance";
        let span = Span {
            start: Location { line: 2, column: 6 },
            end: Location {
                line: 2,
                column: 19,
            },
        };
        assert_eq!(
            snippet(statement, span),
            "2 | FROM ad_perfomance\n  |      ^^^^^^^^^^^^^"
        );
    }

    #[test]
    fn wide_characters_before_the_span_are_counted_by_width() {
        let statement = "SELECT '캠페인' + x";
        let shown = snippet(statement, Span::at(1, 14));
        // "SELECT '캠페인' + " is 13 characters but 16 cells wide.
        assert_eq!(
            shown.lines().nth(1),
            Some(&*format!("  | {}^", " ".repeat(16)))
        );
    }

    #[test]
    fn a_span_past_the_statement_shows_nothing() {
        assert_eq!(snippet("SELECT 1", Span::at(3, 1)), "");
    }
}
