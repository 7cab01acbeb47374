//! Syncing sources into the warehouse: plan units for each source's window, fetch them with
//! bounded concurrency (landing every page in `raw/` first), normalize, and replace every
//! loaded unit's (source, account, day) slices in one commit per table, then record them in
//! the slice ledger (`tidemark.slices`) before the jobs are journaled as committed.
//!
//! A unit whose payload cannot be loaded is quarantined and its slices are left as they were;
//! a unit whose requests failed is named in the report; every other unit still loads. When the
//! warehouse's store fails landing a unit's pages or committing a batch, those units fail
//! (named, with the storage request) and the others go on; `sync --resume` finishes them, and
//! a batch whose commit did land is recognised by its job id and not committed twice.
//! [`replay`] runs the same normalization over a past run's landed pages, with no network.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use bytes::Bytes;
use chrono::NaiveDate;
use engine::ledger::{self, SliceRecord};
use engine::model::AD_PERFORMANCE;
use engine::{ReplaceReport, SliceKey, SliceLayout, Warehouse};
use futures::StreamExt;
use serde::Serialize;

use crate::config::Platform;
use crate::error::{Error, Result};
use crate::journal::{Journal, Plan};
use crate::normalize::{self, Provenance, Record};
use crate::raw::{ManifestEntry, RawStore, Unit};
use crate::source::{PageSink, Source};
use crate::throttle::StatsSnapshot;
use crate::window::Window;

/// What to sync.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// The run id (names the landing directory in `raw/runs/`).
    pub run: String,
    /// "Today": each source re-pulls its window of days before it.
    pub today: NaiveDate,
    /// An explicit range instead of each source's trailing window.
    pub window: Option<Window>,
    /// Only these accounts (as the API spells them), if given.
    pub accounts: Option<Vec<String>>,
    /// Jobs in flight at once, across sources (each credential's own cap still applies).
    pub workers: usize,
    /// Jobs per commit: loaded jobs of a source are committed in batches of this size.
    pub commit_every: usize,
}

impl SyncOptions {
    pub const DEFAULT_WORKERS: usize = 4;
    pub const DEFAULT_COMMIT_EVERY: usize = 50;
}

/// Progress of a sync, for bars in a terminal or log lines.
#[derive(Debug, Clone)]
pub enum SyncEvent<'a> {
    Planned {
        source: &'a str,
        units: usize,
    },
    UnitDone {
        source: &'a str,
        unit: &'a Unit,
        rows: usize,
        outcome: &'a str,
        /// The source credential's request counters so far.
        http: StatsSnapshot,
    },
    Committed {
        source: &'a str,
        table: &'a str,
        version: u64,
    },
}

/// A unit that was quarantined.
#[derive(Debug, Clone, Serialize)]
pub struct Quarantined {
    pub unit: Unit,
    pub page: Option<u32>,
    pub reason: String,
    /// Where the reason file is.
    pub path: String,
}

/// A unit whose requests failed.
#[derive(Debug, Clone, Serialize)]
pub struct Failed {
    pub unit: Unit,
    pub reason: String,
}

/// What happened to one source.
#[derive(Debug, Clone, Serialize)]
pub struct SourceReport {
    pub source: String,
    pub platform: Platform,
    pub window: Option<Window>,
    pub units: usize,
    /// Jobs committed by an earlier attempt of the run (skipped on resume).
    pub already_committed: usize,
    pub loaded_units: usize,
    pub pages: usize,
    pub rows: usize,
    pub slices: usize,
    pub http: StatsSnapshot,
    /// Table versions committed (per-source table, then `ad_performance`).
    pub commits: Vec<(String, u64)>,
    pub quarantined: Vec<Quarantined>,
    pub failed: Vec<Failed>,
    #[serde(skip)]
    pub replace_reports: Vec<ReplaceReport>,
    pub seconds: f64,
}

