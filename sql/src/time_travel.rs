//! Time travel in SQL: `SELECT … FROM t VERSION AS OF 3` and `FROM t TIMESTAMP AS OF
//! '2026-11-01 10:00:00'`. The statement is parsed with sqlparser (with table versioning on);
//! each versioned table is opened at that version, registered in the session's `asof` catalog
//! under a name that carries the version, and the statement is rewritten to read it there
//! (keeping the table's own name as its alias, so `t.column` still works). DataFusion then
//! plans the rewritten statement like any other.

use std::ops::ControlFlow;

use chrono::{DateTime, NaiveDateTime, Utc};
use datafusion::sql::sqlparser::ast::{
    Expr, Ident, ObjectName, ObjectNamePart, Statement, TableAlias, TableFactor, TableVersion,
    Value, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::{Dialect, GenericDialect};
use datafusion::sql::sqlparser::parser::Parser;
use engine::WarehouseSession;

use crate::Error;

/// The generic dialect with `VERSION AS OF` / `TIMESTAMP AS OF` after table names.
#[derive(Debug)]
struct VersionedDialect(GenericDialect);

impl Dialect for VersionedDialect {
    fn is_identifier_start(&self, ch: char) -> bool {
        self.0.is_identifier_start(ch)
    }
    fn is_identifier_part(&self, ch: char) -> bool {
        self.0.is_identifier_part(ch)
    }
    fn supports_table_versioning(&self) -> bool {
        true
    }
}

/// Which version of a table a statement asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum AsOf {
    Version(u64),
    Timestamp(DateTime<Utc>),
}

impl AsOf {
    fn suffix(&self) -> String {
        match self {
            AsOf::Version(v) => format!("v{v}"),
            AsOf::Timestamp(t) => format!("t{}", t.timestamp_micros()),
        }
    }
}

/// A table read at a version, and the name it is registered under.
#[derive(Debug, Clone, PartialEq)]
pub struct Pinned {
    pub table: String,
    pub as_of: AsOf,
    pub registered_as: String,
}

fn literal_text(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => Some(s.clone()),
            Value::Number(n, _) => Some(n.to_string()),
            _ => None,
        },
        _ => None,
    }
}

fn parse_as_of(table: &str, version: &TableVersion) -> Result<AsOf, String> {
    match version {
        TableVersion::VersionAsOf(e) => literal_text(e)
            .and_then(|t| t.parse::<u64>().ok())
            .map(AsOf::Version)
            .ok_or_else(|| format!("{table} VERSION AS OF needs a version number, not {e}")),
        TableVersion::TimestampAsOf(e) | TableVersion::ForSystemTimeAsOf(e) => {
            let text = literal_text(e).ok_or_else(|| {
                format!("{table} TIMESTAMP AS OF needs a quoted time like '2026-11-01 10:00:00', not {e}")
            })?;
            parse_instant(&text).map(AsOf::Timestamp).ok_or_else(|| {
                format!("{table} TIMESTAMP AS OF '{text}' is not a time like '2026-11-01 10:00:00' or RFC 3339 (UTC unless an offset is given)")
            })
        }
        other => Err(format!(
            "{table}: {other} is not supported; use VERSION AS OF n or TIMESTAMP AS OF '…'"
        )),
    }
}

/// An instant in RFC 3339, or `YYYY-MM-DD[ HH:MM[:SS]]` in UTC.
pub fn parse_instant(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.to_utc());
    }
    for format in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc());
        }
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc())
}

/// Rewrites versioned table factors and records what they ask for.
struct Rewriter {
    pinned: Vec<Pinned>,
    error: Option<String>,
}

impl VisitorMut for Rewriter {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        let TableFactor::Table {
            name,
            alias,
            version,
            ..
        } = factor
        else {
            return ControlFlow::Continue(());
        };
        let Some(asked) = version.take() else {
            return ControlFlow::Continue(());
        };
        let table = name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .map(|i| i.value.to_ascii_lowercase())
            .unwrap_or_default();
        let as_of = match parse_as_of(&table, &asked) {
            Ok(a) => a,
            Err(e) => {
                self.error = Some(e);
                return ControlFlow::Break(());
            }
        };
        let registered_as = format!("{table}@{}", as_of.suffix());
        *name = ObjectName(vec![
            ObjectNamePart::Identifier(Ident::new(crate::ASOF_CATALOG)),
            ObjectNamePart::Identifier(Ident::new("public")),
            ObjectNamePart::Identifier(Ident::with_quote('"', &registered_as)),
        ]);
        if alias.is_none() {
            *alias = Some(TableAlias {
                explicit: true,
                name: Ident::new(&table),
                columns: vec![],
                at: None,
            });
        }
        self.pinned.push(Pinned {
            table,
            as_of,
            registered_as,
        });
        ControlFlow::Continue(())
    }
}

/// If `sql` reads any table `AS OF` a version: the rewritten statement and the tables to
/// pin. `None` when it has no time travel (then it runs unchanged). The error is the
/// message to show.
pub fn rewrite(sql: &str) -> Result<Option<(String, Vec<Pinned>)>, String> {
    let upper = sql.to_ascii_uppercase();
    if !upper.contains(" AS OF") {
        return Ok(None);
    }
    let mut statements = Parser::new(&VersionedDialect(GenericDialect {}))
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| format!("SQL error: {e}"))?;
    let mut rewriter = Rewriter {
        pinned: Vec::new(),
        error: None,
    };
    for statement in &mut statements {
        let _ = statement.visit(&mut rewriter);
    }
    if let Some(e) = rewriter.error {
        return Err(e);
    }
    if rewriter.pinned.is_empty() {
        return Ok(None);
    }
    let text = statements
        .iter()
        .map(Statement::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    Ok(Some((text, rewriter.pinned)))
}

/// Register the pinned tables in the session's `asof` catalog.
pub async fn register(session: &WarehouseSession, pinned: &[Pinned]) -> Result<(), Error> {
    for p in pinned {
        let provider = match p.as_of {
            AsOf::Version(v) => session.table_at_version(&p.table, v).await?,
            AsOf::Timestamp(t) => session.table_at_time(&p.table, t).await?,
        };
        session.register_pinned(&p.registered_as, provider)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versioned_tables_are_renamed_and_keep_their_name_as_alias() {
        let (sql, pinned) = rewrite(
            "SELECT p.date, count(*) FROM ad_performance VERSION AS OF 3 AS p JOIN meta_insights TIMESTAMP AS OF '2026-11-01 10:00' ON true GROUP BY 1",
        )
        .unwrap()
        .unwrap();
        assert_eq!(pinned[0].as_of, AsOf::Version(3));
        assert_eq!(pinned[0].registered_as, "ad_performance@v3");
        assert_eq!(
            pinned[1].as_of,
            AsOf::Timestamp(parse_instant("2026-11-01T10:00:00Z").unwrap())
        );
        assert!(
            sql.contains("asof.public.\"ad_performance@v3\" AS p"),
            "{sql}"
        );
        assert!(sql.contains("AS meta_insights"), "{sql}");
        assert_eq!(rewrite("SELECT 1").unwrap(), None);
    }

    #[test]
    fn bad_versions_are_explained() {
        let e = rewrite("SELECT * FROM t TIMESTAMP AS OF 'yesterday'").unwrap_err();
        assert!(e.to_string().contains("is not a time like"), "{e}");
    }
}
