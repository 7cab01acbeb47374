//! How tidemark's tables travel in a plan sent to a Ballista scheduler.
//!
//! DataFusion's protobuf plans carry a table they do not know as bytes its codec writes.
//! Each table is written as one tag byte and a body:
//! - `S`: a [`SnapshotTable`] as its [`PinnedVersion`] (JSON). The scheduler rebuilds the
//!   table from the pin and reads that version's file list when it plans the scan.
//! - `R`: a [`RestatementsTable`] as its warehouse URL and request (JSON), computed on the
//!   scheduler when scanned.
//! - `T`: a [`MaturityTable`] (`maturity(…)`, `projected(…)`) as its warehouse URL and
//!   request (JSON), computed on the scheduler when scanned.
//! - `M`: a `MemTable` (the ledger before the first sync) as its rows in Arrow IPC.
//!
//! Everything else (Ballista's own plan nodes, file formats) goes to Ballista's codec.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use ballista_core::serde::BallistaLogicalExtensionCodec;
use datafusion::catalog::TableProvider;
use datafusion::common::TableReference;
use datafusion::datasource::MemTable;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Extension, LogicalPlan};
use datafusion_proto::logical_plan::LogicalExtensionCodec;

use crate::audit::{AuditRequest, RestatementsTable};
use crate::maturity::function::{MaturityRequest, MaturityTable};
use crate::scan::{PinnedVersion, SnapshotTable};
use crate::storage::StorageConfig;

const SNAPSHOT: u8 = b'S';
const RESTATEMENTS: u8 = b'R';
const MEMORY: u8 = b'M';
const MATURITY: u8 = b'T';

/// tidemark's logical codec: its tables, then Ballista's codec for everything else.
#[derive(Debug)]
pub struct TidemarkLogicalCodec {
    ballista: BallistaLogicalExtensionCodec,
    /// How a decoding process (the scheduler) opens the warehouses plans name.
    storage: StorageConfig,
}

impl TidemarkLogicalCodec {
    /// A codec whose decoded tables open their storage with `storage`.
    pub fn new(storage: StorageConfig) -> Self {
        TidemarkLogicalCodec {
            ballista: BallistaLogicalExtensionCodec::default(),
            storage,
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct EncodedRestatements {
    warehouse: String,
    request: AuditRequest,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct EncodedMaturity {
    warehouse: String,
    request: MaturityRequest,
}

fn json_error(e: serde_json::Error) -> DataFusionError {
    DataFusionError::Internal(format!("a table in the plan could not be (de)coded: {e}"))
}

impl LogicalExtensionCodec for TidemarkLogicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> Result<Extension> {
        self.ballista.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        self.ballista.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        _ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        let (tag, body) = buf.split_first().ok_or_else(|| {
            DataFusionError::Internal(format!("table {table_ref} came with no bytes"))
        })?;
        match *tag {
            SNAPSHOT => {
                let pin: PinnedVersion = serde_json::from_slice(body).map_err(json_error)?;
                Ok(Arc::new(SnapshotTable::pinned(
                    schema,
                    pin,
                    self.storage.clone(),
                )))
            }
            RESTATEMENTS => {
                let encoded: EncodedRestatements =
                    serde_json::from_slice(body).map_err(json_error)?;
                Ok(Arc::new(RestatementsTable::remote(
                    encoded.warehouse,
                    encoded.request,
                    self.storage.clone(),
                )))
            }
            MATURITY => {
                let encoded: EncodedMaturity = serde_json::from_slice(body).map_err(json_error)?;
                Ok(Arc::new(MaturityTable::remote(
                    encoded.warehouse,
                    encoded.request,
                    self.storage.clone(),
                )))
            }
            MEMORY => {
                let reader = StreamReader::try_new(body, None)?;
                let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
                Ok(Arc::new(MemTable::try_new(schema, vec![batches])?))
            }
            other => Err(DataFusionError::Internal(format!(
                "table {table_ref} was encoded by another program (tag {other}); start the \
                 scheduler with `tidemark ballista scheduler`"
            ))),
        }
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        if let Some(table) = node.downcast_ref::<SnapshotTable>() {
            buf.push(SNAPSHOT);
            serde_json::to_writer(buf, table.pin()).map_err(json_error)
        } else if let Some(table) = node.downcast_ref::<RestatementsTable>() {
            let (warehouse, request) = table.request();
            buf.push(RESTATEMENTS);
            let encoded = EncodedRestatements {
                warehouse: warehouse.to_string(),
                request: request.clone(),
            };
            serde_json::to_writer(buf, &encoded).map_err(json_error)
        } else if let Some(table) = node.downcast_ref::<MaturityTable>() {
            let (warehouse, request) = table.request();
            buf.push(MATURITY);
            let encoded = EncodedMaturity {
                warehouse: warehouse.to_string(),
                request: request.clone(),
            };
            serde_json::to_writer(buf, &encoded).map_err(json_error)
        } else if let Some(table) = node.downcast_ref::<MemTable>() {
            let mut rows: Vec<RecordBatch> = Vec::new();
            for partition in &table.batches {
                let partition = partition.try_read().map_err(|_| {
                    DataFusionError::Internal(format!("table {table_ref} is being written"))
                })?;
                rows.extend(partition.iter().cloned());
            }
            buf.push(MEMORY);
            let mut writer = StreamWriter::try_new(&mut *buf, &table.schema())?;
            for batch in &rows {
                writer.write(batch)?;
            }
            writer.finish()?;
            Ok(())
        } else {
            Err(DataFusionError::NotImplemented(format!(
                "table {table_ref} cannot run on a Ballista cluster (a table with reader \
                 features tidemark does not write); run this query with --engine local"
            )))
        }
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> Result<Arc<dyn datafusion::datasource::file_format::FileFormatFactory>> {
        self.ballista.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn datafusion::datasource::file_format::FileFormatFactory>,
    ) -> Result<()> {
        self.ballista.try_encode_file_format(buf, node)
    }
}
