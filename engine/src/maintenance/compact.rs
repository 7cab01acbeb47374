//! Compaction: bin-packing the small per-slice files syncs leave into large files within each
//! (source, day) partition, clustering settled days by account, then a checkpoint.
//!
//! # Restatement-aware
//! A day is *settled* once its source's restatement window has passed it: no sync rewrites it
//! again (the settled-day guard refuses one that would, short of an explicit backfill). Settled
//! partitions are packed and sorted (z-ordered on one column) by account once, written with
//! small data pages so the page index finds one account's rows; afterwards they hold one
//! file per target size and are left alone, so a nightly run does no work for them. Days inside
//! the window are bin-packed without clustering: the next sync re-splits the slices it replaces,
//! so a costly rewrite there would not last.
//!
//! # Racing the sync writer
//! Compaction rewrites files, never rows. Its commit names the files it removes; when a sync
//! replaced one of them first, Delta's conflict check refuses the commit, and that partition is
//! compacted again from the new state (at most `max_attempts` times, then skipped and reported).
//! A sync that loses the race to compaction re-plans against the packed file (the replace
//! contract reads a multi-slice file and writes back the rows of the slices it keeps). Either
//! way no write is lost.
//!
//! # A failing store
//! A unit the object store fails is skipped and reported; the other units go on and the next
//! run packs it. An optimize commit is whole or absent, so no reader sees part of one.

use std::collections::BTreeMap;
use std::num::NonZeroU64;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use deltalake::kernel::transaction::TransactionError;
use deltalake::operations::optimize::OptimizeType;
use deltalake::{DeltaTable, DeltaTableError, FilterOp, FilterValue};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::slice::SliceLayout;
use crate::warehouse::{Namespace, Warehouse};

/// The default size files are packed to.
pub const DEFAULT_TARGET_SIZE: u64 = 128 * 1024 * 1024;

/// Restatement windows are about 30 days on every platform tidemark knows; a day older than
/// this is settled unless the caller knows the source's own window.
pub const DEFAULT_WINDOW_DAYS: u64 = 30;

/// Which days are settled, per source: those before the source's cutoff.
#[derive(Debug, Clone)]
pub struct Settled {
    cutoffs: BTreeMap<String, NaiveDate>,
    default_cutoff: NaiveDate,
}

impl Settled {
    /// Days more than `window_days` before `today` are settled, for every source.
    pub fn before(today: NaiveDate, window_days: u64) -> Self {
        Settled {
            cutoffs: BTreeMap::new(),
            default_cutoff: today - chrono::Days::new(window_days),
        }
    }

    /// `source`'s days more than `window_days` before `today` are settled.
    pub fn with_source(mut self, source: &str, today: NaiveDate, window_days: u64) -> Self {
        self.cutoffs
            .insert(source.to_string(), today - chrono::Days::new(window_days));
        self
    }

    pub fn is_settled(&self, source: &str, day: NaiveDate) -> bool {
        day < *self.cutoffs.get(source).unwrap_or(&self.default_cutoff)
    }
}

impl Default for Settled {
    /// Days older than [`DEFAULT_WINDOW_DAYS`] before today (UTC) are settled.
    fn default() -> Self {
        Settled::before(chrono::Utc::now().date_naive(), DEFAULT_WINDOW_DAYS)
    }
}

/// How to compact.
#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// Files are packed up to this size.
    pub target_size: u64,
    pub settled: Settled,
    /// Cluster settled partitions by account while packing them.
    pub cluster: bool,
    /// Tries per partition when a sync keeps committing to it first.
    pub max_attempts: usize,
}

impl Default for CompactOptions {
    fn default() -> Self {
        CompactOptions {
            target_size: DEFAULT_TARGET_SIZE,
            settled: Settled::default(),
            cluster: true,
            max_attempts: 3,
        }
    }
}

