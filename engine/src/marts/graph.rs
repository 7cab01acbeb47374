//! The dependency graph of marts, read from their SQL: which tables and marts each one reads
//! (CTE names are not inputs), refreshed in dependency order as levels whose marts are
//! independent of each other; a cycle is refused naming it.

use std::collections::{BTreeMap, BTreeSet};

use std::ops::ControlFlow;

use datafusion::sql::parser::{DFParser, Statement as DFStatement};
use datafusion::sql::resolve::resolve_table_references;
use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, TableFactor, Value, Visit, Visitor,
};

use super::definition::MartDefinition;
use crate::error::{Error, Result};

/// tidemark's table functions, whose first argument names the table they read.
const TABLE_FUNCTIONS: [&str; 3] = ["restatements", "maturity", "projected"];

/// The tables named by the first argument of table-function calls.
struct FunctionInputs(BTreeSet<String>);

impl Visitor for FunctionInputs {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table {
            name,
            args: Some(args),
            ..
        } = factor
        {
            let function = name.to_string().to_ascii_lowercase();
            let first = args.args.iter().find_map(|arg| match arg {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v))) => Some(&v.value),
                FunctionArg::Named {
                    name,
                    arg: FunctionArgExpr::Expr(Expr::Value(v)),
                    ..
                } if name.value.eq_ignore_ascii_case("table") => Some(&v.value),
                _ => None,
            });
            if let (true, Some(Value::SingleQuotedString(table))) =
                (TABLE_FUNCTIONS.contains(&function.as_str()), first)
            {
                self.0.insert(table.to_ascii_lowercase());
            }
        }
        ControlFlow::Continue(())
    }
}

/// The names a mart's SQL reads (tables, marts and seeds), lower-cased, without schema. A
/// table function (`projected('ad_performance', …)`) reads the table its first argument names.
pub fn inputs_of(mart: &MartDefinition) -> Result<BTreeSet<String>> {
    let statements = DFParser::parse_sql(&mart.sql).map_err(|e| Error::MartDefinition {
        mart: mart.name.clone(),
        problem: format!("its SQL does not parse: {e}"),
    })?;
    if statements.len() != 1 {
        return Err(Error::MartDefinition {
            mart: mart.name.clone(),
            problem: format!(
                "holds {} statements; a mart is one SELECT",
                statements.len()
            ),
        });
    }
    let statement = statements.into_iter().next().expect("one statement");
    let mut functions = FunctionInputs(BTreeSet::new());
    if let DFStatement::Statement(inner) = &statement {
        let _ = inner.visit(&mut functions);
    }
    let (tables, _ctes) =
        resolve_table_references(&statement, true).map_err(|e| Error::MartDefinition {
            mart: mart.name.clone(),
            problem: format!("cannot read its table references: {e}"),
        })?;
    Ok(tables
        .into_iter()
        .map(|t| t.table().to_ascii_lowercase())
        .filter(|t| !TABLE_FUNCTIONS.contains(&t.as_str()))
        .chain(functions.0)
        .collect())
}

/// Marts in refresh order: each level only reads marts of earlier levels.
#[derive(Debug, Clone)]
pub struct MartGraph {
    /// Each mart's inputs.
    pub inputs: BTreeMap<String, BTreeSet<String>>,
    pub levels: Vec<Vec<String>>,
}

impl MartGraph {
    pub fn build(marts: &[MartDefinition]) -> Result<Self> {
        let names: BTreeSet<&str> = marts.iter().map(|m| m.name.as_str()).collect();
        let mut inputs = BTreeMap::new();
        for mart in marts {
            inputs.insert(mart.name.clone(), inputs_of(mart)?);
        }
        // Edges between marts only: mart → the marts it reads.
        let reads: BTreeMap<&str, BTreeSet<&str>> = inputs
            .iter()
            .map(|(m, ins): (&String, &BTreeSet<String>)| {
                (
                    m.as_str(),
                    ins.iter()
                        .map(String::as_str)
                        .filter(|i| names.contains(i))
                        .collect(),
                )
            })
            .collect();
        if let Some(cycle) = find_cycle(&reads) {
            return Err(Error::MartCycle {
                cycle: cycle.join(" → "),
            });
        }
        let mut done: BTreeSet<&str> = BTreeSet::new();
        let mut levels = Vec::new();
        while done.len() < reads.len() {
            let level: Vec<String> = reads
                .iter()
                .filter(|(m, deps)| !done.contains(*m) && deps.iter().all(|d| done.contains(d)))
                .map(|(m, _)| m.to_string())
                .collect();
            for m in &level {
                done.insert(names.get(m.as_str()).expect("a mart"));
            }
            levels.push(level);
        }
        Ok(MartGraph { inputs, levels })
    }

