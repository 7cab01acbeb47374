//! How a query reads one version of a table: a DataFusion [`TableProvider`] over the version's
//! file list, scanning its Parquet files with DataFusion's own Parquet source.
//!
//! Partition columns (`source`, `date`) are DataFusion partition columns: their value is
//! known per file, filters on them are decided per file when the plan is made (and are exact,
//! so no filter runs on their rows), and the scan fills each batch's partition column with a
//! constant array. deltalake's scan evaluates a kernel expression per batch for the same
//! columns, which cost as much as decoding the Parquet columns (profile in issue 19's note).
//! Filters on other columns prune files by the Delta statistics of each file, then row groups
//! by the Parquet statistics.
//!
//! The file list with its statistics is taken from the snapshot the table was opened at, kept
//! as columns and shared by every scan of that version ([`FileList`]). A table knows the
//! version it reads as a [`PinnedVersion`]; a plan sent to a Ballista scheduler carries the pin,
//! and the scheduler rebuilds the table from it ([`SnapshotTable::pinned`]), reading that
//! version's file list when it plans the scan. Data files of a remote warehouse are read
//! through the session's [`FileCache`] when it has one. A version that needs
//! reader features tidemark does not write (deletion vectors, column mapping: reader version
//! 2 and up) is read through deltalake's scan instead.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};

use arrow::array::{Array, ArrayRef, BooleanArray, UInt64Array};
use arrow::compute::{cast, filter as filter_array, sum};
use arrow::datatypes::{DataType, FieldRef, Schema, SchemaRef, UInt64Type};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::stats::Precision;
use datafusion::common::{Column, ColumnStatistics, DFSchema, ScalarValue, Statistics};
use datafusion::datasource::listing::helpers::expr_applicable_for_cols;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::{
    CachedParquetFileReaderFactory, ParquetFileReaderFactory,
};
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::functions_aggregate::min_max::{MaxAccumulator, MinAccumulator};
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Accumulator, Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_optimizer::pruning::PruningPredicateBuilder;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::ExecutionPlan;
use deltalake::delta_datafusion::{DeltaScanConfig, DeltaScanNext};
use deltalake::DeltaTable;
use object_store::path::Path;
use object_store::ObjectMeta;

use crate::file_cache::{CachingReaderFactory, FileCache};
use crate::storage::StorageConfig;

/// File lists kept per table version; a dashboard's statements read the same few versions.
const KEPT_FILE_LISTS: usize = 16;

/// The provider for the version `table` was opened at.
pub fn provider(table: &DeltaTable) -> DfResult<Arc<dyn TableProvider>> {
    let state = table.snapshot().map_err(external)?;
    if state.protocol().min_reader_version() > 1 {
        return Ok(Arc::new(delta_scan(table)?));
    }
    let files = file_list(table)?;
    let pin = PinnedVersion {
        table_url: table.log_store().root_url().to_string(),
        table_id: state.metadata().id().to_string(),
        version: state.version(),
        partition_columns: state.metadata().partition_columns().to_vec(),
    };
    Ok(Arc::new(SnapshotTable::new(
        Arc::clone(&files.schema),
        pin,
        Some(files),
        None,
    )))
}

/// Exactly which table version a [`SnapshotTable`] reads: what a plan sent to a Ballista
/// scheduler carries, so the scheduler opens that version and never the latest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PinnedVersion {
    /// The table's root URL.
    pub table_url: String,
    /// The Delta table id: a table dropped and written again under the same URL has another.
    pub table_id: String,
    pub version: u64,
    pub partition_columns: Vec<String>,
}

/// The file list of a pinned version, opened with `storage` unless it is kept already.
async fn open_pinned(pin: &PinnedVersion, storage: &StorageConfig) -> DfResult<Arc<FileList>> {
    let key = (pin.table_url.clone(), pin.table_id.clone(), pin.version);
    if let Some(files) = kept_file_list(&key) {
        return Ok(files);
    }
    let url = url::Url::parse(&pin.table_url).map_err(external)?;
    let options = crate::storage::table_options(&url, storage);
    let table = deltalake::DeltaTableBuilder::from_url(url)
        .map_err(external)?
        .with_storage_options(options)
        .with_version(pin.version)
        .load()
        .await
        .map_err(|e| {
            DataFusionError::Execution(format!(
                "cannot open version {} of {}, which the query was planned on: {e}",
                pin.version, pin.table_url
            ))
        })?;
    let id = table
        .snapshot()
        .map_err(external)?
        .metadata()
        .id()
        .to_string();
    if id != pin.table_id {
        return Err(DataFusionError::Execution(format!(
            "{} was dropped and created again after the query was planned; run the query again",
            pin.table_url
        )));
    }
    file_list(&table)
}

