//! What the shell's line editor knows about SQL: when a statement is complete (it ends with
//! `;`, so Enter before that continues on a new line), completion of keywords, table, mart and
//! column names (and file names after `\i` and `\o`), and syntax colours.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::highlight::{CmdKind, Highlighter};
use rustyline::hint::Hinter;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Helper};

/// SQL keywords offered by completion and coloured by the highlighter, with tidemark's own.
const KEYWORDS: &[&str] = &[
    "ALL",
    "ANALYZE",
    "AND",
    "AS",
    "ASC",
    "BETWEEN",
    "BY",
    "CASE",
    "CAST",
    "COLUMNS",
    "COUNT",
    "CROSS",
    "CURRENT_DATE",
    "DATE",
    "DAYS",
    "DESC",
    "DESCRIBE",
    "DISTINCT",
    "DRY",
    "ELSE",
    "END",
    "EXCEPT",
    "EXISTS",
    "EXPLAIN",
    "FALSE",
    "FILTER",
    "FROM",
    "FULL",
    "GROUP",
    "HAVING",
    "HISTORY",
    "HOURS",
    "ILIKE",
    "IN",
    "INNER",
    "INTERSECT",
    "INTERVAL",
    "IS",
    "JOIN",
    "LEFT",
    "LIKE",
    "LIMIT",
    "MART",
    "NOT",
    "NULL",
    "NULLS",
    "OF",
    "OFFSET",
    "ON",
    "OPTIMIZE",
    "OR",
    "ORDER",
    "OUTER",
    "OVER",
    "PARTITION",
    "PARTITIONS",
    "REFRESH",
    "RETAIN",
    "RIGHT",
    "ROWS",
    "RUN",
    "SELECT",
    "SHOW",
    "TABLE",
    "TABLES",
    "THEN",
    "TIMESTAMP",
    "TRUE",
    "UNION",
    "USING",
    "VACUUM",
    "VALUES",
    "VERSION",
    "WHEN",
    "WHERE",
    "WINDOW",
    "WITH",
];

/// After these words a table or mart name comes next, so completion offers those first.
const BEFORE_TABLE: &[&str] = &[
    "FROM",
    "JOIN",
    "TABLE",
    "HISTORY",
    "PARTITIONS",
    "MART",
    "OPTIMIZE",
    "VACUUM",
    "DESCRIBE",
    "\\d",
];

/// The names completion offers, refreshed as tables and marts come and go.
#[derive(Debug, Default, Clone)]
pub struct Vocabulary {
    pub tables: BTreeSet<String>,
    pub columns: BTreeSet<String>,
}

/// The line editor's helper.
pub struct SqlHelper {
    vocabulary: Arc<RwLock<Vocabulary>>,
    colours: bool,
    files: FilenameCompleter,
}

impl SqlHelper {
    pub fn new(vocabulary: Arc<RwLock<Vocabulary>>, colours: bool) -> Self {
        SqlHelper {
            vocabulary,
            colours,
            files: FilenameCompleter::new(),
        }
    }

    /// Candidates for the word being typed: `prefix`, after `previous`.
    fn candidates(&self, prefix: &str, previous: Option<&str>) -> Vec<String> {
        let lower = prefix.to_lowercase();
        let matches = |name: &str| name.to_lowercase().starts_with(&lower);
        let vocabulary = self.vocabulary.read().expect("vocabulary lock");
        let tables = vocabulary.tables.iter().filter(|t| matches(t)).cloned();
        let wants_table =
            previous.is_some_and(|p| BEFORE_TABLE.iter().any(|w| w.eq_ignore_ascii_case(p)));
        if wants_table {
            return tables.collect();
        }
        // Keywords follow the case being typed: `sel` completes to `select`.
        let lowercase = prefix.chars().any(char::is_lowercase);
        let keywords = KEYWORDS.iter().filter(|k| matches(k)).map(|k| {
            if lowercase {
                k.to_lowercase()
            } else {
                k.to_string()
            }
        });
        let columns = vocabulary.columns.iter().filter(|c| matches(c)).cloned();
        let mut all: Vec<String> = columns.chain(tables).chain(keywords).collect();
        all.dedup();
        all
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '.'
}

impl Completer for SqlHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        let trimmed = before.trim_start();
        if trimmed.starts_with("\\i ") || trimmed.starts_with("\\o ") {
            return self.files.complete(line, pos, ctx);
        }
        let start = before
            .char_indices()
            .rev()
            .take_while(|(_, c)| is_word_char(*c))
            .last()
            .map_or(pos, |(i, _)| i);
        let prefix = &before[start..];
        let previous = before[..start].split_whitespace().last();
        if prefix.is_empty() && previous.is_none() {
            return Ok((pos, Vec::new()));
        }
        let pairs = self
            .candidates(prefix, previous)
            .into_iter()
            .map(|c| Pair {
                display: c.clone(),
                replacement: c,
            })
            .collect();
        Ok((start, pairs))
    }
}

