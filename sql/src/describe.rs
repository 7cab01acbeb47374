//! `DESCRIBE HISTORY t [LIMIT n]` and `SHOW PARTITIONS t`: a table's commits (version, time,
//! operation, the job that made it, files and rows) and its partitions (files, rows, bytes),
//! read from the Delta log.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMillisecondArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use engine::{inspect, WarehouseSession};

use crate::Error;

/// Commits shown when no LIMIT is given.
const DEFAULT_HISTORY: usize = 100;

/// A recognised statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Describe {
    History { table: String, limit: usize },
    Partitions { table: String },
}

/// `Some` when `statement` is one of these (an `Err` names what is wrong with it).
pub fn parse(statement: &str) -> Option<Result<Describe, String>> {
    let words: Vec<&str> = statement
        .trim()
        .trim_end_matches(';')
        .split_whitespace()
        .collect();
    let is = |i: usize, w: &str| words.get(i).is_some_and(|x| x.eq_ignore_ascii_case(w));
    let table = |i: usize| {
        words
            .get(i)
            .map(|t| t.trim_matches('"').to_ascii_lowercase())
    };
    if is(0, "describe") && is(1, "history") {
        return Some(match (table(2), words.len()) {
            (Some(table), 3) => Ok(Describe::History {
                table,
                limit: DEFAULT_HISTORY,
            }),
            (Some(table), 5) if is(3, "limit") => match words[4].parse::<usize>() {
                Ok(limit) if limit > 0 => Ok(Describe::History { table, limit }),
                _ => Err(format!("LIMIT takes a positive number, not {}", words[4])),
            },
            _ => Err("expected DESCRIBE HISTORY <table> [LIMIT n]".into()),
        });
    }
    if is(0, "show") && is(1, "partitions") {
        return Some(match (table(2), words.len()) {
            (Some(table), 3) => Ok(Describe::Partitions { table }),
            _ => Err("expected SHOW PARTITIONS <table>".into()),
        });
    }
    None
}

fn batch(
    fields: Vec<Field>,
    columns: Vec<ArrayRef>,
) -> Result<Vec<RecordBatch>, arrow::error::ArrowError> {
    Ok(vec![RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?])
}

/// Run a recognised statement.
pub async fn run(
    session: &WarehouseSession,
    describe: &Describe,
) -> Result<Vec<RecordBatch>, Error> {
    let warehouse = session.warehouse();
    match describe {
        Describe::History { table, limit } => {
            let commits = inspect::history(warehouse, table, *limit).await?;
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
        Describe::Partitions { table } => {
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_recognised() {
        assert_eq!(
            parse("describe history ad_performance;"),
            Some(Ok(Describe::History {
                table: "ad_performance".into(),
                limit: DEFAULT_HISTORY
            }))
        );
        assert_eq!(
            parse("DESCRIBE HISTORY t LIMIT 5"),
            Some(Ok(Describe::History {
                table: "t".into(),
                limit: 5
            }))
        );
        assert_eq!(
            parse("SHOW PARTITIONS t"),
            Some(Ok(Describe::Partitions { table: "t".into() }))
        );
        assert!(matches!(parse("SHOW PARTITIONS"), Some(Err(_))));
        assert!(matches!(parse("DESCRIBE HISTORY t LIMIT x"), Some(Err(_))));
        assert_eq!(parse("DESCRIBE t"), None);
        assert_eq!(parse("SHOW TABLES"), None);
    }
}
