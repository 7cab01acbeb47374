//! `tidemark-bench`: benchmarks that print ratios measured in one run.
//!
//! `replace`: the time to replace one slice in a table of 1,000 slices and in one of 100,000
//! slices (one file per slice, as syncs leave a table), on a local directory and on S3. The
//! replace contract promises cost that follows the slice, not the table: the ratio of the two
//! must stay under 2×. Run: `cargo run --release -p tidemark-bench -- replace`
//! (S3: pass `--s3-endpoint http://127.0.0.1:PORT --s3-url s3://bucket/prefix` with a running
//! S3-compatible server and AWS_* credentials in the environment).
//!
//! `collect`: end-to-end collection throughput against the built-in simulators (in this
//! process, on loopback): a sync of Meta and Google Ads accounts in one-day jobs, so every
//! payload is as small as the platforms return for one account-day. Prints payloads landed
//! and committed per second against the 300/s target (over a million files an hour). Run:
//! `cargo run --release -p tidemark-bench -- collect`
//!
//! `flight`: DoGet throughput (MB/s of Arrow data, rows/s) of the Flight SQL service on
//! loopback for a large table: one stream, day-split endpoints in parallel and a repeated
//! query from the result cache, against the Python ADBC client in the same run.
//! Run: `cargo run --release -p tidemark-bench -- flight`
//!
//! `queries`: twelve mart-style statements (and a time-travel one) through tidemark and
//! through DuckDB over the same Parquet files, fragmented and compacted; writes
//! `bench/RESULTS.md` with per-query ratios and geometric means. Run: `bench/run small`
//! (it builds with `cargo build --release --workspace --bin tidemark-bench`).
//!
//! `s3`: the query suite on a warehouse in S3 (moto on loopback) against the same warehouse on
//! local disk, both warm; writes `bench/RESULTS-s3.md`. Run:
//! `cargo build --release --workspace --bin tidemark-bench && target/release/tidemark-bench s3`
//!
//! `scale`: the collection pipeline at 2,000 accounts × 6 simulated platforms × 30 days, and
//! the warehouse it leaves (files, log, checkpoint, snapshot load, planning, one slice's
//! replace, compaction), beside a run at a quarter of the accounts; writes `bench/SCALE.md`.
//!
//! `compaction`: query time on a fragmented table (one file per slice) against the same table
//! after compaction, and the time compaction takes; prints the speed-up. Run:
//! `cargo run --release -p tidemark-bench -- compaction`

mod collect;
mod compaction;
mod console;
mod flight;
mod ingest;
mod python;
mod queries;
mod s3;

/// The same allocator as the `tidemark` binary, so figures match what it does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use anyhow::Context;
use arrow::array::{Date32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Date32Type, Field, Schema};
use chrono::NaiveDate;
use clap::{Parser, Subcommand};
use engine::{SliceKey, StorageConfig, Warehouse};
use std::sync::Arc;

