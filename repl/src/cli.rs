//! Command-line arguments. Every flag has a `TIDEMARK_…` environment twin.

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::commands::{demo::DemoArgs, load::LoadArgs, sim::SimArgs, sql::SqlArgs, sync::SyncArgs};

/// tidemark: a local-first analytics warehouse for advertising-performance data.
///
/// Syncs ad platforms' daily reports into Delta tables, replacing each restated
/// (source, account, day) slice atomically, and serves them to SQL.
#[derive(Debug, Parser)]
#[command(name = "tidemark", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Log format on stderr: text for people, json for log collectors.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "TIDEMARK_LOG_FORMAT")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole flow on the built-in Meta and Google Ads simulators: two syncs, a mart, what changed.
    Demo(DemoArgs),
    /// Check the project when something is off: config, secrets, each source's API version
    /// and one authenticated call, the warehouse (reachable, writable, conditional writes on
    /// S3), the queue and the Flight users. One line per check; exit 1 when any fails.
    ///
    /// Secrets are never printed: a line names where a secret comes from, not its value.
    Doctor(crate::commands::doctor::DoctorArgs),
    /// Scaffold a project: tidemark.toml, sample marts and a currency-rates seed.
    Init(crate::commands::init::InitArgs),
    /// The SQL shell, or run statements from -c, -f or stdin and print their results.
    Sql(SqlArgs),
    /// Serve the warehouse over Arrow Flight SQL (ADBC, JDBC: DBeaver, Tableau) with users,
    /// grants, TLS and limits from tidemark.toml.
    Serve(crate::commands::serve::ServeArgs),
    /// Pack small files (sorting settled days by account), checkpoint, and
    /// with --vacuum delete files no version within the retention reads.
    ///
    /// Days older than a source's restatement window (window_days) are settled: packed and
    /// clustered once, then left alone. Days inside the window are bin-packed only; a sync
    /// committing to a partition first makes compaction redo it (or skip it after 3 tries),
    /// never lose a write. `tidemark run` compacts nightly at [schedule] compact_at.
    Compact(crate::commands::compact::CompactArgs),
    /// How one day's numbers changed as the platforms restated them: a chart of the day's
    /// installs and spend after each sync that changed it, then the changes per account and
    /// campaign. In SQL: SELECT * FROM restatements('ad_performance', date => '2026-11-01').
    ///
    /// With --maturity METRIC instead of a day: the maturity curve, the share of a day's final
    /// value reported at each age over the settled days. In SQL: maturity('ad_performance',
    /// 'installs') and projected('ad_performance', 'installs', by => 'campaign').
    History(crate::commands::history::HistoryArgs),
    /// Maturity curves and projected final values: `maturity backtest` checks projections
    /// against what settled days became.
    Maturity(crate::commands::maturity::MaturityArgs),
    /// Manage the Flight SQL users in tidemark.toml.
    User(crate::commands::user::UserArgs),
    /// Replace the slices found in data files (CSV, JSON lines or Parquet) in one commit.
    Load(LoadArgs),
    /// Pull ad platforms' reports for their restatement windows and replace the slices.
    ///
    /// Sources and accounts come from `[sources.NAME]` sections of tidemark.toml:
    ///
    ///   [sources.meta]
    ///   access_token = { env = "META_ACCESS_TOKEN" }
    ///   accounts = ["act_1234567890"]
    ///
    ///   [sources.google_ads]
    ///   developer_token = { env = "GOOGLE_ADS_DEVELOPER_TOKEN" }
    ///   login_customer_id = "111-222-3333"
    ///   accounts = ["123-456-7890"]
    ///
    ///   [sources.google_ads.oauth]      # or access_token = { env = "…" } (lasts an hour)
    ///   client_id = "….apps.googleusercontent.com"
    ///   client_secret = { env = "GOOGLE_ADS_CLIENT_SECRET" }
    ///   refresh_token = { env = "GOOGLE_ADS_REFRESH_TOKEN" }
    ///
    /// Each sync re-pulls the source's restatement window (window_days; defaults: Meta 28,
    /// Google Ads 90) and replaces every (source, account, day) slice in it atomically. Every
    /// payload is kept in raw/runs/RUN/ first; payloads that cannot be loaded go to
    /// raw/quarantine/RUN/ with the reason, and the other slices still load.
    #[command(verbatim_doc_comment)]
    Sync(SyncArgs),
    /// Pull a historical range (beyond the restatement window) in resumable chunks.
    ///
    /// The range is split into jobs of each source's chunk_days per account and loaded like a
    /// sync; an interrupted backfill continues with `tidemark sync --resume RUN`.
    Backfill(crate::commands::sync::BackfillArgs),
    /// The scheduler: sync every interval, fill gaps, refresh marts, compact nightly; serve /metrics.
    ///
    /// Holds a lease on _tidemark/scheduler.lock (renewed while running; a dead holder's lease
    /// expires within a minute). SIGTERM or Ctrl-C lets the sync in flight finish, then exits;
    /// a second signal stops at once (resume the run with `tidemark sync --resume RUN`).
    Run(crate::commands::run::RunArgs),
    /// A stateless collector taking jobs from a Redis Streams queue (see `sync --queue`).
    Worker(crate::commands::worker::WorkerArgs),
    /// Freshness per source and account: last success, freshest and stalest day, lag,
    /// unfinished jobs, quarantined payloads, queue depth.
    Status(crate::commands::status::StatusArgs),
    /// The built-in platform simulators (Meta, Google Ads) for trying tidemark without accounts.
    Sim(SimArgs),
    /// Data marts defined by SQL files in the project's marts/ directory.
    ///
    /// A mart is one SELECT over tables and other marts, led by a TOML header in `--` lines:
    ///
    ///   -- unique_key = ["date", "source", "campaign_id"]
    ///   -- partition_by = "date"      # the DATE column refreshes replace by day
    ///   -- lookback_days = 6          # e.g. a 7-day rolling window
    ///   -- [tests]
    ///   -- not_null = ["campaign_id"]
    ///   -- accepted_range = { spend = { min = 0 } }
    ///   -- freshness_days = 2
    ///   SELECT …
    ///
    /// CSV files in seeds/ are loaded as tables first (e.g. currency rates). Ratio metrics
    /// that aggregate correctly at any grain: ctr(clicks, impressions), cpc(spend, clicks),
    /// cpi(spend, installs), cpa(spend, conversions), roas(revenue, spend), ratio(a, b).
    #[command(verbatim_doc_comment)]
    Mart(crate::commands::mart::MartArgs),
    /// Run a Ballista cluster's roles with tidemark built in, for queries too big for one
    /// machine: a scheduler, and executors on each machine. Clients send queries with
    /// `--engine ballista://HOST:PORT` (sql, serve, mart) or [engine] in tidemark.toml.
    /// Writes always stay in the client process.
    Ballista(crate::commands::ballista::BallistaArgs),
}

