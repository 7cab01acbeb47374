//! Freshness and health per source and account, from what the warehouse itself records: the
//! slice ledger (days loaded and when; `ad_performance` for accounts it does not know), the run
//! journals under `_tidemark/runs/` and the quarantine under `raw/quarantine/`. Nothing here
//! calls a platform.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use engine::arrow::array::{Array, AsArray};
use engine::arrow::datatypes::Date32Type;
use engine::model::AD_PERFORMANCE;
use engine::{Namespace, Warehouse, WarehouseSession};
use object_store::path::Path;
use object_store::ObjectStore;
use serde::Serialize;

use crate::config::ResolvedSource;
use crate::error::{Error, Result};
use crate::journal::Journal;

/// Days shown before a source's window: enough to see days settle.
pub const SETTLED_DAYS_SHOWN: u64 = 3;

/// What one day of an account looks like in the warehouse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DayState {
    /// Inside the window, replaced by a sync since yesterday.
    Fresh,
    /// Inside the window, but the last sync that replaced it is older.
    Stale,
    /// No sync ever loaded it.
    Missing,
    /// The newest run could not load it: a payload was quarantined or the job failed.
    Quarantined,
    /// Older than the source's window: the platform no longer restates it.
    Settled,
}

impl DayState {
    pub const ALL: [DayState; 5] = [
        DayState::Fresh,
        DayState::Stale,
        DayState::Missing,
        DayState::Quarantined,
        DayState::Settled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DayState::Fresh => "fresh",
            DayState::Stale => "stale",
            DayState::Missing => "missing",
            DayState::Quarantined => "quarantined",
            DayState::Settled => "settled",
        }
    }
}

/// One day of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DayCell {
    pub date: NaiveDate,
    pub state: DayState,
}

/// A job of the newest run that did not load, and the command that finishes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// `failed` or `quarantined`.
    pub outcome: String,
    pub since: NaiveDate,
    pub until: NaiveDate,
    pub reason: String,
    pub run: String,
    pub fix: String,
}

/// The state of one (source, account).
#[derive(Debug, Clone, Serialize)]
pub struct AccountStatus {
    pub source: String,
    pub account: String,
    /// When a job of this account last committed.
    pub last_success: Option<DateTime<Utc>>,
    /// Newest and oldest day with rows (slice ledger records with rows; `ad_performance` for an
    /// account the ledger does not know).
    pub freshest_day: Option<NaiveDate>,
    pub stalest_day: Option<NaiveDate>,
    /// Days between the freshest day and today (1 = up to yesterday, as complete as it gets).
    pub lag_days: Option<i64>,
    /// The newest run that planned jobs for this account.
    pub last_run: Option<String>,
    /// Jobs of that run not committed (failed, quarantined, or still to do).
    pub unfinished_jobs: usize,
    /// Payloads that run quarantined.
    pub quarantined: usize,
    /// The source's window and a few settled days before it, oldest first, each with its
    /// state (from the slice ledger and the newest run's journal).
    pub days: Vec<DayCell>,
    /// How many of `days` are in each state.
    pub cells: BTreeMap<DayState, usize>,
    /// The newest run's jobs of this account that did not load.
    pub problems: Vec<Problem>,
}

/// Status of every configured source and account.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub today: NaiveDate,
    pub accounts: Vec<AccountStatus>,
    /// Jobs planned and not committed in each account's newest run (the embedded queue).
    pub queue_depth: usize,
    pub runs: usize,
}

/// The oldest and newest day with rows in `ad_performance` of each of `accounts` (the files
/// of other accounts are pruned by their statistics).
async fn day_ranges(
    warehouse: &Warehouse,
    accounts: &[(String, String)],
) -> Result<BTreeMap<(String, String), (NaiveDate, NaiveDate)>> {
    let mut out = BTreeMap::new();
    if !warehouse.exists(Namespace::Tables, AD_PERFORMANCE).await? {
        return Ok(out);
    }
    let quote = |t: &str| format!("'{}'", t.replace('\'', "''"));
    let ids: std::collections::BTreeSet<String> = accounts.iter().map(|(_, a)| quote(a)).collect();
    let session = WarehouseSession::new(warehouse.clone()).await?;
    let batches = session
        .sql(&format!(
            "SELECT CAST(source AS VARCHAR), CAST(account_id AS VARCHAR), min(date), max(date) FROM {AD_PERFORMANCE} \
             WHERE account_id IN ({}) GROUP BY 1, 2",
            ids.into_iter().collect::<Vec<_>>().join(", ")
        ))
        .await?
        .collect()
        .await
        .map_err(engine::Error::from)?;
    for b in &batches {
        let text = |i: usize| {
            engine::arrow::compute::cast(b.column(i), &engine::arrow::datatypes::DataType::Utf8)
                .map(|a| a.as_string::<i32>().clone())
        };
        let (source, account) = (
            text(0).map_err(engine::Error::from)?,
            text(1).map_err(engine::Error::from)?,
        );
        let (min, max) = (
            b.column(2).as_primitive::<Date32Type>(),
            b.column(3).as_primitive::<Date32Type>(),
        );
        for r in 0..b.num_rows() {
            if min.is_null(r) || max.is_null(r) {
                continue;
            }
            let day = |v: i32| Date32Type::to_naive_date_opt(v).unwrap_or_default();
            out.insert(
                (source.value(r).to_string(), account.value(r).to_string()),
                (day(min.value(r)), day(max.value(r))),
            );
        }
    }
    Ok(out)
}