#[derive(Debug, Parser)]
#[command(name = "tidemark-bench")]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// tidemark against DuckDB on mart-style queries; writes bench/RESULTS.md.
    Queries {
        /// small (~1 M rows, the CI smoke), medium (~20 M) or large (~100 M).
        #[arg(long, default_value = "small")]
        size: String,
        /// Timed runs per statement after one warm-up (the median is reported).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Where the warehouses are written (default: a temp dir).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
        /// The report written.
        #[arg(long, default_value = "bench/RESULTS.md")]
        results: std::path::PathBuf,
        /// The Python with the `duckdb`, `polars` and `matplotlib` packages.
        #[arg(long, default_value = "python3")]
        python: String,
        /// The layouts measured: fragmented, compacted (repeatable; default both).
        #[arg(long = "layout", default_values_t = ["fragmented".to_string(), "compacted".to_string()])]
        layouts: Vec<String>,
        /// Leave out the ingest comparison.
        #[arg(long)]
        skip_ingest: bool,
        /// Measure the data a previous run of the same size left in --dir instead of
        /// generating and compacting it again (for trying settings, e.g. DATAFUSION_* variables).
        #[arg(long, requires = "dir")]
        reuse: bool,
    },
    /// The query suite on an S3 warehouse (moto on loopback) against the same warehouse on
    /// local disk, both warm; writes bench/RESULTS-s3.md.
    S3 {
        /// tiny, small, medium or large (as for `queries`).
        #[arg(long, default_value = "small")]
        size: String,
        /// Timed runs per statement after one warm-up (the median is reported).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Where the local warehouse is written (default: a temp dir).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
        /// Reuse the data a previous `queries` or `s3` run of the same size left in --dir.
        #[arg(long, requires = "dir")]
        reuse: bool,
        /// An S3-compatible server to use instead of starting moto (bucket `tidemark-bench`,
        /// credentials from AWS_*).
        #[arg(long)]
        s3_endpoint: Option<String>,
        /// The report written.
        #[arg(long, default_value = "bench/RESULTS-s3.md")]
        results: std::path::PathBuf,
    },
    /// The collection pipeline at many accounts (all six simulated platforms), then the
    /// warehouse at that size: files, log, checkpoint, snapshot load, planning, one slice's
    /// replace, compaction; run at a quarter of the accounts too and writes bench/SCALE.md.
    Scale {
        /// Accounts per platform in the full run.
        #[arg(long, default_value_t = 2_000)]
        accounts: usize,
        /// Days synced.
        #[arg(long, default_value_t = 30)]
        days: u64,
        /// Jobs in flight across sources.
        #[arg(long, default_value_t = 64)]
        workers: usize,
        /// Where the warehouses are written (default: a temp dir).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
        /// The report written.
        #[arg(long, default_value = "bench/SCALE.md")]
        results: std::path::PathBuf,
    },
    /// Replace one slice in a small and a large table; print both times and the ratio.
    Replace {
        /// Slices in the small table.
        #[arg(long, default_value_t = 1_000)]
        small: usize,
        /// Slices in the large table.
        #[arg(long, default_value_t = 100_000)]
        large: usize,
        /// Timed replaces per table (the median is reported).
        #[arg(long, default_value_t = 15)]
        repeats: usize,
        /// Local directory for the tables (default: a temp dir).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
        /// Also run on S3 at this warehouse URL (s3://bucket/prefix).
        #[arg(long)]
        s3_url: Option<String>,
        /// Endpoint of the S3-compatible server.
        #[arg(long)]
        s3_endpoint: Option<String>,
    },
    /// The web console's pages over a warehouse of many accounts (HTTP, after a login), next
    /// to `tidemark status --format json`; writes bench/CONSOLE.md. Needs `tidemark` built
    /// beside this binary.
    Console {
        /// Accounts in the warehouse.
        #[arg(long, default_value_t = 2000)]
        accounts: usize,
        /// Days per account.
        #[arg(long, default_value_t = 30)]
        days: u64,
        /// Timed fetches per page after one warm-up (the median is reported).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Where the warehouse is written (kept and reused when it exists; default: a temp dir).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
        /// The report written.
        #[arg(long, default_value = "bench/CONSOLE.md")]
        results: std::path::PathBuf,
    },
    /// Sync small payloads from the simulators; print payloads landed and committed per second.
    Collect {
        /// Accounts per platform (1–4).
        #[arg(long, default_value_t = 4)]
        accounts: usize,
        /// Days synced (one job, one payload per account-day).
        #[arg(long, default_value_t = 60)]
        days: u64,
        /// Jobs in flight.
        #[arg(long, default_value_t = 32)]
        workers: usize,
        /// Jobs per commit.
        #[arg(long, default_value_t = 100)]
        commit_every: usize,
        /// Local directory for the warehouse (default: a temp dir).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
    /// Query a fragmented table, compact it, query again; print both times and the speed-up.
    Compaction {
        /// Accounts (slices per day).
        #[arg(long, default_value_t = 200)]
        accounts: usize,
        /// Days (partitions).
        #[arg(long, default_value_t = 30)]
        days: u32,
        /// Rows per slice.
        #[arg(long, default_value_t = 50)]
        rows: usize,
        /// Local directory for the warehouse (default: a temp dir).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
    /// Fetch a large table over Flight SQL; print MB/s and rows/s, and the Python ADBC peer.
    Flight {
        /// Rows in the table.
        #[arg(long, default_value_t = 4_000_000)]
        rows: usize,
        /// Days (partitions) they spread over.
        #[arg(long, default_value_t = 40)]
        days: u32,
        /// Local directory for the warehouse (default: a temp dir).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
}

/// Rows per slice: a day of one account's ads.
const ROWS_PER_SLICE: usize = 20;
/// Slices per build commit while filling a table.
const BUILD_CHUNK: usize = 5_000;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        match cli.bench {
            Bench::Replace {
                small,
                large,
                repeats,
                dir,
                s3_url,
                s3_endpoint,
            } => {
                let temp = tempfile_dir(dir)?;
                let local = temp.display().to_string();
                compare(
                    "local",
                    &local,
                    &StorageConfig::default(),
                    small,
                    large,
                    repeats,
                )
                .await?;
                if let Some(url) = s3_url {
                    let config = StorageConfig {
                        s3_endpoint,
                        ..Default::default()
                    };
                    compare("s3", &url, &config, small, large, repeats).await?;
                }
                Ok(())
            }
            Bench::Console {
                accounts,
                days,
                runs,
                dir,
                results,
            } => console::run(accounts, days, runs, tempfile_dir(dir)?, results).await,
            Bench::Collect {
                accounts,
                days,
                workers,
                commit_every,
                dir,
            } => collect::run(accounts, days, workers, commit_every, tempfile_dir(dir)?).await,
            Bench::Flight { rows, days, dir } => flight::run(rows, days, tempfile_dir(dir)?).await,
            Bench::Queries {
                size,
                runs,
                dir,
                results,
                python,
                layouts,
                skip_ingest,
                reuse,
            } => {
                let selection = queries::Selection {
                    layouts,
                    ingest: !skip_ingest,
                    reuse,
                };
                queries::run(
                    &size,
                    runs.max(1),
                    tempfile_dir(dir)?,
                    results,
                    python,
                    selection,
                )
                .await
            }
            Bench::S3 {
                size,
                runs,
                dir,
                reuse,
                s3_endpoint,
                results,
            } => {
                s3::run(
                    &size,
                    runs.max(1),
                    tempfile_dir(dir)?,
                    reuse,
                    s3_endpoint,
                    results,
                )
                .await
            }
            Bench::Scale {
                accounts,
                days,
                workers,
                dir,
                results,
            } => {
                use tidemark_bench::scale::{render, simulate, Shape};
                let dir = tempfile_dir(dir)?;
                let shape = |accounts| Shape {
                    accounts,
                    days,
                    workers,
                };
                let small = simulate(shape((accounts / 4).max(1)), &dir).await?;
                let full = simulate(shape(accounts), &dir).await?;
                let report = render(
                    &small,
                    &full,
                    &format!(
                        "tidemark-bench scale --accounts {accounts} --days {days} --workers {workers}"
                    ),
                );
                println!("{report}");
                std::fs::write(&results, &report)?;
                eprintln!("wrote {}", results.display());
                Ok(())
            }
            Bench::Compaction {
                accounts,
                days,
                rows,
                dir,
            } => compaction::run(accounts, days, rows, tempfile_dir(dir)?).await,
        }
    })
}

