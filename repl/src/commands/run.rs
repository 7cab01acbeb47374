//! `tidemark run`: the scheduler. One per warehouse (a lease under `_tidemark/` that a dead
//! holder cannot keep past its expiry). Every interval it syncs each configured source's
//! window, then backfills days of the configured history that the slice ledger lacks (gaps
//! left by failed jobs or downtime), then refreshes the project's marts, and once a day at the configured hour compacts every
//! table. It serves Prometheus metrics on `/metrics`; on SIGTERM or Ctrl-C it lets the task
//! in flight finish (a second signal stops at once: the run's journal makes it resumable),
//! releases the lease and exits cleanly.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use connectors::lease::Lease;
use connectors::sync::SyncOptions;
use connectors::{Purpose, Window};
use tokio::signal::unix::{signal, SignalKind};

use crate::metrics::Metrics;
use crate::project::ProjectArgs;
use crate::schedule::{Clock, Schedule};
use connectors::gaps;

/// The scheduler's lease object.
const LEASE_PATH: &str = "_tidemark/scheduler.lock";
/// How long the lease lasts without renewal (a dead scheduler blocks others this long).
const LEASE_TTL: Duration = Duration::from_secs(60);

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub project: ProjectArgs,

    /// Time between syncs (default: [schedule] sync_every in tidemark.toml, else 1h).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub sync_every: Option<Duration>,

    /// Where to serve Prometheus metrics (`/metrics`).
    #[arg(long, default_value = "127.0.0.1:9464", env = "TIDEMARK_METRICS_ADDR")]
    pub metrics_addr: SocketAddr,

    /// Jobs in flight at once during a sync.
    #[arg(long, default_value_t = SyncOptions::DEFAULT_WORKERS, env = "TIDEMARK_WORKERS")]
    pub workers: usize,

    /// Jobs per commit.
    #[arg(long, default_value_t = SyncOptions::DEFAULT_COMMIT_EVERY)]
    pub commit_every: usize,

    /// Start the scheduler's clock at this instant (RFC 3339) instead of now. For rehearsals
    /// and tests: data lands at real time; only the schedule follows this clock.
    #[arg(long, hide = true)]
    pub clock_start: Option<chrono::DateTime<chrono::Utc>>,

    /// Run the scheduler's clock this many times faster than real time (with --clock-start).
    #[arg(long, hide = true, default_value_t = 1.0)]
    pub clock_speed: f64,
}

/// SIGTERM and SIGINT: the first asks the scheduler to stop after the task in flight, a
/// second stops it at once.
struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    stopping: bool,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        Ok(Signals {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            stopping: false,
        })
    }

    async fn next(&mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {},
            _ = self.interrupt.recv() => {},
        }
    }

    /// Run `task` to its end unless a second signal comes (then `None`).
    async fn guard<F: std::future::Future>(&mut self, what: &str, task: F) -> Option<F::Output> {
        tokio::pin!(task);
        loop {
            tokio::select! {
                out = &mut task => return Some(out),
                _ = self.next() => {
                    if self.stopping {
                        tracing::warn!(task = what, "second signal: stopping now");
                        return None;
                    }
                    self.stopping = true;
                    tracing::info!(task = what, "signal received: finishing the {what} in flight (signal again to stop now)");
                    eprintln!("stopping after the {what} in flight (signal again to stop now)");
                }
            }
        }
    }
}

/// What one cycle of the scheduler works with.
struct Cycle<'a> {
    warehouse: &'a engine::Warehouse,
    clients: &'a [Arc<dyn connectors::source::Source>],
    sources: &'a [connectors::config::ResolvedSource],
    schedule: &'a Schedule,
    metrics: &'a Metrics,
    args: &'a RunArgs,
}

