//! `tidemark history DAY`: how one day's numbers grew as the platforms restated them — a small
//! terminal chart of the day's installs and spend after each sync that changed it, then the
//! changes per account and campaign (the `restatements(…)` audit). `tidemark history
//! --maturity METRIC` draws the curve over all settled days instead ([`super::maturity`]).

use std::process::ExitCode;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, TimestampMillisecondType, UInt64Type};
use clap::Args;
use engine::audit::{self, AuditRequest};

use crate::cli::OutputFormat;
use crate::output::write_laid_out;
use crate::project::ProjectArgs;
use crate::table::Layout;

#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub project: ProjectArgs,

    /// The day to audit (YYYY-MM-DD).
    #[arg(required_unless_present = "maturity")]
    pub day: Option<chrono::NaiveDate>,

    /// Instead of one day: the maturity curve of this numeric column (the share of a day's
    /// final value reported at each age, from the settled days). In SQL:
    /// SELECT * FROM maturity('ad_performance', 'installs').
    #[arg(long, value_name = "METRIC", conflicts_with_all = ["day", "source", "account"])]
    pub maturity: Option<String>,

    /// With --maturity: one curve per source, account or campaign.
    #[arg(long, value_enum, default_value_t = crate::commands::maturity::GrainArg::Source, requires = "maturity")]
    pub by: crate::commands::maturity::GrainArg,

    /// The table or mart to audit.
    #[arg(long, default_value = "ad_performance")]
    pub table: String,

    /// Only this source.
    #[arg(long)]
    pub source: Option<String>,

    /// Only this account.
    #[arg(long)]
    pub account: Option<String>,

    /// How to print the changes (the chart is printed for `table` only).
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

/// Bars of at most this many cells.
const BAR_WIDTH: usize = 24;

/// A bar `value / max` of [`BAR_WIDTH`] cells, in eighths.
fn bar(value: f64, max: f64) -> String {
    if max <= 0.0 || value <= 0.0 {
        return String::new();
    }
    let eighths = ((value / max) * (BAR_WIDTH * 8) as f64).round() as usize;
    let mut text = "█".repeat(eighths / 8);
    let partial = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉'][eighths % 8];
    if partial != ' ' {
        text.push(partial);
    }
    text
}

/// The day's totals after one version that changed it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Point {
    pub version: u64,
    /// Commit time, ms since the epoch.
    pub committed_ms: Option<i64>,
    pub installs: f64,
    pub spend: f64,
}

/// The day's totals after each version that changed it, from the audit rows (each cell keeps
/// its value until a later row changes it).
pub(crate) fn totals(batches: &[RecordBatch]) -> anyhow::Result<Vec<Point>> {
    use std::collections::BTreeMap;
    let mut cells: BTreeMap<(String, String, String), (f64, f64)> = BTreeMap::new();
    let mut out: Vec<Point> = Vec::new();
    for batch in batches {
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| anyhow::anyhow!("the audit has no column {name}"))
        };
        let versions = column("version")?.as_primitive::<UInt64Type>().clone();
        let at = column("changed_at")?
            .as_primitive::<TimestampMillisecondType>()
            .clone();
        let text = |name: &str| -> anyhow::Result<arrow::array::StringArray> {
            Ok(cast(column(name)?, &DataType::Utf8)?
                .as_string::<i32>()
                .clone())
        };
        let number = |name: &str| -> anyhow::Result<arrow::array::Float64Array> {
            Ok(cast(column(name)?, &DataType::Float64)?
                .as_primitive::<Float64Type>()
                .clone())
        };
        let (sources, accounts, campaigns) =
            (text("source")?, text("account_id")?, text("campaign_id")?);
        let (installs, spend) = (number("installs")?, number("spend")?);
        for row in 0..batch.num_rows() {
            let key = (
                sources.value(row).to_string(),
                accounts.value(row).to_string(),
                campaigns.value(row).to_string(),
            );
            let value =
                |a: &arrow::array::Float64Array| if a.is_null(row) { 0.0 } else { a.value(row) };
            cells.insert(key, (value(&installs), value(&spend)));
            let version = versions.value(row);
            let (i, s) = cells
                .values()
                .fold((0.0, 0.0), |(i, s), (ci, cs)| (i + ci, s + cs));
            let point = Point {
                version,
                committed_ms: (!at.is_null(row)).then(|| at.value(row)),
                installs: i,
                spend: s,
            };
            match out.last_mut() {
                Some(last) if last.version == version => *last = point,
                _ => out.push(point),
            }
        }
    }
    Ok(out)
}