/// deltalake's scan of the version `table` was opened at, partition values unwrapped: the
/// provider of tables with reader features tidemark does not write, and the source of every
/// table's schema (so both providers type columns alike).
fn delta_scan(table: &DeltaTable) -> DfResult<DeltaScanNext> {
    let state = table.snapshot().map_err(external)?;
    let config = DeltaScanConfig {
        wrap_partition_values: false,
        ..Default::default()
    };
    DeltaScanNext::new(Arc::new(state.snapshot().clone()), config).map_err(external)
}

fn external(e: impl std::error::Error + Send + Sync + 'static) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// The files of one table version, column by column: one entry per file.
pub struct FileList {
    /// The table's columns in its declared order, typed as deltalake's scan types them.
    schema: SchemaRef,
    store: ObjectStoreUrl,
    locations: Vec<Path>,
    sizes: Vec<u64>,
    /// Each file's modification time (ms) as its add action records it: with the path and
    /// size, the file's identity for caches.
    modified_ms: Vec<i64>,
    /// Rows per file, when every file's statistics carry them.
    rows: Option<ArrayRef>,
    /// Per partition column (in table order): its field and one value per file.
    partitions: Vec<(FieldRef, ArrayRef)>,
    /// Per data column (in table order): its field and min, max and null count per file, as
    /// far as the Delta statistics hold them.
    columns: Vec<(FieldRef, ColumnStats)>,
}

struct ColumnStats {
    min: Option<ArrayRef>,
    max: Option<ArrayRef>,
    nulls: Option<ArrayRef>,
}

/// Identifies a version: the table's location and Delta id (a table dropped and written again
/// gets a new id) and the version.
type FileListKey = (String, String, u64);

/// The file lists kept, oldest first.
type KeptFileLists = Mutex<VecDeque<(FileListKey, Arc<FileList>)>>;

fn kept_file_lists() -> &'static KeptFileLists {
    static KEPT: OnceLock<KeptFileLists> = OnceLock::new();
    KEPT.get_or_init(Default::default)
}

/// The file list of the version `table` was opened at, kept for the scans that follow.
fn file_list(table: &DeltaTable) -> DfResult<Arc<FileList>> {
    let state = table.snapshot().map_err(external)?;
    let root = table.log_store().root_url().clone();
    let key = (
        root.to_string(),
        state.metadata().id().to_string(),
        state.version(),
    );
    if let Some(files) = kept_file_list(&key) {
        return Ok(files);
    }
    let files = Arc::new(FileList::read(table)?);
    let mut kept = kept_file_lists().lock().expect("file lists lock");
    if !kept.iter().any(|(k, _)| *k == key) {
        if kept.len() == KEPT_FILE_LISTS {
            kept.pop_front();
        }
        kept.push_back((key, Arc::clone(&files)));
    }
    Ok(files)
}

fn kept_file_list(key: &FileListKey) -> Option<Arc<FileList>> {
    let kept = kept_file_lists().lock().expect("file lists lock");
    kept.iter()
        .find(|(k, _)| k == key)
        .map(|(_, files)| Arc::clone(files))
}