fn tempfile_dir(dir: Option<std::path::PathBuf>) -> anyhow::Result<std::path::PathBuf> {
    let dir = match dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("tidemark-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

async fn compare(
    label: &str,
    root: &str,
    config: &StorageConfig,
    small: usize,
    large: usize,
    repeats: usize,
) -> anyhow::Result<()> {
    let (small_first, small_time) =
        measure(root, config, &format!("slices_{small}"), small, repeats).await?;
    let (large_first, large_time) =
        measure(root, config, &format!("slices_{large}"), large, repeats).await?;
    println!(
        "first replace in a process (reads the table's file list once) [{label}]: {small} slices {:.1} ms, {large} slices {:.1} ms",
        ms(small_first),
        ms(large_first)
    );
    let ratio = large_time.as_secs_f64() / small_time.as_secs_f64();
    println!(
        "replace one slice [{label}]: {small} slices {:.1} ms, {large} slices {:.1} ms, ratio {ratio:.2}x (target < 2x) {}",
        ms(small_time),
        ms(large_time),
        if ratio < 2.0 { "OK" } else { "OVER TARGET" }
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Slice `i` of a table: accounts × days, 100 days per account.
fn slice(i: usize) -> SliceKey {
    let start = NaiveDate::from_ymd_opt(2024, 1, 1).expect("valid date");
    SliceKey::new(
        "meta",
        format!("act_{:06}", i / 1000),
        start + chrono::Days::new((i % 1000) as u64),
    )
}

fn rows(slices: &[SliceKey], generation: i64) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("source", DataType::Utf8, false),
        Field::new("account_id", DataType::Utf8, false),
        Field::new("date", DataType::Date32, false),
        Field::new("ad_id", DataType::Utf8, true),
        Field::new("clicks", DataType::Int64, true),
    ]));
    let n = slices.len() * ROWS_PER_SLICE;
    let each = |f: &dyn Fn(&SliceKey, usize) -> String| -> StringArray {
        let values: Vec<String> = slices
            .iter()
            .flat_map(|s| (0..ROWS_PER_SLICE).map(move |r| f(s, r)))
            .collect();
        StringArray::from_iter_values(values)
    };
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(each(&|s, _| s.source.clone())),
            Arc::new(each(&|s, _| s.account.clone())),
            Arc::new(Date32Array::from_iter_values(slices.iter().flat_map(|s| {
                std::iter::repeat_n(Date32Type::from_naive_date(s.date), ROWS_PER_SLICE)
                    .collect::<Vec<_>>()
            }))),
            Arc::new(each(&|_, r| format!("ad{r}"))),
            Arc::new(Int64Array::from_iter_values(
                (0..n as i64).map(|i| i + generation),
            )),
        ],
    )
    .expect("bench batch")
}

