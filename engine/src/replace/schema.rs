//! Schema evolution for replaces: merge the incoming rows' schema into the table's
//! (new columns become nullable columns; a changed type is a conflict), and conform
//! each batch to the merged schema.

use std::sync::Arc;

use arrow::array::{new_null_array, ArrayRef, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::error::{Error, Result};
use crate::slice::SliceLayout;

/// The table schema after a replace, and the columns the replace adds.
#[derive(Debug, Clone)]
pub struct Evolution {
    pub schema: SchemaRef,
    pub added: Vec<String>,
}

/// Types the table stores for an incoming type: string and binary variants are stored as
/// their plain forms, so a reader never sees a view type change the table schema.
pub fn storage_type(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        DataType::BinaryView | DataType::LargeBinary => DataType::Binary,
        DataType::Dictionary(_, value) => storage_type(value),
        other => other.clone(),
    }
}

/// The schema of a new table made for `incoming`: slice columns first (they need file
/// statistics, which are kept for the leading columns), storage types throughout.
pub fn initial_schema(layout: &SliceLayout, incoming: &Schema) -> SchemaRef {
    let mut fields: Vec<Field> = Vec::with_capacity(incoming.fields().len());
    for name in layout.columns() {
        if let Ok(field) = incoming.field_with_name(name) {
            fields.push(Field::new(name, storage_type(field.data_type()), false));
        }
    }
    for field in incoming.fields() {
        if !layout.columns().contains(&field.name().as_str()) {
            fields.push(Field::new(
                field.name(),
                storage_type(field.data_type()),
                true,
            ));
        }
    }
    Arc::new(Schema::new(fields))
}

/// Merge `incoming` into `current`. A column whose type differs is a conflict that names
/// both types; a column only in `incoming` is appended as nullable.
pub fn evolve(table: &str, current: &Schema, incoming: &Schema) -> Result<Evolution> {
    let mut fields: Vec<Field> = current
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut added = Vec::new();
    for field in incoming.fields() {
        let new_type = storage_type(field.data_type());
        match current.field_with_name(field.name()) {
            Ok(existing) => {
                if *existing.data_type() != new_type && new_type != DataType::Null {
                    return Err(Error::TypeConflict {
                        table: table.to_string(),
                        column: field.name().clone(),
                        old: existing.data_type().to_string(),
                        new: field.data_type().to_string(),
                    });
                }
            }
            Err(_) => {
                if new_type == DataType::Null {
                    continue; // nothing to learn from an all-null column of unknown type
                }
                fields.push(Field::new(field.name(), new_type, true));
                added.push(field.name().clone());
            }
        }
    }
    Ok(Evolution {
        schema: Arc::new(Schema::new(fields)),
        added,
    })
}

/// Reorder, cast and pad `batch` to `target`: columns it lacks become nulls.
pub fn conform(table: &str, batch: &RecordBatch, target: &SchemaRef) -> Result<RecordBatch> {
    let columns = target
        .fields()
        .iter()
        .map(|field| -> Result<ArrayRef> {
            match batch.column_by_name(field.name()) {
                Some(column) if column.data_type() == field.data_type() => Ok(column.clone()),
                Some(column) => Ok(cast(column, field.data_type())?),
                None if field.is_nullable() => {
                    Ok(new_null_array(field.data_type(), batch.num_rows()))
                }
                None => Err(Error::MissingRequiredColumn {
                    table: table.to_string(),
                    column: field.name().clone(),
                }),
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(Arc::clone(target), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(fields: &[(&str, DataType)]) -> Schema {
        Schema::new(
            fields
                .iter()
                .map(|(n, t)| Field::new(*n, t.clone(), true))
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn new_columns_are_appended_nullable() {
        let current = schema(&[("a", DataType::Int64)]);
        let incoming = schema(&[("b", DataType::Utf8View), ("a", DataType::Int64)]);
        let ev = evolve("t", &current, &incoming).unwrap();
        assert_eq!(ev.added, vec!["b".to_string()]);
        assert_eq!(ev.schema.field(1).data_type(), &DataType::Utf8);
        assert!(ev.schema.field(1).is_nullable());
    }

    #[test]
    fn type_conflicts_name_table_column_and_types() {
        let current = schema(&[("clicks", DataType::Int64)]);
        let incoming = schema(&[("clicks", DataType::Utf8)]);
        let err = evolve("ad_performance", &current, &incoming)
            .unwrap_err()
            .to_string();
        assert!(err.contains("'ad_performance'"), "{err}");
        assert!(err.contains("'clicks'"), "{err}");
        assert!(err.contains("Int64") && err.contains("Utf8"), "{err}");
    }
}