impl FileList {
    /// Read the schema, file list and statistics of the version `table` was opened at.
    fn read(table: &DeltaTable) -> DfResult<Self> {
        let schema = delta_scan(table)?.schema();
        let state = table.snapshot().map_err(external)?;
        let root = table.log_store().root_url().clone();
        let store = ObjectStoreUrl::parse(&root[..url::Position::BeforePath])?;
        let root_path = Path::from_url_path(root.path()).map_err(external)?;
        let log_data = state.snapshot().log_data();
        let mut locations = Vec::with_capacity(log_data.num_files());
        let mut sizes = Vec::with_capacity(log_data.num_files());
        let mut modified_ms = Vec::with_capacity(log_data.num_files());
        let mut rows = Vec::with_capacity(log_data.num_files());
        for file in log_data.iter() {
            let relative = file.object_store_path();
            locations.push(Path::from_iter(root_path.parts().chain(relative.parts())));
            sizes.push(file.size().max(0) as u64);
            modified_ms.push(file.modification_time());
            rows.push(file.num_records().map(|n| n as u64));
        }
        let typed = |array: Option<ArrayRef>, data_type: &DataType| -> Option<ArrayRef> {
            array.and_then(|a| cast(&a, data_type).ok())
        };
        let partition_columns = state.metadata().partition_columns();
        let mut partitions = Vec::new();
        let mut columns = Vec::new();
        for field in schema.fields() {
            let column = Column::new_unqualified(field.name());
            if partition_columns.contains(field.name()) {
                // A version with no files (every slice replaced by none) has no values.
                let values = typed(log_data.min_values(&column), field.data_type())
                    .or_else(|| {
                        (log_data.num_files() == 0)
                            .then(|| arrow::array::new_empty_array(field.data_type()))
                    })
                    .ok_or_else(|| {
                        DataFusionError::Internal(format!(
                            "the Delta log gave no values for partition column {}",
                            field.name()
                        ))
                    })?;
                partitions.push((Arc::clone(field), values));
            } else {
                let stats = ColumnStats {
                    min: typed(log_data.min_values(&column), field.data_type()),
                    max: typed(log_data.max_values(&column), field.data_type()),
                    nulls: typed(log_data.null_counts(&column), &DataType::UInt64),
                };
                columns.push((Arc::clone(field), stats));
            }
        }
        // From each file's own statistics: deltalake's `row_counts()` reads a column path its
        // file batches do not have, and always answers `None`.
        let rows = rows
            .iter()
            .all(Option::is_some)
            .then(|| Arc::new(UInt64Array::from(rows)) as ArrayRef);
        Ok(Self {
            schema,
            store,
            locations,
            sizes,
            modified_ms,
            rows,
            partitions,
            columns,
        })
    }

    fn len(&self) -> usize {
        self.locations.len()
    }

    /// The partition values as a batch, one row per file.
    fn partition_batch(&self) -> DfResult<RecordBatch> {
        let fields: Vec<FieldRef> = self.partitions.iter().map(|(f, _)| f.clone()).collect();
        let arrays = self.partitions.iter().map(|(_, a)| a.clone()).collect();
        Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?)
    }
}

/// One data file of a table version: where it is, its identity for caches and its partition
/// values as text (`None` for a null partition value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileEntry {
    pub location: Path,
    pub size: u64,
    pub modified_ms: i64,
    pub partitions: std::collections::BTreeMap<String, Option<String>>,
}

/// The files of the version `table` was opened at.
pub(crate) fn files_of(table: &DeltaTable) -> DfResult<Vec<FileEntry>> {
    let files = file_list(table)?;
    let partitions: Vec<(String, ArrayRef)> = files
        .partitions
        .iter()
        .map(|(field, values)| Ok((field.name().clone(), cast(values, &DataType::Utf8)?)))
        .collect::<DfResult<_>>()?;
    Ok((0..files.len())
        .map(|i| FileEntry {
            location: files.locations[i].clone(),
            size: files.sizes[i],
            modified_ms: files.modified_ms[i],
            partitions: partitions
                .iter()
                .map(|(name, values)| {
                    let text = values.as_any().downcast_ref::<arrow::array::StringArray>();
                    let value = text
                        .filter(|t| !t.is_null(i))
                        .map(|t| t.value(i).to_string());
                    (name.clone(), value)
                })
                .collect(),
        })
        .collect())
}

