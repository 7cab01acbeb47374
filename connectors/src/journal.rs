//! The sync journal under `_tidemark/runs/<run>/`: what a run planned and which of its jobs
//! are committed, so a sync killed at any point can be resumed (`tidemark sync --resume RUN`):
//! committed jobs are skipped, jobs whose pages all landed are loaded from `raw/` without
//! calling the platform, and the rest are fetched again.
//!
//! ```text
//! _tidemark/runs/<run>/plan.json                         run, today, each source's window, every job
//! _tidemark/runs/<run>/jobs/<source>/<account>/<since>_<until>.json   a committed job
//! ```
//! A job is marked committed only after both of its tables' commits landed; a crash between a
//! commit and its mark redoes the job, which replaces the same slices with the same rows.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::raw::Unit;
use crate::throttle::StatsSnapshot;
use crate::window::Window;

/// What a run set out to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub run: String,
    pub today: NaiveDate,
    pub created_at: DateTime<Utc>,
    /// Each source's window, in sync order.
    pub sources: Vec<(String, Window)>,
    pub jobs: Vec<Unit>,
    /// Jobs per commit the run was started with (a resume keeps it unless told otherwise).
    #[serde(default)]
    pub commit_every: Option<usize>,
}

/// A committed job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Committed {
    pub unit: Unit,
    pub committed_at: DateTime<Utc>,
    /// (table, version) of the commits that carried it.
    pub versions: Vec<(String, u64)>,
}

/// A job that ended without loading (quarantined or failed), for runs whose jobs are done by
/// workers: the run is complete when every job is committed or finished this way.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Unloaded {
    pub unit: Unit,
    pub outcome: String,
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// What one attempt at a run asked of one source's API.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HttpRecord {
    pub source: String,
    pub at: DateTime<Utc>,
    pub http: StatsSnapshot,
}

/// The journal of one run.
#[derive(Clone)]
pub struct Journal {
    store: Arc<dyn ObjectStore>,
    run: String,
}

fn journal_error(path: &str, e: impl std::fmt::Display) -> Error {
    Error::Journal {
        path: path.to_string(),
        reason: engine::describe_storage_failure(&e.to_string()),
    }
}

impl Journal {
    /// Write `value` as JSON at `path`.
    async fn put_json<T: Serialize>(&self, path: &str, value: &T) -> Result<()> {
        self.store
            .put(
                &Path::from(path),
                PutPayload::from(serde_json::to_vec_pretty(value).expect("records serialize")),
            )
            .await
            .map_err(|e| journal_error(path, e))?;
        Ok(())
    }

    /// Every JSON record below `prefix`.
    async fn read_all<T: serde::de::DeserializeOwned>(&self, prefix: &str) -> Result<Vec<T>> {
        use futures::TryStreamExt;
        let objects: Vec<_> = self
            .store
            .list(Some(&Path::from(prefix)))
            .try_collect()
            .await
            .map_err(|e| journal_error(prefix, e))?;
        let mut out = Vec::with_capacity(objects.len());
        for object in objects {
            let path = object.location.to_string();
            let data = self
                .store
                .get(&object.location)
                .await
                .map_err(|e| journal_error(&path, e))?
                .bytes()
                .await
                .map_err(|e| journal_error(&path, e))?;
            out.push(
                serde_json::from_slice(&data)
                    .map_err(|e| journal_error(&path, format!("unreadable record: {e}")))?,
            );
        }
        Ok(out)
    }

    pub fn new(store: Arc<dyn ObjectStore>, run: &str) -> Result<Self> {
        crate::raw::validate_run_id(run)?;
        Ok(Journal {
            store,
            run: run.to_string(),
        })
    }

    fn dir(&self) -> String {
        format!("_tidemark/runs/{}", self.run)
    }