impl SourceReport {
    fn new(source: &dyn Source, window: Option<Window>) -> Self {
        SourceReport {
            source: source.name().to_string(),
            platform: source.platform(),
            window,
            units: 0,
            already_committed: 0,
            loaded_units: 0,
            pages: 0,
            rows: 0,
            slices: 0,
            http: StatsSnapshot::default(),
            commits: Vec::new(),
            quarantined: Vec::new(),
            failed: Vec::new(),
            replace_reports: Vec::new(),
            seconds: 0.0,
        }
    }
}

/// What a sync or replay did.
#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    pub run: String,
    pub replay: bool,
    pub sources: Vec<SourceReport>,
    /// Units of a replayed run that never finished landing (not replayed).
    pub incomplete: Vec<Unit>,
}

impl SyncReport {
    /// True when every unit loaded.
    pub fn is_clean(&self) -> bool {
        self.sources
            .iter()
            .all(|s| s.quarantined.is_empty() && s.failed.is_empty())
    }
}

/// One unit's rows, ready to commit.
struct UnitRows {
    unit: Unit,
    source_batch: RecordBatch,
    ad_batch: RecordBatch,
    pages: usize,
}

enum UnitOutcome {
    Loaded(UnitRows),
    Quarantined(Quarantined),
    Failed(Failed),
}

/// Why a unit's payload was refused: which page and what was wrong.
struct Refusal {
    page: u32,
    reason: String,
}

/// Normalize the landed pages of a unit.
fn normalize_unit(
    source: &dyn Source,
    unit: &Unit,
    pages: &[(ManifestEntry, Bytes)],
) -> std::result::Result<UnitRows, Refusal> {
    let spec = source.spec();
    let hint = format!("[sources.{}.aliases]", source.name());
    let mut records: Vec<Record> = Vec::new();
    let mut provenances: Vec<Provenance> = Vec::new();
    // The page and the index within it of each record, to name where a bad row came from.
    let mut origins: Vec<(u32, usize)> = Vec::new();
    let landed: Vec<(&str, &[u8])> = pages
        .iter()
        .map(|(e, body)| (e.request.as_str(), body.as_ref()))
        .collect();
    let per_page = source.unit_records(&landed);
    for ((entry, _), page_records) in pages.iter().zip(per_page) {
        let refuse = |reason: String| Refusal {
            page: entry.page,
            reason,
        };
        let page_records = page_records.map_err(refuse)?;
        normalize::check_payload(spec, &page_records, &hint).map_err(refuse)?;
        for (i, record) in page_records.iter().enumerate() {
            match normalize::date(record, source.date_key()) {
                Ok(Some(day)) if day >= unit.since && day <= unit.until => {}
                Ok(other) => {
                    return Err(refuse(format!(
                        "row {i} is dated {} but the request was for {}..{}",
                        other.map_or("nothing".into(), |d| d.to_string()),
                        unit.since,
                        unit.until
                    )))
                }
                Err(reason) => return Err(refuse(format!("row {i}: {reason}"))),
            }
        }
        let provenance = Provenance {
            source: source.name().to_string(),
            account: unit.account.clone(),
            fetched_at: entry.fetched_at,
            raw_ref: entry.path.clone(),
        };
        origins.extend((0..page_records.len()).map(|i| (entry.page, i)));
        provenances.extend(std::iter::repeat_n(provenance, page_records.len()));
        records.extend(page_records);
    }
    let last_page = pages.last().map_or(0, |(e, _)| e.page);
    let refuse = |reason: String| Refusal {
        page: last_page,
        reason,
    };
    let ad_rows = source
        .ad_rows(&unit.account, &records)
        .map_err(|(index, reason)| {
            let (page, row) = origins.get(index).copied().unwrap_or((last_page, index));
            Refusal {
                page,
                reason: format!("row {row}: {reason}"),
            }
        })?;
    for (i, row) in ad_rows.iter().enumerate() {
        match row.date {
            Some(day) if day >= unit.since && day <= unit.until => {}
            other => {
                return Err(refuse(format!(
                    "ad_performance row {i} is dated {} but the request was for {}..{}",
                    other.map_or("nothing".into(), |d| d.to_string()),
                    unit.since,
                    unit.until
                )))
            }
        }
    }
    let records: Vec<(Record, Provenance)> = records.into_iter().zip(provenances).collect();
    let source_batch =
        normalize::source_batch(spec, source.date_key(), &records).map_err(refuse)?;
    let ad_batch = normalize::ad_performance_batch(source.name(), &ad_rows).map_err(refuse)?;
    Ok(UnitRows {
        unit: unit.clone(),
        source_batch,
        ad_batch,
        pages: pages.len(),
    })
}