/// The rows of the version `table` was opened at, read from the Delta log where it can: a file
/// holding one row whose statistics pin every column (min = max, or a null count of one) is
/// that row, so it is rebuilt without opening the file. Only the other files are read. Tables
/// of small records written a slice at a time (the slice ledger: one record per file until
/// compaction packs them) are thus read from the log in one pass. Timestamps come back at the
/// millisecond precision of Delta statistics.
pub(crate) async fn read_rows(
    table: &DeltaTable,
    runtime: Arc<datafusion::execution::runtime_env::RuntimeEnv>,
) -> DfResult<Vec<RecordBatch>> {
    use arrow::array::UInt32Array;
    use arrow::compute::take;
    let files = file_list(table)?;
    let schema = Arc::clone(&files.schema);
    let n = files.len();
    let rows: Option<UInt64Array> = files
        .rows
        .as_ref()
        .and_then(|r| cast(r, &DataType::UInt64).ok())
        .and_then(|r| r.as_any().downcast_ref::<UInt64Array>().cloned());
    let mut exact: Vec<bool> = (0..n)
        .map(|i| {
            rows.as_ref()
                .is_some_and(|r| !r.is_null(i) && r.value(i) == 1)
        })
        .collect();
    for (field, stats) in &files.columns {
        let (Some(min), Some(max)) = (&stats.min, &stats.max) else {
            tracing::debug!(column = %field.name(), "no min/max statistics: every file is read");
            exact.iter_mut().for_each(|e| *e = false);
            break;
        };
        // Null counts are not always kept; without one, only min = max pins the value (a
        // null has no min).
        let nulls = match &stats.nulls {
            Some(nulls) => cast(nulls, &DataType::UInt64)?
                .as_any()
                .downcast_ref::<UInt64Array>()
                .cloned(),
            None => None,
        };
        for (i, e) in exact.iter_mut().enumerate() {
            if !*e {
                continue;
            }
            let one_null = nulls
                .as_ref()
                .is_some_and(|n| !n.is_null(i) && n.value(i) == 1);
            *e = if one_null {
                true
            } else if min.is_null(i) || max.is_null(i) {
                false
            } else {
                ScalarValue::try_from_array(min, i)? == ScalarValue::try_from_array(max, i)?
            };
        }
    }
    let indices = UInt32Array::from_iter_values(
        exact
            .iter()
            .enumerate()
            .filter(|(_, e)| **e)
            .map(|(i, _)| i as u32),
    );
    let mut out = Vec::new();
    if !indices.is_empty() {
        let columns = schema
            .fields()
            .iter()
            .map(|field| {
                let values = files
                    .partitions
                    .iter()
                    .find(|(f, _)| f.name() == field.name())
                    .map(|(_, v)| Arc::clone(v))
                    .or_else(|| {
                        files
                            .columns
                            .iter()
                            .find(|(f, _)| f.name() == field.name())
                            .and_then(|(_, s)| s.min.clone())
                    })
                    .ok_or_else(|| {
                        DataFusionError::Internal(format!("no statistics for {}", field.name()))
                    })?;
                let taken = take(&values, &indices, None)?;
                Ok(cast(&taken, field.data_type())?)
            })
            .collect::<DfResult<Vec<_>>>()?;
        out.push(RecordBatch::try_new(Arc::clone(&schema), columns)?);
    }
    // The files the log cannot stand in for: read them, partition values from the log.
    let rest: Vec<usize> = (0..n).filter(|i| !exact[*i]).collect();
    tracing::debug!(
        files = n,
        from_statistics = n - rest.len(),
        read = rest.len(),
        has_row_counts = rows.is_some(),
        "rows of a version"
    );
    if rest.is_empty() {
        return Ok(out);
    }
    let partition_names: Vec<&str> = files
        .partitions
        .iter()
        .map(|(f, _)| f.name().as_str())
        .collect();
    let data_fields: Vec<FieldRef> = schema
        .fields()
        .iter()
        .filter(|f| !partition_names.contains(&f.name().as_str()))
        .cloned()
        .collect();
    let file_schema = Arc::new(Schema::new(data_fields.clone()));
    let entries: Vec<FileEntry> = rest
        .iter()
        .map(|&i| FileEntry {
            location: files.locations[i].clone(),
            size: files.sizes[i],
            modified_ms: files.modified_ms[i],
            partitions: Default::default(),
        })
        .collect();
    if runtime.object_store(&files.store).is_err() {
        runtime.register_object_store(
            files.store.as_ref(),
            table.log_store().root_object_store(None),
        );
    }
    let ctx = datafusion::prelude::SessionContext::new_with_config_rt(
        datafusion::prelude::SessionConfig::new(),
        runtime,
    );
    let plan = scan_files(
        files.store.clone(),
        Arc::clone(&file_schema),
        &entries,
        (0..data_fields.len()).collect(),
        "__tidemark_file",
        ctx.copied_config().target_partitions(),
    )?;
    for batch in datafusion::physical_plan::collect(plan, ctx.task_ctx()).await? {
        let file_index = batch
            .column(batch.num_columns() - 1)
            .as_any()
            .downcast_ref::<UInt64Array>()
            .cloned()
            .ok_or_else(|| DataFusionError::Internal("no file index".into()))?;
        // Each row's file in the version's file list, to take its partition values.
        let positions = UInt32Array::from_iter_values(
            file_index.values().iter().map(|k| rest[*k as usize] as u32),
        );
        let columns = schema
            .fields()
            .iter()
            .map(|field| {
                match files
                    .partitions
                    .iter()
                    .find(|(f, _)| f.name() == field.name())
                {
                    Some((_, values)) => Ok(take(values, &positions, None)?),
                    None => {
                        let k = file_schema.index_of(field.name())?;
                        Ok(Arc::clone(batch.column(k)))
                    }
                }
            })
            .collect::<DfResult<Vec<_>>>()?;
        out.push(RecordBatch::try_new(Arc::clone(&schema), columns)?);
    }
    Ok(out)
}

