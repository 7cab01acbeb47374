//! tidemark's statements beyond DataFusion's SQL, parsed with sqlparser's parser (so quoting,
//! comments and positions in errors behave as in any other statement):
//!
//! - `SHOW TABLES`: the tables, marts and system tables statements can read, with their kind
//! - `DESCRIBE HISTORY t [LIMIT n]`: the table's commits, newest first
//! - `SHOW PARTITIONS t`: each partition's files, rows and bytes
//! - `REFRESH MART m [FULL]`: refresh a mart and the marts that read it
//! - `OPTIMIZE [TABLE] t`: compact the table's small files and checkpoint
//! - `VACUUM [TABLE] t [RETAIN n HOURS|DAYS] [DRY RUN]`: delete files no version within the
//!   retention (default 7 days, the minimum) references
//!
//! A statement that does not start like one of these is left to time travel and DataFusion.

use std::time::Duration;

use datafusion::sql::sqlparser::ast::ObjectNamePart;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};

use crate::diagnostics::Span;
use crate::Error;

/// Commits `DESCRIBE HISTORY` shows when no LIMIT is given.
pub const DEFAULT_HISTORY: usize = 100;

/// A table named in a statement, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    pub name: String,
    pub span: Option<Span>,
}

/// A parsed tidemark statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extension {
    ShowTables,
    DescribeHistory {
        table: TableName,
        limit: usize,
    },
    ShowPartitions {
        table: TableName,
    },
    RefreshMart {
        mart: TableName,
        full: bool,
    },
    Optimize {
        table: TableName,
    },
    Vacuum {
        table: TableName,
        retention: Option<Duration>,
        dry_run: bool,
    },
}

/// Parse `statement` if it is a tidemark statement; `Ok(None)` when it is not.
pub fn parse(statement: &str) -> Result<Option<Extension>, Error> {
    let dialect = GenericDialect {};
    let parser = Parser::new(&dialect)
        .try_with_sql(statement)
        .map_err(|e| syntax(&e))?;
    let mut p = Statement {
        parser,
        text: statement,
    };
    let extension = if p.words(&["DESCRIBE", "HISTORY"]) {
        let table = p.table()?;
        let limit = if p.word("LIMIT") {
            match p.number()? {
                0 => return Err(p.error_here("LIMIT takes a positive number")),
                n => n as usize,
            }
        } else {
            DEFAULT_HISTORY
        };
        Extension::DescribeHistory { table, limit }
    } else if p.words(&["SHOW", "TABLES"]) {
        if !p.at_end() {
            // `SHOW TABLES FROM …` and the like are DataFusion's.
            return Ok(None);
        }
        Extension::ShowTables
    } else if p.words(&["SHOW", "PARTITIONS"]) {
        Extension::ShowPartitions { table: p.table()? }
    } else if p.words(&["REFRESH", "MART"]) {
        let mart = p.table()?;
        let full = p.word("FULL");
        Extension::RefreshMart { mart, full }
    } else if p.word("OPTIMIZE") {
        p.word("TABLE");
        Extension::Optimize { table: p.table()? }
    } else if p.word("VACUUM") {
        p.word("TABLE");
        let table = p.table()?;
        let retention = if p.word("RETAIN") {
            let n = p.number()?;
            let unit = if p.word("HOURS") || p.word("HOUR") {
                3600
            } else if p.word("DAYS") || p.word("DAY") {
                24 * 3600
            } else {
                return Err(p.error_here("expected HOURS or DAYS after RETAIN n"));
            };
            Some(Duration::from_secs(n.saturating_mul(unit)))
        } else {
            None
        };
        let dry_run = p.words(&["DRY", "RUN"]);
        Extension::Vacuum {
            table,
            retention,
            dry_run,
        }
    } else {
        return Ok(None);
    };
    p.end(&extension)?;
    Ok(Some(extension))
}

fn syntax(e: &ParserError) -> Error {
    let message = e.to_string();
    let at = Span::from_message(&message);
    Error::Syntax { message, at }
}

/// A statement being parsed.
struct Statement<'a> {
    parser: Parser<'a>,
    text: &'a str,
}

