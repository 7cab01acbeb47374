//! `SHOW TABLES` (every name a statement can read, with its kind), `DESCRIBE HISTORY t
//! [LIMIT n]` and `SHOW PARTITIONS t`: a table's commits (version, time, operation, the job
//! that made it, files and rows) and its partitions (files, rows, bytes), read from the Delta
//! log.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMillisecondArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use engine::{inspect, WarehouseSession};

use crate::Error;

fn batch(
    fields: Vec<Field>,
    columns: Vec<ArrayRef>,
) -> Result<Vec<RecordBatch>, arrow::error::ArrowError> {
    Ok(vec![RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?])
}

/// `SHOW TABLES`: tables, marts and system tables (as `tidemark.<name>`) with their kind.
pub async fn tables(session: &WarehouseSession) -> Result<Vec<RecordBatch>, Error> {
    session.refresh().await?;
    let names = session.names();
    Ok(batch(
        vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("kind", DataType::Utf8, false),
        ],
        vec![
            Arc::new(StringArray::from_iter_values(names.iter().map(|(n, _)| n))),
            Arc::new(StringArray::from_iter_values(
                names.iter().map(|(_, ns)| ns.to_string()),
            )),
        ],
    )
    .map_err(datafusion::error::DataFusionError::from)?)
}

/// `DESCRIBE HISTORY table LIMIT limit`: one row per commit, newest first.
pub async fn history(
    session: &WarehouseSession,
    table: &str,
    limit: usize,
) -> Result<Vec<RecordBatch>, Error> {
    let warehouse = session.warehouse();
    let commits = inspect::history(warehouse, table, limit).await?;
    let u64s = |f: fn(&inspect::Commit) -> u64| {
        Arc::new(UInt64Array::from_iter_values(commits.iter().map(f))) as ArrayRef
    };
    Ok(batch(
        vec![
            Field::new("version", DataType::UInt64, false),
            Field::new(
                "timestamp",
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                true,
            ),
            Field::new("operation", DataType::Utf8, false),
            Field::new("job", DataType::Utf8, true),
            Field::new("files_added", DataType::UInt64, false),
            Field::new("files_removed", DataType::UInt64, false),
            Field::new("rows_added", DataType::UInt64, false),
            Field::new("parameters", DataType::Utf8, false),
        ],
        vec![
            u64s(|c| c.version),
            Arc::new(
                TimestampMillisecondArray::from_iter(
                    commits
                        .iter()
                        .map(|c| c.timestamp.map(|t| t.timestamp_millis())),
                )
                .with_timezone("UTC"),
            ),
            Arc::new(StringArray::from_iter_values(
                commits.iter().map(|c| c.operation.as_str()),
            )),
            Arc::new(StringArray::from_iter(
                commits.iter().map(|c| c.job.as_deref()),
            )),
            u64s(|c| c.files_added),
            u64s(|c| c.files_removed),
            u64s(|c| c.rows_added),
            Arc::new(StringArray::from_iter_values(
                commits.iter().map(|c| c.parameters.as_str()),
            )),
        ],
    )
    .map_err(datafusion::error::DataFusionError::from)?)
}

/// `SHOW PARTITIONS table`: one row per partition with its files, rows and bytes.
pub async fn partitions(
    session: &WarehouseSession,
    table: &str,
) -> Result<Vec<RecordBatch>, Error> {
    let warehouse = session.warehouse();
    let (columns, partitions) = inspect::partitions(warehouse, table).await?;
    let mut fields: Vec<Field> = columns
        .iter()
        .map(|c| Field::new(c, DataType::Utf8, true))
        .collect();
    let mut arrays: Vec<ArrayRef> = (0..columns.len())
        .map(|i| {
            Arc::new(StringArray::from_iter_values(
                partitions.iter().map(|p| p.values[i].1.as_str()),
            )) as ArrayRef
        })
        .collect();
    for (name, f) in [
        (
            "files",
            (|p: &inspect::Partition| p.files) as fn(&inspect::Partition) -> u64,
        ),
        ("rows", |p| p.rows),
        ("bytes", |p| p.bytes),
    ] {
        fields.push(Field::new(name, DataType::UInt64, false));
        arrays.push(Arc::new(UInt64Array::from_iter_values(
            partitions.iter().map(f),
        )));
    }
    Ok(batch(fields, arrays).map_err(datafusion::error::DataFusionError::from)?)
}
