//! The `collect` benchmark: payloads landed and committed per second, end to end (request,
//! land in raw/, normalize, replace slices, ledger, journal), against the simulators.

use std::time::Instant;

use connectors::config::{Platform, ProjectConfig};
use connectors::sim::SimConfig;
use connectors::sync::SyncOptions;
use connectors::Window;
use engine::{StorageConfig, Warehouse};

/// The target: 300 payloads a second is over a million an hour.
const TARGET_PER_SECOND: f64 = 300.0;

pub async fn run(
    accounts: usize,
    days: u64,
    workers: usize,
    commit_every: usize,
    dir: std::path::PathBuf,
) -> anyhow::Result<()> {
    let today = chrono::NaiveDate::from_ymd_opt(2026, 11, 20).expect("valid date");
    let sim = connectors::sim::start_local(SimConfig {
        accounts: accounts.clamp(1, 4),
        today,
        meta_job_polls: 1,
        ..SimConfig::default()
    })
    .await?;
    let ids = |platform| {
        sim.world
            .account_ids(platform)
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let config: ProjectConfig = toml::from_str(&format!(
        r#"
[sources.meta]
base_url = "{base}"
access_token = {{ env = "UNUSED" }}
accounts = [{meta}]
chunk_days = 1
poll_interval = "1ms"
max_concurrency = {workers}

[sources.google_ads]
base_url = "{base}"
access_token = {{ env = "UNUSED" }}
developer_token = {{ env = "UNUSED" }}
accounts = [{google}]
chunk_days = 1
max_concurrency = {workers}
"#,
        base = sim.base_url(),
        meta = ids(Platform::Meta),
        google = ids(Platform::GoogleAds),
    ))?;
    let clients = tidemark_bench::scale::simulated_clients(&sim, &config)?;
    let root = dir.join(format!("collect-{}", std::process::id()));
    let warehouse = Warehouse::open(&root.display().to_string(), &StorageConfig::default()).await?;
    let window = Window::trailing_days(today, days);
    let windows = vec![window; clients.len()];
    let options = SyncOptions {
        run: "bench".into(),
        today,
        window: Some(window),
        accounts: None,
        workers,
        commit_every,
    };
    println!(
        "collect: {} accounts × {days} days × 2 platforms in one-day jobs, {workers} in flight, {commit_every} jobs per commit; warehouse in {} (--dir to choose: file creation dominates, so the file system matters)",
        accounts.clamp(1, 4),
        root.display()
    );
    let started = Instant::now();
    let report = connectors::sync::sync(&warehouse, &clients, &windows, &options, &|_| {}).await?;
    let elapsed = started.elapsed().as_secs_f64();
    anyhow::ensure!(report.is_clean(), "the benchmark sync was not clean");
    let pages: usize = report.sources.iter().map(|s| s.pages).sum();
    let requests: u64 = report.sources.iter().map(|s| s.http.requests).sum();
    let rows: usize = report.sources.iter().map(|s| s.rows).sum();
    let commits: usize = report.sources.iter().map(|s| s.commits.len()).sum();
    let waited_ms: u64 = report.sources.iter().map(|s| s.http.waited_ms).sum();
    let retried: u64 = report.sources.iter().map(|s| s.http.retried).sum();
    let throttled: u64 = report.sources.iter().map(|s| s.http.throttled).sum();
    let rate = pages as f64 / elapsed;
    println!(
        "landed and committed {pages} payloads ({requests} requests, {rows} rows, {commits} data commits) in {elapsed:.2} s; throttled {throttled}, retried {retried}, waited {:.1} s",
        waited_ms as f64 / 1000.0
    );
    println!(
        "throughput: {rate:.0} payloads/s = {:.2}× the {TARGET_PER_SECOND:.0}/s target ({:.1} M payloads an hour)",
        rate / TARGET_PER_SECOND,
        rate * 3600.0 / 1e6
    );
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}
