//! Ingest: JSON payloads → table rows per second, tidemark against DuckDB in the same run.
//!
//! Meta insights pages are synced once from the built-in simulator, which lands them under
//! `raw/runs/bench/` as the platform returned them (gzipped JSON). tidemark's figure is a
//! replay of that run: its whole load path with no network (read each page, parse, normalize
//! strings and micros into typed columns, write Parquet, replace the slices and commit). The
//! peer is DuckDB's `read_json` over the same `.json.gz` pages, unnested to one row per insight
//! row and written to Parquet with `COPY … TO` (`bench/duckdb_ingest.py`). Both are the median
//! of several runs after a warm-up and must agree on the row count.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use connectors::config::{Platform, ProjectConfig};
use connectors::sim::SimConfig;
use connectors::sync::SyncOptions;
use connectors::Window;
use engine::{StorageConfig, Warehouse};

/// The run the pages are landed under.
const RUN: &str = "bench";

/// What the ingest comparison measured.
pub struct Ingest {
    pub pages: usize,
    pub rows: usize,
    pub bytes: u64,
    pub tidemark: Duration,
    pub duckdb: Duration,
}

impl Ingest {
    pub fn rows_per_second(&self, time: Duration) -> f64 {
        self.rows as f64 / time.as_secs_f64()
    }
}

/// Land `days` days of Meta pages for `accounts` simulated accounts in `dir`, then time the
/// replay and DuckDB over the same pages, `runs` times each.
pub async fn measure(
    dir: &Path,
    accounts: usize,
    days: u64,
    runs: usize,
    python: &str,
) -> anyhow::Result<Ingest> {
    let today = chrono::NaiveDate::from_ymd_opt(2026, 11, 20).expect("valid date");
    let sim = connectors::sim::start_local(SimConfig {
        accounts: accounts.clamp(1, 4),
        today,
        meta_job_polls: 1,
        // 3 campaigns × 2 ad groups × 40 ads: 240 insight rows per account-day page.
        ads_per_group: 40,
        ..SimConfig::default()
    })
    .await?;
    let ids: Vec<String> = sim
        .world
        .account_ids(Platform::Meta)
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect();
    let config: ProjectConfig = toml::from_str(&format!(
        "[sources.meta]\nbase_url = \"{}\"\naccess_token = {{ env = \"UNUSED\" }}\naccounts = [{}]\nchunk_days = 1\npoll_interval = \"1ms\"\nmax_concurrency = 16\n",
        sim.base_url(),
        ids.join(", ")
    ))?;
    let clients = tidemark_bench::scale::simulated_clients(&sim, &config)?;
    let root = dir.join("ingest");
    if root.exists() {
        std::fs::remove_dir_all(&root)?;
    }
    let warehouse = Warehouse::open(
        root.to_str().context("utf-8 path")?,
        &StorageConfig::default(),
    )
    .await?;
    let window = Window::trailing_days(today, days);
    let options = SyncOptions {
        run: RUN.into(),
        today,
        window: Some(window),
        accounts: None,
        workers: 16,
        commit_every: 100,
    };
    let synced = connectors::sync::sync(&warehouse, &clients, &[window], &options, &|_| {}).await?;
    anyhow::ensure!(synced.is_clean(), "the landing sync was not clean");
    let pages: usize = synced.sources.iter().map(|s| s.pages).sum();

    let (tidemark, rows) = crate::queries::median_of(runs, || async {
        let report = connectors::sync::replay(&warehouse, &clients, RUN, &|_| {}).await?;
        Ok(report.sources.iter().map(|s| s.rows).sum())
    })
    .await?;

    let raw = root.join("raw/runs").join(RUN).join("meta");
    let glob = format!("{}/*/*/[0-9]*.json.gz", raw.display());
    let bytes = walk_bytes(&raw)?;
    let parquet = dir.join("ingest-duckdb.parquet");
    let args = [
        glob.into(),
        parquet.into_os_string(),
        runs.to_string().into(),
    ];
    let out = crate::python::run_script(python, "duckdb_ingest.py", args, "`duckdb` package")?;
    let answer: serde_json::Value = serde_json::from_slice(&out)?;
    let duck_rows = answer["rows"].as_u64().context("rows")? as usize;
    anyhow::ensure!(
        duck_rows == rows,
        "ingest: tidemark loaded {rows} rows, DuckDB {duck_rows}"
    );
    Ok(Ingest {
        pages,
        rows,
        bytes,
        tidemark,
        duckdb: Duration::from_secs_f64(answer["seconds"].as_f64().context("seconds")?),
    })
}

/// Bytes of the files under `dir` (the gzipped pages).
fn walk_bytes(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        total += if entry.file_type()?.is_dir() {
            walk_bytes(&entry.path())?
        } else {
            entry.metadata()?.len()
        };
    }
    Ok(total)
}
