//! `compaction`: query time on a fragmented table (one file per slice, as syncs leave it)
//! against the same table after `tidemark compact`, and the time compaction takes. Two
//! queries: a whole-table aggregate by day (as a mart refresh or a dashboard reads) and one
//! account's rows over every day (as a slice-level drill-down reads).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use arrow::array::{Date32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Date32Type, Field, Schema};
use chrono::NaiveDate;
use engine::maintenance::{self, CompactOptions, Settled};
use engine::{Namespace, SliceKey, Warehouse, WarehouseSession};

const QUERIES: [(&str, &str); 2] = [
    (
        "aggregate by day",
        "SELECT date, sum(clicks) AS clicks, sum(installs) AS installs FROM frag GROUP BY date",
    ),
    (
        "one account, all days",
        "SELECT date, campaign_id, sum(clicks) AS clicks FROM frag WHERE account_id = 'act17' GROUP BY date, campaign_id",
    ),
];

/// One account's day: `rows` ads over 25 campaigns.
fn slice_rows(day: NaiveDate, account: usize, rows: usize) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("source", DataType::Utf8, false),
        Field::new("account_id", DataType::Utf8, false),
        Field::new("date", DataType::Date32, false),
        Field::new("campaign_id", DataType::Utf8, true),
        Field::new("ad_id", DataType::Utf8, true),
        Field::new("clicks", DataType::Int64, true),
        Field::new("installs", DataType::Int64, true),
    ]));
    let n = rows as i64;
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec!["meta"; rows])),
            Arc::new(StringArray::from(vec![format!("act{account}"); rows])),
            Arc::new(Date32Array::from(vec![
                Date32Type::from_naive_date(day);
                rows
            ])),
            Arc::new(StringArray::from_iter_values(
                (0..rows).map(|i| format!("c{}", i % 25)),
            )),
            Arc::new(StringArray::from_iter_values(
                (0..rows).map(|i| format!("ad{i}")),
            )),
            Arc::new(Int64Array::from_iter_values(
                (0..n).map(|i| (i * 7 + account as i64) % 500),
            )),
            Arc::new(Int64Array::from_iter_values((0..n).map(|i| i % 13))),
        ],
    )
    .expect("bench rows")
}

/// Best of `repeats` runs of `sql` in a fresh session each time (cold table handles).
async fn best_time(
    warehouse: &Warehouse,
    sql: &str,
    repeats: usize,
) -> anyhow::Result<(Duration, usize)> {
    let mut best = Duration::MAX;
    let mut rows = 0;
    for _ in 0..repeats {
        let started = Instant::now();
        let session = WarehouseSession::new(warehouse.clone()).await?;
        let batches = session.sql(sql).await?.collect().await?;
        best = best.min(started.elapsed());
        rows = batches.iter().map(RecordBatch::num_rows).sum();
    }
    Ok((best, rows))
}

pub async fn run(
    accounts: usize,
    days: u32,
    rows: usize,
    dir: std::path::PathBuf,
) -> anyhow::Result<()> {
    let warehouse =
        Warehouse::open(dir.to_str().context("utf-8 path")?, &Default::default()).await?;
    println!("building table `frag`: {days} days × {accounts} accounts × {rows} rows, one file per slice");
    let start = NaiveDate::from_ymd_opt(2026, 8, 1).expect("date");
    for d in 0..days {
        let day = start + chrono::Days::new(u64::from(d));
        let batches: Vec<RecordBatch> = (0..accounts).map(|a| slice_rows(day, a, rows)).collect();
        warehouse
            .replace_slices("frag")
            .with_slices((0..accounts).map(|a| SliceKey::new("meta", format!("act{a}"), day)))
            .with_rows(batches)
            .await?;
    }
    let mut before = Vec::new();
    for (name, sql) in QUERIES {
        best_time(&warehouse, sql, 1).await?; // warm the page cache
        before.push((name, best_time(&warehouse, sql, 5).await?));
    }
    // Every day is settled ("today" well after them): packed and clustered.
    let options = CompactOptions {
        settled: Settled::before(start + chrono::Days::new(u64::from(days) + 60), 30),
        ..Default::default()
    };
    let report =
        maintenance::compact(&warehouse, Namespace::Tables, "frag", &options, &|_, _| {}).await?;
    println!(
        "compaction: {} files → {} ({:.1} MiB), {} partitions clustered, in {:.2} s",
        report.files_before,
        report.files_after,
        report.bytes_after as f64 / (1024.0 * 1024.0),
        report.settled_partitions,
        report.elapsed.as_secs_f64()
    );
    for (name, (fragmented, rows_before)) in before {
        let sql = QUERIES.iter().find(|(n, _)| *n == name).expect("query").1;
        let (compacted, rows_after) = best_time(&warehouse, sql, 5).await?;
        anyhow::ensure!(
            rows_before == rows_after,
            "{name}: {rows_before} rows before, {rows_after} after"
        );
        println!(
            "{name:<24} fragmented {:>8.1} ms   compacted {:>8.1} ms   speed-up {:>5.1}×",
            fragmented.as_secs_f64() * 1e3,
            compacted.as_secs_f64() * 1e3,
            fragmented.as_secs_f64() / compacted.as_secs_f64()
        );
    }
    Ok(())
}
