//! `tidemark demo`: the whole flow on the built-in simulators, with nothing else running.
//!
//! Starts the platform simulators on loopback, syncs a 30-day window of each over their real
//! APIs (async report runs, GAQL search streams, signed stat-report jobs) at simulated day T, moves the
//! platforms' clock forward and syncs again (values restate, late rows appear, some rows
//! vanish), builds the `daily_campaign` mart, and prints what changed between the syncs, the
//! mart's top rows and how long each step took. Every payload is landed in `raw/` first, so
//! `tidemark sync --replay RUN` can rebuild from it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use chrono::NaiveDate;
use clap::Args;
use connectors::config::{Platform, ProjectConfig};
use connectors::secret::Secret;
use connectors::sim::{SimConfig, World};
use connectors::source::Source;
use connectors::sync::{SyncOptions, SyncReport};
use connectors::Window;
use datafusion::prelude::SessionContext;
use engine::model::AD_PERFORMANCE;
use engine::session::register_version;
use engine::{Namespace, SliceKey, StorageConfig, Warehouse, WarehouseSession};
use std::sync::Arc;

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
  ON a.source = b.source AND a.account_id = b.account_id AND a.date = b.date AND a.ad_id = b.ad_id
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

    /// Accounts each simulated platform has (1 to 4).
    #[arg(long, default_value_t = 3)]
    pub accounts: usize,

    /// Seed of the simulated platforms' ground truth.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// Days each demo sync pulls.
const WINDOW_DAYS: u64 = 30;

/// The demo's sources: every simulator, 30-day windows, fast polling.
fn demo_sources(world: &Arc<World>, base_url: &str) -> anyhow::Result<Vec<Arc<dyn Source>>> {
    let text = world.sources_toml(base_url, WINDOW_DAYS, "20ms");
    let config = ProjectConfig::parse(&text).map_err(anyhow::Error::msg)?;
    let sources = config.sources().map_err(anyhow::Error::msg)?;
    // The simulators' own credentials, handed over in memory.
    let world = Arc::clone(world);
    Ok(connectors::build_sources_with(
        &sources,
        move |source, _, key| {
            world
                .credential(source.platform, key)
                .map(Secret::new)
                .ok_or_else(|| {
                    connectors::Error::Config(format!(
                        "the simulators have no {key} for {}",
                        source.platform
                    ))
                })
        },
    )?)
}

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let mut timings: Vec<(String, Duration)> = Vec::new();
    let dir = args.dir.display().to_string();

    let step = Step::start("starting the platform simulators on loopback");
    let sim = connectors::sim::start_local(SimConfig {
        seed: args.seed,
        accounts: args.accounts,
        today: args.today,
        ..SimConfig::default()
    })
    .await
    .context("cannot start the simulators")?;
    let sources = demo_sources(&sim.world, &sim.base_url())?;
    timings.push(("start simulators".into(), step.finish()));
    outln!(
        "{} simulators listening on {}",
        platform_names(),
        sim.base_url()
    );

    let step = Step::start(format!("opening warehouse {dir}"));
    let warehouse = Warehouse::open(&dir, &StorageConfig::default()).await?;
    timings.push(("open warehouse".into(), step.finish()));

    let first_day = args.today;
    let first = sync_step(&warehouse, &sources, first_day, 1, &mut timings).await?;

    let second_day = first_day + chrono::Days::new(args.advance_days);
    sim.world.set_now(second_day);
    let weather = hostile_weather(&sim.world);
    outln!("sync 2 meets hostile platforms: {weather}");
    let second = sync_step(&warehouse, &sources, second_day, 2, &mut timings).await?;
    let (throttled, failed): (u64, u64) = Platform::ALL
        .iter()
        .map(|p| sim.world.stats(*p))
        .fold((0, 0), |(t, f), s| (t + s.throttled, f + s.server_errors));
    outln!(
        "sync 2 was throttled {throttled} times and met {failed} server errors, retried them all and loaded every slice"
    );

    let step = Step::start("comparing the two syncs");
    let changes =
        changes_between(&warehouse, last_version(&first)?, last_version(&second)?).await?;
    timings.push(("compare syncs".into(), step.finish()));

    let step = Step::start(format!("building mart {MART}"));
    let windows = [
        Window::trailing_days(first_day, WINDOW_DAYS),
        Window::trailing_days(second_day, WINDOW_DAYS),
    ];
    let mart = build_mart(&warehouse, &windows, &sim.world).await?;
    timings.push((format!("build mart {MART}"), step.finish()));

    outln!();
    outln!(
        "What sync 2 (today = {second_day}) changed against sync 1 (today = {first_day}), per day:"
    );
    write_batches(&mut std::io::stdout(), &changes, OutputFormat::Table)?;
    outln!(
        "Days older than {} are past the platforms' maturity window; recent days restate, rows appear late or vanish.",
        connectors::sim::truth::MATURITY_DAYS
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
    outln!("Replay sync 2 from the payloads kept in raw/ (no network): tidemark sync --replay {} (with a tidemark.toml naming the sources)", second.run);
    outln!("Query it:");
    outln!(
        "  tidemark sql --warehouse {dir} -c \"SELECT date, sum(spend) AS spend, sum(installs) AS installs FROM {MART} GROUP BY date ORDER BY date DESC LIMIT 7\""
    );
    Ok(ExitCode::SUCCESS)
}

