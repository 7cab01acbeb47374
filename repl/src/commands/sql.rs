//! `tidemark sql`: the interactive shell, or statements from `-c`, `-f` or stdin.

use std::io::{IsTerminal, Read};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use engine::WarehouseSession;

use crate::cli::OutputFormat;
use crate::output::write_batches;
use crate::project::ProjectArgs;
use crate::shell;

#[derive(Debug, Args)]
pub struct SqlArgs {
    #[command(flatten)]
    pub project: ProjectArgs,

    #[command(flatten)]
    pub engine: crate::cli::EngineArgs,

    /// A SQL statement to run; repeat to run several in order. Stops at the first error.
    #[arg(short = 'c', long = "command")]
    pub commands: Vec<String>,

    /// A file of SQL statements separated by `;` (repeatable; run after the -c statements).
    /// Without -c or -f, statements are read from stdin when it is not a terminal, and the
    /// interactive shell starts when it is.
    #[arg(short = 'f', long = "file")]
    pub files: Vec<std::path::PathBuf>,

    /// How to print results.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table, env = "TIDEMARK_FORMAT")]
    pub format: OutputFormat,

    /// Write results to FILE instead of stdout, in the format of its extension (.csv, .json,
    /// .jsonl, .md, .parquet; anything else: table). Text formats append each statement's
    /// result; a .parquet file holds the last one.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,

    /// Rows a table shows at most (0: all). Default: 40 in the shell, all otherwise.
    #[arg(long, value_name = "N")]
    pub max_rows: Option<usize>,

    /// The shell's history file. Default: $TIDEMARK_HISTORY, else tidemark/history in the
    /// user's data directory (~/.local/share on Linux).
    #[arg(long, value_name = "FILE")]
    pub history: Option<std::path::PathBuf>,

    /// Read every table and mart as it was at this instant, for the whole session: RFC 3339
    /// (2026-11-20T09:00:00Z), "2026-11-20 09:00:00" (UTC) or a date (its start, UTC).
    #[arg(long, value_name = "TIMESTAMP", value_parser = parse_instant)]
    pub as_of: Option<chrono::DateTime<chrono::Utc>>,
}

/// `--as-of`: an instant as time travel takes it (RFC 3339, or UTC date and time).
fn parse_instant(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    sql::time_travel::parse_instant(text.trim()).ok_or_else(|| {
        format!("'{text}' is not an instant: use 2026-11-20T09:00:00Z, '2026-11-20 09:00:00' (UTC) or 2026-11-20")
    })
}

/// Rows the shell shows when not told otherwise.
const SHELL_MAX_ROWS: usize = 40;

/// Where the statements come from.
enum Input {
    Statements(Vec<String>),
    Shell,
}

/// The `-c` statements, then each `-f` file's, else stdin's when piped, else the shell.
fn input(args: &SqlArgs) -> anyhow::Result<Input> {
    let mut all = args.commands.clone();
    for file in &args.files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read SQL file {}", file.display()))?;
        all.extend(sql::script::split_statements(&text));
    }
    if all.is_empty() && args.files.is_empty() {
        if std::io::stdin().is_terminal() {
            return Ok(Input::Shell);
        }
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read SQL from stdin")?;
        all.extend(sql::script::split_statements(&text));
    }
    Ok(Input::Statements(all))
}

/// Open the warehouse named by `--warehouse`, else by the project's tidemark.toml.
async fn open(project: &ProjectArgs) -> anyhow::Result<engine::Warehouse> {
    if project.warehouse.is_some() {
        return project.open(&Default::default()).await;
    }
    if !project.project.join("tidemark.toml").exists() {
        anyhow::bail!(
            "which warehouse? Pass --warehouse (-w) URL, or run in a project directory (or point \
             --project at one) whose tidemark.toml names it; {} has no tidemark.toml",
            project.project.display()
        );
    }
    let config = project.config()?;
    project.open(&config).await
}

pub async fn run(args: SqlArgs) -> anyhow::Result<ExitCode> {
    let input = input(&args)?;
    let warehouse = args.engine.apply(open(&args.project).await?);
    let options = engine::session::SessionOptions {
        as_of: args.as_of,
        ..Default::default()
    };
    let session = WarehouseSession::with_options(warehouse, options).await?;
    let statements = match input {
        Input::Shell => {
            let settings = shell::Settings {
                format: args.format,
                max_rows: args.max_rows.unwrap_or(SHELL_MAX_ROWS),
                history: args.history.clone().or_else(shell::default_history),
            };
            return shell::run(session, settings).await;
        }
        Input::Statements(statements) => statements,
    };
    let stdout = std::io::stdout();
    for (i, statement) in statements.iter().enumerate() {
        let batches = match sql::run_statement(&session, statement).await {
            Ok(batches) => batches,
            Err(e) => anyhow::bail!("statement {} failed: {}", i + 1, e.render(statement)),
        };
        if let Some(path) = &args.output {
            crate::output::write_file(path, &batches)?;
            continue;
        }
        match args.max_rows.filter(|n| *n > 0) {
            Some(limit) => crate::output::write_laid_out(
                &mut stdout.lock(),
                &batches,
                args.format,
                crate::table::Layout {
                    width: None,
                    max_rows: Some(limit),
                    expanded: false,
                },
            )?,
            None => write_batches(&mut stdout.lock(), &batches, args.format)?,
        }
    }
    Ok(ExitCode::SUCCESS)
}
