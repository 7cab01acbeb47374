//! Results on their way out: the Arrow types every Flight SQL client can read (string and
//! binary views and dictionaries become plain Utf8/Binary; the JDBC driver and older Python
//! clients refuse views), and splitting a large result into parts by day so a client can
//! fetch them in parallel.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::NaiveDate;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{col, lit, Expr, LogicalPlan};
use datafusion::prelude::DataFrame;
use datafusion::scalar::ScalarValue;

use super::tickets::Part;

/// The type a client gets for `data_type`.
fn portable(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        DataType::Dictionary(_, value) => portable(value),
        other => other.clone(),
    }
}

/// `schema` with every column in a portable type.
pub fn portable_schema(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new_with_metadata(
        schema
            .fields()
            .iter()
            .map(|f| {
                Field::new(f.name(), portable(f.data_type()), f.is_nullable())
                    .with_metadata(f.metadata().clone())
            })
            .collect::<Vec<_>>(),
        schema.metadata().clone(),
    ))
}

/// `batch` cast to `schema` (from [`portable_schema`]).
pub fn make_portable(
    batch: &RecordBatch,
    schema: &SchemaRef,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch.clone());
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(column.clone())
            } else {
                arrow::compute::cast(column, field.data_type())
            }
        })
        .collect::<Result<Vec<ArrayRef>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
}

/// Whether the plan's output order or row count matters (`ORDER BY`, `LIMIT`): such results
/// are never split.
pub fn is_ordered_or_limited(plan: &LogicalPlan) -> bool {
    let mut top = plan;
    loop {
        match top {
            LogicalPlan::Sort(_) | LogicalPlan::Limit(_) => return true,
            LogicalPlan::Projection(p) => top = &p.input,
            LogicalPlan::SubqueryAlias(a) => top = &a.input,
            _ => return false,
        }
    }
}

/// The tables the plan scans, by the name they were resolved from.
pub fn scanned_tables(plan: &LogicalPlan) -> Vec<String> {
    let mut names = Vec::new();
    let _ = plan.apply(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            names.push(scan.table_name.to_string());
        }
        Ok(TreeNodeRecursion::Continue)
    });
    names
}

/// Split sorted, distinct `days` into at most `parts` contiguous groups; the parts' ranges
/// (first and last open-ended) cover every non-null day, and a NULL part follows when
/// `nullable`.
pub fn day_parts(column: &str, days: &[NaiveDate], parts: usize, nullable: bool) -> Vec<Part> {
    let parts = parts.clamp(1, days.len().max(1));
    let mut out = Vec::new();
    if parts > 1 {
        let per = days.len().div_ceil(parts);
        let starts: Vec<NaiveDate> = days.chunks(per).map(|c| c[0]).collect();
        for (i, start) in starts.iter().enumerate() {
            out.push(Part::Range {
                column: column.to_string(),
                from: (i > 0).then(|| start.to_string()),
                to: starts.get(i + 1).map(NaiveDate::to_string),
            });
        }
    } else {
        out.push(Part::Range {
            column: column.to_string(),
            from: None,
            to: None,
        });
    }
    if nullable {
        out.push(Part::Nulls {
            column: column.to_string(),
        });
    }
    out
}

fn date_literal(text: &str) -> Result<Expr, String> {
    let day = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|e| format!("bad day '{text}' in ticket: {e}"))?;
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch");
    Ok(lit(ScalarValue::Date32(Some(
        (day - epoch).num_days() as i32
    ))))
}

/// Keep the rows of `frame` in `part`.
pub fn restrict(frame: DataFrame, part: &Part) -> Result<DataFrame, String> {
    let filter = match part {
        Part::Range { column, from, to } => {
            let mut filter = col(column.as_str()).is_not_null();
            if let Some(from) = from {
                filter = filter.and(col(column.as_str()).gt_eq(date_literal(from)?));
            }
            if let Some(to) = to {
                filter = filter.and(col(column.as_str()).lt(date_literal(to)?));
            }
            filter
        }
        Part::Nulls { column } => col(column.as_str()).is_null(),
    };
    frame.filter(filter).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, day).unwrap()
    }

    #[test]
    fn days_split_into_contiguous_open_ended_parts() {
        let days: Vec<NaiveDate> = (1..=10).map(d).collect();
        let parts = day_parts("date", &days, 3, true);
        assert_eq!(parts.len(), 4);
        assert_eq!(
            parts[0],
            Part::Range {
                column: "date".into(),
                from: None,
                to: Some("2026-11-05".into())
            }
        );
        assert_eq!(
            parts[2],
            Part::Range {
                column: "date".into(),
                from: Some("2026-11-09".into()),
                to: None
            }
        );
        assert_eq!(
            parts[3],
            Part::Nulls {
                column: "date".into()
            }
        );
        assert_eq!(day_parts("date", &days[..1], 8, false).len(), 1);
    }

    #[test]
    fn views_and_dictionaries_become_plain_types() {
        let schema = Schema::new(vec![
            Field::new("a", DataType::Utf8View, true),
            Field::new(
                "b",
                DataType::Dictionary(Box::new(DataType::UInt16), Box::new(DataType::Utf8)),
                false,
            ),
            Field::new("c", DataType::Int64, true),
        ]);
        let portable = portable_schema(&schema);
        assert_eq!(portable.field(0).data_type(), &DataType::Utf8);
        assert_eq!(portable.field(1).data_type(), &DataType::Utf8);
        assert_eq!(portable.field(2).data_type(), &DataType::Int64);
        let batch = RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(arrow::array::StringViewArray::from(vec!["x"])),
                Arc::new(
                    arrow::array::DictionaryArray::<arrow::datatypes::UInt16Type>::from_iter(["m"]),
                ),
                Arc::new(arrow::array::Int64Array::from(vec![1])),
            ],
        )
        .unwrap();
        let out = make_portable(&batch, &portable).unwrap();
        assert_eq!(out.schema(), portable);
    }
}
