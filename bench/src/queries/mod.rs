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
//!   unreferenced files until vacuum) are handed to `bench/duckdb_queries.py` and
//!   `bench/polars_queries.py`, which run the same statements in DuckDB and in Polars' SQL,
//!   in process, with the same warm-up and median (a statement Polars cannot run is marked).
//! - `bench/RESULTS.md` gets per-query times, ratios and geometric means per layout, `SELECT 1`
//!   and whole-table transfer rates in process and over Flight SQL, with the machine, date and
//!   versions.
//!
//! - Ingest (`crate::ingest`): JSON payloads → table rows/s against DuckDB's `read_json` →
//!   Parquet, in the same run.
//! - `bench/chart.py` draws the ratios as `<results>.png` (bench/RESULTS.png).
//!
//! Not yet measured here (issue 19): DuckDB's Delta extension (on PyPI only for DuckDB 1.5,
//! not the 2.0 measured here).

pub(crate) mod data;
mod peers;
mod report;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use arrow_flight::sql::client::FlightSqlServiceClient;
use engine::{StorageConfig, Warehouse, WarehouseSession};
use tonic::transport::Channel;

use data::{active_files, dataset};
use peers::{run_peer, Peer};
use report::{render, render_ingest, write_chart};
pub use tidemark_bench::suite::{first_day, statements, Size};

/// Median of `runs` timed runs of `run` (after one warm-up); and the row count it returned.
pub(crate) async fn median_of<F, Fut>(runs: usize, mut run: F) -> anyhow::Result<(Duration, usize)>
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
pub(crate) async fn in_process(session: &WarehouseSession, sql: &str) -> anyhow::Result<usize> {
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
#[derive(Debug, Clone)]
struct Figure {
    tidemark: Duration,
    /// Through `tidemark serve` over Flight SQL on loopback (result cache off).
    flight: Duration,
    duckdb: Option<Duration>,
    /// Polars' SQL, or why it could not run the statement.
    polars: Option<Result<Duration, String>>,
    rows: usize,
}

/// One layout's figures: per statement (by index), `SELECT 1` in process and over Flight, and
/// the whole table's transfer rates.
struct Figures {
    statements: BTreeMap<usize, Figure>,
    select_one: (Duration, Duration),
    throughput: Throughput,
}

/// `SELECT * FROM ad_performance` collected in process, fetched over Flight SQL fresh (result
/// cache off; every endpoint at once) and fetched again from a server's result cache.
struct Throughput {
    rows: u64,
    bytes: u64,
    in_process: Duration,
    fresh: Duration,
    cached: Duration,
}

/// Rows the throughput statement fetches, about (whole days of the table up to this many).
const THROUGHPUT_ROWS: usize = 1_008_000;

/// The statement the throughput figures are for: every column of the first days of the table,
/// about [`THROUGHPUT_ROWS`] rows (the whole table at the small size), so the result, the
/// result cache and the client's copy stay well inside memory at every size.
fn throughput_statement(size: &Size) -> String {
    let per_day = size.sources * size.accounts * size.ads;
    let days = THROUGHPUT_ROWS
        .div_ceil(per_day.max(1))
        .min(size.days as usize);
    let end = first_day() + chrono::Days::new(days as u64);
    format!("SELECT * FROM ad_performance WHERE date < DATE '{end}'")
}

async fn measure_throughput(
    sql: &str,
    session: &WarehouseSession,
    warehouse: &Warehouse,
    fresh: &FlightSqlServiceClient<Channel>,
    runs: usize,
) -> anyhow::Result<Throughput> {
    let collect = || async {
        let batches = session.sql(sql).await?.collect().await?;
        let rows = batches.iter().map(|b| b.num_rows() as u64).sum::<u64>();
        let bytes = batches.iter().map(crate::flight::arrow_bytes).sum::<u64>();
        anyhow::Ok((rows, bytes))
    };
    let (rows, bytes) = collect().await?;
    let (in_process, _) = median_of(runs, || async { Ok(collect().await?.0 as usize) }).await?;
    // Big enough to keep the result (a result may take a quarter of the cache).
    let server = crate::flight::start_server(
        warehouse.clone(),
        1_000_000,
        4 * bytes as usize + (64 << 20),
    )
    .await?;
    let cached = crate::flight::client(server).await?;
    let (fresh, fetched) = median_of(runs, || over_flight(fresh, sql)).await?;
    anyhow::ensure!(
        fetched as u64 == rows,
        "{fetched} rows over Flight SQL, {rows} in process"
    );
    let (cached, fetched) = median_of(runs, || over_flight(&cached, sql)).await?;
    anyhow::ensure!(
        fetched as u64 == rows,
        "{fetched} rows from the result cache, {rows} in process"
    );
    Ok(Throughput {
        rows,
        bytes,
        in_process,
        fresh,
        cached,
    })
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
        throughput: measure_throughput(
            &throughput_statement(size),
            &session,
            &warehouse,
            &client,
            runs,
        )
        .await?,
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
                polars: None,
                rows,
            },
        );
    }
    // The peers over the same files, same statements, same warm-up and median.
    let files = active_files(&warehouse).await?;
    let list = dir.join("files.txt");
    std::fs::write(&list, files.join("\n"))?;
    let queries: Vec<serde_json::Value> = statements
        .iter()
        .enumerate()
        .filter(|(_, (_, _, peers))| *peers)
        .map(|(i, (_, sql, _))| serde_json::json!({"id": i, "sql": sql}))
        .collect();
    let accounts = dir.join("seeds/accounts.csv");
    for (peer, script) in [
        (Peer::DuckDb, "duckdb_queries.py"),
        (Peer::Polars, "polars_queries.py"),
    ] {
        let answers = run_peer(python, script, &list, &accounts, runs, &queries)?;
        for answer in answers {
            let id = answer["id"].as_u64().context("id")? as usize;
            let entry = figures.statements.get_mut(&id).context("known statement")?;
            let time = match (answer["seconds"].as_f64(), answer["rows"].as_u64()) {
                (Some(seconds), Some(rows)) => {
                    anyhow::ensure!(
                        entry.rows == rows as usize,
                        "{}: tidemark returned {} rows, {peer:?} {rows}",
                        statements[id].0,
                        entry.rows
                    );
                    Ok(Duration::from_secs_f64(seconds))
                }
                _ => Err(answer["error"].as_str().unwrap_or("no answer").to_string()),
            };
            match peer {
                // DuckDB runs every statement it is given: an error is the bench's bug.
                Peer::DuckDb => entry.duckdb = Some(time.map_err(anyhow::Error::msg)?),
                Peer::Polars => entry.polars = Some(time),
            }
        }
    }
    Ok(figures)
}