/// What compacting one table did.
#[derive(Debug, Clone, Serialize)]
pub struct CompactReport {
    pub table: String,
    pub namespace: String,
    pub files_before: usize,
    pub files_after: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Settled partitions packed and clustered by this run.
    pub settled_partitions: u64,
    /// Partitions inside the restatement window packed by this run.
    pub window_partitions: u64,
    /// Partitions left as they were because syncs kept committing to them, with why.
    pub skipped: Vec<String>,
    /// The version the last compaction commit made, if any.
    pub version: Option<u64>,
    #[serde(skip)]
    pub elapsed: Duration,
}

impl CompactReport {
    pub fn partitions_compacted(&self) -> u64 {
        self.settled_partitions + self.window_partitions
    }
}

/// One (source, day) partition's files.
#[derive(Debug, Default, Clone)]
struct PartitionFiles {
    files: usize,
    small_files: usize,
}

/// A group of partitions compacted in one commit: one source's days, settled or not.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Unit {
    settled: bool,
    source: String,
    days: Vec<String>,
}

impl Unit {
    fn describe(&self) -> String {
        match self.days.as_slice() {
            [day] => format!("{}/{day}", self.source),
            days => format!("{} ({} days)", self.source, days.len()),
        }
    }
}

fn file_totals(table: &DeltaTable, name: &str) -> Result<(usize, u64)> {
    let state = table.snapshot().map_err(|e| Error::delta(name, e))?;
    let mut files = 0;
    let mut bytes = 0u64;
    for file in state.snapshot().log_data().iter() {
        files += 1;
        bytes += file.size().max(0) as u64;
    }
    Ok((files, bytes))
}

/// The partitions worth packing: more than one file under the target size.
fn partitions_to_pack(
    table: &DeltaTable,
    name: &str,
    layout: &SliceLayout,
    target_size: u64,
) -> Result<BTreeMap<(String, String), PartitionFiles>> {
    let state = table.snapshot().map_err(|e| Error::delta(name, e))?;
    let mut partitions: BTreeMap<(String, String), PartitionFiles> = BTreeMap::new();
    for file in state.snapshot().log_data().iter() {
        let values = file.partition_values_map();
        let value = |column: &str| values.get(column).cloned().flatten();
        let (Some(source), Some(day)) = (value(&layout.source), value(&layout.date)) else {
            continue;
        };
        let entry = partitions.entry((source, day)).or_default();
        entry.files += 1;
        if (file.size().max(0) as u64) < target_size {
            entry.small_files += 1;
        }
    }
    partitions.retain(|_, p| p.small_files > 1);
    Ok(partitions)
}

/// Columns settled partitions are clustered by: the account column alone. Z-ordered on one
/// column, a file is sorted by account, so each data page holds a narrow range of accounts and
/// the page index skips the rest for a one-account query. Z-ordering by (account, campaign), as
/// before, interleaved the bits of both ids: each account's rows stayed contiguous, but in an
/// order where one page spanned accounts from `acct0000` to `acct0107`, so a one-account query
/// still read 8 pages of 21 (bench, medium size). A campaign's rows are within its account's.
fn cluster_columns(table: &DeltaTable, layout: &SliceLayout) -> Vec<String> {
    let Ok(snapshot) = table.snapshot() else {
        return Vec::new();
    };
    let schema = snapshot.schema();
    [layout.account.as_str()]
        .into_iter()
        .filter(|c| schema.field(c).is_some())
        .map(str::to_string)
        .collect()
}

/// A tidemark error raised inside deltalake's commit loop, carried whole so that
/// `Error::delta` gives it back as it was (a storage failure stays one).
fn through_deltalake(e: Error) -> DeltaTableError {
    DeltaTableError::GenericError {
        source: Box::new(e),
    }
}

fn is_conflict(e: &DeltaTableError) -> bool {
    matches!(
        e,
        DeltaTableError::Transaction {
            source: TransactionError::CommitConflict(_)
                | TransactionError::MaxCommitAttempts(_)
                | TransactionError::VersionAlreadyExists(_)
        }
    )
}