/// A plain Parquet scan of `files` (any versions of a table whose newest data columns are
/// `file_schema`), reading the columns `projection` of `file_schema` and, last, a `UInt64`
/// column `file_column` holding each row's index in `files`. Columns a file lacks read as
/// NULL.
pub(crate) fn scan_files(
    store: ObjectStoreUrl,
    file_schema: SchemaRef,
    files: &[FileEntry],
    projection: Vec<usize>,
    file_column: &str,
    target_partitions: usize,
) -> DfResult<Arc<dyn ExecutionPlan>> {
    let file_field = Arc::new(arrow::datatypes::Field::new(
        file_column,
        DataType::UInt64,
        false,
    ));
    let mut indices = projection;
    indices.push(file_schema.fields().len());
    let table_schema = TableSchema::builder(file_schema)
        .with_table_partition_cols(vec![file_field])
        .build();
    let partitioned: Vec<PartitionedFile> = files
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let mut file = PartitionedFile::from(ObjectMeta {
                location: entry.location.clone(),
                last_modified: chrono::DateTime::from_timestamp_millis(entry.modified_ms)
                    .unwrap_or_default(),
                size: entry.size,
                e_tag: None,
                version: None,
            });
            file.partition_values = vec![ScalarValue::UInt64(Some(i as u64))];
            file
        })
        .collect();
    let groups = FileGroup::new(partitioned).split_files(target_partitions.max(1));
    let source = Arc::new(ParquetSource::new(table_schema));
    let config = FileScanConfigBuilder::new(store, source)
        .with_file_groups(groups)
        .with_projection_indices(Some(indices))?
        .build();
    Ok(DataSourceExec::from_data_source(config))
}

/// The object store URL (scheme and authority) of a table's root.
pub(crate) fn store_url(table: &DeltaTable) -> DfResult<ObjectStoreUrl> {
    let root = table.log_store().root_url().clone();
    ObjectStoreUrl::parse(&root[..url::Position::BeforePath])
}

/// The statistics of a [`FileList`], one container per file, for [`PruningPredicate`].
impl PruningStatistics for FileList {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        self.partition_values(column)
            .or_else(|| self.column_stats(column)?.min.clone())
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        self.partition_values(column)
            .or_else(|| self.column_stats(column)?.max.clone())
    }

    fn num_containers(&self) -> usize {
        self.len()
    }

    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        self.column_stats(column)?.nulls.clone()
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        self.rows.clone()
    }

    fn contained(
        &self,
        _column: &Column,
        _values: &std::collections::HashSet<ScalarValue>,
    ) -> Option<BooleanArray> {
        None
    }
}

impl FileList {
    fn partition_values(&self, column: &Column) -> Option<ArrayRef> {
        self.partitions
            .iter()
            .find(|(f, _)| f.name() == &column.name)
            .map(|(_, a)| a.clone())
    }

    fn column_stats(&self, column: &Column) -> Option<&ColumnStats> {
        self.columns
            .iter()
            .find(|(f, _)| f.name() == &column.name)
            .map(|(_, s)| s)
    }
}

