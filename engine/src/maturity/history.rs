//! A table's restatement history, read from its Delta log: which files each commit added and
//! removed, the day each commit's rows were pulled, and each data file's totals per account
//! and campaign. From it, [`History::series`] follows every (group, day)'s value commit by
//! commit without reading any file twice.
//!
//! The replay starts at the oldest version a vacuum left readable (its file list is the
//! starting state, counted as pulled on the day of that version's commit) and goes through
//! every later commit entry. Totals are kept in millionths ([`Value`]), so adding a file's
//! totals and later subtracting them is exact. Histories are kept per table version for the
//! statements that follow (a mart's projections read the same history for three metrics).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

use arrow::array::{Array, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Decimal128Type, SchemaRef};
use chrono::NaiveDate;
use datafusion::prelude::{SessionConfig, SessionContext};
use deltalake::DeltaTable;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;

use super::curve::{DaySeries, SourceClock};
use super::{Grain, Group, Value};
use crate::error::{Error, Result};
use crate::scan::FileEntry;
use crate::slice::SliceLayout;
use crate::warehouse::{Namespace, Warehouse};

/// Histories kept, by (table URL, table id, version).
const KEPT_HISTORIES: usize = 4;

/// Commit entries read at once.
const LOG_READS_IN_FLIGHT: usize = 16;

/// The name of the scan column holding each row's file index.
const FILE_COLUMN: &str = "__tidemark_file";

/// One data file's totals.
#[derive(Debug, Clone, PartialEq)]
struct FileTotals {
    source: String,
    day: NaiveDate,
    /// (account, campaign) → one total per metric of [`History::metrics`].
    cells: Vec<((String, String), Vec<Value>)>,
}

/// One commit, as the replay needs it.
#[derive(Debug, Clone, PartialEq)]
struct Step {
    version: u64,
    /// The day its rows were pulled; `None` for a commit that only moved rows (compaction).
    observed: Option<NaiveDate>,
    added: Vec<Path>,
    removed: Vec<Path>,
}

/// The restatement history of one table version.
#[derive(Debug)]
pub struct History {
    pub table: String,
    /// The numeric columns followed, in table order.
    pub metrics: Vec<String>,
    /// Every column with its type (to say why a column cannot be followed).
    pub columns: Vec<(String, DataType)>,
    /// The first version replayed (older ones were vacuumed) and the newest.
    pub oldest_version: u64,
    pub newest_version: u64,
    /// Windows known from the slice ledger, per source.
    ledger_windows: BTreeMap<String, i64>,
    files: HashMap<Path, FileTotals>,
    steps: Vec<Step>,
}

/// The columns of `table`'s schema a curve can follow: numbers that are not slice columns.
pub fn numeric_columns(schema: &SchemaRef, layout: &SliceLayout) -> Vec<String> {
    schema
        .fields()
        .iter()
        .filter(|f| !layout.columns().contains(&f.name().as_str()))
        .filter(|f| f.data_type().is_numeric())
        .map(|f| f.name().clone())
        .collect()
}

type HistoryKey = (String, String, u64);

/// The histories kept, oldest first.
type KeptHistories = Mutex<VecDeque<(HistoryKey, Arc<History>)>>;

fn kept() -> &'static KeptHistories {
    static KEPT: OnceLock<KeptHistories> = OnceLock::new();
    KEPT.get_or_init(Default::default)
}