/// Quarantined payloads of `run`, per (source, account): one listing per run.
async fn quarantined_in(
    store: &Arc<dyn ObjectStore>,
    run: &str,
) -> Result<BTreeMap<(String, String), usize>> {
    use futures::TryStreamExt;
    let prefix = format!("raw/quarantine/{run}/");
    let objects: Vec<_> = store
        .list(Some(&Path::from(prefix.as_str())))
        .try_collect()
        .await
        .map_err(|e| Error::Raw {
            path: prefix.clone(),
            reason: e.to_string(),
        })?;
    let mut out = BTreeMap::new();
    for object in objects
        .iter()
        .filter(|o| o.location.as_ref().ends_with(".reason.json"))
    {
        // raw/quarantine/<run>/<source>/<account>/<since>_<until>/<page>.reason.json
        let parts: Vec<_> = object.location.parts().collect();
        if let (Some(source), Some(account)) = (parts.get(3), parts.get(4)) {
            *out.entry((source.as_ref().to_string(), account.as_ref().to_string()))
                .or_default() += 1;
        }
    }
    Ok(out)
}

/// The states of the days of `source`'s window (and [`SETTLED_DAYS_SHOWN`] before it) for
/// `account`, oldest first.
fn day_cells(
    ledger: &BTreeMap<(String, String, NaiveDate), engine::ledger::SliceRecord>,
    source: &ResolvedSource,
    account: &str,
    problems: &[Problem],
    today: NaiveDate,
) -> Vec<DayCell> {
    let shown = source.window_days() + SETTLED_DAYS_SHOWN;
    (1..=shown)
        .rev()
        .map(|back| today - chrono::Days::new(back))
        .map(|date| {
            let unloaded = problems.iter().any(|p| p.since <= date && date <= p.until);
            let record = ledger.get(&(source.name.clone(), account.to_string(), date));
            let state = match record {
                _ if unloaded => DayState::Quarantined,
                None => DayState::Missing,
                Some(r) if r.settles_at.date_naive() <= today => DayState::Settled,
                Some(r) if r.synced_at.date_naive() >= today - chrono::Days::new(1) => {
                    DayState::Fresh
                }
                Some(_) => DayState::Stale,
            };
            DayCell { date, state }
        })
        .collect()
}