/// One table version as DataFusion sees it.
pub struct SnapshotTable {
    /// The table's columns in its declared order.
    schema: SchemaRef,
    /// Data columns then partition columns: the order DataFusion's file scan produces.
    scan_schema: TableSchema,
    /// For each column of `schema`, its index in the scan's order.
    scan_index: Vec<usize>,
    pin: PinnedVersion,
    /// The version's file list: set when opened from a loaded table, read on the first scan
    /// when decoded from a plan ([`SnapshotTable::pinned`]).
    files: tokio::sync::OnceCell<Arc<FileList>>,
    /// How to open the pinned version when the file list is not set.
    storage: Option<StorageConfig>,
}

impl std::fmt::Debug for SnapshotTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotTable")
            .field("table", &self.pin.table_url)
            .field("version", &self.pin.version)
            .finish()
    }
}

impl SnapshotTable {
    /// A table read at `pin` with columns `schema`, its file list opened with `storage` when
    /// first scanned: how a Ballista scheduler rebuilds a table from a plan.
    pub fn pinned(schema: SchemaRef, pin: PinnedVersion, storage: StorageConfig) -> Self {
        Self::new(schema, pin, None, Some(storage))
    }

    /// Which version this table reads.
    pub fn pin(&self) -> &PinnedVersion {
        &self.pin
    }

    fn new(
        schema: SchemaRef,
        pin: PinnedVersion,
        files: Option<Arc<FileList>>,
        storage: Option<StorageConfig>,
    ) -> Self {
        let is_partition = |f: &FieldRef| pin.partition_columns.contains(f.name());
        let data_fields: Vec<FieldRef> = schema
            .fields()
            .iter()
            .filter(|f| !is_partition(f))
            .cloned()
            .collect();
        let partition_fields: Vec<FieldRef> = schema
            .fields()
            .iter()
            .filter(|f| is_partition(f))
            .cloned()
            .collect();
        let scan_index = schema
            .fields()
            .iter()
            .map(|field| {
                data_fields
                    .iter()
                    .chain(partition_fields.iter())
                    .position(|f| f.name() == field.name())
                    .expect("every column is a data or a partition column")
            })
            .collect();
        let scan_schema = TableSchema::builder(Arc::new(Schema::new(data_fields)))
            .with_table_partition_cols(partition_fields)
            .build();
        Self {
            schema,
            scan_schema,
            scan_index,
            pin,
            files: tokio::sync::OnceCell::new_with(files),
            storage,
        }
    }

    /// The Parquet source of a scan, as DataFusion's Parquet format would make it (the
    /// session's Parquet options, footers through the runtime's metadata cache), reading data
    /// through the warehouse's file cache when the session has one and the files are remote.
    fn parquet_source(
        &self,
        state: &dyn Session,
        store_url: &ObjectStoreUrl,
    ) -> DfResult<Arc<ParquetSource>> {
        let options = state.table_options().parquet.clone();
        let hint = options.global.metadata_size_hint;
        let runtime = state.runtime_env();
        let store = runtime.object_store(store_url)?;
        let footers = runtime.cache_manager.get_file_metadata_cache();
        let cache = state
            .config()
            .get_extension::<FileCache>()
            .filter(|_| store_url.as_str() != "file:///");
        let factory: Arc<dyn ParquetFileReaderFactory> = match cache {
            Some(cache) => Arc::new(CachingReaderFactory::new(store, cache, footers)),
            None => Arc::new(CachedParquetFileReaderFactory::new(store, footers)),
        };
        let mut source = ParquetSource::new(self.scan_schema.clone())
            .with_table_parquet_options(options)
            .with_parquet_file_reader_factory(factory);
        if let Some(hint) = hint {
            source = source.with_metadata_size_hint(hint);
        }
        Ok(Arc::new(source))
    }

    fn partition_names(&self) -> Vec<&str> {
        self.pin
            .partition_columns
            .iter()
            .map(String::as_str)
            .collect()
    }

    /// The version's file list, opened now if this table was decoded from a plan.
    async fn files(&self) -> DfResult<&Arc<FileList>> {
        self.files
            .get_or_try_init(|| async {
                let storage = self.storage.clone().unwrap_or_default();
                let files = open_pinned(&self.pin, &storage).await?;
                if files.schema.fields() != self.schema.fields() {
                    return Err(DataFusionError::Execution(format!(
                        "version {} of {} does not have the columns the query was planned with",
                        self.pin.version, self.pin.table_url
                    )));
                }
                Ok(files)
            })
            .await
    }

