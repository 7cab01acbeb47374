//! The scale simulation: the whole collection pipeline against the simulators at many
//! accounts (by default 2,000 accounts × 6 platforms × 30 days), then the warehouse it leaves
//! measured at that size: files, log, checkpoint, snapshot load, planning, one slice's
//! replace and compaction. `tidemark-bench scale` writes `bench/SCALE.md`; a smaller run of
//! the same code is a CI test.
//!
//! Each figure is taken at two sizes (the full one and a quarter of its accounts) so that what
//! grows faster than the data (ratio of ratios above 1) stands out.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use chrono::NaiveDate;
use connectors::config::{Platform, ProjectConfig};
use connectors::secret::Secret;
use connectors::sim::{RunningSim, SimConfig};
use connectors::sync::SyncOptions;
use connectors::Window;
use engine::maintenance::{self, CompactOptions, Settled};
use engine::{Namespace, SliceKey, StorageConfig, Warehouse, WarehouseSession};

/// The simulated "today" of every scale run.
const TODAY: (i32, u32, u32) = (2026, 11, 20);

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(TODAY.0, TODAY.1, TODAY.2).expect("valid date")
}

/// One run's shape.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub accounts: usize,
    pub days: u64,
    /// Jobs in flight across sources.
    pub workers: usize,
}

/// What one run measured.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub accounts: usize,
    pub sources: usize,
    pub days: u64,
    pub workers: usize,
    pub sync_seconds: f64,
    pub jobs: usize,
    pub payloads: usize,
    pub requests: u64,
    pub rows: usize,
    pub slices: usize,
    pub commits: usize,
    pub data_files: usize,
    pub data_bytes: u64,
    pub log_entries: usize,
    pub log_bytes: u64,
    pub checkpoint_seconds: f64,
    pub checkpoint_bytes: u64,
    /// Opening the table's latest version in a new process-like handle (log + checkpoint).
    pub snapshot_load_seconds: f64,
    /// Per statement: planning only (SQL to physical plan), median of 5, in a warm session.
    pub planning_ms: BTreeMap<String, f64>,
    pub replace_one_slice_ms: f64,
    pub compaction_seconds: f64,
    pub files_after_compaction: usize,
    /// The process's peak resident memory so far (the simulators and the pipeline together).
    pub peak_rss_mb: f64,
}

/// The clients of `config`'s sources, with the credentials the simulator accepts.
pub fn simulated_clients(
    sim: &RunningSim,
    config: &ProjectConfig,
) -> anyhow::Result<Vec<Arc<dyn connectors::source::Source>>> {
    let sources = config.sources().map_err(anyhow::Error::msg)?;
    Ok(connectors::build_sources_with(
        &sources,
        |source, _, key| {
            sim.world
                .credential(source.platform, key)
                .map(Secret::new)
                .ok_or_else(|| connectors::Error::Config(format!("no simulated {key}")))
        },
    )?)
}

/// Every platform's `[sources.*]` for the simulators, each job covering up to the whole
/// window where the platform allows (Naver's stat reports are one day each).
fn sources_config(sim: &RunningSim, days: u64, workers: usize) -> anyhow::Result<ProjectConfig> {
    let text = sim.world.sources_toml(&sim.base_url(), days, "1ms");
    let mut table: toml::Table = toml::from_str(&text)?;
    let sections = table
        .get_mut("sources")
        .and_then(toml::Value::as_table_mut)
        .context("the simulator's config has [sources]")?;
    for (_, section) in sections.iter_mut() {
        let section = section.as_table_mut().context("a source is a table")?;
        section.insert("max_concurrency".into(), (workers as i64).into());
    }
    Ok(toml::from_str(&toml::to_string(&table)?)?)
}

fn dir_size(dir: &Path, only: &dyn Fn(&Path) -> bool) -> (usize, u64) {
    let mut files = 0;
    let mut bytes = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&next) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if only(&path) {
                files += 1;
                bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    (files, bytes)
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn median_ms<F, Fut>(runs: usize, mut f: F) -> anyhow::Result<f64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut times = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        f().await?;
        times.push(started.elapsed());
    }
    times.sort();
    Ok(times[times.len() / 2].as_secs_f64() * 1000.0)
}

/// Statements whose planning is timed: a scan of everything, a day range, one account.
const PLANNED: [(&str, &str); 3] = [
    (
        "spend by source and day",
        "SELECT source, date, sum(spend) FROM ad_performance GROUP BY source, date",
    ),
    (
        "last 7 days",
        "SELECT source, sum(installs) FROM ad_performance WHERE date >= DATE '2026-11-13' GROUP BY source",
    ),
    (
        "one account",
        "SELECT date, sum(clicks) FROM ad_performance WHERE account_id = '1000000001' GROUP BY date",
    ),
];

