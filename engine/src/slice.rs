//! Slices: the unit of restatement. A slice is every row of one (source, account, day);
//! this module names the slice columns of a table, reads slice keys out of Arrow batches,
//! splits batches by slice, and renders a set of slices as a Delta predicate.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt32Array};
use arrow::compute::{cast, concat_batches, take_record_batch};
use arrow::datatypes::{DataType, Date32Type};
use chrono::NaiveDate;

use crate::error::{Error, Result};

/// Table property naming the source column.
pub const PROP_SOURCE: &str = "tidemark.slice.source";
/// Table property naming the account column.
pub const PROP_ACCOUNT: &str = "tidemark.slice.account";
/// Table property naming the day column.
pub const PROP_DATE: &str = "tidemark.slice.date";

/// Names of the three columns that identify a slice in a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceLayout {
    pub source: String,
    pub account: String,
    pub date: String,
}

impl Default for SliceLayout {
    /// The layout of `ad_performance` and of marts built on it.
    fn default() -> Self {
        SliceLayout {
            source: "source".into(),
            account: "account_id".into(),
            date: "date".into(),
        }
    }
}

impl SliceLayout {
    /// The Delta partition columns: one directory per (source, day). Accounts share a
    /// partition; each staged file holds one slice, so file statistics on the account
    /// column tell slices apart without listing more directories.
    pub fn partition_columns(&self) -> Vec<String> {
        vec![self.source.clone(), self.date.clone()]
    }

    /// The slice columns in the order they lead the table schema (statistics are
    /// collected for the leading columns, and the account column must have them).
    pub fn columns(&self) -> [&str; 3] {
        [&self.source, &self.account, &self.date]
    }

    /// Table properties that record this layout.
    pub fn properties(&self) -> Vec<(String, String)> {
        vec![
            (PROP_SOURCE.into(), self.source.clone()),
            (PROP_ACCOUNT.into(), self.account.clone()),
            (PROP_DATE.into(), self.date.clone()),
        ]
    }

    /// Read the layout back from table properties.
    pub fn from_properties(props: &std::collections::HashMap<String, String>) -> Option<Self> {
        Some(SliceLayout {
            source: props.get(PROP_SOURCE)?.clone(),
            account: props.get(PROP_ACCOUNT)?.clone(),
            date: props.get(PROP_DATE)?.clone(),
        })
    }

    /// Split the rows of `batches` by slice. Every slice column must be present and non-null.
    pub fn split(
        &self,
        table: &str,
        batches: &[RecordBatch],
    ) -> Result<BTreeMap<SliceKey, RecordBatch>> {
        let mut parts: BTreeMap<SliceKey, Vec<RecordBatch>> = BTreeMap::new();
        for batch in batches {
            let keys = self.keys_of(table, batch)?;
            let mut rows: BTreeMap<SliceKey, Vec<u32>> = BTreeMap::new();
            for (row, key) in keys.into_iter().enumerate() {
                rows.entry(key).or_default().push(row as u32);
            }
            for (key, indices) in rows {
                let part = if indices.len() == batch.num_rows() {
                    batch.clone()
                } else {
                    take_record_batch(batch, &UInt32Array::from(indices))?
                };
                parts.entry(key).or_default().push(part);
            }
        }
        parts
            .into_iter()
            .map(|(key, pieces)| {
                let schema = pieces[0].schema();
                let joined = if pieces.len() == 1 {
                    pieces.into_iter().next().expect("one piece")
                } else {
                    concat_batches(&schema, &pieces)?
                };
                Ok((key, joined))
            })
            .collect()
    }

    /// The slice key of every row of `batch`.
    pub fn keys_of(&self, table: &str, batch: &RecordBatch) -> Result<Vec<SliceKey>> {
        let sources = self.string_column(table, batch, &self.source)?;
        let accounts = self.string_column(table, batch, &self.account)?;
        let dates = self.date_column(table, batch)?;
        let sources = sources.as_string::<i32>();
        let accounts = accounts.as_string::<i32>();
        let dates = dates.as_primitive::<Date32Type>();
        Ok((0..batch.num_rows())
            .map(|i| SliceKey {
                source: sources.value(i).to_string(),
                account: accounts.value(i).to_string(),
                date: Date32Type::to_naive_date_opt(dates.value(i)).unwrap_or_default(),
            })
            .collect())
    }

    fn column(&self, table: &str, batch: &RecordBatch, name: &str) -> Result<ArrayRef> {
        let column = batch
            .column_by_name(name)
            .ok_or_else(|| Error::BadSliceColumn {
                table: table.into(),
                column: name.into(),
                problem: "is missing from the new rows; every row must carry its slice".into(),
            })?;
        if column.null_count() > 0 {
            return Err(Error::BadSliceColumn {
                table: table.into(),
                column: name.into(),
                problem: format!(
                    "has {} null values; slice columns cannot be null",
                    column.null_count()
                ),
            });
        }
        Ok(column.clone())
    }