    /// Which files the filters leave: partition filters decided exactly on each file's
    /// partition values, the others by each file's statistics.
    fn selected_files(
        &self,
        files: &FileList,
        state: &dyn Session,
        filters: &[Expr],
    ) -> DfResult<Vec<bool>> {
        let mut keep = vec![true; files.len()];
        let partition_names = self.partition_names();
        let (on_partitions, on_data): (Vec<Expr>, Vec<Expr>) = filters
            .iter()
            .cloned()
            .partition(|f| expr_applicable_for_cols(&partition_names, f));
        if let Some(predicate) = conjunction(on_partitions) {
            let batch = files.partition_batch()?;
            let df_schema = DFSchema::try_from(batch.schema())?;
            let predicate = state.create_physical_expr(predicate, &df_schema)?;
            let matched = predicate.evaluate(&batch)?.into_array(batch.num_rows())?;
            let matched = matched
                .as_any()
                .downcast_ref::<BooleanArray>()
                .ok_or_else(|| {
                    DataFusionError::Internal("a partition filter did not give booleans".into())
                })?;
            for (i, keep) in keep.iter_mut().enumerate() {
                *keep &= matched.is_valid(i) && matched.value(i);
            }
        }
        if let Some(predicate) = conjunction(on_data) {
            let df_schema = DFSchema::try_from(Arc::clone(&self.schema))?;
            let predicate = state.create_physical_expr(predicate, &df_schema)?;
            // A predicate the statistics cannot decide keeps every file.
            let pruning = PruningPredicateBuilder::new()
                .with_file_schema(Arc::clone(&self.schema))
                .try_build(predicate);
            if let Ok(pruning) = pruning {
                if let Ok(may_match) = pruning.prune(files) {
                    for (keep, may_match) in keep.iter_mut().zip(may_match) {
                        *keep &= may_match;
                    }
                }
            }
        }
        Ok(keep)
    }

    /// Statistics of the selected files in scan order: rows, nulls, and min/max (exact for
    /// partition columns, integers and dates; bounds for the rest).
    fn statistics_of(files: &FileList, selected: &BooleanArray) -> DfResult<Statistics> {
        let rows = match &files.rows {
            Some(rows) => {
                let rows = cast(&filter_array(rows, selected)?, &DataType::UInt64)?;
                let rows = rows.as_any().downcast_ref::<UInt64Array>();
                rows.and_then(sum::<UInt64Type>)
                    .map_or(Precision::Exact(0), |n| Precision::Exact(n as usize))
            }
            None => Precision::Absent,
        };
        let bytes: u64 = files
            .sizes
            .iter()
            .zip(selected.values().iter())
            .filter(|(_, s)| *s)
            .map(|(b, _)| *b)
            .sum();
        let mut column_statistics = Vec::new();
        for (field, stats) in &files.columns {
            let exact = matches!(
                field.data_type(),
                DataType::Int8
                    | DataType::Int16
                    | DataType::Int32
                    | DataType::Int64
                    | DataType::UInt8
                    | DataType::UInt16
                    | DataType::UInt32
                    | DataType::UInt64
                    | DataType::Date32
            );
            let nulls = stats
                .nulls
                .as_ref()
                .map(|n| filter_array(n, selected))
                .transpose()?;
            let complete = nulls.as_ref().is_some_and(|n| n.null_count() == 0);
            let bound =
                |values: &Option<ArrayRef>, max: bool| -> DfResult<Precision<ScalarValue>> {
                    let (Some(values), true) = (values, complete) else {
                        return Ok(Precision::Absent);
                    };
                    let values = filter_array(values, selected)?;
                    let value = extreme(&values, field.data_type(), max)?;
                    Ok(match (value.is_null(), exact) {
                        (true, _) => Precision::Absent,
                        (false, true) => Precision::Exact(value),
                        (false, false) => Precision::Inexact(value),
                    })
                };
            let null_count = match nulls.as_ref().filter(|_| complete) {
                Some(n) => {
                    let n = n.as_any().downcast_ref::<UInt64Array>();
                    n.and_then(sum::<UInt64Type>)
                        .map_or(Precision::Exact(0), |n| Precision::Exact(n as usize))
                }
                None => Precision::Absent,
            };
            column_statistics.push(ColumnStatistics {
                null_count,
                min_value: bound(&stats.min, false)?,
                max_value: bound(&stats.max, true)?,
                ..ColumnStatistics::new_unknown()
            });
        }
        for (field, values) in &files.partitions {
            let values = filter_array(values, selected)?;
            let min = extreme(&values, field.data_type(), false)?;
            let max = extreme(&values, field.data_type(), true)?;
            let known = |v: ScalarValue| {
                if v.is_null() {
                    Precision::Absent
                } else {
                    Precision::Exact(v)
                }
            };
            column_statistics.push(ColumnStatistics {
                null_count: Precision::Exact(values.null_count()),
                min_value: known(min),
                max_value: known(max),
                ..ColumnStatistics::new_unknown()
            });
        }
        Ok(Statistics {
            num_rows: rows,
            total_byte_size: Precision::Inexact(bytes as usize),
            column_statistics,
        })
    }
}