/// Run the pipeline at `shape` in `dir` and measure the warehouse it leaves.
pub async fn simulate(shape: Shape, dir: &Path) -> anyhow::Result<Figures> {
    let sim = connectors::sim::start_local(SimConfig {
        accounts: shape.accounts,
        today: today(),
        meta_job_polls: 1,
        naver_job_polls: 1,
        kakao_report_interval_ms: 0,
        ..SimConfig::default()
    })
    .await?;
    let config = sources_config(&sim, shape.days, shape.workers)?;
    let clients = simulated_clients(&sim, &config)?;
    let root = dir.join(format!("scale-{}", shape.accounts));
    if root.exists() {
        std::fs::remove_dir_all(&root)?;
    }
    let warehouse = Warehouse::open(
        root.to_str().context("utf-8 path")?,
        &StorageConfig::default(),
    )
    .await?;
    let window = Window::trailing_days(today(), shape.days);
    let options = SyncOptions {
        run: "scale".into(),
        today: today(),
        window: Some(window),
        accounts: None,
        workers: shape.workers,
        commit_every: SyncOptions::DEFAULT_COMMIT_EVERY,
    };
    eprintln!(
        "scale: {} accounts × {} platforms × {} days, {} jobs in flight, in {}",
        shape.accounts,
        clients.len(),
        shape.days,
        shape.workers,
        root.display()
    );
    let started = Instant::now();
    let windows = vec![window; clients.len()];
    let report = connectors::sync::sync(&warehouse, &clients, &windows, &options, &|_| {}).await?;
    let sync_seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        report.is_clean(),
        "the scale sync was not clean: {:?}",
        report
            .sources
            .iter()
            .flat_map(|s| s.failed.iter().map(|f| format!("{f:?}")))
            .take(3)
            .collect::<Vec<_>>()
    );
    let mut figures = Figures {
        accounts: shape.accounts,
        sources: clients.len(),
        days: shape.days,
        workers: shape.workers,
        sync_seconds,
        jobs: report.sources.iter().map(|s| s.units).sum(),
        payloads: report.sources.iter().map(|s| s.pages).sum(),
        requests: report.sources.iter().map(|s| s.http.requests).sum(),
        rows: report.sources.iter().map(|s| s.rows).sum(),
        slices: report.sources.iter().map(|s| s.slices).sum(),
        commits: report.sources.iter().map(|s| s.commits.len()).sum(),
        ..Figures::default()
    };
    eprintln!(
        "  synced {} payloads, {} rows, {} slices in {:.1} s",
        figures.payloads, figures.rows, figures.slices, sync_seconds
    );

    let table_dir = root.join("tables").join(engine::model::AD_PERFORMANCE);
    let log_dir = table_dir.join("_delta_log");
    (figures.data_files, figures.data_bytes) = dir_size(&table_dir, &|p| {
        p.extension().is_some_and(|e| e == "parquet") && !p.starts_with(&log_dir)
    });
    (figures.log_entries, figures.log_bytes) =
        dir_size(&log_dir, &|p| p.extension().is_some_and(|e| e == "json"));

    let table = warehouse
        .open_table(Namespace::Tables, engine::model::AD_PERFORMANCE)
        .await?;
    let started = Instant::now();
    engine::deltalake::checkpoints::create_checkpoint(&table, None).await?;
    figures.checkpoint_seconds = started.elapsed().as_secs_f64();
    figures.checkpoint_bytes =
        dir_size(&log_dir, &|p| p.to_string_lossy().contains(".checkpoint")).1;

    let started = Instant::now();
    let fresh = Warehouse::open(
        root.to_str().context("utf-8 path")?,
        &StorageConfig::default(),
    )
    .await?;
    fresh
        .open_table(Namespace::Tables, engine::model::AD_PERFORMANCE)
        .await?;
    figures.snapshot_load_seconds = started.elapsed().as_secs_f64();

    let session = WarehouseSession::new(warehouse.clone()).await?;
    for (name, sql) in PLANNED {
        session.sql(sql).await?.create_physical_plan().await?;
        let ms = median_ms(5, || async {
            session.sql(sql).await?.create_physical_plan().await?;
            Ok(())
        })
        .await?;
        figures.planning_ms.insert(name.to_string(), ms);
    }

    // One slice replaced with rows of the same shape as a sync's.
    let account = sim.world.account_ids(Platform::Meta)[0].clone();
    let day = today() - chrono::Days::new(3);
    let rows = format!(
        "SELECT * FROM ad_performance WHERE source = 'meta' AND account_id = '{account}' AND date = DATE '{day}'"
    );
    let batches = session.sql(&rows).await?.collect().await?;
    figures.replace_one_slice_ms = median_ms(5, || {
        let batches = batches.clone();
        let warehouse = warehouse.clone();
        let account = account.clone();
        async move {
            warehouse
                .replace_slices(engine::model::AD_PERFORMANCE)
                .with_slices([SliceKey::new("meta", account, day)])
                .with_rows(batches)
                .await?;
            Ok(())
        }
    })
    .await?;

    let started = Instant::now();
    let compaction = maintenance::compact(
        &warehouse,
        Namespace::Tables,
        engine::model::AD_PERFORMANCE,
        &CompactOptions {
            settled: Settled::before(today(), 7),
            ..Default::default()
        },
        &|_, _| {},
    )
    .await?;
    figures.compaction_seconds = started.elapsed().as_secs_f64();
    figures.files_after_compaction = compaction.files_after;
    figures.peak_rss_mb = peak_rss_mb();
    Ok(figures)
}