    fn string_column(&self, table: &str, batch: &RecordBatch, name: &str) -> Result<ArrayRef> {
        let column = self.column(table, batch, name)?;
        match plain_type(column.data_type()) {
            DataType::Utf8 => Ok(cast(&column, &DataType::Utf8)?),
            DataType::LargeUtf8 | DataType::Utf8View => Ok(cast(&column, &DataType::Utf8)?),
            other => Err(Error::BadSliceColumn {
                table: table.into(),
                column: name.into(),
                problem: format!("must be a string, not {other}"),
            }),
        }
    }

    fn date_column(&self, table: &str, batch: &RecordBatch) -> Result<ArrayRef> {
        let column = self.column(table, batch, &self.date)?;
        match plain_type(column.data_type()) {
            DataType::Date32 => Ok(cast(&column, &DataType::Date32)?),
            other => Err(Error::BadSliceColumn {
                table: table.into(),
                column: self.date.clone(),
                problem: format!("must be a DATE (Date32), not {other}"),
            }),
        }
    }

    /// A SQL predicate selecting exactly `slices`, grouped by (source, account) to stay short.
    /// The conflict checker evaluates it against files other writers add concurrently.
    pub fn predicate(&self, slices: &BTreeSet<SliceKey>) -> String {
        let mut by_account: BTreeMap<(&str, &str), Vec<NaiveDate>> = BTreeMap::new();
        for s in slices {
            by_account
                .entry((s.source.as_str(), s.account.as_str()))
                .or_default()
                .push(s.date);
        }
        by_account
            .into_iter()
            .map(|((source, account), dates)| {
                let dates: Vec<String> = dates.iter().map(|d| format!("'{d}'")).collect();
                format!(
                    "({} = {} AND {} = {} AND {} IN ({}))",
                    quote_ident(&self.source),
                    quote_literal(source),
                    quote_ident(&self.account),
                    quote_literal(account),
                    quote_ident(&self.date),
                    dates.join(", ")
                )
            })
            .collect::<Vec<_>>()
            .join(" OR ")
    }
}

/// One (source, account, day).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SliceKey {
    pub source: String,
    pub account: String,
    pub date: NaiveDate,
}

impl SliceKey {
    pub fn new(source: impl Into<String>, account: impl Into<String>, date: NaiveDate) -> Self {
        SliceKey {
            source: source.into(),
            account: account.into(),
            date,
        }
    }
}

impl fmt::Display for SliceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({}, {}, {})", self.source, self.account, self.date)
    }
}

/// The value type behind a dictionary (query engines return partition columns dictionary-encoded).
fn plain_type(data_type: &DataType) -> &DataType {
    match data_type {
        DataType::Dictionary(_, value) => value,
        other => other,
    }
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Date32Array, Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
    }

    fn batch(rows: &[(&str, &str, u32, i64)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("source", DataType::Utf8, false),
            Field::new("account_id", DataType::Utf8, false),
            Field::new("date", DataType::Date32, false),
            Field::new("clicks", DataType::Int64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(Date32Array::from_iter_values(
                    rows.iter().map(|r| Date32Type::from_naive_date(day(r.2))),
                )),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.3))),
            ],
        )
        .unwrap()
    }

    #[test]
    fn split_groups_rows_by_slice_across_batches() {
        let layout = SliceLayout::default();
        let a = batch(&[
            ("meta", "a", 1, 1),
            ("meta", "b", 1, 2),
            ("meta", "a", 1, 3),
        ]);
        let b = batch(&[("meta", "a", 1, 4), ("meta", "a", 2, 5)]);
        let parts = layout.split("t", &[a, b]).unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[&SliceKey::new("meta", "a", day(1))].num_rows(), 3);
        assert_eq!(parts[&SliceKey::new("meta", "b", day(1))].num_rows(), 1);
        assert_eq!(parts[&SliceKey::new("meta", "a", day(2))].num_rows(), 1);
    }

    #[test]
    fn predicate_quotes_and_groups() {
        let layout = SliceLayout::default();
        let slices: BTreeSet<_> = [
            SliceKey::new("meta", "o'brien", day(1)),
            SliceKey::new("meta", "o'brien", day(2)),
        ]
        .into();
        assert_eq!(
            layout.predicate(&slices),
            "(\"source\" = 'meta' AND \"account_id\" = 'o''brien' AND \"date\" IN ('2026-11-01', '2026-11-02'))"
        );
    }

    #[test]
    fn missing_slice_column_is_named() {
        let layout = SliceLayout {
            account: "acct".into(),
            ..Default::default()
        };
        let err = layout
            .split("t", &[batch(&[("meta", "a", 1, 1)])])
            .unwrap_err();
        assert!(err.to_string().contains("'acct' is missing"), "{err}");
    }
}