/// Compact one table: pack its partitions (clustering the settled ones), then checkpoint.
/// `progress` hears (partitions done, partitions to do) as it goes.
pub async fn compact(
    warehouse: &Warehouse,
    namespace: Namespace,
    name: &str,
    options: &CompactOptions,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<CompactReport> {
    let started = Instant::now();
    warehouse.check_writable().await?;
    let table = warehouse.open_table(namespace, name).await?;
    let (files_before, bytes_before) = file_totals(&table, name)?;
    let layout = table
        .snapshot()
        .ok()
        .and_then(|s| SliceLayout::from_properties(s.metadata().configuration()));
    let mut report = CompactReport {
        table: name.to_string(),
        namespace: namespace.dir().to_string(),
        files_before,
        files_after: files_before,
        bytes_before,
        bytes_after: bytes_before,
        settled_partitions: 0,
        window_partitions: 0,
        skipped: Vec::new(),
        version: None,
        elapsed: Duration::ZERO,
    };
    let mut table = table;
    match layout {
        Some(layout) => {
            let cluster = if options.cluster {
                cluster_columns(&table, &layout)
            } else {
                Vec::new()
            };
            let partitions = partitions_to_pack(&table, name, &layout, options.target_size)?;
            let total = partitions.len() as u64;
            let mut units: BTreeMap<(bool, String), Vec<String>> = BTreeMap::new();
            for (source, day) in partitions.into_keys() {
                let settled = day
                    .parse::<NaiveDate>()
                    .is_ok_and(|d| options.settled.is_settled(&source, d));
                units.entry((settled, source)).or_default().push(day);
            }
            let packer = Packer {
                warehouse,
                namespace,
                name,
                layout: &layout,
                cluster: &cluster,
                options,
            };
            let mut done = 0;
            progress(done, total);
            for ((settled, source), days) in units {
                let unit = Unit {
                    settled,
                    source,
                    days,
                };
                match packer.pack_unit(&unit, &mut report).await {
                    Ok(Some(packed)) => table = packed,
                    Ok(None) => {}
                    // The store failed this unit: the others go on, the next run packs it
                    // (what it committed, if anything, is a whole packing).
                    Err(e) if e.is_storage() => {
                        tracing::warn!(table = name, unit = %unit.describe(), error = %e, "skipped: storage failed");
                        report.skipped.push(format!(
                            "{}: storage failed ({e}); left for the next run",
                            unit.describe()
                        ));
                    }
                    Err(e) => return Err(e),
                }
                done += unit.days.len() as u64;
                progress(done, total);
            }
        }
        None => {
            // Not a slice table (system tables): pack the whole table.
            progress(0, 1);
            let before = table.version();
            let (packed, metrics) = table
                .optimize()
                .with_target_size(target(options))
                .with_writer_properties(packed_file_properties())
                .await
                .map_err(|e| Error::delta(name, e))?;
            report.window_partitions = metrics.partitions_optimized;
            if packed.version() != before {
                report.version = packed.version();
            }
            table = packed;
            progress(1, 1);
        }
    }
    if report.version.is_some() {
        let latest = warehouse.open_table(namespace, name).await?;
        // A checkpoint only saves readers time: the packing stands without one.
        if let Err(e) = deltalake::checkpoints::create_checkpoint(&latest, None).await {
            let e = Error::delta(name, e);
            tracing::warn!(table = name, error = %e, "could not write a checkpoint after compacting");
            report
                .skipped
                .push(format!("checkpoint: {e}; the next compaction writes one"));
        }
        table = latest;
    }
    let (files_after, bytes_after) = file_totals(&table, name)?;
    report.files_after = files_after;
    report.bytes_after = bytes_after;
    report.elapsed = started.elapsed();
    tracing::info!(
        table = name,
        files_before,
        files_after,
        bytes_after,
        settled = report.settled_partitions,
        window = report.window_partitions,
        skipped = report.skipped.len(),
        ms = report.elapsed.as_millis() as u64,
        "compacted"
    );
    Ok(report)
}

fn target(options: &CompactOptions) -> NonZeroU64 {
    NonZeroU64::new(options.target_size.max(1)).expect("at least 1")
}

/// What packing one table's partitions works with.
#[derive(Clone, Copy)]
struct Packer<'a> {
    warehouse: &'a Warehouse,
    namespace: Namespace,
    name: &'a str,
    layout: &'a SliceLayout,
    cluster: &'a [String],
    options: &'a CompactOptions,
}