/// The smallest or largest value of `values`, null when it has none.
fn extreme(values: &ArrayRef, data_type: &DataType, max: bool) -> DfResult<ScalarValue> {
    if max {
        let mut accumulator = MaxAccumulator::try_new(data_type)?;
        accumulator.update_batch(std::slice::from_ref(values))?;
        accumulator.evaluate()
    } else {
        let mut accumulator = MinAccumulator::try_new(data_type)?;
        accumulator.update_batch(std::slice::from_ref(values))?;
        accumulator.evaluate()
    }
}

#[async_trait]
impl TableProvider for SnapshotTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        let partition_names = self.partition_names();
        Ok(filters
            .iter()
            .map(|f| {
                if expr_applicable_for_cols(&partition_names, f) {
                    TableProviderFilterPushDown::Exact
                } else {
                    TableProviderFilterPushDown::Inexact
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let files = self.files().await?;
        let mut keep = self.selected_files(files, state, filters)?;
        // When every filter was decided per file, a limit needs only the first kept files
        // holding that many rows.
        let partition_names = self.partition_names();
        let all_exact = filters
            .iter()
            .all(|f| expr_applicable_for_cols(&partition_names, f));
        if let (Some(limit), true, Some(rows)) = (limit, all_exact, &files.rows) {
            let rows = cast(rows, &DataType::UInt64)?;
            if let Some(rows) = rows.as_any().downcast_ref::<UInt64Array>() {
                let mut seen = 0u64;
                for (keep, rows) in keep.iter_mut().zip(rows.iter()) {
                    if *keep {
                        *keep = seen < limit as u64;
                        seen += rows.unwrap_or(0);
                    }
                }
            }
        }
        let scan_projection: Vec<usize> = match projection {
            Some(columns) => columns.iter().map(|&i| self.scan_index[i]).collect(),
            None => self.scan_index.clone(),
        };
        let partitioned: Vec<PartitionedFile> = keep
            .iter()
            .enumerate()
            .filter(|(_, keep)| **keep)
            .map(|(i, _)| {
                let mut file = PartitionedFile::from(ObjectMeta {
                    location: files.locations[i].clone(),
                    // As the add action records it: with path and size, what the footer
                    // and file caches know the file by.
                    last_modified: chrono::DateTime::from_timestamp_millis(files.modified_ms[i])
                        .unwrap_or_default(),
                    size: files.sizes[i],
                    e_tag: None,
                    version: None,
                });
                file.partition_values = files
                    .partitions
                    .iter()
                    .map(|(_, values)| ScalarValue::try_from_array(values, i))
                    .collect::<DfResult<_>>()?;
                Ok(file)
            })
            .collect::<DfResult<_>>()?;
        if partitioned.is_empty() {
            let projected = match projection {
                Some(columns) => Arc::new(self.schema.project(columns)?),
                None => Arc::clone(&self.schema),
            };
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        let statistics = Self::statistics_of(files, &BooleanArray::from(keep))?;
        let groups = FileGroup::new(partitioned).split_files(state.config().target_partitions());
        let source = self.parquet_source(state, &files.store)?;
        let config = FileScanConfigBuilder::new(files.store.clone(), source)
            .with_file_groups(groups)
            .with_statistics(statistics)
            .with_projection_indices(Some(scan_projection))?
            .with_limit(limit)
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}
