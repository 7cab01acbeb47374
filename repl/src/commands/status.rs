//! `tidemark status`: per source and account, the last successful sync, the freshest and
//! stalest day loaded, the lag, unfinished jobs of the newest run, quarantined payloads, and
//! the depth of the embedded job queue.

use std::process::ExitCode;

use chrono::NaiveDate;
use clap::Args;

use crate::commands::sync::SummaryFormat;
use crate::project::ProjectArgs;

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub project: ProjectArgs,

    /// Today, for the lag (default: today, UTC).
    #[arg(long, env = "TIDEMARK_TODAY")]
    pub today: Option<NaiveDate>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = SummaryFormat::Text)]
    pub format: SummaryFormat,
}

pub async fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let config = args.project.config()?;
    let sources = config.sources().map_err(anyhow::Error::msg)?;
    let warehouse = args.project.open(&config).await?;
    let today = args
        .today
        .unwrap_or_else(|| chrono::Utc::now().date_naive());
    let status = connectors::status::status(&warehouse, &sources, today).await?;
    if args.format == SummaryFormat::Json {
        outln!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(ExitCode::SUCCESS);
    }
    let show = |d: Option<NaiveDate>| d.map_or("-".to_string(), |d| d.to_string());
    outln!(
        "{:<12} {:<12} {:<20} {:>10} {:>10} {:>4} {:>10} {:>11}  last run",
        "source",
        "account",
        "last success",
        "freshest",
        "stalest",
        "lag",
        "unfinished",
        "quarantined"
    );
    for a in &status.accounts {
        outln!(
            "{:<12} {:<12} {:<20} {:>10} {:>10} {:>4} {:>10} {:>11}  {}",
            a.source,
            a.account,
            a.last_success.map_or("never".to_string(), |t| t
                .format("%Y-%m-%d %H:%M:%SZ")
                .to_string()),
            show(a.freshest_day),
            show(a.stalest_day),
            a.lag_days.map_or("-".to_string(), |l| l.to_string()),
            a.unfinished_jobs,
            a.quarantined,
            a.last_run.as_deref().unwrap_or("-")
        );
    }
    outln!(
        "queue: {} unfinished job(s); {} run(s) in the journal (today is {today})",
        status.queue_depth,
        status.runs
    );
    Ok(ExitCode::SUCCESS)
}