impl Cycle<'_> {
    fn options(&self, today: chrono::NaiveDate) -> SyncOptions {
        SyncOptions {
            run: connectors::raw::new_run_id(),
            today,
            window: None,
            accounts: None,
            workers: self.args.workers,
            commit_every: self.args.commit_every,
        }
    }

    /// Re-pull every source's restatement window.
    async fn sync(&self, today: chrono::NaiveDate) {
        let windows: Vec<Window> = self
            .sources
            .iter()
            .map(|s| Window::trailing_days(today, s.window_days()))
            .collect();
        let options = self.options(today);
        tracing::info!(run = %options.run, "sync started");
        match connectors::sync::sync(self.warehouse, self.clients, &windows, &options, &|_| {})
            .await
        {
            Ok(report) => {
                self.metrics.record_sync(&report);
                self.metrics.record_task("sync", true);
                tracing::info!(run = %report.run, clean = report.is_clean(), sources = report.sources.len(), "sync finished");
            }
            Err(e) => {
                self.metrics.record_error();
                self.metrics.record_task("sync", false);
                tracing::error!(run = %options.run, error = %e, "sync failed; resume with tidemark sync --resume {}", options.run);
            }
        }
    }

    /// Find the history's missing and stale days in the slice ledger and backfill some of them.
    async fn fill_gaps(&self, now: chrono::DateTime<chrono::Utc>) {
        let today = now.date_naive();
        let records = match engine::ledger::read(self.warehouse).await {
            Ok(records) => records,
            Err(e) => {
                self.metrics.record_task("gap_fill", false);
                tracing::error!(error = %e, "could not read the slice ledger; gaps not checked");
                return;
            }
        };
        let gaps = gaps::find(
            &records,
            self.clients,
            today,
            self.schedule.history_days,
            now,
        );
        let missing: usize = gaps.iter().map(|g| g.day_count()).sum();
        if gaps.is_empty() {
            self.metrics.record_gap_days(0);
            return;
        }
        let chosen = gaps::limit(gaps, self.schedule.max_backfill_days);
        let chosen_days: usize = chosen.iter().map(|g| g.day_count()).sum();
        for gap in &chosen {
            tracing::info!(source = %gap.source, account = %gap.account, since = %gap.days.since, until = %gap.days.until, reason = %gap.reason, "backfilling a gap");
        }
        let options = self.options(today);
        let result =
            connectors::sync::fill_gaps(self.warehouse, self.clients, &chosen, &options, &|_| {})
                .await;
        match result {
            Ok(report) => {
                self.metrics.record_sync(&report);
                self.metrics.record_task("gap_fill", true);
                let filled: usize = if report.is_clean() { chosen_days } else { 0 };
                self.metrics.record_gap_days(missing - filled);
                tracing::info!(run = %report.run, days = chosen_days, of = missing, clean = report.is_clean(), "gap fill finished");
            }
            Err(e) => {
                self.metrics.record_task("gap_fill", false);
                self.metrics.record_gap_days(missing);
                tracing::error!(run = %options.run, error = %e, "gap fill failed");
            }
        }
    }

    /// Refresh the project's marts (the days their inputs changed), loading changed seeds first.
    async fn refresh_marts(&self) {
        let marts = match engine::marts::load_dir(&self.args.project.project.join("marts")) {
            Ok(marts) if marts.is_empty() => return,
            Ok(marts) => marts,
            Err(e) => {
                self.metrics.record_task("mart_refresh", false);
                tracing::error!(error = %e, "cannot read the project's marts; not refreshed");
                return;
            }
        };
        let results = crate::commands::mart::refresh_project(
            &self.args.project,
            self.warehouse,
            &marts,
            None,
            false,
        )
        .await;
        match results {
            Ok(results) => {
                let mut ok = true;
                for (mart, result) in &results {
                    match result {
                        Ok(report) => tracing::info!("{}", crate::commands::mart::describe(report)),
                        Err(e) => {
                            ok = false;
                            tracing::error!(mart, error = %e, "mart refresh failed; it keeps its previous contents");
                        }
                    }
                }
                self.metrics.record_task("mart_refresh", ok);
            }
            Err(e) => {
                self.metrics.record_task("mart_refresh", false);
                tracing::error!(error = %e, "mart refresh failed");
            }
        }
    }

    /// Compact every table (the nightly maintenance).
    async fn compact(&self, today: chrono::NaiveDate) {
        let options = engine::maintenance::CompactOptions {
            settled: super::compact::settled_days(self.sources, today),
            ..Default::default()
        };
        match engine::maintenance::compact_all(self.warehouse, &options).await {
            Ok(reports) => {
                self.metrics.record_task("compaction", true);
                let before: usize = reports.iter().map(|r| r.files_before).sum();
                let after: usize = reports.iter().map(|r| r.files_after).sum();
                tracing::info!(
                    tables = reports.len(),
                    files_before = before,
                    files_after = after,
                    "nightly compaction finished"
                );
                if let Some(retain) = self.schedule.vacuum_retain {
                    self.vacuum(retain).await;
                }
            }
            Err(e) => {
                self.metrics.record_task("compaction", false);
                tracing::error!(error = %e, "nightly compaction failed");
            }
        }
    }

    /// Delete the files no version within `retain` reads (after the nightly compaction).
    async fn vacuum(&self, retain: std::time::Duration) {
        match engine::maintenance::vacuum_all(self.warehouse, retain).await {
            Ok(reports) => {
                self.metrics.record_task("vacuum", true);
                let files: usize = reports.iter().map(|r| r.files.len()).sum();
                tracing::info!(
                    tables = reports.len(),
                    files_deleted = files,
                    "nightly vacuum finished"
                );
            }
            Err(e) => {
                self.metrics.record_task("vacuum", false);
                tracing::error!(error = %e, "nightly vacuum failed");
            }
        }
    }

    /// Refresh freshness gauges.
    async fn record_status(&self, today: chrono::NaiveDate) {
        match connectors::status::status(self.warehouse, self.sources, today).await {
            Ok(status) => self.metrics.record_status(&status),
            Err(e) => tracing::warn!(error = %e, "could not compute freshness"),
        }
    }
}

pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = args.project.config()?;
    let sources = config.sources().map_err(anyhow::Error::msg)?;
    anyhow::ensure!(!sources.is_empty(), "tidemark.toml configures no sources");
    let mut schedule = Schedule::from_config(&config)?;
    if let Some(every) = args.sync_every {
        anyhow::ensure!(!every.is_zero(), "--sync-every must be longer than 0s");
        schedule.sync_every = every;
    }
    let clock = Clock::new(args.clock_start, args.clock_speed);
    // A source on a switched-off API version is left out (named in the log); the others run.
    let review = connectors::api_versions::review(&sources, clock.now().date_naive());
    for warning in &review.warnings {
        tracing::warn!("{warning}");
    }
    for (_, why) in &review.refused {
        tracing::error!("left out of the schedule: {why}");
    }
    let sources: Vec<_> = sources
        .into_iter()
        .filter(|s| !review.refused.iter().any(|(name, _)| name == &s.name))
        .collect();
    anyhow::ensure!(
        !sources.is_empty(),
        "every source is on an API version that is switched off: {}",
        review
            .refused
            .iter()
            .map(|(_, why)| why.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    );
    let clients = connectors::build_sources(&sources, Purpose::Fetch)?;
    let warehouse = args.project.open(&config).await?;
    warehouse.storage().check_reachable().await?;

    let holder = engine::lease::process_id();
    let lease = Lease::acquire(warehouse.storage().store(), LEASE_PATH, &holder, LEASE_TTL)
        .await
        .context("another scheduler runs on this warehouse")?;
    let lease = Arc::new(lease);
    let lost = Arc::new(AtomicBool::new(false));
    let renewer = {
        let (lease, lost) = (Arc::clone(&lease), Arc::clone(&lost));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease.ttl() / 3).await;
                match lease.renew().await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::error!(
                            "the scheduler lease was taken over; stopping after this task"
                        );
                        lost.store(true, Ordering::SeqCst);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not renew the scheduler lease; retrying")
                    }
                }
            }
        })
    };

    let metrics = Arc::new(Metrics::new());
    let bound = crate::metrics::serve(args.metrics_addr, Arc::clone(&metrics)).await?;
    let mut next_compaction = schedule.next_compaction(clock.now());
    eprintln!(
        "scheduler {holder}: syncing every {}, keeping {} days of history, compacting daily at {} UTC (next {}); metrics on http://{bound}/metrics",
        humantime::format_duration(schedule.sync_every),
        schedule.history_days,
        schedule.compact_at.format("%H:%M"),
        next_compaction.format("%Y-%m-%d %H:%M"),
    );
    tracing::info!(holder, every_s = schedule.sync_every.as_secs(), metrics = %bound, "scheduler started");
    if let Some(console) = crate::console::ConsoleConfig::from_toml(&config.other)? {
        let flight =
            sql::flight::FlightConfig::from_toml(&config.other).map_err(anyhow::Error::msg)?;
        let addr = crate::console::start(
            &console,
            &flight.users,
            warehouse.clone(),
            args.project.project.clone(),
            sources.clone(),
        )
        .await?;
        eprintln!("web console: http://{addr}/");
    }

    let cycle = Cycle {
        warehouse: &warehouse,
        clients: &clients,
        sources: &sources,
        schedule: &schedule,
        metrics: &metrics,
        args: &args,
    };
    let mut signals = Signals::new()?;
    let mut code = ExitCode::SUCCESS;
    'schedule: loop {
        let started = clock.now();
        let today = started.date_naive();
        if signals.guard("sync", cycle.sync(today)).await.is_none() {
            break;
        }
        if !signals.stopping
            && signals
                .guard("gap fill", cycle.fill_gaps(clock.now()))
                .await
                .is_none()
        {
            break;
        }
        if !signals.stopping
            && signals
                .guard("mart refresh", cycle.refresh_marts())
                .await
                .is_none()
        {
            break;
        }
        if !signals.stopping && clock.now() >= next_compaction {
            if signals
                .guard("compaction", cycle.compact(clock.now().date_naive()))
                .await
                .is_none()
            {
                break;
            }
            next_compaction = schedule.next_compaction(clock.now());
        }
        cycle.record_status(clock.now().date_naive()).await;
        if signals.stopping {
            break;
        }
        if lost.load(Ordering::SeqCst) {
            code = ExitCode::FAILURE;
            break;
        }
        let spent = (clock.now() - started).to_std().unwrap_or_default();
        let wait = clock.real(schedule.sync_every.saturating_sub(spent));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {},
            _ = signals.next() => break 'schedule,
        }
    }
    renewer.abort();
    let _ = renewer.await; // the task owns a handle on the lease until it has ended
    let lease = Arc::try_unwrap(lease).map_err(|_| anyhow::anyhow!("lease still shared"))?;
    lease.release().await?;
    tracing::info!("scheduler stopped");
    eprintln!("scheduler stopped");
    Ok(code)
}
