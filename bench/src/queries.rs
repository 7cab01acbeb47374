//! `queries`: mart-style query times of tidemark against DuckDB over the same Parquet files,
//! measured in one run, on a deterministic `ad_performance` in two layouts.
//!
//! - The generator writes sources × accounts × days × ads with long-tail spend and many
//!   zero-delivery rows, one replace per (source, day) as syncs leave it: one file per slice
//!   (the fragmented layout). A copy is then compacted (every day settled) for the compacted
//!   layout. An `accounts` dimension is loaded as a seed.
//! - Each query runs through `sql::run_statement` (tidemark's statement path) in one warm
//!   session per layout, and through `tidemark serve`'s Flight SQL service on loopback (one
//!   logged-in connection, result cache off, every endpoint fetched); each figure is the median
//!   of `runs` runs after one warm-up. `SELECT 1` is timed both ways too.
//! - The table's active Parquet files (from the Delta log, not a glob: compaction leaves
//!   unreferenced files until vacuum) are handed to `bench/duckdb_queries.py`, which runs the
//!   same statements in DuckDB in-process with the same warm-up and median.
//! - `bench/RESULTS.md` gets per-query times, tidemark/DuckDB ratios and geometric means per
//!   layout, with the machine, date and versions.
//!
//! Not yet measured here (issue 19): Polars, DuckDB's Delta extension
//! (it downloads itself, which CI cannot), ingest and the PNG chart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use arrow_flight::sql::client::FlightSqlServiceClient;
use chrono::NaiveDate;
use connectors::normalize::{self, AdRow};
use engine::maintenance::{self, CompactOptions, Settled};
use engine::{Namespace, SliceKey, StorageConfig, Warehouse, WarehouseSession};
use tonic::transport::Channel;

/// How much data a run generates.
#[derive(Debug, Clone, Copy)]
pub struct Size {
    pub name: &'static str,
    pub sources: usize,
    pub accounts: usize,
    pub days: u32,
    /// Ads per account (each reports every day it is live).
    pub ads: usize,
}

impl Size {
    pub fn named(name: &str) -> anyhow::Result<Self> {
        let (sources, accounts, days, ads) = match name {
            // ~25 k rows: to try the suite out.
            "tiny" => (4, 8, 35, 90),
            // ~1 M rows: the CI smoke size.
            "small" => (4, 20, 60, 210),
            // ~20 M rows.
            "medium" => (4, 200, 120, 210),
            // ~100 M rows.
            "large" => (4, 500, 240, 210),
            other => anyhow::bail!("size {other:?}: use tiny, small, medium or large"),
        };
        Ok(Size {
            name: match name {
                "tiny" => "tiny",
                "small" => "small",
                "medium" => "medium",
                _ => "large",
            },
            sources,
            accounts,
            days,
            ads,
        })
    }

    pub fn rows(&self) -> usize {
        self.sources * self.accounts * self.days as usize * self.ads
    }
}

const SOURCES: [&str; 4] = ["meta", "google_ads", "naver_search_ad", "kakao_moment"];
const FIRST_DAY: (i32, u32, u32) = (2026, 6, 1);

fn first_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(FIRST_DAY.0, FIRST_DAY.1, FIRST_DAY.2).expect("valid date")
}