/// Parse one commit entry: its adds and removes with their partition values, and the day its
/// rows were pulled.
fn parse_entry(
    version: u64,
    bytes: &[u8],
    root: &Path,
    added_partitions: &mut HashMap<Path, FileEntry>,
) -> Step {
    let mut step = Step {
        version,
        observed: None,
        added: Vec::new(),
        removed: Vec::new(),
    };
    let mut committed: Option<NaiveDate> = None;
    let mut recorded: Option<NaiveDate> = None;
    let mut moves_only = false;
    for line in bytes.split(|b| *b == b'\n') {
        let Ok(action) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        if let Some(info) = action.get("commitInfo") {
            committed = info
                .get("timestamp")
                .and_then(serde_json::Value::as_i64)
                .and_then(chrono::DateTime::from_timestamp_millis)
                .map(|t| t.date_naive());
            recorded = info
                .pointer("/tidemark/observed")
                .and_then(serde_json::Value::as_str)
                .and_then(|d| d.parse().ok());
            moves_only =
                info.get("operation").and_then(serde_json::Value::as_str) == Some("OPTIMIZE");
        }
        let location = |file: &serde_json::Value| -> Option<Path> {
            let relative = Path::from_url_path(file.get("path")?.as_str()?).ok()?;
            Some(Path::from_iter(root.parts().chain(relative.parts())))
        };
        if let Some(file) = action.get("add") {
            let Some(path) = location(file) else { continue };
            let partitions = file
                .get("partitionValues")
                .and_then(serde_json::Value::as_object)
                .map(|values| {
                    values
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string)))
                        .collect()
                })
                .unwrap_or_default();
            added_partitions.insert(
                path.clone(),
                FileEntry {
                    location: path.clone(),
                    size: file
                        .get("size")
                        .and_then(serde_json::Value::as_u64)
                        .unwrap_or(0),
                    modified_ms: file
                        .get("modificationTime")
                        .and_then(serde_json::Value::as_i64)
                        .unwrap_or(0),
                    partitions,
                },
            );
            step.added.push(path);
        } else if let Some(file) = action.get("remove") {
            if let Some(path) = location(file) {
                step.removed.push(path);
            }
        }
    }
    if !moves_only {
        step.observed = recorded.or(committed);
    }
    step
}

impl History {
    /// The history of `name` at its newest version (kept for the statements that follow).
    pub async fn read(warehouse: &Warehouse, name: &str) -> Result<Arc<History>> {
        let namespace = warehouse.locate(name).await?;
        if namespace == Namespace::System {
            return Err(Error::NoHistory {
                table: name.to_string(),
                reason:
                    "it is a system table; curves follow tables synced by (source, account, day)"
                        .into(),
            });
        }
        let table = warehouse.open_table(namespace, name).await?;
        let key: HistoryKey = (
            table.log_store().root_url().to_string(),
            table
                .snapshot()
                .map_err(|e| Error::delta(name, e))?
                .metadata()
                .id()
                .to_string(),
            table.version().unwrap_or(0),
        );
        if let Some(found) = kept()
            .lock()
            .expect("history lock")
            .iter()
            .find(|(k, _)| *k == key)
        {
            return Ok(Arc::clone(&found.1));
        }
        let history = Arc::new(Self::replay(warehouse, namespace, name, &table).await?);
        let mut kept = kept().lock().expect("history lock");
        if kept.len() == KEPT_HISTORIES {
            kept.pop_front();
        }
        kept.push_back((key, Arc::clone(&history)));
        Ok(history)
    }

