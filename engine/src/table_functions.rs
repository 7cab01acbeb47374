//! Named arguments for tidemark's table functions (`restatements`, `maturity`, `projected`):
//! `restatements('ad_performance',
//! date => '2026-11-01', source => 'meta')`. DataFusion plans only positional arguments in
//! `FROM`, so named ones are put in their positions here (NULL for one left out before a later
//! one), and the statement goes on to planning rewritten.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArgOperator, Statement, TableFactor, Value,
    VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// Each table function's parameters, in order.
const PARAMETERS: &[(&str, &[&str])] = &[
    ("restatements", &["table", "date", "source", "account"]),
    ("maturity", &["table", "metric", "by", "since"]),
    ("projected", &["table", "metric", "by", "since", "curve"]),
];

/// The statement with named table-function arguments made positional; `None` when it has none.
pub fn rewrite(sql: &str) -> Result<Option<String>, String> {
    if !sql.contains("=>") {
        return Ok(None);
    }
    let Ok(mut statements) = Parser::new(&GenericDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_statements())
    else {
        // Not ours to report: DataFusion's parser gives the error with its position.
        return Ok(None);
    };
    let mut positioner = Positioner {
        changed: false,
        error: None,
    };
    for statement in &mut statements {
        let _ = statement.visit(&mut positioner);
    }
    if let Some(e) = positioner.error {
        return Err(e);
    }
    if !positioner.changed {
        return Ok(None);
    }
    Ok(Some(
        statements
            .iter()
            .map(Statement::to_string)
            .collect::<Vec<_>>()
            .join("; "),
    ))
}

struct Positioner {
    changed: bool,
    error: Option<String>,
}

impl Positioner {
    fn position(
        &self,
        function: &str,
        names: &[&str],
        args: &[FunctionArg],
    ) -> Result<Vec<FunctionArg>, String> {
        let mut slots: Vec<Option<FunctionArg>> = vec![None; names.len()];
        let usage = format!("{function}({})", names.join(", "));
        let mut next = 0;
        for arg in args {
            match arg {
                FunctionArg::Unnamed(_) => {
                    if next >= names.len() {
                        return Err(format!(
                            "{function}() takes at most {} arguments: {usage}",
                            names.len()
                        ));
                    }
                    slots[next] = Some(arg.clone());
                    next += 1;
                }
                FunctionArg::Named {
                    name,
                    arg: value,
                    operator: FunctionArgOperator::RightArrow | FunctionArgOperator::Assignment,
                } => {
                    let wanted = name.value.to_ascii_lowercase();
                    let Some(index) = names.iter().position(|n| *n == wanted) else {
                        return Err(format!(
                            "{function}() has no argument named '{}': {usage}",
                            name.value
                        ));
                    };
                    if slots[index].is_some() {
                        return Err(format!("{function}(): '{wanted}' is given twice"));
                    }
                    slots[index] = Some(FunctionArg::Unnamed(value.clone()));
                }
                other => {
                    return Err(format!(
                        "{function}(): cannot read argument {other}: {usage}"
                    ))
                }
            }
        }
        let last = slots.iter().rposition(Option::is_some).map_or(0, |i| i + 1);
        Ok(slots
            .into_iter()
            .take(last)
            .map(|slot| {
                slot.unwrap_or(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(
                    Value::Null.into(),
                ))))
            })
            .collect())
    }
}

impl VisitorMut for Positioner {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        let TableFactor::Table {
            name,
            args: Some(args),
            ..
        } = factor
        else {
            return ControlFlow::Continue(());
        };
        if !args
            .args
            .iter()
            .any(|a| matches!(a, FunctionArg::Named { .. }))
        {
            return ControlFlow::Continue(());
        }
        let function = name.to_string().to_ascii_lowercase();
        let Some((_, names)) = PARAMETERS.iter().find(|(f, _)| *f == function) else {
            return ControlFlow::Continue(());
        };
        match self.position(&function, names, &args.args) {
            Ok(positional) => {
                args.args = positional;
                self.changed = true;
                ControlFlow::Continue(())
            }
            Err(e) => {
                self.error = Some(e);
                ControlFlow::Break(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_arguments_take_their_positions() {
        let sql = "SELECT * FROM restatements('ad_performance', date => '2026-11-01')";
        assert_eq!(
            rewrite(sql).unwrap().unwrap(),
            "SELECT * FROM restatements('ad_performance', '2026-11-01')"
        );
        let sql = "SELECT * FROM restatements(table => 'ad_performance', account => '1001', date => '2026-11-01')";
        assert_eq!(
            rewrite(sql).unwrap().unwrap(),
            "SELECT * FROM restatements('ad_performance', '2026-11-01', NULL, '1001')"
        );
        assert!(
            rewrite("SELECT * FROM restatements('t', day => '2026-11-01')")
                .unwrap_err()
                .contains("no argument named 'day'")
        );
        assert_eq!(rewrite("SELECT 1").unwrap(), None);
    }
}
