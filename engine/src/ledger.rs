//! The slice ledger: one row per (source, account, day) saying when a sync last replaced the
//! slice, in which run, at which table versions, with how many rows, and when its source
//! stops restating it (the day *settles*).
//!
//! The ledger is a Delta table of the system namespace (`_tidemark/tables/slices`), written
//! with the replace contract right after a batch's data commits and before the job is
//! journaled as done, so it never runs ahead of the data and a resumed job rewrites it. It is
//! queried as `tidemark.slices`; its `settled` column is computed when the query runs (a day
//! settles by the clock, not by a write).

use std::sync::Arc;

use arrow::array::{
    Array, AsArray, Date32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Date32Type, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, NaiveDate, Utc};
use datafusion::catalog::TableProvider;
use datafusion::datasource::{provider_as_source, MemTable, ViewTable};
use datafusion::logical_expr::{col, LogicalPlanBuilder};

use crate::error::{Error, Result};
use crate::slice::{SliceKey, SliceLayout};
use crate::warehouse::{Namespace, Warehouse};
use crate::ReplaceReport;

/// The ledger's table name in the system namespace (`tidemark.slices` in SQL).
pub const SLICES: &str = "slices";

/// The ledger's record of one slice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceRecord {
    pub source: String,
    pub account: String,
    pub date: NaiveDate,
    /// When the commit that last replaced the slice was made.
    pub synced_at: DateTime<Utc>,
    /// The run whose job replaced it.
    pub run: String,
    /// The per-source table and the version that commit made.
    pub source_table: String,
    pub source_table_version: u64,
    /// The `ad_performance` version that commit made.
    pub table_version: u64,
    /// Rows the slice holds in `ad_performance`.
    pub rows: u64,
    /// When the source stops restating this day (after this, the day's numbers are final).
    pub settles_at: DateTime<Utc>,
}

impl SliceRecord {
    /// Whether the day has settled at `now`.
    pub fn is_settled(&self, now: DateTime<Utc>) -> bool {
        self.settles_at <= now
    }
}

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The stored columns of the ledger.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("source", DataType::Utf8, false),
        Field::new("account_id", DataType::Utf8, false),
        Field::new("date", DataType::Date32, false),
        Field::new("synced_at", timestamp(), true),
        Field::new("run", DataType::Utf8, true),
        Field::new("source_table", DataType::Utf8, true),
        Field::new("source_table_version", DataType::Int64, true),
        Field::new("table_version", DataType::Int64, true),
        Field::new("rows", DataType::Int64, true),
        Field::new("settles_at", timestamp(), true),
    ]))
}

fn to_batch(records: &[SliceRecord]) -> Result<RecordBatch> {
    let micros = |t: &DateTime<Utc>| t.timestamp_micros();
    let text = |f: fn(&SliceRecord) -> &str| {
        Arc::new(StringArray::from_iter_values(records.iter().map(f))) as Arc<dyn Array>
    };
    let number = |f: fn(&SliceRecord) -> u64| {
        Arc::new(Int64Array::from_iter_values(
            records.iter().map(|r| f(r) as i64),
        )) as Arc<dyn Array>
    };
    let time = |f: fn(&SliceRecord) -> &DateTime<Utc>| {
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(records.iter().map(|r| micros(f(r))))
                .with_timezone("UTC"),
        ) as Arc<dyn Array>
    };
    let columns = vec![
        text(|r| &r.source),
        text(|r| &r.account),
        Arc::new(Date32Array::from_iter_values(
            records.iter().map(|r| Date32Type::from_naive_date(r.date)),
        )) as Arc<dyn Array>,
        time(|r| &r.synced_at),
        text(|r| &r.run),
        text(|r| &r.source_table),
        number(|r| r.source_table_version),
        number(|r| r.table_version),
        number(|r| r.rows),
        time(|r| &r.settles_at),
    ];
    Ok(RecordBatch::try_new(schema(), columns)?)
}

/// Record that `records`' slices were replaced, idempotently under the batch's `job` id.
pub async fn record(
    warehouse: &Warehouse,
    records: &[SliceRecord],
    job: &str,
) -> Result<ReplaceReport> {
    let slices = records
        .iter()
        .map(|r| SliceKey::new(&r.source, &r.account, r.date));
    warehouse
        .replace_system_slices(SLICES)
        .with_layout(SliceLayout::default())
        .with_slices(slices)
        .with_rows([to_batch(records)?])
        .with_job(job, 1)
        .await
}

