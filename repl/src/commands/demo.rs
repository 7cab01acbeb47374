//! `tidemark demo`: the whole flow on the built-in simulator, with nothing else running.
//!
//! Starts the `adsim` platform on loopback, syncs its 30-day window over HTTP at simulated
//! day T, moves the platform's clock forward and syncs again (values restate, late rows appear,
//! some rows vanish), builds the `daily_campaign` mart, and prints what changed between the
//! syncs, the mart's top rows and how long each step took.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use chrono::NaiveDate;
use clap::Args;
use connectors::adsim::client::{self, AdsimClient, SyncReport, Window};
use connectors::adsim::server::{self, SimState};
use connectors::adsim::truth::Truth;
use datafusion::prelude::SessionContext;
use engine::model::AD_PERFORMANCE;
use engine::session::register_version;
use engine::{Namespace, SliceKey, StorageConfig, Warehouse, WarehouseSession};

use crate::cli::OutputFormat;
use crate::output::write_batches;
use crate::progress::Step;

/// The mart the demo builds.
const MART: &str = "daily_campaign";

/// The mart's SQL: one row per (source, account, day, campaign); ratio metrics are ratios of sums.
const MART_SQL: &str = "
SELECT source, account_id, date, campaign_id,
       max(campaign_name) AS campaign_name, max(currency) AS currency,
       sum(impressions) AS impressions, sum(clicks) AS clicks, sum(spend) AS spend,
       sum(installs) AS installs, sum(revenue) AS revenue,
       round(CAST(sum(clicks) AS DOUBLE) / nullif(sum(impressions), 0), 4) AS ctr,
       round(CAST(sum(spend) AS DOUBLE) / nullif(sum(installs), 0), 2) AS cpi,
       round(CAST(sum(revenue) AS DOUBLE) / nullif(CAST(sum(spend) AS DOUBLE), 0), 3) AS roas
FROM ad_performance
WHERE date BETWEEN DATE '{since}' AND DATE '{until}'
GROUP BY source, account_id, date, campaign_id";

/// What changed per day between two versions of `ad_performance`.
const CHANGES_SQL: &str = "
SELECT coalesce(a.date, b.date) AS date,
       count(b.ad_id) AS rows_before, count(a.ad_id) AS rows_after,
       sum(CASE WHEN b.ad_id IS NULL THEN 1 ELSE 0 END) AS appeared,
       sum(CASE WHEN a.ad_id IS NULL THEN 1 ELSE 0 END) AS vanished,
       sum(coalesce(a.installs, 0)) - sum(coalesce(b.installs, 0)) AS installs_change,
       sum(coalesce(a.spend, 0)) - sum(coalesce(b.spend, 0)) AS spend_change
FROM after_sync a
FULL OUTER JOIN before_sync b
  ON a.account_id = b.account_id AND a.date = b.date AND a.ad_id = b.ad_id
GROUP BY 1
HAVING sum(CASE WHEN b.ad_id IS NULL OR a.ad_id IS NULL THEN 1 ELSE 0 END) > 0
    OR sum(coalesce(a.installs, 0)) <> sum(coalesce(b.installs, 0))
    OR sum(coalesce(a.spend, 0)) <> sum(coalesce(b.spend, 0))
ORDER BY 1 DESC";

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Directory of the demo warehouse (created if missing; reused runs replace its slices).
    #[arg(long, default_value = "./tidemark-demo", env = "TIDEMARK_DEMO_DIR")]
    pub dir: PathBuf,

    /// Simulated "today" of the first sync.
    #[arg(long, default_value = "2026-11-20")]
    pub today: NaiveDate,

    /// Days the platform's clock moves between the two syncs.
    #[arg(long, default_value_t = 3)]
    pub advance_days: u64,

    /// Accounts the simulated platform has (1 to 4).
    #[arg(long, default_value_t = 3)]
    pub accounts: usize,

    /// Seed of the simulated platform's ground truth.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// The demo's access token for the simulator; it never leaves this process.