impl Packer<'_> {
    /// Pack one unit in one commit; when a sync commits to its files first, pack its days one by
    /// one from the new state, skipping a day that keeps conflicting. The table as last committed.
    async fn pack_unit(
        &self,
        unit: &Unit,
        report: &mut CompactReport,
    ) -> Result<Option<DeltaTable>> {
        let (name, options) = (self.name, self.options);
        match self.pack_once(unit).await {
            Ok(packed) => {
                record(report, unit, unit.days.len() as u64, &packed);
                return Ok(packed);
            }
            Err(e) if is_conflict(&e) => {
                tracing::debug!(table = name, unit = %unit.describe(), "a sync committed first; packing day by day");
            }
            Err(e) => return Err(Error::delta(name, e)),
        }
        let mut last = None;
        for day in &unit.days {
            let single = Unit {
                settled: unit.settled,
                source: unit.source.clone(),
                days: vec![day.clone()],
            };
            let mut attempt = 0;
            loop {
                attempt += 1;
                match self.pack_once(&single).await {
                    Ok(packed) => {
                        record(report, &single, 1, &packed);
                        last = packed.or(last);
                        break;
                    }
                    Err(e) if is_conflict(&e) && attempt < options.max_attempts => continue,
                    Err(e) if is_conflict(&e) => {
                        tracing::warn!(table = name, partition = %single.describe(), attempts = attempt, "skipped: syncs kept committing to it");
                        report.skipped.push(format!(
                        "{}: syncs committed to it first {attempt} times; left for the next run",
                        single.describe()
                    ));
                        break;
                    }
                    Err(e) => return Err(Error::delta(name, e)),
                }
            }
        }
        Ok(last)
    }

    /// One optimize commit over a unit's partitions from the table's latest state; the table
    /// after it, or `None` when there was nothing to pack any more.
    async fn pack_once(
        &self,
        unit: &Unit,
    ) -> std::result::Result<Option<DeltaTable>, DeltaTableError> {
        let Packer {
            warehouse,
            namespace,
            name,
            layout,
            cluster,
            options,
        } = *self;
        let table = warehouse
            .open_table(namespace, name)
            .await
            .map_err(through_deltalake)?;
        // Re-check from this state: a sync may have replaced the small files meanwhile.
        let still: Vec<&str> = {
            let now = partitions_to_pack(&table, name, layout, options.target_size)
                .map_err(through_deltalake)?;
            unit.days
                .iter()
                .filter(|d| now.contains_key(&(unit.source.clone(), (*d).clone())))
                .map(String::as_str)
                .collect()
        };
        if still.is_empty() {
            return Ok(None);
        }
        let filters = [
            (
                layout.source.as_str(),
                FilterOp::Eq,
                FilterValue::Scalar(unit.source.as_str()),
            ),
            (layout.date.as_str(), FilterOp::In, FilterValue::Set(still)),
        ];
        let kind = if unit.settled && !cluster.is_empty() {
            OptimizeType::ZOrder(cluster.to_vec())
        } else {
            OptimizeType::Compact
        };
        let before = table.version();
        let (packed, _) = table
            .optimize()
            .with_filters(&filters)
            .with_type(kind)
            .with_target_size(target(options))
            .with_writer_properties(packed_file_properties())
            .await?;
        Ok((packed.version() != before).then_some(packed))
    }
}

