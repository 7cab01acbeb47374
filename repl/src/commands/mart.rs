//! `tidemark mart refresh | test | list`: the project's marts (`marts/*.sql`) and seeds
//! (`seeds/*.csv`) against its warehouse.

use std::collections::BTreeSet;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use engine::marts::{self, MartDefinition, RefreshMode};
use engine::{Warehouse, WarehouseSession};

use crate::commands::sync::SummaryFormat;
use crate::project::ProjectArgs;

#[derive(Debug, Args)]
pub struct MartArgs {
    #[command(subcommand)]
    pub command: MartCommand,
}

#[derive(Debug, Subcommand)]
pub enum MartCommand {
    /// Refresh marts (all, or the named ones and every mart that reads them) in dependency
    /// order: only the days whose inputs changed since the last refresh, unless --full.
    Refresh {
        #[command(flatten)]
        project: ProjectArgs,
        #[command(flatten)]
        engine: crate::cli::EngineArgs,
        /// Marts to refresh (default: all).
        names: Vec<String>,
        /// Rebuild from scratch instead of recomputing changed days.
        #[arg(long)]
        full: bool,
        #[arg(long, value_enum, default_value_t = SummaryFormat::Text)]
        format: SummaryFormat,
    },
    /// Run the marts' data tests; print pass/fail per test with failing rows; exit 1 on a failure.
    Test {
        #[command(flatten)]
        project: ProjectArgs,
        #[command(flatten)]
        engine: crate::cli::EngineArgs,
        /// Marts to test (default: all).
        names: Vec<String>,
        /// "Today" for freshness tests (default: the current UTC date).
        #[arg(long)]
        today: Option<chrono::NaiveDate>,
        #[arg(long, value_enum, default_value_t = SummaryFormat::Text)]
        format: SummaryFormat,
    },
    /// Each mart with its inputs, last refresh, version and rows.
    List {
        #[command(flatten)]
        project: ProjectArgs,
        #[arg(long, value_enum, default_value_t = SummaryFormat::Text)]
        format: SummaryFormat,
    },
}

/// The project's marts and its warehouse.
async fn open(project: &ProjectArgs) -> anyhow::Result<(Vec<MartDefinition>, Warehouse)> {
    let config = project.config()?;
    let marts = marts::load_dir(&project.project.join("marts"))?;
    let warehouse = project.open(&config).await?;
    Ok((marts, warehouse))
}

fn selection(names: &[String]) -> Option<BTreeSet<String>> {
    (!names.is_empty()).then(|| names.iter().cloned().collect())
}

/// Load changed seeds, then refresh; a report line per mart. Shared with `tidemark run`.
pub async fn refresh_project(
    project: &ProjectArgs,
    warehouse: &Warehouse,
    marts: &[MartDefinition],
    names: Option<&BTreeSet<String>>,
    full: bool,
) -> anyhow::Result<Vec<(String, engine::Result<marts::RefreshReport>)>> {
    for seed in marts::load_seeds(warehouse, &project.project.join("seeds")).await? {
        if seed.loaded {
            tracing::info!(seed = %seed.seed, rows = seed.rows, "seed loaded");
        }
    }
    Ok(marts::refresh(warehouse, marts, names, full).await?)
}

pub async fn run(args: MartArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        MartCommand::Refresh {
            project,
            engine,
            names,
            full,
            format,
        } => {
            let (marts, warehouse) = open(&project).await?;
            let warehouse = engine.apply(warehouse);
            anyhow::ensure!(
                !marts.is_empty(),
                "{} has no *.sql marts (tidemark init writes examples)",
                project.project.join("marts").display()
            );
            let results = refresh_project(
                &project,
                &warehouse,
                &marts,
                selection(&names).as_ref(),
                full,
            )
            .await?;
            let failed = results.iter().filter(|(_, r)| r.is_err()).count();
            if format == SummaryFormat::Json {
                let items: Vec<_> = results
                    .iter()
                    .map(|(name, r)| match r {
                        Ok(report) => serde_json::to_value(report).expect("reports serialize"),
                        Err(e) => serde_json::json!({"mart": name, "error": e.to_string()}),
                    })
                    .collect();
                crate::outln!("{}", serde_json::Value::Array(items));
            } else {
                for (name, result) in &results {
                    match result {
                        Ok(r) => crate::outln!("{}", describe(r)),
                        Err(e) => crate::outln!("FAILED {name}: {e}"),
                    }
                }
            }
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        MartCommand::Test {
            project,
            engine,
            names,
            today,
            format,
        } => {
            let (marts, warehouse) = open(&project).await?;
            let warehouse = engine.apply(warehouse);
            let today = today.unwrap_or_else(|| chrono::Utc::now().date_naive());
            let chosen = selection(&names);
            let session = WarehouseSession::new(warehouse).await?;
            let mut all = Vec::new();
            for mart in marts
                .iter()
                .filter(|m| chosen.as_ref().is_none_or(|c| c.contains(&m.name)))
            {
                all.extend(marts::run_checks(&session, mart, today).await?);
            }
            let failed = all.iter().filter(|c| !c.passed).count();
            if format == SummaryFormat::Json {
                crate::outln!("{}", serde_json::to_string(&all)?);
            } else {
                for check in &all {
                    let verdict = if check.passed { "PASS" } else { "FAIL" };
                    crate::outln!("{verdict} {}.{}: {}", check.mart, check.test, check.message);
                    if !check.samples.is_empty() {
                        crate::outln!("{}", check.samples);
                    }
                }
                crate::outln!("{} test(s), {failed} failed", all.len());
            }
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        MartCommand::List { project, format } => {
            let (marts, warehouse) = open(&project).await?;
            let graph = marts::MartGraph::build(&marts)?;
            let mut rows = Vec::new();
            for mart in &marts {
                let state = marts::read_state(&warehouse, &mart.name).await?;
                rows.push(serde_json::json!({
                    "mart": mart.name,
                    "inputs": graph.inputs[&mart.name],
                    "last_refresh": state.refreshed_at,
                    "version": state.version,
                    "rows": state.rows,
                    "description": mart.header.description,
                }));
            }
            if format == SummaryFormat::Json {
                crate::outln!("{}", serde_json::Value::Array(rows));
            } else {
                for row in &rows {
                    crate::outln!(
                        "{:<32} v{:<5} {:>9} rows  refreshed {}  reads {}",
                        row["mart"].as_str().unwrap_or_default(),
                        row["version"]
                            .as_u64()
                            .map_or("-".into(), |v| v.to_string()),
                        row["rows"],
                        row["last_refresh"].as_str().unwrap_or("never"),
                        row["inputs"]
                            .as_array()
                            .map(|a| a
                                .iter()
                                .filter_map(|v| v.as_str())
                                .collect::<Vec<_>>()
                                .join(", "))
                            .unwrap_or_default()
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// One line about a refresh.
pub fn describe(r: &marts::RefreshReport) -> String {
    match r.mode {
        RefreshMode::Full => format!(
            "{}: rebuilt ({}) — {} rows, version {}, {:.2} s",
            r.mart,
            r.reason.as_deref().unwrap_or("full"),
            r.rows,
            r.version.unwrap_or(0),
            r.elapsed.as_secs_f64()
        ),
        RefreshMode::Incremental => format!(
            "{}: {} day(s) recomputed ({} rows written) — {} rows, version {}, {:.2} s",
            r.mart,
            r.days.len(),
            r.rows_written,
            r.rows,
            r.version.unwrap_or(0),
            r.elapsed.as_secs_f64()
        ),
        RefreshMode::Unchanged => format!("{}: inputs unchanged", r.mart),
    }
}