/// Gather the status of `sources` as of `today`.
pub async fn status(
    warehouse: &Warehouse,
    sources: &[ResolvedSource],
    today: NaiveDate,
) -> Result<Status> {
    let store = warehouse.storage().store();
    let ledger: BTreeMap<(String, String, NaiveDate), engine::ledger::SliceRecord> =
        engine::ledger::read(warehouse)
            .await?
            .into_iter()
            .map(|r| ((r.source.clone(), r.account.clone(), r.date), r))
            .collect();
    // Days with rows, from the ledger (one record per slice, its row count): reading it costs
    // far less than scanning `ad_performance` (a file per slice until compaction). Accounts
    // the ledger does not know (data loaded with `tidemark load`) are looked up in the table.
    let mut ranges: BTreeMap<(String, String), (NaiveDate, NaiveDate)> = BTreeMap::new();
    for ((source, account, date), record) in &ledger {
        if record.rows == 0 {
            continue;
        }
        let range = ranges
            .entry((source.clone(), account.clone()))
            .or_insert((*date, *date));
        range.0 = range.0.min(*date);
        range.1 = range.1.max(*date);
    }
    let unknown: Vec<(String, String)> = sources
        .iter()
        .flat_map(|s| s.account_ids().into_iter().map(|a| (s.name.clone(), a)))
        .filter(|key| !ranges.contains_key(key))
        .collect();
    tracing::debug!(
        from_ledger = ranges.len(),
        unknown = unknown.len(),
        "day ranges"
    );
    if !unknown.is_empty() {
        for (key, range) in day_ranges(warehouse, &unknown).await? {
            ranges.entry(key).or_insert(range);
        }
    }
    // Per (source, account): newest run planning it, its unfinished jobs, last commit time.
    let mut latest: BTreeMap<(String, String), (String, usize)> = BTreeMap::new();
    let mut unloaded_by_run: BTreeMap<String, Vec<crate::journal::Unloaded>> = BTreeMap::new();
    let mut last_success: BTreeMap<(String, String), DateTime<Utc>> = BTreeMap::new();
    let started = Journal::started_runs(&store).await?;
    let run_count = started.len();
    for (journal, plan) in started {
        let run = journal.run().to_string();
        let records = journal.records().await?;
        let committed: std::collections::BTreeSet<_> =
            records.iter().map(|r| r.unit.clone()).collect();
        for record in &records {
            let key = (record.unit.source.clone(), record.unit.account.clone());
            let entry = last_success.entry(key).or_insert(record.committed_at);
            *entry = (*entry).max(record.committed_at);
        }
        let mut unfinished: BTreeMap<(String, String), usize> = BTreeMap::new();
        for job in &plan.jobs {
            let n = unfinished
                .entry((job.source.clone(), job.account.clone()))
                .or_default();
            if !committed.contains(job) {
                *n += 1;
            }
        }
        for (key, n) in unfinished {
            latest.insert(key, (run.clone(), n));
        }
        // What did not load and was not committed by a later attempt since.
        let unloaded = journal.unloaded().await?;
        unloaded_by_run.insert(
            run.clone(),
            unloaded
                .into_iter()
                .filter(|u| !committed.contains(&u.unit))
                .collect(),
        );
    }
    let mut accounts = Vec::new();
    let mut quarantine_counts: BTreeMap<String, BTreeMap<(String, String), usize>> =
        BTreeMap::new();
    for source in sources {
        for account in source.account_ids() {
            let key = (source.name.clone(), account.clone());
            let range = ranges.get(&key);
            let (last_run, unfinished) = latest
                .get(&key)
                .map_or((None, 0), |(run, n)| (Some(run.clone()), *n));
            let quarantined = match &last_run {
                Some(run) => {
                    if !quarantine_counts.contains_key(run) {
                        let counts = quarantined_in(&store, run).await?;
                        quarantine_counts.insert(run.clone(), counts);
                    }
                    quarantine_counts[run]
                        .get(&(source.name.clone(), account.clone()))
                        .copied()
                        .unwrap_or(0)
                }
                None => 0,
            };
            let problems: Vec<Problem> = last_run
                .as_ref()
                .and_then(|run| unloaded_by_run.get(run).map(|u| (run, u)))
                .map(|(run, unloaded)| {
                    unloaded
                        .iter()
                        .filter(|u| u.unit.source == source.name && u.unit.account == account)
                        .map(|u| Problem {
                            outcome: u.outcome.clone(),
                            since: u.unit.since,
                            until: u.unit.until,
                            reason: u.reason.clone(),
                            run: run.clone(),
                            fix: match u.outcome.as_str() {
                                "quarantined" => format!(
                                    "fix what the reason names (or wait for the platform), then `tidemark sync --resume {run}`; the payload is kept in raw/quarantine/{run}/"
                                ),
                                _ => format!("`tidemark sync --resume {run}` once the cause has passed"),
                            },
                        })
                        .collect()
                })
                .unwrap_or_default();
            let days = day_cells(&ledger, source, &account, &problems, today);
            let mut cells: BTreeMap<DayState, usize> =
                DayState::ALL.iter().map(|s| (*s, 0)).collect();
            for cell in &days {
                *cells.entry(cell.state).or_default() += 1;
            }
            accounts.push(AccountStatus {
                source: source.name.clone(),
                account,
                days,
                cells,
                problems,
                last_success: last_success.get(&key).copied(),
                freshest_day: range.map(|r| r.1),
                stalest_day: range.map(|r| r.0),
                lag_days: range.map(|r| (today - r.1).num_days()),
                last_run,
                unfinished_jobs: unfinished,
                quarantined,
            });
        }
    }
    Ok(Status {
        today,
        queue_depth: accounts.iter().map(|a| a.unfinished_jobs).sum(),
        accounts,
        runs: run_count,
    })
}