/// The benchmark's statements: (name, SQL, whether DuckDB can run it too).
pub fn statements(size: &Size, versions: (u64, u64)) -> Vec<(&'static str, String, bool)> {
    let last = first_day() + chrono::Days::new(u64::from(size.days) - 1);
    let month_ago = last - chrono::Days::new(29);
    let week_ago = last - chrono::Days::new(6);
    vec![
        ("spend by source and day", "SELECT source, date, sum(spend) AS spend FROM ad_performance GROUP BY source, date ORDER BY source, date".to_string(), true),
        ("ROAS by campaign", "SELECT campaign_id, CAST(sum(revenue) AS DOUBLE) / nullif(CAST(sum(spend) AS DOUBLE), 0) AS roas FROM ad_performance GROUP BY campaign_id ORDER BY roas DESC NULLS LAST, campaign_id LIMIT 20".to_string(), true),
        ("top ads by CPI", "SELECT ad_id, CAST(sum(spend) AS DOUBLE) / sum(installs) AS cpi FROM ad_performance GROUP BY ad_id HAVING sum(installs) > 0 ORDER BY cpi, ad_id LIMIT 20".to_string(), true),
        ("30-day account window", format!("SELECT date, sum(impressions) AS impressions, sum(clicks) AS clicks, sum(spend) AS spend FROM ad_performance WHERE account_id = 'acct0007' AND date BETWEEN DATE '{month_ago}' AND DATE '{last}' GROUP BY date ORDER BY date"), true),
        ("week-over-week deltas", "WITH w AS (SELECT source, date_trunc('week', date) AS week, sum(spend) AS spend FROM ad_performance GROUP BY source, date_trunc('week', date)) SELECT source, week, spend, spend - lag(spend) OVER (PARTITION BY source ORDER BY week) AS delta FROM w ORDER BY source, week".to_string(), true),
        ("rolling 7-day installs", "WITH d AS (SELECT date, sum(installs) AS installs FROM ad_performance GROUP BY date) SELECT date, sum(installs) OVER (ORDER BY date ROWS BETWEEN 6 PRECEDING AND CURRENT ROW) AS installs_7d FROM d ORDER BY date".to_string(), true),
        ("distinct active ads", "SELECT date, count(DISTINCT ad_id) AS active_ads FROM ad_performance WHERE impressions > 0 GROUP BY date ORDER BY date".to_string(), true),
        ("CTR by account and month", "SELECT account_id, date_trunc('month', date) AS month, CAST(sum(clicks) AS DOUBLE) / nullif(sum(impressions), 0) AS ctr FROM ad_performance GROUP BY account_id, date_trunc('month', date) ORDER BY account_id, month".to_string(), true),
        ("one account's last week", format!("SELECT * FROM ad_performance WHERE account_id = 'acct0003' AND date >= DATE '{week_ago}' ORDER BY date, ad_id"), true),
        ("count", "SELECT count(*) AS n FROM ad_performance".to_string(), true),
        ("join to account dimension", "SELECT a.region, a.tier, sum(p.spend) AS spend, sum(p.installs) AS installs FROM ad_performance p JOIN accounts a ON p.account_id = a.account_id GROUP BY a.region, a.tier ORDER BY a.region, a.tier".to_string(), true),
        ("cost per install by source and month", "SELECT source, date_trunc('month', date) AS month, CAST(sum(spend) AS DOUBLE) / nullif(sum(installs), 0) AS cpi FROM ad_performance GROUP BY source, date_trunc('month', date) ORDER BY source, month".to_string(), true),
        ("time travel: two versions compared", format!(
            "SELECT n.source, sum(n.spend) - sum(o.spend) AS change FROM (SELECT source, sum(spend) AS spend FROM ad_performance VERSION AS OF {} GROUP BY source) n JOIN (SELECT source, sum(spend) AS spend FROM ad_performance VERSION AS OF {} GROUP BY source) o ON n.source = o.source GROUP BY n.source ORDER BY n.source",
            versions.1, versions.0
        ), false),
    ]
}