/// Before the second sync every platform throttles and fails a little in its own dialect,
/// and some payloads drift as the platforms documented; the sync must load everything anyway.
fn hostile_weather(world: &World) -> &'static str {
    use connectors::sim::{Drift, Faults};
    for platform in Platform::ALL {
        let faults = match platform {
            // A Kakao -813 waits a full 5 s interval; one server error is enough there.
            Platform::KakaoMoment => Faults {
                server_errors: 1,
                ..Faults::default()
            },
            _ => Faults {
                throttle: 2,
                retry_delay_ms: 100,
                server_errors: 1,
                ..Faults::default()
            },
        };
        world.set_faults(platform, faults);
        let drift = match platform {
            Platform::NaverSearchAd => Drift {
                legacy_format: true,
                ..Drift::default()
            },
            _ => Drift {
                added_field: true,
                ..Drift::default()
            },
        };
        world.set_drift(platform, drift);
    }
    "rate limits, a 5xx each, an added field, Naver's pre-View-count files"
}

/// "meta, google_ads and naver_search_ad".
fn platform_names() -> String {
    let names: Vec<&str> = Platform::ALL.iter().map(|p| p.name()).collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => names.join(""),
    }
}

/// The `ad_performance` version a sync left (its last commit).
fn last_version(report: &SyncReport) -> anyhow::Result<u64> {
    report
        .sources
        .iter()
        .filter_map(|s| s.commits.iter().find(|(t, _)| t == AD_PERFORMANCE))
        .map(|(_, v)| *v)
        .max()
        .context("the sync committed nothing")
}

async fn sync_step(
    warehouse: &Warehouse,
    sources: &[Arc<dyn Source>],
    today: NaiveDate,
    number: usize,
    timings: &mut Vec<(String, Duration)>,
) -> anyhow::Result<SyncReport> {
    let window = Window::trailing_days(today, WINDOW_DAYS);
    let step = Step::start(format!(
        "sync {number}: pulling {} to {} from {}",
        window.since,
        window.until,
        platform_names()
    ));
    let options = SyncOptions {
        run: format!("demo-{today}-{}", connectors::raw::new_run_id()),
        today,
        window: None,
        accounts: None,
        workers: SyncOptions::DEFAULT_WORKERS,
        commit_every: SyncOptions::DEFAULT_COMMIT_EVERY,
    };
    let windows = vec![window; sources.len()];
    let report = connectors::sync::sync(warehouse, sources, &windows, &options, &|_| {}).await?;
    timings.push((
        format!("sync {number} (fetch + land + commit)"),
        step.finish(),
    ));
    if !report.is_clean() {
        anyhow::bail!("sync {number} did not load everything: {report:?}");
    }
    for s in &report.sources {
        let replaced = s.replace_reports.last();
        // Spend platforms end with ad_performance; attribution platforms with their own table.
        let table = s.commits.last().map_or(AD_PERFORMANCE, |(t, _)| t.as_str());
        outln!(
            "sync {number}: today {today}, {} window {window}: {} units, {} requests, {} rows, {} slices replaced in {table} v{} \
             ({} files removed, {} added, {:.0} ms)",
            s.source,
            s.units,
            s.http.requests,
            s.rows,
            s.slices,
            replaced.map_or(0, |r| r.version),
            replaced.map_or(0, |r| r.files_removed),
            replaced.map_or(0, |r| r.files_added),
            s.seconds * 1000.0,
        );
    }
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
    world: &World,
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
    let slices = Platform::ALL.into_iter().flat_map(|platform| {
        world
            .truth(platform)
            .accounts
            .iter()
            .flat_map(move |account| {
                windows.iter().flat_map(move |w| {
                    w.days()
                        .map(move |d| SliceKey::new(platform.name(), &account.id, d))
                })
            })
    });
    Ok(warehouse
        .replace_mart_slices(MART)
        .with_slices(slices)
        .with_rows(rows)
        .await?)
}
