//! `tidemark sql`: run statements against a warehouse and print their results.

use std::process::ExitCode;

use std::io::{IsTerminal, Read};

use anyhow::Context;
use clap::Args;
use engine::WarehouseSession;

use crate::cli::{OutputFormat, WarehouseArgs};
use crate::output::write_batches;

#[derive(Debug, Args)]
pub struct SqlArgs {
    #[command(flatten)]
    pub warehouse: WarehouseArgs,

    /// A SQL statement to run; repeat to run several in order. Stops at the first error.
    #[arg(short = 'c', long = "command")]
    pub commands: Vec<String>,

    /// A file of SQL statements separated by `;` (repeatable; run after the -c statements).
    /// Without -c or -f, statements are read from stdin when it is not a terminal.
    #[arg(short = 'f', long = "file")]
    pub files: Vec<std::path::PathBuf>,

    /// How to print results.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table, env = "TIDEMARK_FORMAT")]
    pub format: OutputFormat,
}

/// The statements to run: `-c` ones, then each `-f` file's, else stdin's when piped.
fn statements(args: &SqlArgs) -> anyhow::Result<Vec<String>> {
    let mut all = args.commands.clone();
    for file in &args.files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read SQL file {}", file.display()))?;
        all.extend(sql::script::split_statements(&text));
    }
    if all.is_empty() {
        anyhow::ensure!(
            !std::io::stdin().is_terminal(),
            "no SQL given: pass -c \"SELECT …\", -f FILE, or pipe statements on stdin"
        );
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read SQL from stdin")?;
        all.extend(sql::script::split_statements(&text));
    }
    Ok(all)
}

pub async fn run(args: SqlArgs) -> anyhow::Result<ExitCode> {
    let statements = statements(&args)?;
    let warehouse = args.warehouse.open().await?;
    let session = WarehouseSession::new(warehouse).await?;
    let stdout = std::io::stdout();
    for (i, statement) in statements.iter().enumerate() {
        let batches = sql::run_statement(&session, statement)
            .await
            .with_context(|| format!("statement {} failed", i + 1))?;
        write_batches(&mut stdout.lock(), &batches, args.format)?;
    }
    Ok(ExitCode::SUCCESS)
}