impl Hinter for SqlHelper {
    type Hint = String;
}

impl Validator for SqlHelper {
    fn validate(&self, ctx: &mut ValidationContext<'_>) -> rustyline::Result<ValidationResult> {
        let input = ctx.input();
        if input.trim_start().starts_with('\\') || sql::script::is_complete(input) {
            Ok(ValidationResult::Valid(None))
        } else {
            Ok(ValidationResult::Incomplete)
        }
    }
}

impl Highlighter for SqlHelper {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        if self.colours {
            Cow::Owned(highlight_sql(line))
        } else {
            Cow::Borrowed(line)
        }
    }

    fn highlight_char(&self, _line: &str, _pos: usize, _kind: CmdKind) -> bool {
        self.colours
    }
}

impl Helper for SqlHelper {}

const KEYWORD: &str = "\x1b[1;34m";
const STRING: &str = "\x1b[32m";
const NUMBER: &str = "\x1b[33m";
const COMMENT: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

/// `line` with ANSI colours on keywords, strings, numbers and comments; the visible text is
/// unchanged (the editor requires the same display width).
pub fn highlight_sql(line: &str) -> String {
    let mut out = String::with_capacity(line.len() * 2);
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    let paint = |out: &mut String, colour: &str, text: &[char]| {
        out.push_str(colour);
        out.extend(text);
        out.push_str(RESET);
    };
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c == '\'' {
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                i += 1;
            }
            i = (i + 1).min(chars.len());
            paint(&mut out, STRING, &chars[start..i]);
        } else if c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            paint(&mut out, COMMENT, &chars[start..i]);
        } else if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            paint(&mut out, NUMBER, &chars[start..i]);
        } else if c.is_alphabetic() || c == '_' {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            if KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(&word)) {
                paint(&mut out, KEYWORD, &chars[start..i]);
            } else {
                out.push_str(&word);
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustyline::history::DefaultHistory;

    fn helper() -> SqlHelper {
        let vocabulary = Vocabulary {
            tables: ["ad_performance", "channel_daily", "tidemark.slices"]
                .map(String::from)
                .into(),
            columns: ["account_id", "campaign_id", "clicks"]
                .map(String::from)
                .into(),
        };
        SqlHelper::new(Arc::new(RwLock::new(vocabulary)), true)
    }

    fn complete(line: &str) -> (usize, Vec<String>) {
        let history = DefaultHistory::new();
        let ctx = Context::new(&history);
        let (start, pairs) = helper().complete(line, line.len(), &ctx).unwrap();
        (start, pairs.into_iter().map(|p| p.replacement).collect())
    }

    #[test]
    fn table_names_complete_after_from() {
        assert_eq!(
            complete("SELECT * FROM ad_p"),
            (14, vec!["ad_performance".to_string()])
        );
        assert_eq!(
            complete("select * from c"),
            (14, vec!["channel_daily".to_string()])
        );
        assert_eq!(
            complete("SHOW PARTITIONS tidemark.s"),
            (16, vec!["tidemark.slices".to_string()])
        );
    }

    #[test]
    fn keywords_and_columns_complete_elsewhere_in_the_case_typed() {
        assert_eq!(complete("sel"), (0, vec!["select".to_string()]));
        assert_eq!(complete("SEL"), (0, vec!["SELECT".to_string()]));
        assert_eq!(complete("SELECT CA").1, vec!["campaign_id", "CASE", "CAST"]);
        assert_eq!(
            complete("SELECT c"),
            (
                7,
                [
                    "campaign_id",
                    "clicks",
                    "channel_daily",
                    "case",
                    "cast",
                    "columns",
                    "count",
                    "cross",
                    "current_date"
                ]
                .map(String::from)
                .to_vec()
            )
        );
    }

    #[test]
    fn highlighting_keeps_the_text() {
        let line = "SELECT 'a' , 12 FROM t -- note";
        let coloured = highlight_sql(line);
        assert!(coloured.contains("\x1b[1;34mSELECT\x1b[0m"));
        assert!(coloured.contains("\x1b[32m'a'\x1b[0m"));
        let plain: String = coloured
            .replace(KEYWORD, "")
            .replace(STRING, "")
            .replace(NUMBER, "")
            .replace(COMMENT, "")
            .replace(RESET, "");
        assert_eq!(plain, line);
    }
}