async fn quarantine(
    raw: &RawStore,
    unit: &Unit,
    page: Option<u32>,
    body: Option<&[u8]>,
    raw_path: Option<String>,
    reason: String,
) -> Result<Quarantined> {
    let path = raw.quarantine(unit, page, body, raw_path, &reason).await?;
    tracing::warn!(unit = %unit, page, reason = %reason, path = %path, "quarantined a payload");
    Ok(Quarantined {
        unit: unit.clone(),
        page,
        reason,
        path,
    })
}

/// Normalize landed pages, quarantining the unit if they cannot be loaded.
async fn load_pages(
    source: &dyn Source,
    raw: &RawStore,
    unit: &Unit,
    pages: Vec<(ManifestEntry, Bytes)>,
) -> Result<UnitOutcome> {
    match normalize_unit(source, unit, &pages) {
        Ok(rows) => Ok(UnitOutcome::Loaded(rows)),
        Err(refusal) => {
            let (entry, body) = pages
                .iter()
                .find(|(e, _)| e.page == refusal.page)
                .expect("refusals name a landed page");
            Ok(UnitOutcome::Quarantined(
                quarantine(
                    raw,
                    unit,
                    Some(refusal.page),
                    Some(body),
                    Some(entry.path.clone()),
                    refusal.reason,
                )
                .await?,
            ))
        }
    }
}

/// Fetch one unit (landing each page) and normalize it.
async fn fetch_unit(source: &dyn Source, raw: &RawStore, unit: Unit) -> Result<UnitOutcome> {
    let mut sink = PageSink::new(raw.clone(), unit.clone(), source.platform());
    match source.fetch(&unit, &mut sink).await {
        Ok(()) => {
            let pages = sink.finish().await?;
            load_pages(source, raw, &unit, pages).await
        }
        Err(Error::Request {
            reason, last_body, ..
        }) if last_body.is_some() && reason.contains("complete JSON") => {
            // A body that never arrived whole: keep what came, for inspection.
            let reason = format!("{reason} (after retries)");
            Ok(UnitOutcome::Quarantined(
                quarantine(raw, &unit, None, last_body.as_deref(), None, reason).await?,
            ))
        }
        Err(e @ (Error::Raw { .. } | Error::Engine(_))) => Err(e),
        Err(e) => Ok(UnitOutcome::Failed(Failed {
            unit,
            reason: e.to_string(),
        })),
    }
}

