//! The replace contract: one Delta commit that, for each (source, account, day) slice in a
//! batch, removes every old row of the slice and adds exactly the new rows, leaving every
//! other slice's files untouched.
//!
//! # How
//! Tables are partitioned by (source, day) and every staged file holds the rows of exactly one
//! slice, so the files of a slice are found from the log alone: partition values name the
//! (source, day) and the file's min/max statistics on the account column name the account.
//! The process keeps these in a [`SliceIndex`] advanced commit by commit, so planning looks up
//! only the slices' partitions. Replacing a slice removes its files and adds new ones; no other
//! file is read or rewritten. A file that holds several slices (written by another tool, or
//! compacted) is read and its surviving rows are written back as single-slice files in the same
//! commit. The work thus follows the size of the slices, not of the table.
//!
//! The commit is the next `_delta_log` entry, written with put-if-absent (an atomic hard link
//! locally, `If-None-Match: *` on S3). When another writer took that version, the replace reads
//! the winning commit: if it touched none of the same slices (and not the schema), the same
//! actions go in at the next version; otherwise the replace re-plans against the new state,
//! reusing its staged files. The entry also names the slices as a predicate in `commitInfo`, for
//! other Delta writers' conflict checks. With a job id the commit carries a Delta `txn` action,
//! so a caller unsure whether its commit landed can run it again: a job already in the log is
//! reported as applied and not committed twice. A commit the store answers with an error
//! after storing it (a `500` or a dropped connection after the write) is found in the log by its
//! bytes and reported as landed, never committed a second time ([`commit`]).

mod commit;
mod index;
mod plan;
mod schema;
mod stage;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use delta_kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::transaction::CommitData;
use deltalake::kernel::{Action, Add, MetadataExt, StructType, Transaction};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::{DeltaTable, DeltaTableError};
use futures::StreamExt;
use serde::Serialize;

pub use schema::{conform, evolve, initial_schema, storage_type, Evolution};

use crate::error::{Error, Result};
use crate::failpoint;
use crate::slice::{SliceKey, SliceLayout};
use crate::warehouse::{Namespace, Warehouse};
use commit::Written;
pub(crate) use index::SliceIndex;
use stage::Stager;

/// Checkpoints also carry each file's statistics as a struct column, so a process opening the
/// table reads them typed instead of parsing every file's JSON statistics (the largest cost of
/// opening a 100,000-file table, profiled in issue 19's note).
const CHECKPOINT_PROPERTIES: [(&str, &str); 1] = [("delta.checkpoint.writeStatsAsStruct", "true")];

/// Versions between checkpoints (the Delta default).
const CHECKPOINT_INTERVAL: u64 = 100;

/// Slice files staged at once per core: encoding one uses a core, writing it waits on storage
/// (S3 round trips especially), so a few per core keep both busy.
const STAGING_TASKS_PER_CORE: usize = 4;

/// How many slice files a replace stages at once.
fn staging_tasks() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()) * STAGING_TASKS_PER_CORE
}

/// How often a replace re-plans after a real conflict with another writer before giving up.
const DEFAULT_MAX_ATTEMPTS: usize = 20;

/// An idempotency key for a commit: the job's application id and a version that grows per job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobId {
    pub app_id: String,
    pub version: i64,
}

/// What a replace did, for the CLI, logs and metrics.
#[derive(Debug, Clone, Serialize)]
pub struct ReplaceReport {
    pub table: String,
    /// The table version the replace committed (or found already committed).
    pub version: u64,
    /// The version the commit was planned against; more than one below `version` means other
    /// writers committed in between (and were checked for conflicts).
    pub planned_version: u64,
    pub slices: usize,
    pub rows_written: usize,
    pub rows_removed: usize,
    pub files_added: usize,
    pub files_removed: usize,
    pub bytes_written: i64,
    /// Commit attempts, 1 when no other writer got in the way.
    pub attempts: usize,
    /// Columns added to the table schema by this replace.
    pub added_columns: Vec<String>,
    /// True when the job's commit was already in the log and nothing was written.
    pub already_applied: bool,
    /// True when the store answered the commit with an error although it had stored it, and
    /// the commit was found in the log ([`commit`]).
    pub ambiguous_commit: bool,
    /// True when this replace created the table.
    pub created_table: bool,
    #[serde(skip)]
    pub elapsed: Duration,
}

