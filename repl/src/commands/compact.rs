//! `tidemark compact [TABLE…] [--vacuum]`: pack small files (clustering settled days), write
//! checkpoints, and optionally delete files no readable version needs. Which days are settled
//! comes from each source's restatement window in tidemark.toml.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use connectors::config::ResolvedSource;
use engine::maintenance::{self, CompactOptions, CompactReport, Settled, VacuumReport};
use engine::{Namespace, Warehouse};
use indicatif::{ProgressBar, ProgressStyle};

use crate::commands::sync::SummaryFormat;
use crate::project::ProjectArgs;

#[derive(Debug, Args)]
pub struct CompactArgs {
    #[command(flatten)]
    pub project: ProjectArgs,

    /// Tables and marts to compact (default: every table, mart and system table).
    pub tables: Vec<String>,

    /// Pack files up to this size (e.g. 128MiB, 512MiB).
    #[arg(long, default_value = "128MiB", value_parser = parse_size)]
    pub target_size: u64,

    /// Do not sort settled days by account; only bin-pack.
    #[arg(long)]
    pub no_cluster: bool,

    /// Then delete files that no version within the retention reads.
    #[arg(long)]
    pub vacuum: bool,

    /// How long removed files are kept for time travel and writers in flight (with --vacuum).
    #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
    pub retain: Duration,

    /// List what --vacuum would delete without deleting it (compacts nothing either).
    #[arg(long, requires = "vacuum")]
    pub dry_run: bool,

    /// Allow a --retain shorter than 7 days. Time travel to versions older than the retention
    /// fails afterwards, and a writer committing a file older than it can lose that file.
    #[arg(long)]
    pub force: bool,

    /// "Today" for deciding which days are settled (default: the current UTC date).
    #[arg(long)]
    pub today: Option<chrono::NaiveDate>,

    #[arg(long, value_enum, default_value_t = SummaryFormat::Text)]
    pub format: SummaryFormat,
}

fn parse_size(text: &str) -> Result<u64, String> {
    sql::flight::config::ByteSize::parse(text).map(|s| s.0 as u64)
}

/// Which days are settled: each configured source's days older than its restatement window;
/// other sources' (and marts') days older than the default window.
pub fn settled_days(sources: &[ResolvedSource], today: chrono::NaiveDate) -> Settled {
    sources.iter().fold(
        Settled::before(today, maintenance::DEFAULT_WINDOW_DAYS),
        |settled, source| settled.with_source(&source.name, today, source.window_days()),
    )
}

/// The tables to work on, by namespace: the named ones, or every one.
async fn targets(
    warehouse: &Warehouse,
    names: &[String],
) -> anyhow::Result<Vec<(Namespace, String)>> {
    if names.is_empty() {
        let mut all = Vec::new();
        for namespace in [Namespace::Tables, Namespace::Marts, Namespace::System] {
            for name in warehouse.list(namespace).await? {
                all.push((namespace, name));
            }
        }
        return Ok(all);
    }
    let mut found = Vec::new();
    for name in names {
        found.push((warehouse.locate(name).await?, name.clone()));
    }
    Ok(found)
}

/// A bar over a table's partitions in a terminal; nothing otherwise (the engine logs).
fn bar_for(table: &str) -> Option<ProgressBar> {
    std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>24} [{bar:25}] {pos}/{len} partitions ({elapsed}, eta {eta})",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        bar.set_prefix(table.to_string());
        bar
    })
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn print_compaction(report: &CompactReport) {
    println!(
        "{:<28} files {:>6} → {:<6} {:>10} → {:<10} partitions: {} settled (clustered), {} in window{}  {:.1}s",
        report.table,
        report.files_before,
        report.files_after,
        mib(report.bytes_before),
        mib(report.bytes_after),
        report.settled_partitions,
        report.window_partitions,
        if report.skipped.is_empty() {
            String::new()
        } else {
            format!(", {} skipped", report.skipped.len())
        },
        report.elapsed.as_secs_f64()
    );
    for skipped in &report.skipped {
        println!("    skipped {skipped}");
    }
}

fn print_vacuum(report: &VacuumReport) {
    let verb = if report.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    println!(
        "{:<28} vacuum {verb} {} files (retention {} h){}",
        report.table,
        report.files.len(),
        report.retention_hours,
        report
            .oldest_readable_version
            .map(|v| format!("; time travel reaches back to version {v}"))
            .unwrap_or_default()
    );
    if report.dry_run {
        for file in &report.files {
            println!("    {file}");
        }
    }
}

pub async fn run(args: CompactArgs) -> anyhow::Result<ExitCode> {
    let config = args.project.config_or_default()?;
    let sources = config.sources().map_err(anyhow::Error::msg)?;
    let warehouse = args.project.open(&config).await?;
    let today = args
        .today
        .unwrap_or_else(|| chrono::Utc::now().date_naive());
    let options = CompactOptions {
        target_size: args.target_size,
        settled: settled_days(&sources, today),
        cluster: !args.no_cluster,
        ..Default::default()
    };
    if args.vacuum && args.retain < maintenance::DEFAULT_RETENTION && !args.force {
        anyhow::bail!(
            "--retain {} is shorter than the 7-day minimum: time travel to older versions and writers still committing could lose files. Keep the default, or add --force",
            humantime::format_duration(args.retain)
        );
    }
    let mut compactions = Vec::new();
    let mut vacuums = Vec::new();
    for (namespace, name) in targets(&warehouse, &args.tables).await? {
        if !args.dry_run {
            let bar = bar_for(&name);
            let report =
                maintenance::compact(&warehouse, namespace, &name, &options, &|done, total| {
                    if let Some(bar) = &bar {
                        bar.set_length(total);
                        bar.set_position(done);
                    }
                })
                .await
                .with_context(|| format!("compacting {name}"))?;
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            if args.format == SummaryFormat::Text {
                print_compaction(&report);
            }
            compactions.push(report);
        }
        if args.vacuum {
            let report = maintenance::vacuum(
                &warehouse,
                namespace,
                &name,
                args.retain,
                args.dry_run,
                args.force,
            )
            .await
            .with_context(|| format!("vacuuming {name}"))?;
            if args.format == SummaryFormat::Text {
                print_vacuum(&report);
            }
            vacuums.push(report);
        }
    }
    match args.format {
        SummaryFormat::Json => println!(
            "{}",
            serde_json::json!({ "compacted": compactions, "vacuumed": vacuums })
        ),
        SummaryFormat::Text => {
            let before: usize = compactions.iter().map(|r| r.files_before).sum();
            let after: usize = compactions.iter().map(|r| r.files_after).sum();
            if !compactions.is_empty() {
                println!("{} tables: {before} files → {after}", compactions.len());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