/// Where queries run.
#[derive(Debug, Clone, Args)]
pub struct EngineArgs {
    /// Where queries run: `local` (this process) or `ballista://HOST:PORT`, a cluster started
    /// with `tidemark ballista scheduler` and `tidemark ballista executor`. Overrides [engine]
    /// ballista in tidemark.toml. Each table is read at the version planned on; writes (mart
    /// commits) stay in this process.
    #[arg(long, env = "TIDEMARK_ENGINE", value_name = "ENGINE")]
    pub engine: Option<engine::distributed::QueryEngine>,
}

impl EngineArgs {
    /// `warehouse` with its queries on the engine chosen here, if one is.
    pub fn apply(&self, warehouse: engine::Warehouse) -> engine::Warehouse {
        match &self.engine {
            Some(engine) => warehouse.with_query_engine(engine.clone()),
            None => warehouse,
        }
    }
}

/// Where the warehouse is.
#[derive(Debug, Clone, Args)]
pub struct WarehouseArgs {
    /// Warehouse URL: a local directory or s3://bucket/prefix.
    #[arg(long, short = 'w', env = "TIDEMARK_WAREHOUSE")]
    pub warehouse: String,

    /// Endpoint of an S3-compatible server (e.g. http://127.0.0.1:9000). Credentials come from
    /// the usual AWS_* environment variables.
    #[arg(long, env = "TIDEMARK_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
}

impl WarehouseArgs {
    /// Open the warehouse these arguments name.
    pub async fn open(&self) -> anyhow::Result<engine::Warehouse> {
        let config = engine::StorageConfig {
            s3_endpoint: self.s3_endpoint.clone(),
            ..Default::default()
        };
        Ok(engine::Warehouse::open(&self.warehouse, &config).await?)
    }
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum OutputFormat {
    /// An aligned table for people.
    #[default]
    Table,
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON array of objects.
    Json,
    /// One JSON object per line.
    Jsonl,
    /// A Markdown table (for notes, tickets and READMEs).
    Markdown,
}