/// A stable pseudo-random number.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// One (source, account, day) slice: every ad of the account, a third of them idle that day,
/// spend long-tailed (a few ads take most of it).
fn slice_rows(source: usize, account: usize, day: NaiveDate, ads: usize) -> Vec<AdRow> {
    let d = day.to_epoch_days() as u64;
    (0..ads)
        .map(|ad| {
            let h = mix((source as u64) << 48 ^ (account as u64) << 24 ^ (ad as u64) << 8 ^ d);
            let idle = h.is_multiple_of(3);
            // Long tail: spend ∝ 1/(rank+1) with noise.
            let weight = 1_000_000 / (ad as i64 + 1);
            let impressions = if idle {
                0
            } else {
                50 + (h >> 8) as i64 % (weight / 20 + 1)
            };
            let clicks = impressions * ((h >> 20) % 40) as i64 / 1000;
            let installs = clicks * ((h >> 28) % 12) as i64 / 100;
            let spend = i128::from(clicks) * i128::from(100_000 + (h >> 36) as i64 % 900_000);
            AdRow {
                account_id: format!("acct{account:04}"),
                date: Some(day),
                account_name: Some(format!("Account {account}")),
                campaign_id: Some(format!("s{source}a{account}c{}", ad % 12)),
                campaign_name: Some(format!("Campaign {}", ad % 12)),
                ad_group_id: Some(format!("s{source}a{account}g{}", ad % 40)),
                ad_group_name: None,
                ad_id: Some(format!("s{source}a{account}ad{ad}")),
                ad_name: None,
                currency: Some(
                    if account.is_multiple_of(3) {
                        "USD"
                    } else {
                        "KRW"
                    }
                    .into(),
                ),
                impressions: Some(impressions),
                clicks: Some(clicks),
                spend: Some(spend),
                conversions: Some(installs as f64 * 0.4),
                installs: Some(installs),
                revenue: Some(spend * i128::from((h >> 44) as i64 % 300) / 100),
            }
        })
        .collect()
}

