//! `tidemark sim serve`: the platform simulators as a standalone server, for trying tidemark
//! (or any other client) without real accounts.

use std::net::SocketAddr;
use std::process::ExitCode;

use chrono::NaiveDate;
use clap::{Args, Subcommand};
use connectors::sim::{SimConfig, World};

#[derive(Debug, Args)]
pub struct SimArgs {
    #[command(subcommand)]
    pub command: SimCommand,
}

#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Serve every simulated API on one address until interrupted (Ctrl-C).
    ///
    /// Meta: /v26.0/act_{id}/insights (async report runs, cursor paging).
    /// Google Ads: /v26/customers/{id}/googleAds:searchStream (GAQL).
    /// Naver Search Ad: /stat-reports, /report-download (HMAC-signed, one day per report).
    /// Versions past their sunset on the simulated day are refused as the platforms refuse them.
    /// Control: /_sim/clock, /_sim/faults, /_sim/drift, /_sim/stats.
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8470")]
    pub addr: SocketAddr,
    /// Seed of the ground truth (same seed, same data).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Accounts per platform (the first four are named, the rest numbered).
    #[arg(long, default_value_t = 2)]
    pub accounts: usize,
    /// The simulated today (default: today, UTC). Move it with POST /_sim/clock.
    #[arg(long)]
    pub today: Option<NaiveDate>,
    /// Status polls a Meta report run takes to complete.
    #[arg(long, default_value_t = 2)]
    pub meta_job_polls: u32,
}

pub async fn run(args: SimArgs) -> anyhow::Result<ExitCode> {
    let SimCommand::Serve(args) = args.command;
    let config = SimConfig {
        seed: args.seed,
        accounts: args.accounts,
        today: args
            .today
            .unwrap_or_else(|| chrono::Utc::now().date_naive()),
        meta_job_polls: args.meta_job_polls,
        ..SimConfig::default()
    };
    let sim = connectors::sim::start(config, args.addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.addr))?;
    print_setup(&sim.base_url(), &sim.world);
    tokio::signal::ctrl_c().await?;
    Ok(ExitCode::SUCCESS)
}

/// How to point tidemark at the simulators. The credentials printed are the simulator's own
/// made-up ones, not secrets.
fn print_setup(base: &str, world: &World) {
    outln!("simulators listening on {base} (today is {})", world.now());
    outln!();
    let exports: Vec<String> = world
        .credentials()
        .iter()
        .map(|c| format!("{}={}", c.var, c.value))
        .collect();
    outln!("export {}", exports.join(" "));
    outln!();
    outln!("# tidemark.toml");
    outln!("warehouse = \"warehouse\"");
    outln!();
    outln!("{}", world.sources_toml(base, 30, "200ms").trim_end());
}