impl Statement<'_> {
    fn is_word(token: &TokenWithSpan, word: &str) -> bool {
        matches!(&token.token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
    }

    /// Consume `word` if it comes next.
    fn word(&mut self, word: &str) -> bool {
        let next = Self::is_word(self.parser.peek_token_ref(), word);
        if next {
            self.parser.next_token();
        }
        next
    }

    /// Consume `words` if they all come next, else nothing.
    fn words(&mut self, words: &[&str]) -> bool {
        let all = words
            .iter()
            .enumerate()
            .all(|(i, w)| Self::is_word(&self.parser.peek_nth_token(i), w));
        if all {
            for _ in words {
                self.parser.next_token();
            }
        }
        all
    }

    /// An error pointing at the next token.
    fn error_here(&self, message: &str) -> Error {
        let token = self.parser.peek_token();
        let (found, at) = match &token.token {
            Token::EOF => ("the end of the statement".to_string(), self.end_span()),
            other => (format!("'{other}'"), Span::from_sqlparser(token.span)),
        };
        Error::Syntax {
            message: format!("{message}, found {found}"),
            at,
        }
    }

    /// Just past the statement's last character (ignoring trailing blanks and `;`).
    fn end_span(&self) -> Option<Span> {
        let text = self.text.trim_end().trim_end_matches(';').trim_end();
        let line = text.lines().count().max(1) as u64;
        let column = text.lines().last().map_or(0, |l| l.chars().count()) as u64 + 1;
        Some(Span::at(line, column))
    }

    /// A table or mart name (`t`, `"T"`, `public.t`, `tidemark.slices`).
    fn table(&mut self) -> Result<TableName, Error> {
        if matches!(
            self.parser.peek_token_ref().token,
            Token::EOF | Token::SemiColon
        ) {
            return Err(self.error_here("expected a table name"));
        }
        let name = self
            .parser
            .parse_object_name(false)
            .map_err(|e| syntax(&e))?;
        let idents: Vec<_> = name.0.iter().filter_map(ObjectNamePart::as_ident).collect();
        let text = |i: &datafusion::sql::sqlparser::ast::Ident| {
            if i.quote_style.is_some() {
                i.value.clone()
            } else {
                i.value.to_ascii_lowercase()
            }
        };
        let span = match (idents.first(), idents.last()) {
            (Some(first), Some(last)) => Span::from_sqlparser(first.span.union(&last.span)),
            _ => None,
        };
        let parts: Vec<String> = idents.iter().map(|i| text(i)).collect();
        let name = match parts.as_slice() {
            [name] => name.clone(),
            [schema, name] if schema == "public" => name.clone(),
            [schema, name] if schema == "tidemark" => name.clone(),
            [_, schema, name] if schema == "public" || schema == "tidemark" => name.clone(),
            _ => {
                return Err(Error::Syntax {
                    message: format!("'{name}' is not a table of this warehouse: name a table or mart, optionally as public.<name>"),
                    at: span,
                })
            }
        };
        Ok(TableName { name, span })
    }

    fn number(&mut self) -> Result<u64, Error> {
        if !matches!(self.parser.peek_token_ref().token, Token::Number(..)) {
            return Err(self.error_here("expected a number"));
        }
        self.parser.parse_literal_uint().map_err(|e| syntax(&e))
    }

    /// Whether nothing but `;` is left.
    fn at_end(&self) -> bool {
        let mut n = 0;
        loop {
            match self.parser.peek_nth_token(n).token {
                Token::SemiColon => n += 1,
                Token::EOF => return true,
                _ => return false,
            }
        }
    }

    /// Only `;` may follow a complete statement.
    fn end(&mut self, extension: &Extension) -> Result<(), Error> {
        while self.parser.peek_token_ref().token == Token::SemiColon {
            self.parser.next_token();
        }
        if self.parser.peek_token_ref().token == Token::EOF {
            return Ok(());
        }
        Err(self.error_here(&format!("expected the end of {}", extension.usage())))
    }
}

