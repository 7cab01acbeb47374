//! How final is a day: `tidemark history --maturity METRIC` draws the maturity curve (the share
//! of a day's final value reported at each age), and `tidemark maturity backtest` checks the
//! projections made from it against what settled days really became.

use std::process::ExitCode;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, Int64Type};
use clap::{Args, Subcommand, ValueEnum};
use engine::maturity::function::{self, Kind, MaturityRequest};
use engine::maturity::{self, Grain, History};
use engine::Warehouse;

use crate::cli::OutputFormat;
use crate::output::write_laid_out;
use crate::project::ProjectArgs;
use crate::table::Layout;

/// What a curve or projection is computed per.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GrainArg {
    Source,
    Account,
    Campaign,
}

impl From<GrainArg> for Grain {
    fn from(grain: GrainArg) -> Self {
        match grain {
            GrainArg::Source => Grain::Source,
            GrainArg::Account => Grain::Account,
            GrainArg::Campaign => Grain::Campaign,
        }
    }
}

#[derive(Debug, Args)]
pub struct MaturityArgs {
    #[command(subcommand)]
    pub command: MaturityCommand,
}

#[derive(Debug, Subcommand)]
pub enum MaturityCommand {
    /// For every settled day, hide the restatements after each age, project the value seen
    /// then with a curve learnt from the other settled days, and compare with the day's final
    /// value: the median absolute percentage error per age, next to the naive answer
    /// ("today's value is final").
    Backtest(BacktestArgs),
}

#[derive(Debug, Args)]
pub struct BacktestArgs {
    #[command(flatten)]
    pub project: ProjectArgs,

    /// The table to backtest.
    #[arg(long, default_value = "ad_performance")]
    pub table: String,

    /// The numeric column to project.
    #[arg(long, default_value = "installs")]
    pub metric: String,

    /// What each projected cell is: a source's, an account's or a campaign's day.
    #[arg(long, value_enum, default_value_t = GrainArg::Source)]
    pub by: GrainArg,

    /// What the curve is learnt per (never finer than --by).
    #[arg(long, value_enum, default_value_t = GrainArg::Source)]
    pub curve: GrainArg,

    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

pub async fn run(args: MaturityArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        MaturityCommand::Backtest(args) => backtest(args).await,
    }
}

async fn backtest(args: BacktestArgs) -> anyhow::Result<ExitCode> {
    let config = args.project.config_or_default()?;
    let warehouse = args.project.open(&config).await?;
    let rows = maturity::backtest(
        &warehouse,
        &args.table,
        &args.metric,
        args.by.into(),
        args.curve.into(),
    )
    .await?;
    let batch = maturity::backtest_batch(&rows)?;
    let mut out = std::io::stdout().lock();
    if args.format != OutputFormat::Table {
        write_laid_out(&mut out, &[batch], args.format, Layout::ALL)?;
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!(
            "{}: no settled day has history to backtest {} on yet (a day settles once a sync \
             pulled it at the end of its source's window)",
            args.table, args.metric
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} · {} · backtest per {} (curve per {}, each day left out of its own curve)",
        args.table,
        args.metric,
        Grain::from(args.by).as_str(),
        Grain::from(args.curve).min(args.by.into()).as_str()
    );
    println!("median absolute % error against the settled value:");
    println!();
    write_laid_out(&mut out, &[batch], OutputFormat::Table, Layout::ALL)?;
    Ok(ExitCode::SUCCESS)
}

/// Bars of at most this many cells.
const BAR_WIDTH: usize = 30;

fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_string(), |v| format!("{:.1}%", v * 100.0))
}

/// Print the maturity curve of `metric` in `table` per `by`: a chart per group in a terminal,
/// the rows of `maturity(…)` otherwise.
pub async fn print_curve(
    warehouse: &Warehouse,
    table: &str,
    metric: &str,
    by: Grain,
    format: OutputFormat,
) -> anyhow::Result<()> {
    let request = MaturityRequest {
        kind: Kind::Curve,
        table: table.to_string(),
        metric: metric.to_string(),
        by,
        since: None,
        curve: by,
    };
    let batch = function::compute(warehouse, &request).await?;
    let mut out = std::io::stdout().lock();
    if format != OutputFormat::Table {
        write_laid_out(&mut out, &[batch], format, Layout::ALL)?;
        return Ok(());
    }
    let history = History::read(warehouse, table).await?;
    println!(
        "{table} · {metric} · share of the final value reported at each age (settled days: \
         median, 10th–90th percentile)"
    );
    if history.oldest_version > 0 {
        println!(
            "history read from version {} on: a vacuum deleted the files of older versions; \
             keep [schedule] vacuum_retain longer than the longest window for complete curves",
            history.oldest_version
        );
    }
    let text = |name: &str| {
        batch
            .column_by_name(name)
            .map(|c| c.as_string::<i32>().clone())
    };
    let (Some(sources), Some(accounts), Some(campaigns)) =
        (text("source"), text("account_id"), text("campaign_id"))
    else {
        anyhow::bail!("maturity() returned no group columns");
    };
    let number = |name: &str| {
        batch
            .column_by_name(name)
            .map(|c| c.as_primitive::<Float64Type>().clone())
    };
    let (Some(median), Some(p10), Some(p90)) = (
        number("median_fraction"),
        number("p10_fraction"),
        number("p90_fraction"),
    ) else {
        anyhow::bail!("maturity() returned no fractions");
    };
    let integer = |name: &str| {
        batch
            .column_by_name(name)
            .map(|c| c.as_primitive::<Int64Type>().clone())
    };
    let (Some(ages), Some(days)) = (integer("age_days"), integer("days_observed")) else {
        anyhow::bail!("maturity() returned no ages");
    };
    let value = |a: &arrow::array::Float64Array, i: usize| (!a.is_null(i)).then(|| a.value(i));
    let name_of = |i: usize| {
        [
            Some(sources.value(i)),
            (!accounts.is_null(i)).then(|| accounts.value(i)),
            (!campaigns.is_null(i)).then(|| campaigns.value(i)),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" / ")
    };
    // Groups no settled day shows the metric for get a line, not a column of dashes.
    let mut seen: std::collections::BTreeMap<String, i64> = Default::default();
    for i in 0..batch.num_rows() {
        *seen.entry(name_of(i)).or_default() += days.value(i);
    }
    let mut group = String::new();
    for i in 0..batch.num_rows() {
        let name = name_of(i);
        if seen.get(&name) == Some(&0) {
            if name != group {
                println!();
                println!("{name}: no settled day reports {metric} yet");
                group = name;
            }
            continue;
        }
        if name != group {
            println!();
            println!("{name}");
            println!(
                "{:>5}  {:>7}  {:<BAR_WIDTH$}  {:>15}  {:>5}",
                "age", "median", "", "p10–p90", "days"
            );
            group = name;
        }
        let m = value(&median, i);
        let cells = m.map_or(0, |m| {
            ((m.clamp(0.0, 1.0)) * BAR_WIDTH as f64).round() as usize
        });
        println!(
            "{:>5}  {:>7}  {:<BAR_WIDTH$}  {:>15}  {:>5}{}",
            ages.value(i),
            percent(m),
            "█".repeat(cells),
            match (value(&p10, i), value(&p90, i)) {
                (Some(low), Some(high)) =>
                    format!("{}–{}", percent(Some(low)), percent(Some(high))),
                _ => "–".to_string(),
            },
            days.value(i),
            if (days.value(i) as usize) < maturity::curve::MIN_DAYS {
                "  few days"
            } else {
                ""
            }
        );
    }
    Ok(())
}
