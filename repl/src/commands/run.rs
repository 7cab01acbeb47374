//! `tidemark run`: the scheduler. One per warehouse (a lease under `_tidemark/` that a dead
//! holder cannot keep past its expiry); syncs every configured source's window every
//! interval; serves Prometheus metrics on `/metrics`; on SIGTERM or Ctrl-C it lets the sync in
//! flight finish (a second signal stops at once: the run's journal makes it resumable),
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
}

/// `[schedule] sync_every = "…"` from the config.
fn configured_interval(
    config: &connectors::config::ProjectConfig,
) -> anyhow::Result<Option<Duration>> {
    let Some(text) = config
        .other
        .get("schedule")
        .and_then(|s| s.get("sync_every"))
        .and_then(|v| v.as_str())
    else {
        return Ok(None);
    };
    humantime::parse_duration(text)
        .map(Some)
        .with_context(|| format!("[schedule] sync_every = {text:?} is not a duration like \"1h\""))
}

/// Resolves when SIGTERM or SIGINT arrives.
async fn next_signal(
    terminate: &mut tokio::signal::unix::Signal,
    interrupt: &mut tokio::signal::unix::Signal,
) {
    tokio::select! {
        _ = terminate.recv() => {},
        _ = interrupt.recv() => {},
    }
}

pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = args.project.config()?;
    let sources = config.sources().map_err(anyhow::Error::msg)?;
    anyhow::ensure!(!sources.is_empty(), "tidemark.toml configures no sources");
    let every = args
        .sync_every
        .or(configured_interval(&config)?)
        .unwrap_or(Duration::from_secs(3600));
    let clients = connectors::build_sources(&sources, Purpose::Fetch)?;
    let warehouse = args.project.open(&config).await?;
    warehouse.storage().check_reachable().await?;

    let holder = format!(
        "{}:{}:{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into()),
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
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
                            "the scheduler lease was taken over; stopping after this sync"
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
    eprintln!(
        "scheduler {holder}: syncing every {} ; metrics on http://{bound}/metrics",
        humantime::format_duration(every)
    );
    tracing::info!(holder, every_s = every.as_secs(), metrics = %bound, "scheduler started");

    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut code = ExitCode::SUCCESS;
    'schedule: loop {
        if lost.load(Ordering::SeqCst) {
            code = ExitCode::FAILURE;
            break;
        }
        let today = chrono::Utc::now().date_naive();
        let windows: Vec<Window> = sources
            .iter()
            .map(|s| Window::trailing_days(today, s.window_days()))
            .collect();
        let options = SyncOptions {
            run: connectors::raw::new_run_id(),
            today,
            window: None,
            accounts: None,
            workers: args.workers,
            commit_every: args.commit_every,
        };
        tracing::info!(run = %options.run, "sync started");
        let sync = connectors::sync::sync(&warehouse, &clients, &windows, &options, &|_| {});
        tokio::pin!(sync);
        let mut stopping = false;
        let outcome = loop {
            tokio::select! {
                outcome = &mut sync => break Some(outcome),
                _ = next_signal(&mut terminate, &mut interrupt) => {
                    if stopping {
                        tracing::warn!(run = %options.run, "second signal: stopping now; resume with tidemark sync --resume {}", options.run);
                        break None;
                    }
                    stopping = true;
                    tracing::info!(run = %options.run, "signal received: finishing the sync in flight (signal again to stop now)");
                }
            }
        };
        match outcome {
            None => break 'schedule,
            Some(Ok(report)) => {
                metrics.record_sync(&report);
                tracing::info!(run = %report.run, clean = report.is_clean(), sources = report.sources.len(), "sync finished");
            }
            Some(Err(e)) => {
                metrics.record_error();
                tracing::error!(run = %options.run, error = %e, "sync failed");
            }
        }
        match connectors::status::status(&warehouse, &sources, today).await {
            Ok(status) => metrics.record_status(&status),
            Err(e) => tracing::warn!(error = %e, "could not compute freshness"),
        }
        if stopping {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {},
            _ = next_signal(&mut terminate, &mut interrupt) => break 'schedule,
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
