//! `tidemark worker`: a stateless collector. Takes jobs from the Redis Streams queue of the
//! project's warehouse, runs each (fetch, land, normalize, commit, journal) and acks it after
//! the commit; keeps the job it works on claimed with a heartbeat; takes over jobs of workers
//! that went silent for longer than `--lease`, and gives up on a job delivered more than
//! `--max-deliveries` times (journaled as failed, copied to a dead-letter stream). SIGTERM or Ctrl-C: finish the current job, then
//! exit.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use connectors::journal::Journal;
use connectors::queue::RedisQueue;
use connectors::Purpose;
use tokio::signal::unix::{signal, SignalKind};

use crate::project::ProjectArgs;

#[derive(Debug, Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub project: ProjectArgs,

    /// The queue: redis://[:password@]host:port[/db].
    #[arg(long, env = "TIDEMARK_QUEUE")]
    pub queue: String,

    /// A job whose worker has been silent this long is taken over by another worker.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub lease: Duration,

    /// A job delivered this many times without being finished (its workers died, or its
    /// commit kept failing) is given up: journaled as failed and moved to the dead-letter
    /// stream, so one poison job cannot circle forever.
    #[arg(long, default_value_t = 5)]
    pub max_deliveries: u64,

    /// Exit after this long without a job (default: keep waiting).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub exit_when_idle: Option<Duration>,
}

pub async fn run(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let config = args.project.config()?;
    let sources = config.sources().map_err(anyhow::Error::msg)?;
    let clients = connectors::build_sources(&sources, Purpose::Fetch)?;
    let warehouse = args.project.open(&config).await?;
    let queue = RedisQueue::connect(&args.queue, warehouse.url().as_str()).await?;
    // Workers on one credential respect one rate limit: a pause any of them is told to take
    // is taken by all.
    let shared: Arc<dyn connectors::throttle::SharedThrottle> = Arc::new(queue.throttle_state());
    for client in &clients {
        client.throttle().share_with(Arc::clone(&shared));
    }
    let consumer = engine::lease::process_id();
    eprintln!("worker {consumer} taking jobs from {}", queue.server());
    tracing::info!(consumer, queue = queue.server(), "worker started");
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut idle_since = Instant::now();
    let mut done = 0usize;
    loop {
        let delivery = match queue.reclaim(&consumer, args.lease).await? {
            Some(d) => {
                tracing::warn!(job = %d.unit, run = %d.run, "took over a job whose worker went silent");
                let deliveries = queue.deliveries(&d.id).await?;
                if deliveries > args.max_deliveries {
                    let reason = format!(
                        "given up after {deliveries} deliveries: its workers died or its commit failed each time (see the workers' logs)"
                    );
                    tracing::error!(job = %d.unit, run = %d.run, deliveries, "{reason}; moved to the dead-letter stream");
                    Journal::new(warehouse.storage().store(), &d.run)?
                        .mark_unloaded(&d.unit, "failed", &reason)
                        .await?;
                    queue.dead_letter(&d, &reason).await?;
                    continue;
                }
                Some(d)
            }
            None => tokio::select! {
                next = queue.next(&consumer, Duration::from_secs(1)) => next?,
                _ = terminate.recv() => break,
                _ = interrupt.recv() => break,
            },
        };
        let Some(job) = delivery else {
            if args
                .exit_when_idle
                .is_some_and(|idle| idle_since.elapsed() >= idle)
            {
                break;
            }
            continue;
        };
        let Some(source) = clients.iter().find(|s| s.name() == job.unit.source) else {
            tracing::error!(job = %job.unit, "this worker's tidemark.toml has no such source; leaving the job to others");
            continue;
        };
        let heartbeat = {
            let (queue, consumer, id, every) = (
                queue.clone(),
                consumer.clone(),
                job.id.clone(),
                args.lease / 3,
            );
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    if let Err(e) = queue.heartbeat(&consumer, &id).await {
                        tracing::warn!(error = %e, "heartbeat failed");
                    }
                }
            })
        };
        let work = connectors::sync::run_single_job(
            &warehouse,
            Arc::clone(source),
            &job.run,
            job.unit.clone(),
        );
        tokio::pin!(work);
        let mut stopping = false;
        let result = loop {
            tokio::select! {
                result = &mut work => break result,
                _ = terminate.recv() => { stopping = true; tracing::info!("signal received: finishing the current job"); }
                _ = interrupt.recv() => { stopping = true; tracing::info!("signal received: finishing the current job"); }
            }
        };
        heartbeat.abort();
        match result {
            Ok(r) => {
                tracing::info!(job = %r.unit, run = %job.run, outcome = %r.outcome, rows = r.rows, reason = r.reason.as_deref().unwrap_or(""), "job done");
                queue.ack(&job.id).await?;
                done += 1;
            }
            Err(e) => {
                // Not acked: another worker (or this one) takes it over after the lease.
                tracing::error!(job = %job.unit, run = %job.run, error = %e, "job failed to commit; leaving it for a retry");
            }
        }
        idle_since = Instant::now();
        if stopping {
            break;
        }
    }
    eprintln!("worker {consumer} stopped after {done} job(s)");
    Ok(ExitCode::SUCCESS)
}