/// Build the table if needed, then time replaces from a freshly opened warehouse: the first
/// (which builds the slice index) and the median of the rest.
async fn measure(
    root: &str,
    config: &StorageConfig,
    table: &str,
    slices: usize,
    repeats: usize,
) -> anyhow::Result<(Duration, Duration)> {
    let warehouse = &Warehouse::open(root, config).await?;
    let built = Instant::now();
    if !warehouse.exists(engine::Namespace::Tables, table).await? {
        for start in (0..slices).step_by(BUILD_CHUNK) {
            let chunk: Vec<SliceKey> = (start..(start + BUILD_CHUNK).min(slices))
                .map(slice)
                .collect();
            warehouse
                .replace_slices(table)
                .with_slices(chunk.clone())
                .with_rows([rows(&chunk, 0)])
                .await
                .with_context(|| format!("building {table}"))?;
            eprint!(
                "\rbuilding {table}: {} / {slices} slices",
                (start + BUILD_CHUNK).min(slices)
            );
        }
        eprintln!(" ({:.1} s)", built.elapsed().as_secs_f64());
    }
    // A table synced daily gets a checkpoint every 100 commits; this one was built in a few
    // large commits, so write the checkpoint a real table of this size would have.
    let latest = warehouse
        .open_table(engine::Namespace::Tables, table)
        .await?;
    engine::deltalake::checkpoints::create_checkpoint(&latest, None)
        .await
        .with_context(|| format!("checkpointing {table}"))?;
    // What the first replace pays before its slice index exists: loading the table's
    // snapshot (deltalake reads the checkpoint and the commits since).
    let opened = Instant::now();
    Warehouse::open(root, config)
        .await?
        .open_table(engine::Namespace::Tables, table)
        .await?;
    eprintln!(
        "{table}: loading the snapshot in a fresh handle takes {:.1} ms",
        ms(opened.elapsed())
    );
    // A fresh process-like start: no cached index.
    let warehouse = &Warehouse::open(root, config).await?;
    let mut first = None;
    let mut times = Vec::with_capacity(repeats);
    for r in 0..=repeats {
        let target = vec![slice((r * 7919) % slices)];
        let started = Instant::now();
        warehouse
            .replace_slices(table)
            .with_slices(target.clone())
            .with_rows([rows(&target, r as i64 + 1)])
            .await?;
        match first {
            None => first = Some(started.elapsed()),
            Some(_) => times.push(started.elapsed()),
        }
    }
    times.sort();
    Ok((first.unwrap_or_default(), times[times.len() / 2]))
}