/// Replace a batch of loaded units' slices: the per-source table, then `ad_performance`.
/// Returns the units and the (table, version) pairs of the two commits. `observed` is the
/// day the rows were pulled (the run's "today"), recorded in both commits for the maturity
/// curves.
async fn commit(
    warehouse: &Warehouse,
    source: &dyn Source,
    run: &str,
    observed: Option<NaiveDate>,
    loaded: Vec<UnitRows>,
    report: &mut SourceReport,
    on_event: &(dyn Fn(SyncEvent<'_>) + Sync),
) -> Result<(Vec<Unit>, Vec<(String, u64)>)> {
    if loaded.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let units: Vec<Unit> = loaded.iter().map(|u| u.unit.clone()).collect();
    let slices: BTreeSet<SliceKey> = loaded
        .iter()
        .flat_map(|u| {
            u.unit
                .window()
                .days()
                .map(|d| SliceKey::new(source.name(), &u.unit.account, d))
                .collect::<Vec<_>>()
        })
        .collect();
    // Counted into the report once the commits landed.
    let (slice_count, unit_count) = (slices.len(), loaded.len());
    let pages: usize = loaded.iter().map(|u| u.pages).sum();
    // Attribution platforms (AppsFlyer, GA4) have no ad-level spend rows: their per-source
    // table is all they fill, and marts join it to spend.
    let feeds_ad_performance = source.platform().feeds_ad_performance();
    let counted = |u: &UnitRows| {
        if feeds_ad_performance {
            u.ad_batch.num_rows()
        } else {
            u.source_batch.num_rows()
        }
    };
    let rows: usize = loaded.iter().map(counted).sum();
    let mut rows_per_slice: BTreeMap<SliceKey, u64> = BTreeMap::new();
    for unit in &loaded {
        let keys = if feeds_ad_performance {
            SliceLayout::default().keys_of(AD_PERFORMANCE, &unit.ad_batch)?
        } else {
            normalize::source_layout().keys_of(source.spec().table, &unit.source_batch)?
        };
        for key in keys {
            *rows_per_slice.entry(key).or_default() += 1;
        }
    }
    let (source_batches, ad_batches): (Vec<_>, Vec<_>) = loaded
        .into_iter()
        .map(|u| (u.source_batch, u.ad_batch))
        .unzip();
    let table = source.spec().table;
    let job = batch_job_id(run, source.name(), &units);
    let observe = |replace: engine::ReplaceSlices| match observed {
        Some(day) => replace.observed_on(day),
        None => replace,
    };
    let per_source = observe(
        warehouse
            .replace_slices(table)
            .with_layout(normalize::source_layout())
            .with_slices(slices.iter().cloned())
            .with_rows(source_batches)
            .with_job(&job, 1),
    )
    .await?;
    on_event(SyncEvent::Committed {
        source: source.name(),
        table,
        version: per_source.version,
    });
    let slices_for_ledger = slices.clone();
    let unified = if feeds_ad_performance {
        let unified = observe(
            warehouse
                .replace_slices(AD_PERFORMANCE)
                .with_slices(slices)
                .with_rows(ad_batches)
                .with_job(&job, 1),
        )
        .await?;
        on_event(SyncEvent::Committed {
            source: source.name(),
            table: AD_PERFORMANCE,
            version: unified.version,
        });
        Some(unified)
    } else {
        None
    };
    let synced_at = chrono::Utc::now();
    let records: Vec<SliceRecord> = slices_for_ledger
        .into_iter()
        .map(|key| SliceRecord {
            rows: rows_per_slice.get(&key).copied().unwrap_or(0),
            settles_at: source.settles_at(key.date),
            source: key.source,
            account: key.account,
            date: key.date,
            synced_at,
            run: run.to_string(),
            source_table: table.to_string(),
            source_table_version: per_source.version,
            table_version: unified.as_ref().map_or(per_source.version, |u| u.version),
        })
        .collect();
    ledger::record(warehouse, &records, &job).await?;
    let mut versions = vec![(table.to_string(), per_source.version)];
    versions.extend(
        unified
            .as_ref()
            .map(|u| (AD_PERFORMANCE.to_string(), u.version)),
    );
    report.slices += slice_count;
    report.loaded_units += unit_count;
    report.pages += pages;
    report.rows += rows;
    report.commits.extend(versions.iter().cloned());
    report.replace_reports.push(per_source);
    report.replace_reports.extend(unified);
    Ok((units, versions))
}

/// The Delta `txn` app id of a batch: the run, the source and which jobs it carries.
fn batch_job_id(run: &str, source: &str, units: &[Unit]) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    units.hash(&mut hasher);
    format!("tidemark-sync/{run}/{source}/{:016x}", hasher.finish())
}

fn sort_outcomes(outcomes: Vec<UnitOutcome>, report: &mut SourceReport) -> Vec<UnitRows> {
    let mut loaded = Vec::new();
    for outcome in outcomes {
        match outcome {
            UnitOutcome::Loaded(rows) => loaded.push(rows),
            UnitOutcome::Quarantined(q) => report.quarantined.push(q),
            UnitOutcome::Failed(f) => report.failed.push(f),
        }
    }
    loaded.sort_by(|a, b| a.unit.cmp(&b.unit));
    report.quarantined.sort_by(|a, b| a.unit.cmp(&b.unit));
    report.failed.sort_by(|a, b| a.unit.cmp(&b.unit));
    loaded
}

fn outcome_label(outcome: &Result<UnitOutcome>) -> (&'static str, usize) {
    match outcome {
        Ok(UnitOutcome::Loaded(rows)) => ("loaded", rows.ad_batch.num_rows()),
        Ok(UnitOutcome::Quarantined(_)) => ("quarantined", 0),
        Ok(UnitOutcome::Failed(_)) => ("failed", 0),
        Err(_) => ("error", 0),
    }
}

/// Load one job: from `raw/` when all its pages landed in an earlier attempt of the run,
/// otherwise from the platform.
async fn run_job(source: Arc<dyn Source>, raw: RawStore, unit: Unit) -> Result<UnitOutcome> {
    match raw.landed(&unit).await? {
        Some(pages) => {
            tracing::info!(unit = %unit, pages = pages.len(), "pages already landed; loading from raw");
            load_pages(source.as_ref(), &raw, &unit, pages).await
        }
        None => fetch_unit(source.as_ref(), &raw, unit).await,
    }
}

/// What one job did, when jobs are run one at a time by a worker.
#[derive(Debug, Clone, Serialize)]
pub struct JobResult {
    pub unit: Unit,
    /// "loaded", "quarantined" or "failed".
    pub outcome: String,
    pub rows: usize,
    pub reason: Option<String>,
}

/// Run one job of `run` and commit it on its own (a worker's unit of work), then record it in
/// the run's journal.
pub async fn run_single_job(
    warehouse: &Warehouse,
    source: Arc<dyn Source>,
    run: &str,
    unit: Unit,
) -> Result<JobResult> {
    let raw = RawStore::new(warehouse.storage().store(), run)?;
    let journal = Journal::new(warehouse.storage().store(), run)?;
    if journal.is_committed(&unit).await? {
        return Ok(JobResult {
            unit,
            outcome: "loaded".into(),
            rows: 0,
            reason: Some("already committed".into()),
        });
    }
    let outcome = run_job(Arc::clone(&source), raw, unit.clone()).await?;
    let mut report = SourceReport::new(source.as_ref(), None);
    match outcome {
        UnitOutcome::Loaded(rows) => {
            let n = rows.ad_batch.num_rows();
            let observed = journal.plan().await.ok().map(|plan| plan.today);
            let (units, versions) = commit(
                warehouse,
                source.as_ref(),
                run,
                observed,
                vec![rows],
                &mut report,
                &|_| {},
            )
            .await?;
            journal.mark_committed(&units, &versions).await?;
            Ok(JobResult {
                unit,
                outcome: "loaded".into(),
                rows: n,
                reason: None,
            })
        }
        UnitOutcome::Quarantined(q) => {
            journal
                .mark_unloaded(&unit, "quarantined", &q.reason)
                .await?;
            Ok(JobResult {
                unit,
                outcome: "quarantined".into(),
                rows: 0,
                reason: Some(q.reason),
            })
        }
        UnitOutcome::Failed(f) => {
            journal.mark_unloaded(&unit, "failed", &f.reason).await?;
            Ok(JobResult {
                unit,
                outcome: "failed".into(),
                rows: 0,
                reason: Some(f.reason),
            })
        }
    }
}

/// Plan a new run and record it without running it (its jobs go to a queue).
pub async fn plan_run(
    warehouse: &Warehouse,
    sources: &[Arc<dyn Source>],
    windows: &[Window],
    options: &SyncOptions,
) -> Result<Plan> {
    let plan = make_plan(sources, windows, options);
    Journal::new(warehouse.storage().store(), &options.run)?
        .start(&plan)
        .await?;
    Ok(plan)
}

fn make_plan(sources: &[Arc<dyn Source>], windows: &[Window], options: &SyncOptions) -> Plan {
    let jobs = sources
        .iter()
        .zip(windows)
        .flat_map(|(source, window)| source.plan(*window))
        .filter(|u| {
            options
                .accounts
                .as_ref()
                .is_none_or(|only| only.contains(&u.account))
        })
        .collect();
    Plan {
        run: options.run.clone(),
        today: options.today,
        created_at: chrono::Utc::now(),
        sources: sources
            .iter()
            .zip(windows)
            .map(|(s, w)| (s.name().to_string(), *w))
            .collect(),
        jobs,
        commit_every: Some(options.commit_every),
    }
}

/// Start a new run: plan the jobs of every source for its window, record the plan, run it.
pub async fn sync(
    warehouse: &Warehouse,
    sources: &[Arc<dyn Source>],
    windows: &[Window],
    options: &SyncOptions,
    on_event: &(dyn Fn(SyncEvent<'_>) + Sync),
) -> Result<SyncReport> {
    let plan = make_plan(sources, windows, options);
    let journal = Journal::new(warehouse.storage().store(), &options.run)?;
    journal.start(&plan).await?;
    execute(warehouse, sources, &plan, &journal, options, on_event).await
}

/// Start a run that loads `gaps` (see [`crate::gaps`]) as backfill jobs of their sources.
pub async fn fill_gaps(
    warehouse: &Warehouse,
    sources: &[Arc<dyn Source>],
    gaps: &[crate::gaps::Gap],
    options: &SyncOptions,
    on_event: &(dyn Fn(SyncEvent<'_>) + Sync),
) -> Result<SyncReport> {
    let mut plan = Plan {
        run: options.run.clone(),
        today: options.today,
        created_at: chrono::Utc::now(),
        sources: Vec::new(),
        jobs: Vec::new(),
        commit_every: Some(options.commit_every),
    };
    for source in sources {
        let mine: Vec<_> = gaps.iter().filter(|g| g.source == source.name()).collect();
        let (Some(since), Some(until)) = (
            mine.iter().map(|g| g.days.since).min(),
            mine.iter().map(|g| g.days.until).max(),
        ) else {
            continue;
        };
        plan.sources
            .push((source.name().to_string(), Window { since, until }));
        plan.jobs
            .extend(mine.iter().flat_map(|g| g.units(source.as_ref())));
    }
    let journal = Journal::new(warehouse.storage().store(), &options.run)?;
    journal.start(&plan).await?;
    execute(warehouse, sources, &plan, &journal, options, on_event).await
}

/// Resume run `run` where it stopped: its committed jobs are skipped, the others run again.
pub async fn resume(
    warehouse: &Warehouse,
    sources: &[Arc<dyn Source>],
    run: &str,
    options: &SyncOptions,
    on_event: &(dyn Fn(SyncEvent<'_>) + Sync),
) -> Result<SyncReport> {
    let journal = Journal::new(warehouse.storage().store(), run)?;
    let plan = journal.plan().await?;
    execute(warehouse, sources, &plan, &journal, options, on_event).await
}

/// Run a plan's outstanding jobs with `options.workers` in flight, committing each source's
/// loaded jobs in batches of `options.commit_every` and marking them in the journal.
async fn execute(
    warehouse: &Warehouse,
    sources: &[Arc<dyn Source>],
    plan: &Plan,
    journal: &Journal,
    options: &SyncOptions,
    on_event: &(dyn Fn(SyncEvent<'_>) + Sync),
) -> Result<SyncReport> {
    let started = Instant::now();
    let raw = RawStore::new(warehouse.storage().store(), &plan.run)?;
    let done = journal.committed().await?;
    let mut planned: Vec<(Arc<dyn Source>, SourceReport, Vec<Unit>)> = Vec::new();
    for (name, window) in &plan.sources {
        let source = sources.iter().find(|s| s.name() == name).ok_or_else(|| {
            Error::Config(format!(
                "run {} has jobs of source {name:?}, which is not configured (or not selected)",
                plan.run
            ))
        })?;
        let mut report = SourceReport::new(source.as_ref(), Some(*window));
        let jobs: Vec<Unit> = plan
            .jobs
            .iter()
            .filter(|u| &u.source == name)
            .cloned()
            .collect();
        report.units = jobs.len();
        let todo: Vec<Unit> = jobs.into_iter().filter(|u| !done.contains(u)).collect();
        report.already_committed = report.units - todo.len();
        on_event(SyncEvent::Planned {
            source: name,
            units: report.units,
        });
        planned.push((Arc::clone(source), report, todo));
    }
    let before: Vec<StatsSnapshot> = planned
        .iter()
        .map(|(s, _, _)| s.throttle().stats())
        .collect();
    let workers = Arc::new(tokio::sync::Semaphore::new(options.workers.max(1)));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut tasks = tokio::task::JoinSet::new();
    let mut remaining: Vec<usize> = Vec::new();
    for (index, (source, _, todo)) in planned.iter().enumerate() {
        remaining.push(todo.len());
        for unit in todo {
            let (source, raw, tx, workers, unit) = (
                Arc::clone(source),
                raw.clone(),
                tx.clone(),
                Arc::clone(&workers),
                unit.clone(),
            );
            tasks.spawn(async move {
                let _permit = workers
                    .acquire_owned()
                    .await
                    .expect("semaphore never closed");
                let outcome = run_job(source, raw, unit.clone()).await;
                let _ = tx.send((index, unit, outcome));
            });
        }
    }
    drop(tx);
    let mut pending: Vec<Vec<UnitRows>> = planned.iter().map(|_| Vec::new()).collect();
    let batch = options.commit_every.max(1);
    while let Some((index, unit, outcome)) = rx.recv().await {
        let (label, rows) = outcome_label(&outcome);
        let (source, report, _) = &mut planned[index];
        on_event(SyncEvent::UnitDone {
            source: source.name(),
            unit: &unit,
            rows,
            outcome: label,
            http: source.throttle().stats(),
        });
        let outcome = match outcome {
            // Storage failed while landing the payload: this job fails, the others go on.
            Err(e) if e.is_storage() => UnitOutcome::Failed(Failed {
                unit: unit.clone(),
                reason: format!("storage failed while landing it: {e}"),
            }),
            outcome => outcome?,
        };
        match outcome {
            UnitOutcome::Loaded(rows) => pending[index].push(rows),
            UnitOutcome::Quarantined(q) => {
                journal
                    .mark_unloaded(&unit, "quarantined", &q.reason)
                    .await?;
                report.quarantined.push(q);
            }
            UnitOutcome::Failed(f) => {
                journal.mark_unloaded(&unit, "failed", &f.reason).await?;
                report.failed.push(f);
            }
        }
        remaining[index] -= 1;
        if pending[index].len() >= batch || remaining[index] == 0 {
            let mut loaded = std::mem::take(&mut pending[index]);
            loaded.sort_by(|a, b| a.unit.cmp(&b.unit));
            let batch_units: Vec<Unit> = loaded.iter().map(|u| u.unit.clone()).collect();
            let committed = commit(
                warehouse,
                source.as_ref(),
                &plan.run,
                Some(plan.today),
                loaded,
                report,
                on_event,
            )
            .await;
            match committed {
                Ok((units, versions)) => journal.mark_committed(&units, &versions).await?,
                // The store failed the batch's commit (or left its outcome unknown): its
                // jobs fail and the run goes on; `--resume` commits them, and a commit that
                // did land is found by its job id and not made twice.
                Err(e) if e.is_storage() => {
                    tracing::warn!(source = source.name(), jobs = batch_units.len(), error = %e, "storage failed a commit; its jobs are marked failed");
                    for unit in batch_units {
                        let reason = format!("not committed, storage failed: {e}");
                        journal.mark_unloaded(&unit, "failed", &reason).await?;
                        report.failed.push(Failed { unit, reason });
                    }
                }
                Err(e) => return Err(e),
            }
            report.seconds = started.elapsed().as_secs_f64();
        }
    }
    let mut reports = Vec::new();
    for ((source, mut report, _), before) in planned.into_iter().zip(before) {
        let after = source.throttle().stats();
        report.http = StatsSnapshot {
            requests: after.requests - before.requests,
            throttled: after.throttled - before.throttled,
            retried: after.retried - before.retried,
            waited_ms: after.waited_ms - before.waited_ms,
        };
        report.quarantined.sort_by(|a, b| a.unit.cmp(&b.unit));
        report.failed.sort_by(|a, b| a.unit.cmp(&b.unit));
        if report.units > report.already_committed {
            journal.record_http(&report.source, &report.http).await?;
        }
        tracing::info!(source = %report.source, units = report.units, already_committed = report.already_committed, loaded = report.loaded_units, rows = report.rows, requests = report.http.requests, throttled = report.http.throttled, quarantined = report.quarantined.len(), failed = report.failed.len(), seconds = report.seconds, "source synced");
        reports.push(report);
    }
    Ok(SyncReport {
        run: plan.run.clone(),
        replay: false,
        sources: reports,
        incomplete: Vec::new(),
    })
}

/// Units a replay reads and normalizes at once: two per core keep every core parsing while
/// the next unit's pages are read.
fn replay_tasks() -> usize {
    2 * std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Rebuild the tables from run `run`'s landed pages, with no network: the same
/// normalization and the same commits as the original sync.
pub async fn replay(
    warehouse: &Warehouse,
    sources: &[Arc<dyn Source>],
    run: &str,
    on_event: &(dyn Fn(SyncEvent<'_>) + Sync),
) -> Result<SyncReport> {
    let raw = RawStore::new(warehouse.storage().store(), run)?;
    let contents = raw.contents().await?;
    let replay_run = format!("{run}.replay-{}", crate::raw::new_run_id());
    // The rows were pulled on the original run's "today", not now.
    let observed = Journal::new(warehouse.storage().store(), run)?
        .plan()
        .await
        .ok()
        .map(|plan| plan.today);
    let mut reports = Vec::new();
    let known: BTreeSet<&str> = sources.iter().map(|s| s.name()).collect();
    for landed in &contents.complete {
        if !known.contains(landed.unit.source.as_str()) {
            return Err(Error::Config(format!(
                "run {run} has pages of source {:?}, which tidemark.toml no longer configures",
                landed.unit.source
            )));
        }
    }
    for source in sources {
        let started = Instant::now();
        let mut report = SourceReport::new(source.as_ref(), None);
        let mut outcomes = Vec::new();
        let units: Vec<_> = contents
            .complete
            .iter()
            .filter(|l| l.unit.source == source.name())
            .collect();
        if units.is_empty() {
            continue;
        }
        report.units = units.len();
        on_event(SyncEvent::Planned {
            source: source.name(),
            units: units.len(),
        });
        // Units are read and normalized on their own tasks (a core each), in unit order.
        let loads = units.into_iter().map(|landed| {
            let (source, raw, landed) = (Arc::clone(source), raw.clone(), landed.clone());
            tokio::spawn(async move {
                let mut pages = Vec::new();
                for entry in &landed.pages {
                    let body = raw.read(entry).await?;
                    pages.push((entry.clone(), Bytes::from(body)));
                }
                let outcome = load_pages(source.as_ref(), &raw, &landed.unit, pages).await;
                Ok::<_, Error>((landed, outcome))
            })
        });
        let mut loads = futures::stream::iter(loads).buffered(replay_tasks());
        while let Some(joined) = loads.next().await {
            let (landed, outcome) = joined.map_err(|e| Error::Raw {
                path: format!("run {run}"),
                reason: format!("loading a unit's pages stopped: {e}"),
            })??;
            let (label, rows) = outcome_label(&outcome);
            on_event(SyncEvent::UnitDone {
                source: source.name(),
                unit: &landed.unit,
                rows,
                outcome: label,
                http: StatsSnapshot::default(),
            });
            outcomes.push(outcome?);
        }
        let loaded = sort_outcomes(outcomes, &mut report);
        commit(
            warehouse,
            source.as_ref(),
            &replay_run,
            observed,
            loaded,
            &mut report,
            on_event,
        )
        .await?;
        report.seconds = started.elapsed().as_secs_f64();
        reports.push(report);
    }
    Ok(SyncReport {
        run: run.to_string(),
        replay: true,
        sources: reports,
        incomplete: contents.incomplete,
    })
}

/// Seconds as a short human duration, for summaries.
pub fn human(seconds: f64) -> String {
    humantime::format_duration(Duration::from_millis((seconds * 1000.0) as u64)).to_string()
}