/// A replace of slices in one table; `.await` it to commit.
pub struct ReplaceSlices {
    warehouse: Warehouse,
    namespace: Namespace,
    table: String,
    layout: SliceLayout,
    slices: BTreeSet<SliceKey>,
    batches: Vec<RecordBatch>,
    job: Option<JobId>,
    observed: Option<chrono::NaiveDate>,
    max_attempts: usize,
    /// A random id in this replace's `commitInfo`, so its own commit is recognised in the log.
    commit_id: String,
}

impl ReplaceSlices {
    pub(crate) fn new(warehouse: Warehouse, namespace: Namespace, table: &str) -> Self {
        ReplaceSlices {
            warehouse,
            namespace,
            table: table.to_string(),
            layout: SliceLayout::default(),
            slices: BTreeSet::new(),
            batches: Vec::new(),
            job: None,
            observed: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            commit_id: uuid::Uuid::new_v4().to_string(),
        }
    }

    /// The slice columns, used when this replace creates the table (an existing table keeps its own).
    pub fn with_layout(mut self, layout: SliceLayout) -> Self {
        self.layout = layout;
        self
    }

    /// The slices being replaced. A declared slice with no rows becomes empty.
    pub fn with_slices(mut self, slices: impl IntoIterator<Item = SliceKey>) -> Self {
        self.slices.extend(slices);
        self
    }

    /// The complete new rows of the slices.
    pub fn with_rows(mut self, batches: impl IntoIterator<Item = RecordBatch>) -> Self {
        self.batches.extend(batches);
        self
    }

    /// Make the commit idempotent under `app_id` at `version` (see the module docs).
    pub fn with_job(mut self, app_id: impl Into<String>, version: i64) -> Self {
        self.job = Some(JobId {
            app_id: app_id.into(),
            version,
        });
        self
    }

    /// The day the new rows were pulled from their source (a sync's "today"), recorded in the
    /// commit as `tidemark.observed`: the clock the maturity curves measure a day's age by
    /// ([`crate::maturity`]). Without it a commit's age is its commit time.
    pub fn observed_on(mut self, day: chrono::NaiveDate) -> Self {
        self.observed = Some(day);
        self
    }

