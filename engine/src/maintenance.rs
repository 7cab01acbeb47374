//! Table maintenance: compaction (bin-packing the small per-slice files syncs leave into
//! large files within each partition) followed by a checkpoint, so reads and log replays stay
//! fast however many syncs ran.
//!
//! Compaction rewrites files, never rows: the content at every version is unchanged, and a
//! replace planned against the old files re-plans (the engine's conflict check sees the
//! files it meant to remove are gone).

use std::num::NonZeroU64;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::warehouse::{Namespace, Warehouse};

/// The default size files are packed to.
pub const DEFAULT_TARGET_SIZE: u64 = 128 * 1024 * 1024;

/// What compacting one table did.
#[derive(Debug, Clone, Serialize)]
pub struct CompactReport {
    pub table: String,
    pub namespace: String,
    pub files_before: usize,
    pub files_after: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub partitions_compacted: u64,
    /// The version the compaction committed, if it changed anything.
    pub version: Option<u64>,
    #[serde(skip)]
    pub elapsed: Duration,
}

fn file_totals(table: &deltalake::DeltaTable, name: &str) -> Result<(usize, u64)> {
    let state = table.snapshot().map_err(|e| Error::delta(name, e))?;
    let mut files = 0;
    let mut bytes = 0u64;
    for file in state.snapshot().log_data().iter() {
        files += 1;
        bytes += file.size().max(0) as u64;
    }
    Ok((files, bytes))
}

/// Compact one table: pack each partition's files up to `target_size`, then checkpoint.
pub async fn compact(
    warehouse: &Warehouse,
    namespace: Namespace,
    name: &str,
    target_size: u64,
) -> Result<CompactReport> {
    let started = Instant::now();
    warehouse.check_writable().await?;
    let table = warehouse.open_table(namespace, name).await?;
    let before_version = table.version();
    let (files_before, bytes_before) = file_totals(&table, name)?;
    let target = NonZeroU64::new(target_size.max(1)).expect("at least 1");
    let (table, metrics) = table
        .optimize()
        .with_target_size(target)
        .await
        .map_err(|e| Error::delta(name, e))?;
    let changed = table.version() != before_version;
    if changed {
        deltalake::checkpoints::create_checkpoint(&table, None)
            .await
            .map_err(|e| Error::delta(name, e))?;
    }
    let (files_after, bytes_after) = file_totals(&table, name)?;
    let report = CompactReport {
        table: name.to_string(),
        namespace: namespace.dir().to_string(),
        files_before,
        files_after,
        bytes_before,
        bytes_after,
        partitions_compacted: metrics.partitions_optimized,
        version: table.version().filter(|_| changed),
        elapsed: started.elapsed(),
    };
    tracing::info!(
        table = name,
        files_before,
        files_after,
        bytes_after,
        partitions = report.partitions_compacted,
        ms = report.elapsed.as_millis() as u64,
        "compacted"
    );
    Ok(report)
}

/// How long removed files are kept by default before a vacuum may delete them.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// What vacuuming one table did (or, on a dry run, would do).
#[derive(Debug, Clone, Serialize)]
pub struct VacuumReport {
    pub table: String,
    pub dry_run: bool,
    /// Files deleted (or that would be), relative to the table's directory.
    pub files: Vec<String>,
    pub retention_hours: u64,
}