/// Write the fragmented layout: one replace per (source, day) covering every account.
/// Returns the first and the last table version.
async fn generate(warehouse: &Warehouse, size: &Size) -> anyhow::Result<(u64, u64)> {
    let started = Instant::now();
    let mut versions = (u64::MAX, 0);
    for (s, source) in SOURCES.iter().take(size.sources).enumerate() {
        for d in 0..size.days {
            let day = first_day() + chrono::Days::new(u64::from(d));
            let mut batches = Vec::new();
            for a in 0..size.accounts {
                batches.push(
                    normalize::ad_performance_batch(source, &slice_rows(s, a, day, size.ads))
                        .map_err(anyhow::Error::msg)?,
                );
            }
            let report = warehouse
                .replace_slices(engine::model::AD_PERFORMANCE)
                .with_slices(
                    (0..size.accounts).map(|a| SliceKey::new(*source, format!("acct{a:04}"), day)),
                )
                .with_rows(batches)
                .await?;
            versions.0 = versions.0.min(report.version);
            versions.1 = versions.1.max(report.version);
        }
        eprintln!(
            "  {source}: {} days written ({:.0} s so far)",
            size.days,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(versions)
}

/// The `accounts` dimension as a seed CSV.
fn write_accounts_seed(dir: &Path, size: &Size) -> anyhow::Result<PathBuf> {
    let seeds = dir.join("seeds");
    std::fs::create_dir_all(&seeds)?;
    let mut csv = String::from("account_id,region,tier\n");
    for a in 0..size.accounts {
        let region = ["KR", "JP", "US", "SEA"][a % 4];
        let tier = ["enterprise", "growth", "long_tail"][mix(a as u64) as usize % 3];
        csv.push_str(&format!("acct{a:04},{region},{tier}\n"));
    }
    let path = seeds.join("accounts.csv");
    std::fs::write(&path, csv)?;
    Ok(path)
}

/// Copy a directory tree.
fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// The table's active data files, as local paths.
async fn active_files(warehouse: &Warehouse) -> anyhow::Result<Vec<String>> {
    let table = warehouse
        .open_table(Namespace::Tables, engine::model::AD_PERFORMANCE)
        .await?;
    let files: Vec<String> = table
        .get_file_uris()?
        .map(|uri| uri.strip_prefix("file://").unwrap_or(&uri).to_string())
        .collect();
    Ok(files)
}

/// Median of `runs` timed runs of `run` (after one warm-up); and the row count it returned.
async fn median_of<F, Fut>(runs: usize, mut run: F) -> anyhow::Result<(Duration, usize)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<usize>>,
{
    let rows = run().await?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        run().await?;
        times.push(started.elapsed());
    }
    times.sort();
    Ok((times[times.len() / 2], rows))
}

/// `sql` through tidemark's statement path in `session`; the rows it returned.
async fn in_process(session: &WarehouseSession, sql: &str) -> anyhow::Result<usize> {
    let batches = sql::run_statement(session, sql)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(batches.iter().map(|b| b.num_rows()).sum())
}

/// `sql` over Flight SQL on an open, logged-in connection, every endpoint fetched; the rows.
async fn over_flight(client: &FlightSqlServiceClient<Channel>, sql: &str) -> anyhow::Result<usize> {
    let mut client = client.clone();
    let (_, rows, _) = crate::flight::fetch_on(&mut client, sql).await?;
    Ok(rows as usize)
}

/// One statement's figures in one layout.
#[derive(Debug, Clone, Copy)]
struct Figure {
    tidemark: Duration,
    /// Through `tidemark serve` over Flight SQL on loopback (result cache off).
    flight: Duration,
    duckdb: Option<Duration>,
    rows: usize,
}

/// One layout's figures: per statement (by index), and `SELECT 1` in process and over Flight.
struct Figures {
    statements: BTreeMap<usize, Figure>,
    select_one: (Duration, Duration),
}

async fn measure_layout(
    dir: &Path,
    size: &Size,
    versions: (u64, u64),
    runs: usize,
    python: &str,
) -> anyhow::Result<Figures> {
    let warehouse = Warehouse::open(
        dir.join("wh").to_str().context("utf-8 path")?,
        &StorageConfig::default(),
    )
    .await?;
    engine::marts::load_seeds(&warehouse, &dir.join("seeds")).await?;
    let session = WarehouseSession::new(warehouse.clone()).await?;
    // A warm server with its result cache off: every fetch runs the statement.
    let server = crate::flight::start_server(warehouse.clone(), 1_000_000, 0).await?;
    let client = crate::flight::client(server).await?;
    let statements = statements(size, versions);
    let mut figures = Figures {
        statements: BTreeMap::new(),
        select_one: (
            median_of(runs.max(20), || in_process(&session, "SELECT 1"))
                .await?
                .0,
            median_of(runs.max(20), || over_flight(&client, "SELECT 1"))
                .await?
                .0,
        ),
    };
    for (i, (name, sql, _)) in statements.iter().enumerate() {
        let (tidemark, rows) = median_of(runs, || in_process(&session, sql))
            .await
            .with_context(|| format!("tidemark: {name}"))?;
        let (flight, flight_rows) = median_of(runs, || over_flight(&client, sql))
            .await
            .with_context(|| format!("tidemark over Flight SQL: {name}"))?;
        anyhow::ensure!(
            rows == flight_rows,
            "{name}: {rows} rows in process, {flight_rows} over Flight SQL"
        );
        figures.statements.insert(
            i,
            Figure {
                tidemark,
                flight,
                duckdb: None,
                rows,
            },
        );
    }
    // DuckDB over the same files, same statements, same warm-up and median.
    let files = active_files(&warehouse).await?;
    let list = dir.join("files.txt");
    std::fs::write(&list, files.join("\n"))?;
    let queries: Vec<serde_json::Value> = statements
        .iter()
        .enumerate()
        .filter(|(_, (_, _, duck))| *duck)
        .map(|(i, (_, sql, _))| serde_json::json!({"id": i, "sql": sql}))
        .collect();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("duckdb_queries.py");
    let out = Command::new(python)
        .arg(&script)
        .arg(&list)
        .arg(dir.join("seeds/accounts.csv"))
        .arg(runs.to_string())
        .arg(serde_json::to_string(&queries)?)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "DuckDB side failed (needs the Python `duckdb` package):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)?;
    for answer in answers {
        let id = answer["id"].as_u64().context("id")? as usize;
        let seconds = answer["seconds"].as_f64().context("seconds")?;
        let rows = answer["rows"].as_u64().context("rows")? as usize;
        let entry = figures.statements.get_mut(&id).context("known statement")?;
        anyhow::ensure!(
            entry.rows == rows,
            "{}: tidemark returned {} rows, DuckDB {rows}",
            statements[id].0,
            entry.rows
        );
        entry.duckdb = Some(Duration::from_secs_f64(seconds));
    }
    Ok(figures)
}

fn geometric_mean(ratios: &[f64]) -> f64 {
    if ratios.is_empty() {
        return f64::NAN;
    }
    (ratios.iter().map(|r| r.ln()).sum::<f64>() / ratios.len() as f64).exp()
}

/// Run the suite at `size` in `dir`, writing the report to `results`.
pub async fn run(
    size: &str,
    runs: usize,
    dir: PathBuf,
    results: PathBuf,
    python: String,
) -> anyhow::Result<()> {
    let size = Size::named(size)?;
    let fragmented = dir.join("fragmented");
    let compacted = dir.join("compacted");
    for d in [&fragmented, &compacted] {
        if d.exists() {
            std::fs::remove_dir_all(d)?;
        }
    }
    eprintln!(
        "generating {} rows ({} sources × {} accounts × {} days × {} ads), one file per slice",
        size.rows(),
        size.sources,
        size.accounts,
        size.days,
        size.ads
    );
    let started = Instant::now();
    let warehouse = Warehouse::open(
        fragmented.join("wh").to_str().context("utf-8 path")?,
        &StorageConfig::default(),
    )
    .await?;
    let versions = generate(&warehouse, &size).await?;
    write_accounts_seed(&fragmented, &size)?;
    let generated = started.elapsed();
    copy_dir(&fragmented, &compacted)?;
    let compacted_wh = Warehouse::open(
        compacted.join("wh").to_str().context("utf-8 path")?,
        &StorageConfig::default(),
    )
    .await?;
    let options = CompactOptions {
        settled: Settled::before(
            first_day() + chrono::Days::new(u64::from(size.days) + 60),
            30,
        ),
        ..Default::default()
    };
    let compaction = maintenance::compact(
        &compacted_wh,
        Namespace::Tables,
        engine::model::AD_PERFORMANCE,
        &options,
        &|_, _| {},
    )
    .await?;
    // The compacted copy's versions: compaction added one.
    let compacted_versions = (versions.0, versions.1);
    eprintln!(
        "generated in {:.1} s; compacted {} files → {} in {:.1} s",
        generated.as_secs_f64(),
        compaction.files_before,
        compaction.files_after,
        compaction.elapsed.as_secs_f64()
    );
    let mut layouts = Vec::new();
    for (name, dir, versions) in [
        ("fragmented", &fragmented, versions),
        ("compacted", &compacted, compacted_versions),
    ] {
        eprintln!("measuring the {name} layout ({runs} runs per statement)");
        layouts.push((
            name,
            measure_layout(dir, &size, versions, runs, &python).await?,
        ));
    }
    let report = render(&size, runs, &layouts, &compaction, generated, &python);
    std::fs::write(&results, &report)?;
    print!("{report}");
    eprintln!("wrote {}", results.display());
    Ok(())
}

fn render(
    size: &Size,
    runs: usize,
    layouts: &[(&str, Figures)],
    compaction: &maintenance::CompactReport,
    generated: Duration,
    python: &str,
) -> String {
    let duckdb = Command::new(python)
        .args(["-c", "import duckdb; print(duckdb.__version__)"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let statements = statements(size, (0, 0));
    let mut out = format!(
        "# Query benchmark: tidemark vs DuckDB\n\n\
         Generated by `bench/run {}` on {} ({cores} cores, {} build). tidemark {}; DuckDB {duckdb} \
         (Python, in process, over the same Parquet files). Each figure is the median of {runs} \
         runs after one warm-up, in one warm session per engine.\n\n\
         Data: `ad_performance`, {} rows = {} sources × {} accounts × {} days × {} ads (a third idle \
         each day, long-tail spend). Fragmented: one file per (source, account, day) slice as syncs \
         leave it ({} files); compacted: after `tidemark compact` ({} files). Generation took {:.1} s.\n\n",
        size.name,
        chrono::Utc::now().format("%Y-%m-%d"),
        if cfg!(debug_assertions) { "debug" } else { "release" },
        env!("CARGO_PKG_VERSION"),
        size.rows(),
        size.sources,
        size.accounts,
        size.days,
        size.ads,
        compaction.files_before,
        compaction.files_after,
        generated.as_secs_f64(),
    );
    for (layout, figures) in layouts {
        out.push_str(&format!(
            "## {layout}\n\n| statement | rows | tidemark ms | over Flight SQL ms | DuckDB ms | tidemark / DuckDB | Flight / DuckDB |\n|---|---:|---:|---:|---:|---:|---:|\n"
        ));
        let (mut ratios, mut flight_ratios) = (Vec::new(), Vec::new());
        for (i, figure) in &figures.statements {
            let ratio_of = |t: Duration| figure.duckdb.map(|d| t.as_secs_f64() / d.as_secs_f64());
            let (ratio, flight_ratio) = (ratio_of(figure.tidemark), ratio_of(figure.flight));
            ratios.extend(ratio);
            flight_ratios.extend(flight_ratio);
            let shown = |r: Option<f64>| r.map_or("tidemark only".into(), |r| format!("{r:.2}×"));
            out.push_str(&format!(
                "| {} | {} | {:.1} | {:.1} | {} | {} | {} |\n",
                statements[*i].0,
                figure.rows,
                ms(figure.tidemark),
                ms(figure.flight),
                figure
                    .duckdb
                    .map_or("—".into(), |d| format!("{:.1}", ms(d))),
                shown(ratio),
                shown(flight_ratio),
            ));
        }
        out.push_str(&format!(
            "\n**Geometric mean tidemark / DuckDB ({layout}): {:.2}× in process, {:.2}× over Flight SQL** \
             over {} statements (target ≤ 1.0 on medium, compacted).\n\n\
             `SELECT 1`: {:.2} ms in process, {:.2} ms over Flight SQL (target ≤ 3 ms).\n\n",
            geometric_mean(&ratios),
            geometric_mean(&flight_ratios),
            ratios.len(),
            ms(figures.select_one.0),
            ms(figures.select_one.1),
        ));
    }
    out
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_and_long_tailed() {
        let day = first_day();
        let a = slice_rows(1, 2, day, 210);
        let b = slice_rows(1, 2, day, 210);
        assert_eq!(
            a.iter().map(|r| r.spend).collect::<Vec<_>>(),
            b.iter().map(|r| r.spend).collect::<Vec<_>>()
        );
        let idle = a.iter().filter(|r| r.impressions == Some(0)).count();
        assert!(idle > 40 && idle < 110, "{idle} idle of 210");
        let spend: Vec<i128> = a.iter().map(|r| r.spend.unwrap_or(0)).collect();
        let top: i128 = spend.iter().take(20).sum();
        let all: i128 = spend.iter().sum();
        assert!(
            top * 3 > all,
            "the first 20 of 210 ads take several times their tenth (uniform: ~10%): {top} of {all}"
        );
        assert_eq!(Size::named("small").unwrap().rows(), 1_008_000);
        assert!((geometric_mean(&[2.0, 0.5]) - 1.0).abs() < 1e-9);
    }
}