    /// How many times to re-plan after conflicts.
    pub fn with_max_attempts(mut self, attempts: usize) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    async fn execute(self) -> Result<ReplaceReport> {
        let started = Instant::now();
        let name = self.table.clone();
        if self.slices.is_empty() {
            return Err(Error::EmptyBatch { table: name });
        }
        self.warehouse.check_writable().await?;
        let handle = self.warehouse.unloaded_table(self.namespace, &name)?;
        let Some(index) = self.warehouse.slice_index(self.namespace, &name).await? else {
            return self.create_table(handle, started).await;
        };
        // One replace per table at a time in this process; other processes race on the log.
        let mut index = index.lock().await;
        let log_store = handle.log_store();
        index.advance(log_store.as_ref()).await?;
        if index.stale {
            *index = self.warehouse.rebuild_index(self.namespace, &name).await?;
        }

        let layout = table_layout(&name, &index.base)?;
        let parts = self.split_rows(&layout)?;
        let current = index
            .base
            .snapshot()
            .map_err(|e| Error::delta(&name, e))?
            .snapshot()
            .arrow_schema();
        let mut evolution = Evolution {
            schema: current,
            added: Vec::new(),
        };
        for batch in &self.batches {
            let step = evolve(&name, &evolution.schema, &batch.schema())?;
            evolution.schema = step.schema;
            evolution.added.extend(step.added);
        }
        let Evolution {
            schema,
            added: added_columns,
        } = evolution;

        if let Some(report) = self.already_applied(&index, started).await? {
            return Ok(report);
        }

        let stager = Stager {
            table: name.clone(),
            store: log_store.object_store(None),
            layout: layout.clone(),
            schema: schema.clone(),
        };
        let (staged, rows_written) = self.stage(&stager, &parts, &schema).await?;
        failpoint::hit(failpoint::AFTER_STAGE).await;

        let planned_version = index.version;
        let predicate = layout.predicate(&self.slices);
        let metadata = if added_columns.is_empty() {
            None
        } else {
            let kernel_schema: StructType = schema
                .as_ref()
                .try_into_kernel()
                .map_err(|e| Error::delta(&name, e.into()))?;
            let snapshot = index.base.snapshot().map_err(|e| Error::delta(&name, e))?;
            Some(
                snapshot
                    .metadata()
                    .clone()
                    .with_schema(&kernel_schema)
                    .map_err(|e| Error::delta(&name, DeltaTableError::generic(e.to_string())))?,
            )
        };

        let mut attempts = 0;
        'plan: loop {
            attempts += 1;
            if attempts > self.max_attempts {
                return Err(Error::CommitConflict {
                    table: name,
                    attempts: self.max_attempts,
                    last: "other writers kept replacing the same slices".into(),
                });
            }
            let plan = plan::plan_removals(&index, &self.slices);
            let removing: HashSet<String> = plan.removes.iter().map(|r| r.path.clone()).collect();
            // Rows of multi-slice files that belong to slices not being replaced survive.
            let mut survivors: Vec<Add> = Vec::new();
            let mut kept_rows = 0;
            for file in &plan.mixed {
                let batches = stager
                    .read_file(file.location.clone(), &file.source, file.date_days)
                    .await?;
                for batch in batches {
                    for (key, rows) in keep_rows_outside(&layout, &name, &batch, &self.slices)? {
                        kept_rows += rows.num_rows();
                        let rows = conform(&name, &rows, &schema)?;
                        survivors.extend(stager.stage_slice(&key, &rows).await?);
                    }
                }
            }

            let mut actions: Vec<Action> = Vec::new();
            actions.extend(metadata.clone().map(Action::Metadata));
            actions.extend(plan.removes.iter().cloned().map(Action::Remove));
            actions.extend(staged.iter().cloned().map(Action::Add));
            actions.extend(survivors.iter().cloned().map(Action::Add));
            let operation = DeltaOperation::Write {
                mode: SaveMode::Overwrite,
                partition_by: Some(layout.partition_columns()),
                predicate: Some(predicate.clone()),
            };
            let entry = CommitData::new(
                actions,
                operation,
                self.commit_info(),
                self.job
                    .iter()
                    .map(|job| Transaction::new(&job.app_id, job.version))
                    .collect(),
            )
            .get_bytes()
            .map_err(|e| Error::delta(&name, e.into()))?;
            if attempts == 1 {
                failpoint::hit(failpoint::BEFORE_COMMIT).await;
            }

            // Put-if-absent at the next version; a taken version means another writer got
            // there first: read what it did and either retry at the next version or re-plan.
            loop {
                let version = index.version + 1;
                let written =
                    commit::write_entry(log_store.as_ref(), &name, version, &entry).await?;
                match written {
                    Written::Landed { ambiguous } => {
                        index.apply(version, &entry, &mut Default::default())?;
                        failpoint::hit(failpoint::AFTER_COMMIT).await;
                        self.maybe_checkpoint(version).await;
                        let report = ReplaceReport {
                            table: name.clone(),
                            version,
                            planned_version,
                            slices: self.slices.len(),
                            rows_written,
                            rows_removed: plan.rows_removed.saturating_sub(kept_rows),
                            files_added: staged.len() + survivors.len(),
                            files_removed: plan.removes.len(),
                            bytes_written: staged.iter().chain(&survivors).map(|a| a.size).sum(),
                            attempts,
                            added_columns: added_columns.clone(),
                            already_applied: false,
                            ambiguous_commit: ambiguous,
                            created_table: false,
                            elapsed: started.elapsed(),
                        };
                        tracing::info!(
                            table = %name, version, slices = report.slices, rows = rows_written,
                            files_added = report.files_added, files_removed = report.files_removed,
                            attempts, "replaced slices"
                        );
                        return Ok(report);
                    }
                    Written::Taken => {
                        let effects = index.advance(log_store.as_ref()).await?;
                        if let Some(report) = self.already_applied(&index, started).await? {
                            return Ok(report);
                        }
                        if effects.metadata_changed {
                            // Someone changed the schema: start over against it.
                            drop(index);
                            self.warehouse.forget_index(self.namespace, &name).await;
                            return Box::pin(self.execute()).await;
                        }
                        if effects.touches(&self.slices, &removing) {
                            tracing::debug!(table = %name, attempt = attempts, "another writer replaced the same slices; re-planning");
                            tokio::time::sleep(Duration::from_millis(rand_jitter_ms(attempts)))
                                .await;
                            continue 'plan;
                        }
                        tracing::debug!(table = %name, version, "log version taken by a disjoint commit; retrying at the next");
                    }
                }
            }
        }
    }

    /// Stage the new rows of every slice as files; returns the add actions (in slice order,
    /// so the log entry does not depend on timing) and the row count. Slices are encoded and
    /// written on [`staging_tasks`] tasks at once: a sync's commit carries hundreds of small
    /// slices, and one at a time left the cores idle while each file was written.
    async fn stage(
        &self,
        stager: &Stager,
        parts: &BTreeMap<SliceKey, RecordBatch>,
        schema: &SchemaRef,
    ) -> Result<(Vec<Add>, usize)> {
        let mut conformed = Vec::with_capacity(parts.len());
        for (key, rows) in parts {
            conformed.push((key.clone(), conform(&self.table, rows, schema)?));
        }
        let rows_written = conformed.iter().map(|(_, rows)| rows.num_rows()).sum();
        let tasks = conformed.into_iter().map(|(key, rows)| {
            let stager = stager.clone();
            tokio::spawn(async move { stager.stage_slice(&key, &rows).await })
        });
        let mut written = futures::stream::iter(tasks).buffered(staging_tasks());
        let mut staged = Vec::new();
        while let Some(joined) = written.next().await {
            let adds = joined.map_err(|e| {
                Error::delta(
                    &self.table,
                    DeltaTableError::Generic(format!("staging a slice file stopped: {e}")),
                )
            })??;
            staged.extend(adds);
        }
        Ok((staged, rows_written))
    }

    /// Write a checkpoint every [`CHECKPOINT_INTERVAL`] versions so readers replay a short log.
    /// This reads the whole file list, once per interval; a failure only costs readers time.
    async fn maybe_checkpoint(&self, version: u64) {
        if version == 0 || !version.is_multiple_of(CHECKPOINT_INTERVAL) {
            return;
        }
        let result = async {
            let table = self
                .warehouse
                .open_table_at(self.namespace, &self.table, Some(version))
                .await?;
            deltalake::checkpoints::create_checkpoint(&table, None)
                .await
                .map_err(|e| Error::delta(&self.table, e))
        }
        .await;
        match result {
            Ok(()) => tracing::debug!(table = %self.table, version, "wrote checkpoint"),
            Err(e) => {
                tracing::warn!(table = %self.table, version, error = %e, "could not write checkpoint")
            }
        }
    }

    fn commit_info(&self) -> HashMap<String, serde_json::Value> {
        let mut info = serde_json::Map::new();
        info.insert("slices".into(), self.slices.len().into());
        info.insert("commit".into(), self.commit_id.clone().into());
        if let Some(job) = &self.job {
            info.insert(
                "job".into(),
                format!("{}@{}", job.app_id, job.version).into(),
            );
        }
        if let Some(day) = self.observed {
            info.insert("observed".into(), day.to_string().into());
        }
        HashMap::from([("tidemark".to_string(), serde_json::Value::Object(info))])
    }

    /// First commit of a new table: protocol, metadata and the staged files in version 0.
    /// If another writer created the table meanwhile, run the whole replace again against it.
    async fn create_table(self, handle: DeltaTable, started: Instant) -> Result<ReplaceReport> {
        let name = self.table.clone();
        let layout = &self.layout;
        let parts = self.split_rows(layout)?;
        let first = self.batches.first().ok_or_else(|| Error::NotSliceTable {
            table: name.clone(),
            reason: "it does not exist yet and the batch has no rows to give it a schema".into(),
        })?;
        let mut schema = initial_schema(layout, &first.schema());
        for batch in &self.batches[1..] {
            schema = evolve(&name, &schema, &batch.schema())?.schema;
        }
        let stager = Stager {
            table: name.clone(),
            store: handle.log_store().object_store(None),
            layout: layout.clone(),
            schema: schema.clone(),
        };
        let (staged, rows_written) = self.stage(&stager, &parts, &schema).await?;
        failpoint::hit(failpoint::AFTER_STAGE).await;

        let kernel_schema: StructType = schema
            .as_ref()
            .try_into_kernel()
            .map_err(|e| Error::delta(&name, e.into()))?;
        let files_added = staged.len();
        let bytes_written = staged.iter().map(|a| a.size).sum();
        let mut actions: Vec<Action> = staged.into_iter().map(Action::Add).collect();
        if let Some(job) = &self.job {
            actions.push(Action::Txn(Transaction::new(&job.app_id, job.version)));
        }
        let properties: HashMap<String, Option<String>> = layout
            .properties()
            .into_iter()
            .chain(CHECKPOINT_PROPERTIES.map(|(k, v)| (k.to_string(), v.to_string())))
            .map(|(k, v)| (k, Some(v)))
            .collect();
        failpoint::hit(failpoint::BEFORE_COMMIT).await;
        let created = handle
            .create()
            .with_table_name(&name)
            .with_columns(kernel_schema.fields().cloned())
            .with_partition_columns(layout.partition_columns())
            .with_configuration(properties)
            .with_raise_if_key_not_exists(false)
            .with_actions(actions)
            .with_commit_properties(
                // No retries inside deltalake: when the store answers version 0's write with
                // an error after storing it, deltalake's retry meets its own entry, finds no
                // conflict and commits the creation again as version 1 (found by issue 23's
                // fault tests). Version 0 is settled below instead.
                deltalake::kernel::transaction::CommitProperties::default()
                    .with_max_retries(0)
                    .with_metadata(self.commit_info()),
            )
            .await;
        let report = |version: u64, ambiguous_commit: bool| ReplaceReport {
            table: name.clone(),
            version,
            planned_version: version,
            slices: self.slices.len(),
            rows_written,
            rows_removed: 0,
            files_added,
            files_removed: 0,
            bytes_written,
            attempts: 1,
            added_columns: Vec::new(),
            already_applied: false,
            ambiguous_commit,
            created_table: true,
            elapsed: started.elapsed(),
        };
        let error = match created {
            Ok(table) => {
                failpoint::hit(failpoint::AFTER_COMMIT).await;
                let version = table.version().unwrap_or(0);
                tracing::info!(table = %name, version, slices = self.slices.len(), "created table");
                return Ok(report(version, false));
            }
            Err(e) => e,
        };
        // The creation failed, maybe after its commit landed (the store answered the write
        // with an error, or reading the new table back failed). Version 0 decides: this
        // replace's entry (landed), another writer's (a lost creation race: replace into the
        // table it created), or none (not created). See [`commit`].
        match handle.log_store().read_commit_entry(0).await {
            Ok(Some(entry)) if String::from_utf8_lossy(&entry).contains(&self.commit_id) => {
                tracing::warn!(table = %name, error = %error, "creating the table reported an error, but its commit is in the log");
                Ok(report(0, true))
            }
            Ok(Some(_)) => {
                tracing::debug!(table = %name, "table was created concurrently; replacing into it");
                Box::pin(self.execute()).await
            }
            Ok(None) => Err(Error::delta(&name, error)),
            Err(read) => Err(Error::CommitOutcomeUnknown {
                table: name.clone(),
                version: 0,
                request: format!(
                    "{}; reading the log back: {}",
                    Error::describe_request(&error),
                    Error::describe_request(&read)
                ),
            }),
        }
    }

    /// A report for a job whose commit is already in the log, or `None`.
    async fn already_applied(
        &self,
        index: &SliceIndex,
        started: Instant,
    ) -> Result<Option<ReplaceReport>> {
        let Some(job) = &self.job else {
            return Ok(None);
        };
        let seen = index.txn_version(&job.app_id).await?;
        if seen.is_some_and(|v| v >= job.version) {
            tracing::info!(table = %self.table, app_id = %job.app_id, version = job.version, "job already committed; nothing to do");
            let version = index.version;
            return Ok(Some(ReplaceReport {
                table: self.table.clone(),
                version,
                planned_version: version,
                slices: self.slices.len(),
                rows_written: 0,
                rows_removed: 0,
                files_added: 0,
                files_removed: 0,
                bytes_written: 0,
                attempts: 0,
                added_columns: Vec::new(),
                already_applied: true,
                ambiguous_commit: false,
                created_table: false,
                elapsed: started.elapsed(),
            }));
        }
        Ok(None)
    }

    /// Group the new rows by slice, refusing rows of undeclared slices.
    fn split_rows(&self, layout: &SliceLayout) -> Result<BTreeMap<SliceKey, RecordBatch>> {
        let mut offset = 0;
        for batch in &self.batches {
            for (row, key) in layout.keys_of(&self.table, batch)?.into_iter().enumerate() {
                if !self.slices.contains(&key) {
                    return Err(Error::RowOutsideSlices {
                        table: self.table.clone(),
                        row: offset + row,
                        slice: key.to_string(),
                    });
                }
            }
            offset += batch.num_rows();
        }
        layout.split(&self.table, &self.batches)
    }
}

