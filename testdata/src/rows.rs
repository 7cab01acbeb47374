//! Row fixtures: small `ad_performance`-shaped batches for a slice, with a generation marker.

use std::sync::Arc;

use arrow::array::{Date32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Date32Type, Field, Schema, SchemaRef};
use chrono::NaiveDate;
use engine::SliceKey;

/// The schema of fixture rows: the slice columns, an ad id, clicks and a generation.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("source", DataType::Utf8, false),
        Field::new("account_id", DataType::Utf8, false),
        Field::new("date", DataType::Date32, false),
        Field::new("ad_id", DataType::Utf8, true),
        Field::new("clicks", DataType::Int64, true),
        Field::new("generation", DataType::Int64, true),
    ]))
}

/// One fixture row.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Row {
    pub slice: SliceKey,
    pub ad_id: String,
    pub clicks: i64,
    pub generation: i64,
}

/// Rows as a batch in [`schema`].
pub fn batch(rows: &[Row]) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.slice.source.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.slice.account.as_str()),
            )),
            Arc::new(Date32Array::from_iter_values(
                rows.iter()
                    .map(|r| Date32Type::from_naive_date(r.slice.date)),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.ad_id.as_str()),
            )),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.clicks))),
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| r.generation),
            )),
        ],
    )
    .expect("fixture batch")
}

/// `n` rows for `slice`, all of generation `generation`.
pub fn slice_rows(slice: &SliceKey, n: usize, generation: i64) -> Vec<Row> {
    (0..n)
        .map(|i| Row {
            slice: slice.clone(),
            ad_id: format!("ad{i}"),
            clicks: generation * 100 + i as i64,
            generation,
        })
        .collect()
}

/// Day `d` of November 2026.
pub fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, d).expect("valid day")
}

/// Rows as JSON lines (for `tidemark load`).
pub fn json_lines(rows: &[Row]) -> String {
    rows.iter()
        .map(|r| {
            format!(
                "{{\"source\":\"{}\",\"account_id\":\"{}\",\"date\":\"{}\",\"ad_id\":\"{}\",\"clicks\":{},\"generation\":{}}}\n",
                r.slice.source, r.slice.account, r.slice.date, r.ad_id, r.clicks, r.generation
            )
        })
        .collect()
}