/// Delete the files of `name` that no version newer than `retention` references (files the
/// log removed, and files no commit ever added, such as a crashed writer's). A retention
/// under [`DEFAULT_RETENTION`] is refused unless `force`: a shorter one can delete files that
/// time travel still reads or that a writer is about to commit.
pub async fn vacuum(
    warehouse: &Warehouse,
    namespace: Namespace,
    name: &str,
    retention: Duration,
    dry_run: bool,
    force: bool,
) -> Result<VacuumReport> {
    if retention < DEFAULT_RETENTION && !force {
        return Err(Error::RetentionTooShort {
            table: name.to_string(),
            asked: humanize_hours(retention),
            minimum: humanize_hours(DEFAULT_RETENTION),
        });
    }
    if !dry_run {
        warehouse.check_writable().await?;
    }
    let table = warehouse.open_table(namespace, name).await?;
    let retention_hours = retention.as_secs() / 3600;
    let (_, metrics) = table
        .vacuum()
        .with_retention_period(chrono::Duration::seconds(retention.as_secs() as i64))
        .with_enforce_retention_duration(false)
        .with_mode(deltalake::operations::vacuum::VacuumMode::Full)
        .with_dry_run(dry_run)
        .await
        .map_err(|e| Error::delta(name, e))?;
    let mut files = metrics.files_deleted;
    files.sort();
    tracing::info!(
        table = name,
        dry_run,
        files = files.len(),
        retention_hours,
        "vacuumed"
    );
    Ok(VacuumReport {
        table: name.to_string(),
        dry_run,
        files,
        retention_hours,
    })
}

fn humanize_hours(d: Duration) -> String {
    let hours = d.as_secs() / 3600;
    if hours.is_multiple_of(24) && hours > 0 {
        format!("{} days", hours / 24)
    } else {
        format!("{hours} hours")
    }
}

/// Compact every table, mart and system table of the warehouse.
pub async fn compact_all(warehouse: &Warehouse, target_size: u64) -> Result<Vec<CompactReport>> {
    let mut reports = Vec::new();
    for namespace in [Namespace::Tables, Namespace::Marts, Namespace::System] {
        for name in warehouse.list(namespace).await? {
            reports.push(compact(warehouse, namespace, &name, target_size).await?);
        }
    }
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SliceKey;
    use arrow::array::{Date32Array, Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Date32Type, Field, Schema};
    use chrono::NaiveDate;
    use std::sync::Arc;

    fn slice_rows(account: &str, day: NaiveDate, value: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("source", DataType::Utf8, false),
            Field::new("account_id", DataType::Utf8, false),
            Field::new("date", DataType::Date32, false),
            Field::new("clicks", DataType::Int64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["meta"; 2])),
                Arc::new(StringArray::from(vec![account; 2])),
                Arc::new(Date32Array::from(vec![Date32Type::from_naive_date(day); 2])),
                Arc::new(Int64Array::from(vec![value, value + 1])),
            ],
        )
        .unwrap()
    }

    async fn total(warehouse: &Warehouse) -> (i64, i64) {
        let session = crate::WarehouseSession::new(warehouse.clone())
            .await
            .unwrap();
        let batches = session
            .sql("SELECT count(*), sum(clicks) FROM perf")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let as_i64 = |i: usize| {
            arrow::compute::cast(batches[0].column(i), &DataType::Int64)
                .unwrap()
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .value(0)
        };
        (as_i64(0), as_i64(1))
    }

    #[tokio::test]
    async fn compaction_packs_files_and_keeps_rows_and_replaces_still_work() {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = Warehouse::open(dir.path().to_str().unwrap(), &Default::default())
            .await
            .unwrap();
        let day = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        for (i, account) in ["1", "2", "3", "4"].into_iter().enumerate() {
            warehouse
                .replace_slices("perf")
                .with_slices([SliceKey::new("meta", account, day)])
                .with_rows([slice_rows(account, day, i as i64 * 10)])
                .await
                .unwrap();
        }
        let before = total(&warehouse).await;
        let report = compact(&warehouse, Namespace::Tables, "perf", DEFAULT_TARGET_SIZE)
            .await
            .unwrap();
        assert_eq!((report.files_before, report.files_after), (4, 1));
        assert_eq!(total(&warehouse).await, before);
        // A slice inside the packed file is still replaced exactly.
        warehouse
            .replace_slices("perf")
            .with_slices([SliceKey::new("meta", "2", day)])
            .with_rows([slice_rows("2", day, 100)])
            .await
            .unwrap();
        assert_eq!(total(&warehouse).await, (8, before.1 - 21 + 201));
    }
}
