//! `tidemark sql`: run statements against a warehouse and print their results.

use std::process::ExitCode;

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
    #[arg(short = 'c', long = "command", required = true)]
    pub commands: Vec<String>,

    /// How to print results.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table, env = "TIDEMARK_FORMAT")]
    pub format: OutputFormat,
}

pub async fn run(args: SqlArgs) -> anyhow::Result<ExitCode> {
    let warehouse = args.warehouse.open().await?;
    let session = WarehouseSession::new(warehouse).await?;
    let stdout = std::io::stdout();
    for (i, statement) in args.commands.iter().enumerate() {
        let batches = sql::run_statement(&session, statement)
            .await
            .with_context(|| format!("statement {} failed", i + 1))?;
        write_batches(&mut stdout.lock(), &batches, args.format)?;
    }
    Ok(ExitCode::SUCCESS)
}
