//! `OPTIMIZE t` and `VACUUM t`: table maintenance from SQL, reported as one row per table.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, BooleanArray, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use engine::{maintenance, WarehouseSession};

use crate::Error;

fn one_row(fields: Vec<Field>, columns: Vec<ArrayRef>) -> Result<Vec<RecordBatch>, Error> {
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(datafusion::error::DataFusionError::from)?;
    Ok(vec![batch])
}

/// Compact `table` (bin-packing each partition's files) and checkpoint it.
pub async fn optimize(session: &WarehouseSession, table: &str) -> Result<Vec<RecordBatch>, Error> {
    let warehouse = session.warehouse();
    let namespace = warehouse.locate(table).await?;
    let options = maintenance::CompactOptions::default();
    let report = maintenance::compact(warehouse, namespace, table, &options, &|_, _| {}).await?;
    let u64s = |v: u64| Arc::new(UInt64Array::from(vec![v])) as ArrayRef;
    one_row(
        vec![
            Field::new("table", DataType::Utf8, false),
            Field::new("files_before", DataType::UInt64, false),
            Field::new("files_after", DataType::UInt64, false),
            Field::new("bytes_before", DataType::UInt64, false),
            Field::new("bytes_after", DataType::UInt64, false),
            Field::new("partitions_compacted", DataType::UInt64, false),
            Field::new("partitions_skipped", DataType::UInt64, false),
            Field::new("version", DataType::UInt64, true),
        ],
        vec![
            Arc::new(StringArray::from(vec![report.table.clone()])),
            u64s(report.files_before as u64),
            u64s(report.files_after as u64),
            u64s(report.bytes_before),
            u64s(report.bytes_after),
            u64s(report.partitions_compacted()),
            u64s(report.skipped.len() as u64),
            Arc::new(UInt64Array::from(vec![report.version])),
        ],
    )
}

/// Delete files of `table` no version within `retention` (default 7 days) references; on a
/// dry run only list them. One row per file.
pub async fn vacuum(
    session: &WarehouseSession,
    table: &str,
    retention: Option<Duration>,
    dry_run: bool,
) -> Result<Vec<RecordBatch>, Error> {
    let warehouse = session.warehouse();
    let namespace = warehouse.locate(table).await?;
    let retention = retention.unwrap_or(maintenance::DEFAULT_RETENTION);
    let report =
        maintenance::vacuum(warehouse, namespace, table, retention, dry_run, false).await?;
    let n = report.files.len();
    one_row(
        vec![
            Field::new("table", DataType::Utf8, false),
            Field::new("file", DataType::Utf8, false),
            Field::new("deleted", DataType::Boolean, false),
        ],
        vec![
            Arc::new(StringArray::from(vec![report.table.as_str(); n])),
            Arc::new(StringArray::from(report.files)),
            Arc::new(BooleanArray::from(vec![!dry_run; n])),
        ],
    )
}