    async fn replay(
        warehouse: &Warehouse,
        namespace: Namespace,
        name: &str,
        table: &DeltaTable,
    ) -> Result<History> {
        let layout = crate::replace::table_layout(name, table).map_err(|_| Error::NoHistory {
            table: name.to_string(),
            reason: "it is not a slice table (one written by syncs, per source, account and day), \
                     so its versions say nothing about restatements"
                .into(),
        })?;
        let provider = crate::scan::provider(table)?;
        let schema = provider.schema();
        let metrics = numeric_columns(&schema, &layout);
        let newest = table.version().unwrap_or(0);
        let floor = crate::maintenance::oldest_readable_version(warehouse, namespace, name)
            .await?
            .unwrap_or(0)
            .min(newest);
        let root = Path::from_url_path(table.log_store().root_url().path())
            .map_err(|e| Error::delta(name, deltalake::DeltaTableError::from(e)))?;

        // Every commit entry from the floor; the replay starts after the last one missing
        // (cleaned up with the log's retention), from that version's file list.
        let store = table.log_store();
        let entries: Vec<(u64, Option<bytes::Bytes>)> = futures::stream::iter(floor..=newest)
            .map(|version| {
                let store = store.clone();
                async move {
                    let bytes = store.read_commit_entry(version as _).await?;
                    Ok::<_, deltalake::DeltaTableError>((version, bytes))
                }
            })
            .buffered(LOG_READS_IN_FLIGHT)
            .try_collect()
            .await
            .map_err(|e| Error::delta(name, e))?;
        let gap = entries
            .iter()
            .rev()
            .find(|(_, bytes)| bytes.is_none())
            .map(|(v, _)| *v);
        let mut entries_by_path: HashMap<Path, FileEntry> = HashMap::new();
        let mut steps = Vec::new();
        let start = match gap {
            None if floor == 0 => None,
            None => Some(floor),
            Some(missing) => Some(missing),
        };
        if let Some(base) = start {
            let at = warehouse.open_table_at(namespace, name, Some(base)).await?;
            let files = crate::scan::files_of(&at)?;
            // The state at the base version, counted as pulled on the day of its newest file.
            let observed = files
                .iter()
                .map(|f| f.modified_ms)
                .max()
                .and_then(chrono::DateTime::from_timestamp_millis)
                .map(|t| t.date_naive());
            steps.push(Step {
                version: base,
                observed,
                added: files.iter().map(|f| f.location.clone()).collect(),
                removed: Vec::new(),
            });
            entries_by_path.extend(files.into_iter().map(|f| (f.location.clone(), f)));
        }
        for (version, bytes) in entries {
            if start.is_some_and(|base| version <= base) {
                continue;
            }
            let Some(bytes) = bytes else { continue };
            steps.push(parse_entry(version, &bytes, &root, &mut entries_by_path));
        }
        let files = read_file_totals(
            warehouse,
            name,
            table,
            &schema,
            &layout,
            &metrics,
            entries_by_path.into_values().collect(),
        )
        .await?;
        Ok(History {
            table: name.to_string(),
            columns: schema
                .fields()
                .iter()
                .map(|f| (f.name().clone(), f.data_type().clone()))
                .collect(),
            metrics,
            oldest_version: start.unwrap_or(0),
            newest_version: newest,
            ledger_windows: ledger_windows(warehouse).await?,
            files,
            steps,
        })
    }

