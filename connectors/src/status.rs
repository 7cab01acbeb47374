//! Freshness and health per source and account, from what the warehouse itself records: the
//! data in `ad_performance`, the run journals under `_tidemark/runs/` and the quarantine under
//! `raw/quarantine/`. Nothing here calls a platform.

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

/// The state of one (source, account).
#[derive(Debug, Clone, Serialize)]
pub struct AccountStatus {
    pub source: String,
    pub account: String,
    /// When a job of this account last committed.
    pub last_success: Option<DateTime<Utc>>,
    /// Newest and oldest day with rows in `ad_performance`.
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

async fn day_ranges(
    warehouse: &Warehouse,
) -> Result<BTreeMap<(String, String), (NaiveDate, NaiveDate)>> {
    let mut out = BTreeMap::new();
    if !warehouse.exists(Namespace::Tables, AD_PERFORMANCE).await? {
        return Ok(out);
    }
    let session = WarehouseSession::new(warehouse.clone()).await?;
    let batches = session
        .sql(&format!(
            "SELECT CAST(source AS VARCHAR), CAST(account_id AS VARCHAR), min(date), max(date) FROM {AD_PERFORMANCE} GROUP BY 1, 2"
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

async fn count_quarantined(
    store: &Arc<dyn ObjectStore>,
    run: &str,
    source: &str,
    account: &str,
) -> Result<usize> {
    use futures::TryStreamExt;
    let prefix = format!("raw/quarantine/{run}/{source}/{account}/");
    let objects: Vec<_> = store
        .list(Some(&Path::from(prefix.as_str())))
        .try_collect()
        .await
        .map_err(|e| Error::Raw {
            path: prefix.clone(),
            reason: e.to_string(),
        })?;
    Ok(objects
        .iter()
        .filter(|o| o.location.as_ref().ends_with(".reason.json"))
        .count())
}

/// Gather the status of `sources` as of `today`.
pub async fn status(
    warehouse: &Warehouse,
    sources: &[ResolvedSource],
    today: NaiveDate,
) -> Result<Status> {
    let store = warehouse.storage().store();
    let ranges = day_ranges(warehouse).await?;
    let runs = Journal::runs(&store).await?;
    // Per (source, account): newest run planning it, its unfinished jobs, last commit time.
    let mut latest: BTreeMap<(String, String), (String, usize)> = BTreeMap::new();
    let mut last_success: BTreeMap<(String, String), DateTime<Utc>> = BTreeMap::new();
    for run in &runs {
        let journal = Journal::new(Arc::clone(&store), run)?;
        let Ok(plan) = journal.plan().await else {
            continue; // a run directory without a readable plan (being written, or foreign)
        };
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
    }
    let mut accounts = Vec::new();
    for source in sources {
        for account in source.account_ids() {
            let key = (source.name.clone(), account.clone());
            let range = ranges.get(&key);
            let (last_run, unfinished) = latest
                .get(&key)
                .map_or((None, 0), |(run, n)| (Some(run.clone()), *n));
            let quarantined = match &last_run {
                Some(run) => count_quarantined(&store, run, &source.name, &account).await?,
                None => 0,
            };
            accounts.push(AccountStatus {
                source: source.name.clone(),
                account,
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
        runs: runs.len(),
    })
}