/// Rows per data page of a packed file. A packed day of a source holds every account, z-ordered
/// so each account's rows are contiguous; the page index then lets a query for one account read
/// only the pages holding its rows. Parquet's default (20,000 rows per page) left three pages per
/// column of a 42,000-row day, each spanning ~70 accounts, so a one-account query read two
/// thirds of the day (`page_index_rows_pruned=5.04 M total → 4.92 M matched` on the bench's
/// 30-day account window, medium size); 2,048 rows is about ten accounts of that day.
const PACKED_PAGE_ROWS: usize = 2048;

/// How packed files are written: deltalake's optimize defaults (ZSTD level 4) with pages
/// small enough for the page index to prune by account.
fn packed_file_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_created_by(format!("tidemark {}", env!("CARGO_PKG_VERSION")))
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(4).expect("4 is a valid ZSTD level"),
        ))
        .set_data_page_row_count_limit(PACKED_PAGE_ROWS)
        .build()
}

fn record(report: &mut CompactReport, unit: &Unit, days: u64, packed: &Option<DeltaTable>) {
    if let Some(table) = packed {
        report.version = table.version();
        if unit.settled {
            report.settled_partitions += days;
        } else {
            report.window_partitions += days;
        }
    }
}

/// Compact every table, mart and system table of the warehouse.
pub async fn compact_all(
    warehouse: &Warehouse,
    options: &CompactOptions,
) -> Result<Vec<CompactReport>> {
    let mut reports = Vec::new();
    for namespace in [Namespace::Tables, Namespace::Marts, Namespace::System] {
        for name in warehouse.list(namespace).await? {
            reports.push(compact(warehouse, namespace, &name, options, &|_, _| {}).await?);
        }
    }
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SliceKey;
    use arrow::array::{Date32Array, Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Date32Type, Field, Schema};
    use chrono::NaiveDate;
    use std::sync::Arc;

    fn slice_rows(account: &str, day: NaiveDate, value: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("source", DataType::Utf8, false),
            Field::new("account_id", DataType::Utf8, false),
            Field::new("date", DataType::Date32, false),
            Field::new("clicks", DataType::Int64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["meta"; 2])),
                Arc::new(StringArray::from(vec![account; 2])),
                Arc::new(Date32Array::from(vec![Date32Type::from_naive_date(day); 2])),
                Arc::new(Int64Array::from(vec![value, value + 1])),
            ],
        )
        .unwrap()
    }

    async fn total(warehouse: &Warehouse) -> (i64, i64) {
        let session = crate::WarehouseSession::new(warehouse.clone())
            .await
            .unwrap();
        let batches = session
            .sql("SELECT count(*), sum(clicks) FROM perf")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let as_i64 = |i: usize| {
            arrow::compute::cast(batches[0].column(i), &DataType::Int64)
                .unwrap()
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .value(0)
        };
        (as_i64(0), as_i64(1))
    }

    #[tokio::test]
    async fn compaction_packs_files_and_keeps_rows_and_replaces_still_work() {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = Warehouse::open(dir.path().to_str().unwrap(), &Default::default())
            .await
            .unwrap();
        let day = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        for (i, account) in ["1", "2", "3", "4"].into_iter().enumerate() {
            warehouse
                .replace_slices("perf")
                .with_slices([SliceKey::new("meta", account, day)])
                .with_rows([slice_rows(account, day, i as i64 * 10)])
                .await
                .unwrap();
        }
        let before = total(&warehouse).await;
        let report = compact(
            &warehouse,
            Namespace::Tables,
            "perf",
            &CompactOptions::default(),
            &|_, _| {},
        )
        .await
        .unwrap();
        assert_eq!((report.files_before, report.files_after), (4, 1));
        assert_eq!(total(&warehouse).await, before);
        // A slice inside the packed file is still replaced exactly.
        warehouse
            .replace_slices("perf")
            .with_slices([SliceKey::new("meta", "2", day)])
            .with_rows([slice_rows("2", day, 100)])
            .await
            .unwrap();
        assert_eq!(total(&warehouse).await, (8, before.1 - 21 + 201));
    }
}