impl std::future::IntoFuture for ReplaceSlices {
    type Output = Result<ReplaceReport>;
    type IntoFuture = futures::future::BoxFuture<'static, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.execute())
    }
}

/// The slice layout a table was created with.
pub fn table_layout(name: &str, table: &DeltaTable) -> Result<SliceLayout> {
    let snapshot = table.snapshot().map_err(|e| Error::delta(name, e))?;
    let config = snapshot.metadata().configuration();
    SliceLayout::from_properties(config).ok_or_else(|| Error::NotSliceTable {
        table: name.to_string(),
        reason: "it was not created by tidemark (no tidemark.slice.* table properties)".into(),
    })
}

/// Rows of `batch` whose slice is not in `replaced`, grouped by slice.
fn keep_rows_outside(
    layout: &SliceLayout,
    table: &str,
    batch: &RecordBatch,
    replaced: &BTreeSet<SliceKey>,
) -> Result<BTreeMap<SliceKey, RecordBatch>> {
    let parts = layout.split(table, std::slice::from_ref(batch))?;
    Ok(parts
        .into_iter()
        .filter(|(key, _)| !replaced.contains(key))
        .collect())
}

/// A small pseudo-random back-off (no RNG dependency needed for spreading retries).
fn rand_jitter_ms(attempt: usize) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0) as u64;
    let ceiling = 20 * (1u64 << attempt.min(6));
    nanos % ceiling
}
