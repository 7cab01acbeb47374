//! `?` placeholders, as JDBC's `PreparedStatement` and ADBC's qmark paramstyle send them,
//! numbered in order of appearance into DataFusion's `$1`, `$2`, …, so a statement binds the
//! same whichever style the client speaks. `?N` (SQLite's numbered form) becomes `$N`.
//!
//! The statement is tokenized (sqlparser, the dialect tidemark parses with), so a `?` inside a
//! string, a quoted identifier or a comment is left alone; only placeholder tokens change, at
//! their exact place in the original text.

use std::borrow::Cow;

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Location, Token, Tokenizer};

use crate::Error;

/// `sql` with every `?` placeholder numbered as `$n`; unchanged (borrowed) when it has none.
/// Mixing `?` with `$n` in one statement is refused: the numbering would be ambiguous.
pub fn number_question_marks(sql: &str) -> Result<Cow<'_, str>, Error> {
    if !sql.contains('?') {
        return Ok(Cow::Borrowed(sql));
    }
    // A statement the tokenizer rejects is left for the parser to report with its position.
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize_with_location() else {
        return Ok(Cow::Borrowed(sql));
    };
    let placeholders: Vec<(&str, Location)> = tokens
        .iter()
        .filter_map(|t| match &t.token {
            Token::Placeholder(p) => Some((p.as_str(), t.span.start)),
            _ => None,
        })
        .collect();
    let questions = placeholders
        .iter()
        .filter(|(p, _)| p.starts_with('?'))
        .count();
    if questions == 0 {
        return Ok(Cow::Borrowed(sql));
    }
    if questions != placeholders.len() {
        return Err(Error::Statement(
            "the statement mixes ? and $n placeholders: use one style (? are numbered in order)"
                .into(),
        ));
    }
    let lines = line_starts(sql);
    let mut out = String::with_capacity(sql.len() + questions * 2);
    let mut copied = 0;
    let mut next = 1;
    for (placeholder, at) in placeholders {
        let start = byte_offset(sql, &lines, at);
        out.push_str(&sql[copied..start]);
        match &placeholder[1..] {
            "" => {
                out.push_str(&format!("${next}"));
                next += 1;
            }
            number => out.push_str(&format!("${number}")),
        }
        copied = start + placeholder.len();
    }
    out.push_str(&sql[copied..]);
    Ok(Cow::Owned(out))
}

/// Byte offsets where each line of `text` starts.
fn line_starts(text: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect()
}

/// The byte offset of a 1-based (line, column in characters) location.
fn byte_offset(text: &str, lines: &[usize], at: Location) -> usize {
    let line_start = lines[(at.line as usize).saturating_sub(1).min(lines.len() - 1)];
    text[line_start..]
        .char_indices()
        .nth((at.column as usize).saturating_sub(1))
        .map_or(text.len(), |(i, _)| line_start + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbered(sql: &str) -> String {
        number_question_marks(sql).unwrap().into_owned()
    }

    #[test]
    fn question_marks_are_numbered_in_order() {
        assert_eq!(numbered("SELECT ? + 1"), "SELECT $1 + 1");
        assert_eq!(
            numbered("SELECT a FROM t WHERE b = ? AND c IN (?, ?)"),
            "SELECT a FROM t WHERE b = $1 AND c IN ($2, $3)"
        );
        assert_eq!(numbered("SELECT ?2, ?1"), "SELECT $2, $1");
    }

    #[test]
    fn strings_identifiers_and_comments_keep_their_question_marks() {
        assert_eq!(
            numbered("SELECT '?', \"a?\", ? -- why?\n, /* ? */ ?"),
            "SELECT '?', \"a?\", $1 -- why?\n, /* ? */ $2"
        );
        // Multi-byte text before a placeholder, on a later line.
        assert_eq!(
            numbered("SELECT '캠페인'\n, '광고', ? AS p"),
            "SELECT '캠페인'\n, '광고', $1 AS p"
        );
    }

    #[test]
    fn statements_without_question_marks_are_untouched() {
        assert!(matches!(
            number_question_marks("SELECT $1").unwrap(),
            Cow::Borrowed(_)
        ));
        assert!(matches!(
            number_question_marks("SELECT 'why?'").unwrap(),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn mixing_styles_is_refused() {
        let err = number_question_marks("SELECT ?, $2")
            .unwrap_err()
            .to_string();
        assert!(err.contains("mixes ? and $n"), "{err}");
    }
}