    /// Every (group, day)'s value after each commit that changed it, at `grain`, for
    /// `metric`; and each source's window and newest pull.
    pub fn series(
        &self,
        metric: &str,
        grain: Grain,
    ) -> Result<(Vec<DaySeries>, BTreeMap<String, SourceClock>)> {
        let m = self
            .metrics
            .iter()
            .position(|c| c == metric)
            .ok_or_else(|| Error::NoHistory {
                table: self.table.clone(),
                reason: format!("it has no numeric column '{metric}'"),
            })?;
        #[derive(Default)]
        struct Partition {
            totals: HashMap<Group, Value>,
            first_seen: Option<NaiveDate>,
            last_seen: Option<NaiveDate>,
        }
        let mut partitions: HashMap<(String, NaiveDate), Partition> = HashMap::new();
        let mut points: HashMap<(Group, NaiveDate), Vec<(NaiveDate, Value)>> = HashMap::new();
        let mut latest: BTreeMap<String, NaiveDate> = BTreeMap::new();
        let mut oldest_pull: BTreeMap<String, i64> = BTreeMap::new();
        let mut active: BTreeSet<&Path> = BTreeSet::new();
        for step in &self.steps {
            let mut touched: BTreeSet<(String, NaiveDate, Group)> = BTreeSet::new();
            let mut touched_partitions: BTreeSet<(String, NaiveDate)> = BTreeSet::new();
            let changes = step
                .removed
                .iter()
                .map(|p| (p, -1))
                .chain(step.added.iter().map(|p| (p, 1)));
            for (path, sign) in changes {
                let Some(file) = self.files.get(path) else {
                    continue;
                };
                let known = if sign < 0 {
                    active.remove(path)
                } else {
                    active.insert(path)
                };
                if !known {
                    continue; // a remove of a file never added, or an add twice
                }
                let key = (file.source.clone(), file.day);
                touched_partitions.insert(key.clone());
                let partition = partitions.entry(key).or_default();
                for ((account, campaign), values) in &file.cells {
                    let group = grain.of(&Group {
                        source: file.source.clone(),
                        account: Some(account.clone()),
                        campaign: Some(campaign.clone()),
                    });
                    *partition.totals.entry(group.clone()).or_default() += sign * values[m];
                    touched.insert((file.source.clone(), file.day, group));
                }
            }
            let Some(observed) = step.observed else {
                continue;
            };
            for (source, day) in &touched_partitions {
                let partition = partitions
                    .get_mut(&(source.clone(), *day))
                    .expect("touched partitions exist");
                partition.first_seen.get_or_insert(observed);
                partition.last_seen = partition.last_seen.max(Some(observed));
                let newest = latest.entry(source.clone()).or_insert(observed);
                *newest = (*newest).max(observed);
                let age = (observed - *day).num_days();
                let oldest = oldest_pull.entry(source.clone()).or_insert(age);
                *oldest = (*oldest).max(age);
            }
            for (source, day, group) in touched {
                let partition = &partitions[&(source, day)];
                let value = partition.totals[&group];
                let series = points.entry((group, day)).or_default();
                if series.is_empty() {
                    // A group that appears after its day was first pulled was 0 until then.
                    if let Some(first) = partition.first_seen.filter(|f| *f < observed) {
                        series.push((first, 0));
                    }
                }
                if series.last().is_none_or(|(_, last)| *last != value) {
                    series.push((observed, value));
                }
            }
        }
        let clocks: BTreeMap<String, SourceClock> = latest
            .iter()
            .map(|(source, latest)| {
                let window = self
                    .ledger_windows
                    .get(source)
                    .copied()
                    .or_else(|| oldest_pull.get(source).copied())
                    .unwrap_or(0)
                    .max(0);
                (
                    source.clone(),
                    SourceClock {
                        window,
                        latest: *latest,
                    },
                )
            })
            .collect();
        let mut out = Vec::new();
        for ((source, day), partition) in partitions {
            for (group, value) in partition.totals {
                let series = points.remove(&(group.clone(), day)).unwrap_or_default();
                out.push(DaySeries {
                    group,
                    day,
                    points: series,
                    current: value,
                    last_observed: partition
                        .last_seen
                        .or_else(|| latest.get(&source).copied())
                        .unwrap_or(day),
                });
            }
        }
        out.sort_by(|a, b| (&a.group, a.day).cmp(&(&b.group, b.day)));
        Ok((out, clocks))
    }
}

/// Each source's window from the slice ledger: the days from a day to its `settles_at`, less
/// the day on which it is no longer pulled.
async fn ledger_windows(warehouse: &Warehouse) -> Result<BTreeMap<String, i64>> {
    let mut windows = BTreeMap::new();
    for record in crate::ledger::read(warehouse).await? {
        let window = (record.settles_at.date_naive() - record.date).num_days() - 1;
        let entry = windows.entry(record.source).or_insert(window);
        *entry = (*entry).max(window);
    }
    Ok(windows)
}