const DEMO_TOKEN: &str = "demo-token-not-a-secret";

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let mut timings: Vec<(String, Duration)> = Vec::new();
    let dir = args.dir.display().to_string();

    let step = Step::start("starting the adsim platform simulator on loopback");
    let state = SimState::new(Truth::new(args.seed, args.accounts), DEMO_TOKEN, args.today);
    let sim = server::spawn("127.0.0.1:0", state)
        .await
        .context("cannot start the simulator")?;
    let client = AdsimClient::new(sim.base_url(), DEMO_TOKEN)?;
    timings.push(("start simulator".into(), step.finish()));
    outln!("adsim simulator listening on {}", sim.base_url());

    let step = Step::start(format!("opening warehouse {dir}"));
    let warehouse = Warehouse::open(&dir, &StorageConfig::default()).await?;
    timings.push(("open warehouse".into(), step.finish()));

    let first_day = args.today;
    let first = sync_step(&warehouse, &client, first_day, 1, &mut timings).await?;

    let second_day = first_day + chrono::Days::new(args.advance_days);
    sim.state.set_now(second_day);
    let second = sync_step(&warehouse, &client, second_day, 2, &mut timings).await?;

    let step = Step::start("comparing the two syncs");
    let changes = changes_between(&warehouse, first.commit.version, second.commit.version).await?;
    timings.push(("compare syncs".into(), step.finish()));

    let step = Step::start(format!("building mart {MART}"));
    let mart = build_mart(&warehouse, &[first.window, second.window], &sim.state).await?;
    timings.push((format!("build mart {MART}"), step.finish()));

    outln!();
    outln!(
        "What sync 2 (today = {second_day}) changed against sync 1 (today = {first_day}), per day:"
    );
    write_batches(&mut std::io::stdout(), &changes, OutputFormat::Table)?;
    outln!(
        "Days older than {} are past the platform's maturity window; recent days restate, rows appear late or vanish.",
        connectors::adsim::truth::MATURITY_DAYS
    );

    let session = WarehouseSession::new(warehouse.clone()).await?;
    let top = session
        .sql(&format!(
            "SELECT date, account_id, campaign_name, currency, impressions, clicks, spend, installs, cpi, roas \
             FROM {MART} ORDER BY date DESC, spend DESC LIMIT 10"
        ))
        .await?
        .collect()
        .await?;
    outln!();
    outln!(
        "Top rows of mart {MART} (version {}, {} rows):",
        mart.version,
        mart.rows_written
    );
    write_batches(&mut std::io::stdout(), &top, OutputFormat::Table)?;

    outln!();
    outln!("Timings:");
    for (name, took) in &timings {
        outln!("  {name:<40} {:>8.1} ms", took.as_secs_f64() * 1000.0);
    }
    outln!();
    outln!("Query it:");
    outln!(
        "  tidemark sql --warehouse {dir} -c \"SELECT date, sum(spend) AS spend, sum(installs) AS installs FROM {MART} GROUP BY date ORDER BY date DESC LIMIT 7\""
    );
    Ok(ExitCode::SUCCESS)
}

async fn sync_step(
    warehouse: &Warehouse,
    client: &AdsimClient,
    today: NaiveDate,
    number: usize,
    timings: &mut Vec<(String, Duration)>,
) -> anyhow::Result<SyncReport> {
    let window = connectors::adsim::client::trailing_window(today);
    let step = Step::start(format!(
        "sync {number}: pulling {} to {} over HTTP",
        window.since, window.until
    ));
    let report = client::sync(warehouse, client, window).await?;
    timings.push((format!("sync {number} (fetch + commit)"), step.finish()));
    outln!(
        "sync {number}: today {today}, window {}..{}: {} accounts, {} requests, {} rows, {} slices replaced in commit v{} \
         ({} files removed, {} added, fetch {:.0} ms, commit {:.0} ms)",
        window.since,
        window.until,
        report.accounts,
        report.requests,
        report.rows,
        report.commit.slices,
        report.commit.version,
        report.commit.files_removed,
        report.commit.files_added,
        report.fetch_time.as_secs_f64() * 1000.0,
        report.commit.elapsed.as_secs_f64() * 1000.0,
    );
    Ok(report)
}

async fn changes_between(
    warehouse: &Warehouse,
    before: u64,
    after: u64,
) -> anyhow::Result<Vec<arrow::array::RecordBatch>> {
    let ctx = SessionContext::new();
    register_version(
        &ctx,
        warehouse,
        Namespace::Tables,
        AD_PERFORMANCE,
        before,
        "before_sync",
    )
    .await?;
    register_version(
        &ctx,
        warehouse,
        Namespace::Tables,
        AD_PERFORMANCE,
        after,
        "after_sync",
    )
    .await?;
    Ok(ctx.sql(CHANGES_SQL).await?.collect().await?)
}

/// Rebuild the mart for every slice the syncs covered, in one commit.
async fn build_mart(
    warehouse: &Warehouse,
    windows: &[Window],
    state: &SimState,
) -> anyhow::Result<engine::ReplaceReport> {
    let session = WarehouseSession::new(warehouse.clone()).await?;
    let since = windows
        .iter()
        .map(|w| w.since)
        .min()
        .context("no sync window")?;
    let until = windows
        .iter()
        .map(|w| w.until)
        .max()
        .context("no sync window")?;
    let sql = MART_SQL
        .replace("{since}", &since.to_string())
        .replace("{until}", &until.to_string());
    let rows = session.sql(&sql).await?.collect().await?;
    let slices = state.truth().accounts.iter().flat_map(|account| {
        windows.iter().flat_map(move |w| {
            w.days()
                .map(|d| SliceKey::new(connectors::adsim::SOURCE, &account.id, d))
        })
    });
    Ok(warehouse
        .replace_mart_slices(MART)
        .with_slices(slices)
        .with_rows(rows)
        .await?)
}
