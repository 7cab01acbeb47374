//! Syncing sources into the warehouse: plan units for each source's window, fetch them with
//! bounded concurrency (landing every page in `raw/` first), normalize, and replace every
//! loaded unit's (source, account, day) slices in one commit per table.
//!
//! A unit whose payload cannot be loaded is quarantined and its slices are left as they were;
//! a unit whose requests failed is named in the report; every other unit still loads.
//! [`replay`] runs the same normalization over a past run's landed pages, with no network.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use bytes::Bytes;
use chrono::NaiveDate;
use engine::model::AD_PERFORMANCE;
use engine::{ReplaceReport, SliceKey, Warehouse};
use futures::StreamExt;
use serde::Serialize;

use crate::config::Platform;
use crate::error::{Error, Result};
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
    let mut records: Vec<(Record, Provenance)> = Vec::new();
    let mut ad_rows = Vec::new();
    for (entry, body) in pages {
        let refuse = |reason: String| Refusal {
            page: entry.page,
            reason,
        };
        let page_records = source.records(body).map_err(refuse)?;
        normalize::check_payload(spec, &page_records, &hint).map_err(refuse)?;
        let provenance = Provenance {
            source: source.name().to_string(),
            account: unit.account.clone(),
            fetched_at: entry.fetched_at,
            raw_ref: entry.path.clone(),
        };
        for (i, record) in page_records.into_iter().enumerate() {
            let row = source
                .ad_row(&unit.account, &record)
                .map_err(|e| refuse(format!("row {i}: {e}")))?;
            match row.date {
                Some(day) if day >= unit.since && day <= unit.until => {}
                other => {
                    return Err(refuse(format!(
                        "row {i} is dated {} but the request was for {}..{}",
                        other.map_or("nothing".into(), |d| d.to_string()),
                        unit.since,
                        unit.until
                    )))
                }
            }
            ad_rows.push(row);
            records.push((record, provenance.clone()));
        }
    }
    let last_page = pages.last().map_or(0, |(e, _)| e.page);
    let refuse = |reason: String| Refusal {
        page: last_page,
        reason,
    };
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

/// Replace every loaded unit's slices: the per-source table, then `ad_performance`.
async fn commit(
    warehouse: &Warehouse,
    source: &dyn Source,
    run: &str,
    loaded: Vec<UnitRows>,
    report: &mut SourceReport,
    on_event: &(dyn Fn(SyncEvent<'_>) + Sync),
) -> Result<()> {
    if loaded.is_empty() {
        return Ok(());
    }
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
    report.slices = slices.len();
    report.loaded_units = loaded.len();
    report.pages += loaded.iter().map(|u| u.pages).sum::<usize>();
    report.rows = loaded.iter().map(|u| u.ad_batch.num_rows()).sum();
    let (source_batches, ad_batches): (Vec<_>, Vec<_>) = loaded
        .into_iter()
        .map(|u| (u.source_batch, u.ad_batch))
        .unzip();
    let table = source.spec().table;
    let job = format!("tidemark-sync/{run}/{}", source.name());
    let per_source = warehouse
        .replace_slices(table)
        .with_layout(normalize::source_layout())
        .with_slices(slices.iter().cloned())
        .with_rows(source_batches)
        .with_job(&job, 1)
        .await?;
    on_event(SyncEvent::Committed {
        source: source.name(),
        table,
        version: per_source.version,
    });
    let unified = warehouse
        .replace_slices(AD_PERFORMANCE)
        .with_slices(slices)
        .with_rows(ad_batches)
        .with_job(&job, 1)
        .await?;
    on_event(SyncEvent::Committed {
        source: source.name(),
        table: AD_PERFORMANCE,
        version: unified.version,
    });
    report.commits = vec![
        (table.to_string(), per_source.version),
        (AD_PERFORMANCE.to_string(), unified.version),
    ];
    report.replace_reports = vec![per_source, unified];
    Ok(())
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

/// Sync `sources` for their windows as of `options.today`.
pub async fn sync(
    warehouse: &Warehouse,
    sources: &[Arc<dyn Source>],
    windows: &[Window],
    options: &SyncOptions,
    on_event: &(dyn Fn(SyncEvent<'_>) + Sync),
) -> Result<SyncReport> {
    let raw = RawStore::new(warehouse.storage().store(), &options.run)?;
    let mut reports = Vec::new();
    for (source, window) in sources.iter().zip(windows) {
        let started = Instant::now();
        let before = source.throttle().stats();
        let mut report = SourceReport::new(source.as_ref(), Some(*window));
        let units: Vec<Unit> = source
            .plan(*window)
            .into_iter()
            .filter(|u| {
                options
                    .accounts
                    .as_ref()
                    .is_none_or(|only| only.contains(&u.account))
            })
            .collect();
        report.units = units.len();
        on_event(SyncEvent::Planned {
            source: source.name(),
            units: units.len(),
        });
        let concurrency = source.throttle().limits().max_concurrency.max(1);
        let outcomes: Vec<UnitOutcome> = futures::stream::iter(units)
            .map(|unit| {
                let source = Arc::clone(source);
                let raw = raw.clone();
                async move {
                    let outcome = fetch_unit(source.as_ref(), &raw, unit.clone()).await;
                    let (label, rows) = outcome_label(&outcome);
                    on_event(SyncEvent::UnitDone {
                        source: source.name(),
                        unit: &unit,
                        rows,
                        outcome: label,
                    });
                    outcome
                }
            })
            .buffer_unordered(concurrency)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_>>()?;
        let loaded = sort_outcomes(outcomes, &mut report);
        commit(
            warehouse,
            source.as_ref(),
            &options.run,
            loaded,
            &mut report,
            on_event,
        )
        .await?;
        let after = source.throttle().stats();
        report.http = StatsSnapshot {
            requests: after.requests - before.requests,
            throttled: after.throttled - before.throttled,
            retried: after.retried - before.retried,
            waited_ms: after.waited_ms - before.waited_ms,
        };
        report.seconds = started.elapsed().as_secs_f64();
        tracing::info!(
            source = source.name(),
            units = report.units,
            loaded = report.loaded_units,
            rows = report.rows,
            requests = report.http.requests,
            throttled = report.http.throttled,
            quarantined = report.quarantined.len(),
            failed = report.failed.len(),
            seconds = report.seconds,
            "source synced"
        );
        reports.push(report);
    }
    Ok(SyncReport {
        run: options.run.clone(),
        replay: false,
        sources: reports,
        incomplete: Vec::new(),
    })
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
        for landed in units {
            let mut pages = Vec::new();
            for entry in &landed.pages {
                let body = raw.read(entry).await?;
                pages.push((entry.clone(), Bytes::from(body)));
            }
            let outcome = load_pages(source.as_ref(), &raw, &landed.unit, pages).await;
            let (label, rows) = outcome_label(&outcome);
            on_event(SyncEvent::UnitDone {
                source: source.name(),
                unit: &landed.unit,
                rows,
                outcome: label,
            });
            outcomes.push(outcome?);
        }
        let loaded = sort_outcomes(outcomes, &mut report);
        commit(
            warehouse,
            source.as_ref(),
            &replay_run,
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
