//! Subcommands. Each module exports its `Args` and an async `run`.

pub mod ballista;
pub mod compact;
pub mod demo;
pub mod doctor;
pub mod history;
pub mod init;
pub mod load;
pub mod mart;
pub mod maturity;
pub mod run;
pub mod serve;
pub mod sim;
pub mod sql;
pub mod status;
pub mod sync;
pub mod user;
pub mod worker;

use std::process::ExitCode;

use crate::cli::Command;

/// Run one subcommand.
pub async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Ballista(args) => ballista::run(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Doctor(args) => doctor::run(args).await,
        Command::Compact(args) => compact::run(args).await,
        Command::History(args) => history::run(args).await,
        Command::Sql(args) => sql::run(args).await,
        Command::Load(args) => load::run(args).await,
        Command::Sync(args) => sync::run(args).await,
        Command::Backfill(args) => sync::backfill(args).await,
        Command::Status(args) => status::run(args).await,
        Command::Run(args) => run::run(args).await,
        Command::Worker(args) => worker::run(args).await,
        Command::Sim(args) => sim::run(args).await,
        Command::Mart(args) => mart::run(args).await,
        Command::Maturity(args) => maturity::run(args).await,
        Command::Init(args) => init::run(args).await,
        Command::Serve(args) => serve::run(args).await,
        Command::User(args) => user::run(args).await,
    }
}