    /// Record the plan of a new run; a run id already used is refused.
    pub async fn start(&self, plan: &Plan) -> Result<()> {
        let path = format!("{}/plan.json", self.dir());
        let body = serde_json::to_vec_pretty(plan).expect("plans serialize");
        let options = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(&Path::from(path.as_str()), PutPayload::from(body), options)
            .await
        {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => Err(Error::Config(format!(
                "run {} already exists; resume it with --resume {} or choose another --run",
                self.run, self.run
            ))),
            Err(e) => Err(journal_error(&path, e)),
        }
    }

    /// The plan of this run.
    pub async fn plan(&self) -> Result<Plan> {
        let path = format!("{}/plan.json", self.dir());
        let data = match self.store.get(&Path::from(path.as_str())).await {
            Ok(result) => result.bytes().await.map_err(|e| journal_error(&path, e))?,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(Error::Config(format!(
                    "no run {} in this warehouse (runs are under _tidemark/runs/)",
                    self.run
                )))
            }
            Err(e) => return Err(journal_error(&path, e)),
        };
        serde_json::from_slice(&data)
            .map_err(|e| journal_error(&path, format!("unreadable plan: {e}")))
    }

    fn job_path(&self, kind: &str, unit: &Unit) -> String {
        format!(
            "{}/{kind}/{}/{}/{}_{}.json",
            self.dir(),
            unit.source,
            unit.account,
            unit.since,
            unit.until
        )
    }

    /// Mark jobs committed.
    pub async fn mark_committed(&self, units: &[Unit], versions: &[(String, u64)]) -> Result<()> {
        let now = Utc::now();
        for unit in units {
            let record = Committed {
                unit: unit.clone(),
                committed_at: now,
                versions: versions.to_vec(),
            };
            self.put_json(&self.job_path("jobs", unit), &record).await?;
        }
        Ok(())
    }

    /// Record a job that ended without loading.
    pub async fn mark_unloaded(&self, unit: &Unit, outcome: &str, reason: &str) -> Result<()> {
        let path = self.job_path("unloaded", unit);
        let record = Unloaded {
            unit: unit.clone(),
            outcome: outcome.to_string(),
            reason: reason.to_string(),
            at: Utc::now(),
        };
        self.put_json(&path, &record).await
    }

    /// Record what one attempt at the run asked of `source`'s API: requests, throttled
    /// answers, retries and time waited (each attempt, `--resume` included, adds a record).
    pub async fn record_http(&self, source: &str, http: &StatsSnapshot) -> Result<()> {
        let record = HttpRecord {
            source: source.to_string(),
            at: Utc::now(),
            http: *http,
        };
        let path = format!(
            "{}/http/{source}-{}.json",
            self.dir(),
            record.at.format("%Y%m%dT%H%M%S%.6fZ")
        );
        self.put_json(&path, &record).await
    }

    /// What the run's attempts asked of the APIs, per attempt and source.
    pub async fn http(&self) -> Result<Vec<HttpRecord>> {
        self.read_all(&format!("{}/http/", self.dir())).await
    }

    /// Jobs of this run that ended without loading.
    pub async fn unloaded(&self) -> Result<Vec<Unloaded>> {
        self.read_all(&format!("{}/unloaded/", self.dir())).await
    }

    /// Whether one job of this run is committed (one HEAD request, not a listing).
    pub async fn is_committed(&self, unit: &Unit) -> Result<bool> {
        let path = self.job_path("jobs", unit);
        match self.store.head(&Path::from(path.as_str())).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(journal_error(&path, e)),
        }
    }

    /// The jobs of this run already committed.
    pub async fn committed(&self) -> Result<BTreeSet<Unit>> {
        Ok(self.records().await?.into_iter().map(|r| r.unit).collect())
    }

    /// The records of this run's committed jobs.
    pub async fn records(&self) -> Result<Vec<Committed>> {
        self.read_all(&format!("{}/jobs/", self.dir())).await
    }

    /// Every run with a readable plan, in the order the runs started (the plans' `created_at`,
    /// then the id). Ids alone do not give that order: generated ids have whole seconds (two
    /// runs in one second sort by their random suffix) and `--run NAME` ids sort by name.
    /// A run directory without a readable plan (being written, or foreign) is left out.
    pub async fn started_runs(store: &Arc<dyn ObjectStore>) -> Result<Vec<(Journal, Plan)>> {
        let mut started = Vec::new();
        for run in Self::runs(store).await? {
            let journal = Journal::new(Arc::clone(store), &run)?;
            if let Ok(plan) = journal.plan().await {
                started.push((journal, plan));
            }
        }
        started.sort_by(|(a, plan_a), (b, plan_b)| {
            (plan_a.created_at, &a.run).cmp(&(plan_b.created_at, &b.run))
        });
        Ok(started)
    }

    /// The run's id.
    pub fn run(&self) -> &str {
        &self.run
    }

    /// Every run this warehouse has a journal for, by id (see [`Journal::started_runs`] for
    /// the order they started in).
    pub async fn runs(store: &Arc<dyn ObjectStore>) -> Result<Vec<String>> {
        let prefix = "_tidemark/runs/";
        let listing = store
            .list_with_delimiter(Some(&Path::from(prefix)))
            .await
            .map_err(|e| journal_error(prefix, e))?;
        let mut runs: Vec<String> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        runs.sort();
        Ok(runs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn plans_are_written_once_and_committed_jobs_listed() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let journal = Journal::new(store, "r1").unwrap();
        let w = Window::new("2026-11-01".parse().unwrap(), "2026-11-07".parse().unwrap()).unwrap();
        let plan = Plan {
            run: "r1".into(),
            today: "2026-11-08".parse().unwrap(),
            created_at: Utc::now(),
            sources: vec![("meta".into(), w)],
            jobs: vec![Unit::new("meta", "1", w), Unit::new("meta", "2", w)],
            commit_every: Some(1),
        };
        journal.start(&plan).await.unwrap();
        let again = journal.start(&plan).await.unwrap_err().to_string();
        assert!(again.contains("--resume r1"), "{again}");
        assert_eq!(journal.plan().await.unwrap(), plan);
        journal
            .mark_committed(&plan.jobs[1..], &[("t".into(), 3)])
            .await
            .unwrap();
        assert_eq!(
            journal
                .committed()
                .await
                .unwrap()
                .into_iter()
                .collect::<Vec<_>>(),
            vec![plan.jobs[1].clone()]
        );
    }

    #[tokio::test]
    async fn runs_come_in_the_order_they_started_not_by_id() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let w = Window::new("2026-11-01".parse().unwrap(), "2026-11-07".parse().unwrap()).unwrap();
        let started = Utc::now();
        // "nightly" sorts after "20261121T…" by id, and "a-second" before "b-first" though it
        // started later (as two generated ids of one second can).
        for (run, seconds) in [
            ("nightly", 0),
            ("20261121T000000Z-ffff", 10),
            ("b-first", 20),
            ("a-second", 30),
        ] {
            let plan = Plan {
                run: run.into(),
                today: "2026-11-08".parse().unwrap(),
                created_at: started + chrono::Duration::seconds(seconds),
                sources: vec![("meta".into(), w)],
                jobs: vec![Unit::new("meta", "1", w)],
                commit_every: None,
            };
            Journal::new(Arc::clone(&store), run)
                .unwrap()
                .start(&plan)
                .await
                .unwrap();
        }
        // A run directory without a plan is left out.
        store
            .put(&Path::from("_tidemark/runs/foreign/x"), "x".into())
            .await
            .unwrap();
        let order: Vec<String> = Journal::started_runs(&store)
            .await
            .unwrap()
            .iter()
            .map(|(journal, _)| journal.run().to_string())
            .collect();
        assert_eq!(
            order,
            ["nightly", "20261121T000000Z-ffff", "b-first", "a-second"]
        );
    }
}