/// Every record of the ledger (empty when nothing was synced yet), its times to the
/// millisecond (the precision of the Delta statistics most records are read from).
pub async fn read(warehouse: &Warehouse) -> Result<Vec<SliceRecord>> {
    if !warehouse.exists(Namespace::System, SLICES).await? {
        return Ok(Vec::new());
    }
    let table = warehouse.open_table(Namespace::System, SLICES).await?;
    // One record per file until compaction packs them: most records come from the log.
    let batches = crate::scan::read_rows(&table, warehouse.query_runtime().clone()).await?;
    let mut out = Vec::new();
    for batch in &batches {
        out.extend(from_batch(batch)?);
    }
    let to_millis =
        |t: DateTime<Utc>| DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t);
    for record in &mut out {
        record.synced_at = to_millis(record.synced_at);
        record.settles_at = to_millis(record.settles_at);
    }
    Ok(out)
}

fn from_batch(batch: &RecordBatch) -> Result<Vec<SliceRecord>> {
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| Error::MissingRequiredColumn {
                table: SLICES.into(),
                column: name.into(),
            })
    };
    let text = |name: &str| -> Result<StringArray> {
        Ok(arrow::compute::cast(column(name)?, &DataType::Utf8)?
            .as_string::<i32>()
            .clone())
    };
    let number = |name: &str| -> Result<Int64Array> {
        Ok(column(name)?
            .as_primitive::<arrow::datatypes::Int64Type>()
            .clone())
    };
    let time = |name: &str| -> Result<TimestampMicrosecondArray> {
        Ok(column(name)?
            .as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
            .clone())
    };
    let (source, account, run, table) = (
        text("source")?,
        text("account_id")?,
        text("run")?,
        text("source_table")?,
    );
    let date = column("date")?.as_primitive::<Date32Type>().clone();
    let (source_version, version, rows) = (
        number("source_table_version")?,
        number("table_version")?,
        number("rows")?,
    );
    let (synced, settles) = (time("synced_at")?, time("settles_at")?);
    let instant = |a: &TimestampMicrosecondArray, i: usize| {
        DateTime::from_timestamp_micros(a.value(i)).unwrap_or_default()
    };
    Ok((0..batch.num_rows())
        .map(|i| SliceRecord {
            source: source.value(i).to_string(),
            account: account.value(i).to_string(),
            date: Date32Type::to_naive_date_opt(date.value(i)).unwrap_or_default(),
            synced_at: instant(&synced, i),
            run: run.value(i).to_string(),
            source_table: table.value(i).to_string(),
            source_table_version: source_version.value(i) as u64,
            table_version: version.value(i) as u64,
            rows: rows.value(i) as u64,
            settles_at: instant(&settles, i),
        })
        .collect())
}

/// `tidemark.slices`: the stored ledger plus `settled` (`settles_at <= now()`, evaluated per query).
pub fn view(stored: Arc<dyn TableProvider>) -> Result<Arc<dyn TableProvider>> {
    let mut columns: Vec<_> = schema().fields().iter().map(|f| col(f.name())).collect();
    columns.push(
        col("settles_at")
            .lt_eq(datafusion::functions::datetime::expr_fn::now())
            .alias("settled"),
    );
    let plan = LogicalPlanBuilder::scan(SLICES, provider_as_source(stored), None)?
        .project(columns)?
        .build()?;
    Ok(Arc::new(ViewTable::new(plan, None)))
}

/// The ledger view over no rows, for a warehouse that has not synced yet.
pub fn empty_view() -> Result<Arc<dyn TableProvider>> {
    view(Arc::new(MemTable::try_new(schema(), vec![vec![]])?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record_for(account: &str, day: u32) -> SliceRecord {
        let at = DateTime::parse_from_rfc3339("2026-11-20T10:00:00Z")
            .unwrap()
            .to_utc();
        SliceRecord {
            source: "meta".into(),
            account: account.into(),
            date: NaiveDate::from_ymd_opt(2026, 11, day).unwrap(),
            synced_at: at,
            run: "r1".into(),
            source_table: "meta_insights".into(),
            source_table_version: 3,
            table_version: 7,
            rows: 12,
            settles_at: at + chrono::Duration::days(28),
        }
    }

    #[test]
    fn records_survive_a_batch_round_trip() {
        let records = vec![record_for("1", 1), record_for("2", 2)];
        let batch = to_batch(&records).unwrap();
        assert_eq!(from_batch(&batch).unwrap(), records);
    }

    #[tokio::test]
    async fn ledger_replaces_records_per_slice() {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = Warehouse::open(
            dir.path().to_str().unwrap(),
            &crate::StorageConfig::default(),
        )
        .await
        .unwrap();
        assert!(read(&warehouse).await.unwrap().is_empty());
        record(
            &warehouse,
            &[record_for("1", 1), record_for("1", 2)],
            "job-a",
        )
        .await
        .unwrap();
        let mut newer = record_for("1", 2);
        newer.run = "r2".into();
        newer.rows = 3;
        record(&warehouse, std::slice::from_ref(&newer), "job-b")
            .await
            .unwrap();
        let mut all = read(&warehouse).await.unwrap();
        all.sort_by_key(|r| r.date);
        assert_eq!(all, vec![record_for("1", 1), newer]);
    }
}