    /// `selected` and every mart that (transitively) reads one of them, in refresh order.
    pub fn with_dependents(&self, selected: &BTreeSet<String>) -> Vec<Vec<String>> {
        let mut chosen = selected.clone();
        for level in &self.levels {
            for m in level {
                if self.inputs[m].iter().any(|i| chosen.contains(i)) {
                    chosen.insert(m.clone());
                }
            }
        }
        self.levels
            .iter()
            .map(|l| {
                l.iter()
                    .filter(|m| chosen.contains(*m))
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .filter(|l| !l.is_empty())
            .collect()
    }
}

/// A cycle among `reads`, as the path that closes it (`a → b → a`).
fn find_cycle<'a>(reads: &BTreeMap<&'a str, BTreeSet<&'a str>>) -> Option<Vec<&'a str>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit<'a>(
        node: &'a str,
        reads: &BTreeMap<&'a str, BTreeSet<&'a str>>,
        marks: &mut BTreeMap<&'a str, Mark>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<&'a str>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Visiting) => {
                let start = path.iter().position(|n| *n == node).expect("on the path");
                let mut cycle = path[start..].to_vec();
                cycle.push(node);
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(node, Mark::Visiting);
        path.push(node);
        for next in reads.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, reads, marks, path) {
                return Some(cycle);
            }
        }
        path.pop();
        marks.insert(node, Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in reads.keys() {
        if let Some(cycle) = visit(node, reads, &mut marks, &mut Vec::new()) {
            return Some(cycle);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mart(name: &str, sql: &str) -> MartDefinition {
        MartDefinition::parse(name, sql).unwrap()
    }

    #[test]
    fn levels_follow_dependencies_and_ctes_are_not_inputs() {
        let marts = vec![
            mart(
                "daily",
                "WITH x AS (SELECT * FROM ad_performance) SELECT * FROM x",
            ),
            mart(
                "by_channel",
                "SELECT * FROM daily JOIN fx_rates USING (currency)",
            ),
            mart("rolling", "SELECT * FROM by_channel"),
            mart("other", "SELECT * FROM meta_insights"),
        ];
        let graph = MartGraph::build(&marts).unwrap();
        assert_eq!(
            graph.inputs["daily"],
            BTreeSet::from(["ad_performance".to_string()])
        );
        assert_eq!(
            graph.levels,
            vec![vec!["daily", "other"], vec!["by_channel"], vec!["rolling"]]
        );
        let only = graph.with_dependents(&BTreeSet::from(["by_channel".to_string()]));
        assert_eq!(only, vec![vec!["by_channel"], vec!["rolling"]]);
    }

    #[test]
    fn a_table_function_reads_the_table_it_names() {
        let m = mart(
            "projected_daily",
            "WITH s AS (SELECT * FROM projected('ad_performance', 'spend', by => 'campaign')) \
             SELECT * FROM s JOIN maturity(table => 'Other', metric => 'installs') c ON true",
        );
        assert_eq!(
            inputs_of(&m).unwrap(),
            BTreeSet::from(["ad_performance".to_string(), "other".to_string()])
        );
    }

    #[test]
    fn a_cycle_is_named() {
        let marts = vec![
            mart("a", "SELECT * FROM c"),
            mart("b", "SELECT * FROM a"),
            mart("c", "SELECT * FROM b"),
        ];
        let e = MartGraph::build(&marts).unwrap_err().to_string();
        assert!(e.contains("a → c → b → a"), "{e}");
    }
}