/// Read each file once: totals per (account, campaign) of every metric, in millionths.
async fn read_file_totals(
    warehouse: &Warehouse,
    name: &str,
    table: &DeltaTable,
    schema: &SchemaRef,
    layout: &SliceLayout,
    metrics: &[String],
    entries: Vec<FileEntry>,
) -> Result<HashMap<Path, FileTotals>> {
    let mut out = HashMap::new();
    // Files outside a (source, day) partition cannot be placed on a day; none are written by
    // tidemark, and other writers' are skipped rather than guessed.
    let entries: Vec<(FileEntry, String, NaiveDate)> = entries
        .into_iter()
        .filter_map(|entry| {
            let source = entry.partitions.get(&layout.source)?.clone()?;
            let day = entry
                .partitions
                .get(&layout.date)?
                .as_deref()?
                .parse()
                .ok()?;
            Some((entry, source, day))
        })
        .collect();
    if entries.is_empty() {
        return Ok(out);
    }
    let partition_columns = [layout.source.as_str(), layout.date.as_str()];
    let file_schema = Arc::new(arrow::datatypes::Schema::new(
        schema
            .fields()
            .iter()
            .filter(|f| !partition_columns.contains(&f.name().as_str()))
            .cloned()
            .collect::<Vec<_>>(),
    ));
    let index_of = |column: &str| file_schema.index_of(column).ok();
    let account = index_of(&layout.account).ok_or_else(|| Error::NoHistory {
        table: name.to_string(),
        reason: format!("it has no column '{}'", layout.account),
    })?;
    let campaign = index_of("campaign_id");
    let mut projection = vec![account];
    projection.extend(campaign);
    let metric_indices: Vec<usize> = metrics.iter().filter_map(|m| index_of(m)).collect();
    projection.extend(&metric_indices);
    let ctx =
        SessionContext::new_with_config_rt(SessionConfig::new(), warehouse.query_runtime().clone());
    let store_url = crate::scan::store_url(table)?;
    if ctx.runtime_env().object_store(&store_url).is_err() {
        ctx.runtime_env().register_object_store(
            store_url.as_ref(),
            table.log_store().root_object_store(None),
        );
    }
    let files: Vec<FileEntry> = entries.iter().map(|(e, _, _)| e.clone()).collect();
    let plan = crate::scan::scan_files(
        store_url,
        file_schema,
        &files,
        projection,
        FILE_COLUMN,
        ctx.copied_config().target_partitions(),
    )?;
    let batches = datafusion::physical_plan::collect(plan, ctx.task_ctx()).await?;
    let mut cells: HashMap<u64, BTreeMap<(String, String), Vec<Value>>> = HashMap::new();
    let first_metric = if campaign.is_some() { 2 } else { 1 };
    for batch in &batches {
        let text = |i: usize| -> Result<arrow::array::StringArray> {
            Ok(cast(batch.column(i), &DataType::Utf8)?
                .as_string::<i32>()
                .clone())
        };
        let accounts = text(0)?;
        let campaigns = campaign.map(|_| text(1)).transpose()?;
        let values: Vec<arrow::array::Decimal128Array> = (0..metric_indices.len())
            .map(|k| {
                Ok(
                    cast(batch.column(first_metric + k), &DataType::Decimal128(38, 6))?
                        .as_primitive::<Decimal128Type>()
                        .clone(),
                )
            })
            .collect::<Result<_>>()?;
        let file_index = batch
            .column(batch.num_columns() - 1)
            .as_primitive::<arrow::datatypes::UInt64Type>()
            .clone();
        for row in 0..batch.num_rows() {
            let key = (
                accounts.value(row).to_string(),
                campaigns
                    .as_ref()
                    .filter(|c| !c.is_null(row))
                    .map(|c| c.value(row).to_string())
                    .unwrap_or_default(),
            );
            let totals = cells
                .entry(file_index.value(row))
                .or_default()
                .entry(key)
                .or_insert_with(|| vec![0; metrics.len()]);
            for (k, column) in values.iter().enumerate() {
                if !column.is_null(row) {
                    totals[k] += column.value(row);
                }
            }
        }
    }
    for (i, (entry, source, day)) in entries.into_iter().enumerate() {
        let file_cells = cells.remove(&(i as u64)).unwrap_or_default();
        out.insert(
            entry.location,
            FileTotals {
                source,
                day,
                cells: file_cells.into_iter().collect(),
            },
        );
    }
    Ok(out)
}