/// What a run measures: which layouts, and whether the ingest comparison too.
pub struct Selection {
    pub layouts: Vec<String>,
    pub ingest: bool,
    /// Measure the data a previous run of the same size left in the dir.
    pub reuse: bool,
}

/// Run the suite at `size` in `dir`, writing the report to `results`.
pub async fn run(
    size: &str,
    runs: usize,
    dir: PathBuf,
    results: PathBuf,
    python: String,
    selection: Selection,
) -> anyhow::Result<()> {
    let size = Size::named(size)?;
    for layout in &selection.layouts {
        anyhow::ensure!(
            ["fragmented", "compacted"].contains(&layout.as_str()),
            "layout {layout:?}: use fragmented or compacted"
        );
    }
    let data = dataset(&dir, &size, selection.reuse).await?;
    let mut layouts = Vec::new();
    for name in ["fragmented", "compacted"] {
        if !selection.layouts.iter().any(|l| l == name) {
            continue;
        }
        eprintln!("measuring the {name} layout ({runs} runs per statement)");
        layouts.push((
            name,
            measure_layout(&dir.join(name), &size, data.versions, runs, &python).await?,
        ));
    }
    let mut report = render(&size, runs, &layouts, &data, &python);
    if selection.ingest {
        eprintln!(
            "ingest: landing {} days of Meta pages for {} accounts, then timing the replay and DuckDB",
            size.ingest.1, size.ingest.0
        );
        let ingest =
            crate::ingest::measure(&dir, size.ingest.0, size.ingest.1, runs, &python).await?;
        report.push_str(&render_ingest(&ingest));
    }
    std::fs::write(&results, &report)?;
    print!("{report}");
    let chart = write_chart(&dir, &results, &size, &layouts, &python)?;
    eprintln!("wrote {} and {}", results.display(), chart.display());
    Ok(())
}
