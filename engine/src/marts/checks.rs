//! Data tests of a mart, declared in its header: each is a query for the rows that break it,
//! so a failure shows samples of what is wrong. `unique` comes from `unique_key`.

use chrono::NaiveDate;
use serde::Serialize;

use super::definition::MartDefinition;
use super::refresh::read_state;
use crate::error::Result;
use crate::session::WarehouseSession;

/// Failing rows shown per test.
const SAMPLES: usize = 5;

/// The result of one data test.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub mart: String,
    /// e.g. `not_null(campaign_id)`.
    pub test: String,
    pub passed: bool,
    /// How many rows (or groups) fail, when counted.
    pub failures: u64,
    /// What is wrong, in words.
    pub message: String,
    /// Up to five failing rows, formatted as a table.
    pub samples: String,
}

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The SQL selecting the rows that fail each declared test, with the test's label.
fn failing_row_queries(mart: &MartDefinition) -> Vec<(String, String)> {
    let m = ident(&mart.name);
    let tests = &mart.header.tests;
    let mut queries = Vec::new();
    for column in &tests.not_null {
        queries.push((
            format!("not_null({column})"),
            format!("SELECT * FROM {m} WHERE {} IS NULL", ident(column)),
        ));
    }
    if !mart.header.unique_key.is_empty() {
        let key: Vec<String> = mart.header.unique_key.iter().map(|c| ident(c)).collect();
        let key = key.join(", ");
        queries.push((
            format!("unique({})", mart.header.unique_key.join(", ")),
            format!("SELECT {key}, count(*) AS copies FROM {m} GROUP BY {key} HAVING count(*) > 1"),
        ));
    }
    for (column, values) in &tests.accepted_values {
        let list: Vec<String> = values.iter().map(|v| literal(v)).collect();
        queries.push((
            format!("accepted_values({column})"),
            format!(
                "SELECT {c}, count(*) AS rows FROM {m} WHERE {c} IS NOT NULL AND CAST({c} AS VARCHAR) NOT IN ({}) GROUP BY {c}",
                list.join(", "),
                c = ident(column)
            ),
        ));
    }
    for (column, range) in &tests.accepted_range {
        let c = ident(column);
        let mut outside = Vec::new();
        if let Some(min) = range.min {
            outside.push(format!("{c} < {min}"));
        }
        if let Some(max) = range.max {
            outside.push(format!("{c} > {max}"));
        }
        if !outside.is_empty() {
            queries.push((
                format!("accepted_range({column})"),
                format!("SELECT * FROM {m} WHERE {}", outside.join(" OR ")),
            ));
        }
    }
    for (column, target) in &tests.relationships {
        let (table, target_column) = target.split_once('.').unwrap_or((target, column));
        let c = ident(column);
        queries.push((
            format!("relationships({column} → {target})"),
            format!(
                "SELECT DISTINCT {c} FROM {m} WHERE {c} IS NOT NULL AND {c} NOT IN (SELECT {} FROM {})",
                ident(target_column),
                ident(table)
            ),
        ));
    }
    queries
}

async fn failing_rows(session: &WarehouseSession, sql: &str) -> Result<(u64, String)> {
    let frame = session.sql(sql).await?;
    let count = frame.clone().count().await?;
    let samples = frame.limit(0, Some(SAMPLES))?.collect().await?;
    let text = arrow::util::pretty::pretty_format_batches(&samples)?.to_string();
    Ok((count as u64, text))
}

/// Run every data test of `mart` against the warehouse as it is now.
pub async fn run_checks(
    session: &WarehouseSession,
    mart: &MartDefinition,
    today: NaiveDate,
) -> Result<Vec<CheckResult>> {
    let mut results = Vec::new();
    let result = |test: String, failures: u64, message: String, samples: String| CheckResult {
        mart: mart.name.clone(),
        test,
        passed: failures == 0,
        failures,
        message,
        samples,
    };
    for (test, sql) in failing_row_queries(mart) {
        let (failures, samples) = failing_rows(session, &sql).await?;
        let message = if failures == 0 {
            "ok".to_string()
        } else {
            format!("{failures} failing row(s)")
        };
        results.push(result(
            test,
            failures,
            message,
            if failures > 0 { samples } else { String::new() },
        ));
    }
    if let Some(days) = mart.header.tests.freshness_days {
        let column = ident(&mart.header.partition_by);
        let sql = format!("SELECT max({column}) AS newest FROM {}", ident(&mart.name));
        let batches = session.sql(&sql).await?.collect().await?;
        let newest = batches
            .first()
            .filter(|b| b.num_rows() > 0 && b.column(0).is_valid(0))
            .and_then(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<arrow::array::Date32Array>()
                    .and_then(|a| a.value_as_date(0))
            });
        let oldest_allowed = today - chrono::Days::new(days);
        let (failures, message) = match newest {
            Some(d) if d >= oldest_allowed => (0, format!("newest day {d}")),
            Some(d) => (
                1,
                format!(
                    "newest day {d} is older than {oldest_allowed} ({days} days before {today})"
                ),
            ),
            None => (1, "the mart has no rows".to_string()),
        };
        results.push(result(
            format!("freshness({days} days)"),
            failures,
            message,
            String::new(),
        ));
    }
    if let Some(bound) = mart.header.tests.max_row_change {
        let state = read_state(session.warehouse(), &mart.name).await?;
        let (failures, message) = match state.previous_rows {
            Some(before) if before > 0 => {
                let change = (state.rows as f64 - before as f64).abs() / before as f64;
                let text = format!(
                    "{before} → {} rows ({:+.1}%, bound ±{:.0}%)",
                    state.rows,
                    (state.rows as f64 - before as f64) / before as f64 * 100.0,
                    bound * 100.0
                );
                (u64::from(change > bound), text)
            }
            _ => (0, "no earlier refresh to compare with".to_string()),
        };
        results.push(result(
            format!("row_change(±{:.0}%)", bound * 100.0),
            failures,
            message,
            String::new(),
        ));
    }
    Ok(results)
}