fn when(ms: Option<i64>) -> String {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| "?".into())
}

/// The chart: one line per version, installs and spend as bars against their peaks.
fn chart(points: &[Point]) -> String {
    let max_installs = points.iter().map(|p| p.installs).fold(0.0, f64::max);
    let max_spend = points.iter().map(|p| p.spend).fold(0.0, f64::max);
    let mut text = format!(
        "{:<18} {:>8}  {:<width$}  {:>14}  {}\n",
        "synced at (UTC)",
        "version",
        "installs",
        "spend",
        "",
        width = BAR_WIDTH + 10
    );
    for point in points {
        text.push_str(&format!(
            "{:<18} {:>8}  {:>9} {:<width$}  {:>14.2}  {}\n",
            when(point.committed_ms),
            point.version,
            point.installs as i64,
            bar(point.installs, max_installs),
            point.spend,
            bar(point.spend, max_spend),
            width = BAR_WIDTH
        ));
    }
    text
}

pub async fn run(args: HistoryArgs) -> anyhow::Result<ExitCode> {
    let config = args.project.config_or_default()?;
    let warehouse = args.project.open(&config).await?;
    if let Some(metric) = &args.maturity {
        crate::commands::maturity::print_curve(
            &warehouse,
            &args.table,
            metric,
            args.by.into(),
            args.format,
        )
        .await?;
        return Ok(ExitCode::SUCCESS);
    }
    let Some(day) = args.day else {
        anyhow::bail!("give a DAY to audit, or --maturity METRIC for a curve");
    };
    let request = AuditRequest {
        table: args.table.clone(),
        day,
        source: args.source.clone(),
        account: args.account.clone(),
    };
    let batches = audit::restatements(&warehouse, &request).await?;
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let mut out = std::io::stdout().lock();
    if args.format != OutputFormat::Table {
        write_laid_out(&mut out, &batches, args.format, Layout::ALL)?;
        return Ok(ExitCode::SUCCESS);
    }
    if rows == 0 {
        println!(
            "{} has no rows for {}{} in any readable version",
            args.table,
            day,
            match (&args.source, &args.account) {
                (None, None) => String::new(),
                (s, a) => format!(
                    " ({})",
                    [
                        s.as_deref().map(|s| format!("source {s}")),
                        a.as_deref().map(|a| format!("account {a}"))
                    ]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(", ")
                ),
            }
        );
        return Ok(ExitCode::SUCCESS);
    }
    let points = totals(&batches)?;
    let sources: std::collections::BTreeSet<String> = batches
        .iter()
        .filter_map(|b| b.column_by_name("source"))
        .filter_map(|c| cast(c, &DataType::Utf8).ok())
        .flat_map(|c| {
            c.as_string::<i32>()
                .iter()
                .flatten()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    println!(
        "{} · {} · {} versions changed it{}",
        args.table,
        day,
        points.len(),
        if sources.len() > 1 {
            format!(
                " · spend adds up {} accounts' currencies (narrow with --source)",
                sources.into_iter().collect::<Vec<_>>().join(" and ")
            )
        } else {
            String::new()
        }
    );
    println!();
    print!("{}", chart(&points));
    println!();
    // The changes: who moved, by how much.
    let wanted = [
        "version",
        "change",
        "source",
        "account_id",
        "campaign_id",
        "campaign_name",
        "installs",
        "installs_delta",
        "spend",
        "spend_delta",
        "clicks_delta",
        "revenue_delta",
    ];
    let schema = batches[0].schema();
    let indices: Vec<usize> = wanted
        .iter()
        .filter_map(|name| schema.index_of(name).ok())
        .collect();
    let projected = batches
        .iter()
        .map(|b| b.project(&indices))
        .collect::<Result<Vec<_>, _>>()?;
    let width = terminal_size::terminal_size().map(|(w, _)| w.0 as usize);
    write_laid_out(
        &mut out,
        &projected,
        OutputFormat::Table,
        Layout {
            width,
            max_rows: None,
            expanded: false,
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_peak_in_eighths() {
        assert_eq!(bar(0.0, 10.0), "");
        assert_eq!(bar(10.0, 10.0).chars().count(), BAR_WIDTH);
        assert_eq!(bar(5.0, 10.0), "█".repeat(BAR_WIDTH / 2));
        assert_eq!(bar(1.0, 192.0), "▏");
    }
}
