//! Staging: writing the new rows of each slice as Parquet files of their own (one slice per
//! file, so a later replace can drop a slice by removing files without rewriting neighbours),
//! and reading back the rows of a file that holds several slices when one of them is replaced.

use std::sync::Arc;

use arrow::array::{ArrayRef, Date32Array, RecordBatch, StringArray};
use arrow::datatypes::{Date32Type, SchemaRef};
use delta_kernel::expressions::Scalar;
use delta_kernel::table_properties::DataSkippingNumIndexedCols;
use deltalake::datafile::writer::{PartitionWriter, PartitionWriterConfig};
use deltalake::datafile::DataFileWriter;
use deltalake::kernel::Add;
use deltalake::logstore::ObjectStoreRef;
use indexmap::IndexMap;
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::error::{Error, Result};
use crate::slice::{SliceKey, SliceLayout};

/// Statistics are collected for this many leading columns (the Delta default); the slice
/// columns lead every table schema, so the account column always has min/max statistics.
const STATS_COLUMNS: u64 = 32;

/// Writes slice files into one table.
#[derive(Clone)]
pub(crate) struct Stager {
    pub table: String,
    pub store: ObjectStoreRef,
    pub layout: SliceLayout,
    /// The full table schema (partition columns included).
    pub schema: SchemaRef,
}

impl Stager {
    /// The schema of data files: the table schema without partition columns.
    fn file_schema(&self) -> SchemaRef {
        let partitions = self.layout.partition_columns();
        let fields: Vec<_> = self
            .schema
            .fields()
            .iter()
            .filter(|f| !partitions.contains(f.name()))
            .cloned()
            .collect();
        Arc::new(arrow::datatypes::Schema::new(fields))
    }

    /// Write the rows of one slice (already conformed to the table schema) as new files.
    pub async fn stage_slice(&self, key: &SliceKey, batch: &RecordBatch) -> Result<Vec<Add>> {
        if batch.num_rows() == 0 {
            return Ok(Vec::new());
        }
        let file_schema = self.file_schema();
        let columns: Vec<ArrayRef> = file_schema
            .fields()
            .iter()
            .map(|f| {
                batch
                    .column_by_name(f.name())
                    .cloned()
                    .expect("conformed batch")
            })
            .collect();
        let file_batch = RecordBatch::try_new(Arc::clone(&file_schema), columns)?;

        let mut partition_values = IndexMap::new();
        partition_values.insert(
            self.layout.source.clone(),
            Scalar::String(key.source.clone()),
        );
        partition_values.insert(
            self.layout.date.clone(),
            Scalar::Date(Date32Type::from_naive_date(key.date)),
        );
        let delta = |e| Error::delta(&self.table, e);
        let config = PartitionWriterConfig::try_new(
            file_schema,
            partition_values,
            None,
            None,
            None,
            None,
            None,
        )
        .map_err(delta)?;
        let mut writer = PartitionWriter::try_with_config(
            Arc::clone(&self.store),
            config,
            DataSkippingNumIndexedCols::NumColumns(STATS_COLUMNS),
            None,
        )
        .map_err(delta)?;
        if let Err(e) = writer.write(&file_batch).await {
            let _ = Box::new(writer).abort().await;
            return Err(delta(e));
        }
        Box::new(writer).close().await.map_err(delta)
    }

    /// Read every row of a data file back with its partition values restored, conformed
    /// to the table schema (columns the file predates come back as nulls).
    pub async fn read_file(
        &self,
        location: object_store::path::Path,
        source: &str,
        date_days: i32,
    ) -> Result<Vec<RecordBatch>> {
        // Data files are bounded by the target file size, so reading one whole is fine.
        let object = self
            .store
            .get(&location)
            .await
            .map_err(|e| Error::store(&location, e))?;
        let bytes = object
            .bytes()
            .await
            .map_err(|e| Error::store(&location, e))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|b| b.build())
            .map_err(|e| Error::Arrow(e.into()))?;
        let batches = reader.collect::<std::result::Result<Vec<RecordBatch>, _>>()?;
        batches
            .into_iter()
            .map(|batch| {
                let rows = batch.num_rows();
                let mut columns: Vec<ArrayRef> = Vec::new();
                for field in self.schema.fields() {
                    let column: ArrayRef = if *field.name() == self.layout.source {
                        Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
                            source, rows,
                        )))
                    } else if *field.name() == self.layout.date {
                        Arc::new(Date32Array::from_iter_values(std::iter::repeat_n(
                            date_days, rows,
                        )))
                    } else {
                        match batch.column_by_name(field.name()) {
                            Some(c) => arrow::compute::cast(c, field.data_type())?,
                            None => arrow::array::new_null_array(field.data_type(), rows),
                        }
                    };
                    columns.push(column);
                }
                Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
            })
            .collect()
    }
}