fn growth(small: f64, large: f64, scale: f64) -> String {
    if small <= 0.0 {
        return "–".into();
    }
    let ratio = large / small;
    let exponent = ratio.ln() / scale.ln();
    let flag = if exponent > 1.15 {
        " **faster than linear**"
    } else {
        ""
    };
    format!("{ratio:.1}× (n^{exponent:.2}){flag}")
}

/// The report of a smaller and a full run: figures side by side with how each grew.
pub fn render(small: &Figures, full: &Figures, command: &str) -> String {
    let scale = full.accounts as f64 / small.accounts.max(1) as f64;
    let mut rows: Vec<(String, String, String, String)> = Vec::new();
    let mut row = |name: &str, a: f64, b: f64, fmt: &dyn Fn(f64) -> String| {
        rows.push((name.to_string(), fmt(a), fmt(b), growth(a, b, scale)));
    };
    let int = |v: f64| format!("{v:.0}");
    let secs = |v: f64| format!("{v:.2} s");
    let millis = |v: f64| format!("{v:.1} ms");
    let mb = |v: f64| format!("{:.1} MB", v / 1e6);
    row("jobs", small.jobs as f64, full.jobs as f64, &int);
    row(
        "payloads",
        small.payloads as f64,
        full.payloads as f64,
        &int,
    );
    row("rows", small.rows as f64, full.rows as f64, &int);
    row("slices", small.slices as f64, full.slices as f64, &int);
    row("sync time", small.sync_seconds, full.sync_seconds, &secs);
    row(
        "payloads per second",
        small.payloads as f64 / small.sync_seconds,
        full.payloads as f64 / full.sync_seconds,
        &int,
    );
    row(
        "data commits",
        small.commits as f64,
        full.commits as f64,
        &int,
    );
    row(
        "data files",
        small.data_files as f64,
        full.data_files as f64,
        &int,
    );
    row(
        "data bytes",
        small.data_bytes as f64,
        full.data_bytes as f64,
        &mb,
    );
    row(
        "log entries",
        small.log_entries as f64,
        full.log_entries as f64,
        &int,
    );
    row(
        "log bytes (JSON)",
        small.log_bytes as f64,
        full.log_bytes as f64,
        &mb,
    );
    row(
        "checkpoint time",
        small.checkpoint_seconds,
        full.checkpoint_seconds,
        &secs,
    );
    row(
        "checkpoint bytes",
        small.checkpoint_bytes as f64,
        full.checkpoint_bytes as f64,
        &mb,
    );
    row(
        "snapshot load (new handle)",
        small.snapshot_load_seconds,
        full.snapshot_load_seconds,
        &secs,
    );
    for (name, ms) in &full.planning_ms {
        let before = small.planning_ms.get(name).copied().unwrap_or(0.0);
        row(&format!("planning: {name}"), before, *ms, &millis);
    }
    row(
        "replace one slice",
        small.replace_one_slice_ms,
        full.replace_one_slice_ms,
        &millis,
    );
    row(
        "compaction",
        small.compaction_seconds,
        full.compaction_seconds,
        &secs,
    );
    row(
        "files after compaction",
        small.files_after_compaction as f64,
        full.files_after_compaction as f64,
        &int,
    );
    row(
        "peak memory (process)",
        small.peak_rss_mb,
        full.peak_rss_mb,
        &|v| format!("{v:.0} MB"),
    );
    let table: Vec<String> = rows
        .iter()
        .map(|(n, a, b, g)| format!("| {n} | {a} | {b} | {g} |"))
        .collect();
    format!(
        "# Scale simulation\n\n`{command}`: the collection pipeline against the simulators \
         ({} platforms, {} days, {} jobs in flight), then the warehouse it leaves. Growth is \
         full / small with {scale:.0}× the accounts; an exponent above 1.15 grows faster than \
         the data.\n\n| figure | {} accounts | {} accounts | growth |\n| --- | ---: | ---: | --- |\n{}\n",
        full.sources,
        full.days,
        full.workers,
        small.accounts,
        full.accounts,
        table.join("\n")
    )
}