impl Extension {
    /// The statement's syntax, for errors.
    pub fn usage(&self) -> &'static str {
        match self {
            Extension::ShowTables => "SHOW TABLES",
            Extension::DescribeHistory { .. } => "DESCRIBE HISTORY <table> [LIMIT n]",
            Extension::ShowPartitions { .. } => "SHOW PARTITIONS <table>",
            Extension::RefreshMart { .. } => "REFRESH MART <mart> [FULL]",
            Extension::Optimize { .. } => "OPTIMIZE [TABLE] <table>",
            Extension::Vacuum { .. } => "VACUUM [TABLE] <table> [RETAIN n HOURS|DAYS] [DRY RUN]",
        }
    }

    /// The table or mart the statement is about.
    pub fn table(&self) -> Option<&TableName> {
        match self {
            Extension::ShowTables => None,
            Extension::DescribeHistory { table, .. }
            | Extension::ShowPartitions { table }
            | Extension::Optimize { table }
            | Extension::Vacuum { table, .. } => Some(table),
            Extension::RefreshMart { mart, .. } => Some(mart),
        }
    }

    /// Whether the statement changes the warehouse (for permission checks).
    pub fn writes(&self) -> bool {
        matches!(
            self,
            Extension::RefreshMart { .. } | Extension::Optimize { .. } | Extension::Vacuum { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(sql: &str) -> Extension {
        parse(sql).unwrap().unwrap()
    }

    fn syntax_error(sql: &str) -> (String, Option<Span>) {
        match parse(sql) {
            Err(Error::Syntax { message, at }) => (message, at),
            other => panic!("{sql}: expected a syntax error, got {other:?}"),
        }
    }

    #[test]
    fn statements_are_recognised() {
        let history = parsed("describe history Ad_Performance;");
        assert_eq!(
            history,
            Extension::DescribeHistory {
                table: TableName {
                    name: "ad_performance".into(),
                    span: Some(Span {
                        start: crate::diagnostics::Location {
                            line: 1,
                            column: 18
                        },
                        end: crate::diagnostics::Location {
                            line: 1,
                            column: 32
                        },
                    }),
                },
                limit: DEFAULT_HISTORY,
            }
        );
        assert!(matches!(
            parsed("DESCRIBE HISTORY t LIMIT 5"),
            Extension::DescribeHistory { limit: 5, .. }
        ));
        assert_eq!(
            parsed("SHOW PARTITIONS public.t").table().unwrap().name,
            "t"
        );
        assert_eq!(
            parsed("SHOW PARTITIONS tidemark.slices")
                .table()
                .unwrap()
                .name,
            "slices"
        );
        assert_eq!(
            parsed("SHOW PARTITIONS \"Mixed\"").table().unwrap().name,
            "Mixed"
        );
        assert!(matches!(
            parsed("REFRESH MART daily FULL"),
            Extension::RefreshMart { full: true, .. }
        ));
        assert!(matches!(
            parsed("refresh mart daily -- a comment\n;"),
            Extension::RefreshMart { full: false, .. }
        ));
        assert_eq!(
            parsed("OPTIMIZE TABLE ad_performance")
                .table()
                .unwrap()
                .name,
            "ad_performance"
        );
        assert_eq!(
            parsed("VACUUM t RETAIN 10 DAYS DRY RUN"),
            Extension::Vacuum {
                table: TableName {
                    name: "t".into(),
                    span: Some(Span::at(1, 8)),
                },
                retention: Some(Duration::from_secs(10 * 24 * 3600)),
                dry_run: true,
            }
        );
        assert_eq!(parsed("show tables;"), Extension::ShowTables);
        assert!(matches!(
            parsed("VACUUM t"),
            Extension::Vacuum {
                retention: None,
                dry_run: false,
                ..
            }
        ));
    }

    #[test]
    fn other_statements_are_left_alone() {
        for sql in [
            "SELECT 1",
            "DESCRIBE t",
            "SHOW COLUMNS FROM t",
            "SHOW TABLES FROM x",
            "WITH history AS (SELECT 1) SELECT * FROM history",
        ] {
            assert_eq!(parse(sql).unwrap(), None, "{sql}");
        }
    }

    #[test]
    fn mistakes_point_at_the_token() {
        let (message, at) = syntax_error("SHOW PARTITIONS");
        assert!(message.contains("expected a table name"), "{message}");
        assert_eq!(at, Some(Span::at(1, 16)), "just past the statement");
        let (message, at) = syntax_error("DESCRIBE HISTORY t LIMIT x");
        assert!(
            message.contains("expected a number, found 'x'"),
            "{message}"
        );
        assert_eq!(at, Some(Span::at(1, 26)));
        let (message, at) = syntax_error("REFRESH MART daily PLEASE");
        assert!(message.contains("REFRESH MART <mart> [FULL]"), "{message}");
        assert_eq!(at.map(|s| s.start.column), Some(20));
        let (message, _) = syntax_error("VACUUM t RETAIN 3 WEEKS");
        assert!(message.contains("HOURS or DAYS"), "{message}");
        let (message, _) = syntax_error("DESCRIBE HISTORY t LIMIT 0");
        assert!(message.contains("positive"), "{message}");
        let (message, _) = syntax_error("OPTIMIZE other_catalog.x.t");
        assert!(
            message.contains("not a table of this warehouse"),
            "{message}"
        );
    }
}
