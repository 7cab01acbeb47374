//! `tidemark sync`: pull each configured source's restatement window and replace its slices;
//! `--replay RUN` rebuilds the tables from a past run's landed payloads without the network.
//!
//! In a terminal a progress bar per source counts units; otherwise progress goes to the log.
//! The summary lists every quarantined payload and failed unit, and the exit code is 1 when
//! there was any.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::{bail, Context};
use chrono::NaiveDate;
use clap::{Args, ValueEnum};
use connectors::config::ResolvedSource;
use connectors::sync::{SyncEvent, SyncOptions, SyncReport};
use connectors::{Purpose, Window};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::project::ProjectArgs;

/// Arguments of `tidemark sync` (the help text is on `cli::Command::Sync`).
#[derive(Debug, Args)]
pub struct SyncArgs {
    #[command(flatten)]
    pub project: ProjectArgs,

    /// Only this source (repeatable).
    #[arg(long = "source", short = 's')]
    pub sources: Vec<String>,

    /// Only this account (repeatable; as written in tidemark.toml).
    #[arg(long = "account", short = 'a')]
    pub accounts: Vec<String>,

    /// First day to pull, instead of each source's window (needs --to).
    #[arg(long, requires = "to")]
    pub from: Option<NaiveDate>,

    /// Last day to pull (needs --from).
    #[arg(long, requires = "from")]
    pub to: Option<NaiveDate>,

    /// Treat this day as today (the window ends the day before). Default: today, UTC.
    #[arg(long, env = "TIDEMARK_TODAY")]
    pub today: Option<NaiveDate>,

    /// Allow --from/--to to reach settled days (older than a source's restatement window).
    /// Settled days are frozen: a sync rewriting them is refused unless it is an explicit
    /// backfill like this (or `tidemark backfill`).
    #[arg(long, requires = "from")]
    pub backfill: bool,

    /// Name the run (default: UTC time plus a random suffix).
    #[arg(long, conflicts_with_all = ["replay", "resume"])]
    pub run: Option<String>,

    /// Resume run RUN where it stopped (after a crash or kill): committed jobs are skipped,
    /// jobs whose pages all landed load from raw/, the rest are fetched again.
    #[arg(long, value_name = "RUN", conflicts_with_all = ["replay", "from", "to", "today"])]
    pub resume: Option<String>,

    /// Jobs (account × chunk of days) in flight at once, across sources.
    #[arg(long, default_value_t = SyncOptions::DEFAULT_WORKERS, env = "TIDEMARK_WORKERS")]
    pub workers: usize,

    /// Jobs per commit: each source's loaded jobs are committed in batches of this size
    /// (default 50; a resumed run keeps the size it was started with).
    #[arg(long)]
    pub commit_every: Option<usize>,

    /// Rebuild the tables from run RUN's payloads in raw/ (no network, no credentials).
    #[arg(long, value_name = "RUN")]
    pub replay: Option<String>,

    /// Distribute the jobs through this Redis Streams queue (redis://host:port) to
    /// `tidemark worker` processes, and wait until they have done them all.
    #[arg(long, env = "TIDEMARK_QUEUE", conflicts_with_all = ["replay", "resume"])]
    pub queue: Option<String>,

    /// Summary format on stdout.
    #[arg(long, value_enum, default_value_t = SummaryFormat::Text)]
    pub format: SummaryFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SummaryFormat {
    Text,
    Json,
}

/// Progress bars per source in a terminal (jobs, rows, requests, throttling, ETA); log
/// lines otherwise.
struct Progress {
    bars: Option<(MultiProgress, Mutex<HashMap<String, SourceBar>>)>,
}

/// One source's bar and the totals it shows.
struct SourceBar {
    bar: ProgressBar,
    rows: usize,
    http: connectors::throttle::StatsSnapshot,
}

impl SourceBar {
    fn show(&self, last: &str) {
        self.bar.set_message(format!(
            "{} rows, {} requests, {} throttled (waited {}){last}",
            self.rows,
            self.http.requests,
            self.http.throttled,
            connectors::sync::human(self.http.waited_ms as f64 / 1000.0),
        ));
    }
}

impl Progress {
    fn new() -> Self {
        let bars = std::io::stderr()
            .is_terminal()
            .then(|| (MultiProgress::new(), Mutex::new(HashMap::new())));
        Progress { bars }
    }

    /// Remove the bars before the summary is printed.
    fn clear(&self) {
        if let Some((multi, bars)) = &self.bars {
            for entry in bars.lock().expect("bars").values() {
                entry.bar.finish_and_clear();
            }
            multi.clear().ok();
        }
    }

    fn on_event(&self, event: SyncEvent<'_>) {
        match (&self.bars, event) {
            (Some((multi, bars)), SyncEvent::Planned { source, units }) => {
                let bar = multi.add(ProgressBar::new(units as u64));
                bar.set_style(
                    ProgressStyle::with_template(
                        "{prefix:>12} [{bar:25}] {pos}/{len} jobs  {msg}  ({elapsed}, eta {eta})",
                    )
                    .expect("static template")
                    .progress_chars("=> "),
                );
                bar.set_prefix(source.to_string());
                let entry = SourceBar {
                    bar,
                    rows: 0,
                    http: Default::default(),
                };
                entry.show("");
                bars.lock().expect("bars").insert(source.to_string(), entry);
            }
            (
                Some((_, bars)),
                SyncEvent::UnitDone {
                    source,
                    unit,
                    rows,
                    outcome,
                    http,
                },
            ) => {
                if let Some(entry) = bars.lock().expect("bars").get_mut(source) {
                    entry.bar.inc(1);
                    entry.rows += rows;
                    if http.requests > 0 {
                        entry.http = http;
                    }
                    let note = if outcome == "loaded" {
                        String::new()
                    } else {
                        format!("; {} {outcome}", unit.account)
                    };
                    entry.show(&note);
                }
            }
            (
                Some((_, bars)),
                SyncEvent::Committed {
                    source,
                    table,
                    version,
                },
            ) => {
                if let Some(entry) = bars.lock().expect("bars").get(source) {
                    entry.show(&format!("; committed {table} v{version}"));
                }
            }
            (None, SyncEvent::Planned { source, units }) => {
                tracing::info!(source, units, "planned");
            }
            (
                None,
                SyncEvent::UnitDone {
                    source,
                    unit,
                    rows,
                    outcome,
                    http,
                },
            ) => {
                tracing::info!(source, unit = %unit, rows, outcome, requests = http.requests, throttled = http.throttled, waited_ms = http.waited_ms, "job done");
            }
            (
                None,
                SyncEvent::Committed {
                    source,
                    table,
                    version,
                },
            ) => {
                tracing::info!(source, table, version, "committed");
            }
        }
    }
}

fn selected(all: Vec<ResolvedSource>, only: &[String]) -> anyhow::Result<Vec<ResolvedSource>> {
    if only.is_empty() {
        return Ok(all);
    }
    for name in only {
        if !all.iter().any(|s| &s.name == name) {
            let known: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
            bail!(
                "no source {name:?} in tidemark.toml (configured: {})",
                known.join(", ")
            );
        }
    }
    Ok(all.into_iter().filter(|s| only.contains(&s.name)).collect())
}

/// What a user reads when a run stops on an error: its committed jobs stay, and how to go on.
fn stopped(run: &str) -> String {
    format!(
        "run {run} stopped: the jobs it committed are kept, the others are not; \
         `tidemark sync --resume {run}` finishes it once the cause below is fixed (or has passed)"
    )
}

/// Warn (once per run and source) about API versions that sunset within 30 days; refuse a
/// run that would call a version the platform has switched off, naming the one to move to.
fn refuse_retired_versions(sources: &[ResolvedSource], today: NaiveDate) -> anyhow::Result<()> {
    let review = connectors::api_versions::review(sources, today);
    for warning in &review.warnings {
        tracing::warn!("{warning}");
    }
    if !review.refused.is_empty() {
        let reasons: Vec<&str> = review.refused.iter().map(|(_, why)| why.as_str()).collect();
        bail!("{}", reasons.join("\n"));
    }
    Ok(())
}

pub async fn run(args: SyncArgs) -> anyhow::Result<ExitCode> {
    let config = args.project.config()?;
    let sources = selected(config.sources().map_err(anyhow::Error::msg)?, &args.sources)?;
    if sources.is_empty() {
        bail!("tidemark.toml configures no sources: add a [sources.NAME] section");
    }
    let purpose = if args.replay.is_some() {
        Purpose::Replay
    } else {
        Purpose::Fetch
    };
    if purpose == Purpose::Fetch {
        // The day the run treats as today (a resumed run calls the platforms now).
        let today = match &args.resume {
            Some(_) => chrono::Utc::now().date_naive(),
            None => args
                .today
                .unwrap_or_else(|| chrono::Utc::now().date_naive()),
        };
        refuse_retired_versions(&sources, today)?;
    }
    let clients = connectors::build_sources(&sources, purpose)?;
    let warehouse = args.project.open(&config).await?;
    let progress = Progress::new();
    let on_event = |e: SyncEvent<'_>| progress.on_event(e);
    let report = match (&args.replay, &args.resume) {
        (Some(run), _) => connectors::sync::replay(&warehouse, &clients, run, &on_event).await?,
        (None, Some(run)) => {
            let planned = connectors::journal::Journal::new(warehouse.storage().store(), run)?
                .plan()
                .await
                .map_err(|e| {
                    // The store failing to give the plan back is worth another try; a run
                    // that does not exist is not.
                    let storage = e.is_storage();
                    let e = anyhow::Error::new(e);
                    if storage {
                        e.context(stopped(run))
                    } else {
                        e
                    }
                })?
                .commit_every;
            let options = SyncOptions {
                run: run.clone(),
                today: chrono::Utc::now().date_naive(),
                window: None,
                accounts: None,
                workers: args.workers,
                commit_every: args
                    .commit_every
                    .or(planned)
                    .unwrap_or(SyncOptions::DEFAULT_COMMIT_EVERY),
            };
            connectors::sync::resume(&warehouse, &clients, run, &options, &on_event)
                .await
                .with_context(|| stopped(run))?
        }
        (None, None) => {
            let today = args
                .today
                .unwrap_or_else(|| chrono::Utc::now().date_naive());
            let explicit = match (args.from, args.to) {
                (Some(from), Some(to)) => Some(
                    Window::new(from, to)
                        .ok_or_else(|| anyhow::anyhow!("--from {from} is after --to {to}"))?,
                ),
                _ => None,
            };
            if let (Some(window), false) = (explicit, args.backfill) {
                refuse_settled_days(&sources, window, today)?;
            }
            let windows: Vec<Window> = sources
                .iter()
                .map(|s| explicit.unwrap_or_else(|| Window::trailing_days(today, s.window_days())))
                .collect();
            let accounts = (!args.accounts.is_empty()).then(|| {
                sources
                    .iter()
                    .flat_map(|s| {
                        args.accounts
                            .iter()
                            .map(|a| connectors::config::normalize_account_id(s.platform, a))
                    })
                    .collect()
            });
            let run = args.run.clone().unwrap_or_else(connectors::raw::new_run_id);
            eprintln!("run {run} (if it is interrupted: tidemark sync --resume {run})");
            let options = SyncOptions {
                run,
                today,
                window: explicit,
                accounts,
                workers: args.workers,
                commit_every: args
                    .commit_every
                    .unwrap_or(SyncOptions::DEFAULT_COMMIT_EVERY),
            };
            if let Some(queue) = &args.queue {
                return distribute(&warehouse, &clients, &windows, &options, queue, args.format)
                    .await;
            }
            connectors::sync::sync(&warehouse, &clients, &windows, &options, &on_event)
                .await
                .with_context(|| stopped(&options.run))?
        }
    };
    progress.clear();
    match args.format {
        SummaryFormat::Json => crate::outln!("{}", serde_json::to_string_pretty(&report)?),
        SummaryFormat::Text => print_summary(&report),
    }
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_summary(report: &SyncReport) {
    let verb = if report.replay { "replayed" } else { "synced" };
    crate::outln!("run {} {verb}", report.run);
    crate::outln!(
        "{:<12} {:>23} {:>9} {:>8} {:>8} {:>9} {:>7} {:>8}  {}",
        "source",
        "window",
        "units",
        "rows",
        "slices",
        "requests",
        "throttled",
        "waited",
        "commits"
    );
    for s in &report.sources {
        let window = s.window.map_or("(landed)".to_string(), |w| w.to_string());
        let commits: Vec<String> = s.commits.iter().map(|(t, v)| format!("{t} v{v}")).collect();
        crate::outln!(
            "{:<12} {:>23} {:>9} {:>8} {:>8} {:>9} {:>9} {:>8}  {}",
            s.source,
            window,
            format!("{}/{}", s.loaded_units + s.already_committed, s.units),
            s.rows,
            s.slices,
            s.http.requests,
            s.http.throttled,
            connectors::sync::human(s.http.waited_ms as f64 / 1000.0),
            if commits.is_empty() {
                "-".to_string()
            } else {
                commits.join(", ")
            }
        );
    }
    for s in &report.sources {
        if s.already_committed > 0 {
            crate::outln!(
                "{}: {} of {} jobs were committed by an earlier attempt and skipped",
                s.source,
                s.already_committed,
                s.units
            );
        }
        for q in &s.quarantined {
            crate::outln!(
                "QUARANTINED {} page {}: {} (kept in {})",
                q.unit,
                q.page.map_or("-".into(), |p| p.to_string()),
                q.reason,
                q.path
            );
        }
        for f in &s.failed {
            crate::outln!("FAILED {}: {}", f.unit, f.reason);
        }
    }
    if report.sources.iter().any(|s| !s.failed.is_empty()) && !report.replay {
        crate::outln!(
            "`tidemark sync --resume {}` retries the failed jobs; the committed ones are kept",
            report.run
        );
    }
    for u in &report.incomplete {
        crate::outln!(
            "INCOMPLETE {u}: the run was cut short before every page landed; not replayed"
        );
    }
}

/// The settled-day guard: days older than a source's restatement window are frozen, so a
/// sync whose range reaches one is refused (an explicit backfill may rewrite them).
fn refuse_settled_days(
    sources: &[connectors::config::ResolvedSource],
    window: Window,
    today: NaiveDate,
) -> anyhow::Result<()> {
    for source in sources {
        let window_start = Window::trailing_days(today, source.window_days()).since;
        if window.since < window_start {
            let last_settled = window_start.pred_opt().unwrap_or(window_start);
            bail!(
                "{} to {} is settled for {} (older than its {}-day restatement window, which starts {window_start}); \
                 settled days are frozen. To rewrite them on purpose run an explicit backfill: \
                 tidemark backfill --from {} --to {} (or add --backfill)",
                window.since,
                window.until.min(last_settled),
                source.name,
                source.window_days(),
                window.since,
                window.until
            );
        }
    }
    Ok(())
}

/// Arguments of `tidemark backfill`.
#[derive(Debug, Args)]
pub struct BackfillArgs {
    #[command(flatten)]
    pub project: ProjectArgs,

    /// First day of the range.
    #[arg(long)]
    pub from: NaiveDate,

    /// Last day of the range.
    #[arg(long)]
    pub to: NaiveDate,

    /// Only this source (repeatable).
    #[arg(long = "source", short = 's')]
    pub sources: Vec<String>,

    /// Only this account (repeatable; as written in tidemark.toml).
    #[arg(long = "account", short = 'a')]
    pub accounts: Vec<String>,

    /// Name the run (default: UTC time plus a random suffix); resume it with
    /// `tidemark sync --resume RUN`.
    #[arg(long)]
    pub run: Option<String>,

    /// Jobs (account × chunk of days) in flight at once, across sources.
    #[arg(long, default_value_t = SyncOptions::DEFAULT_WORKERS, env = "TIDEMARK_WORKERS")]
    pub workers: usize,

    /// Jobs per commit.
    #[arg(long, default_value_t = SyncOptions::DEFAULT_COMMIT_EVERY)]
    pub commit_every: usize,

    /// Summary format on stdout.
    #[arg(long, value_enum, default_value_t = SummaryFormat::Text)]
    pub format: SummaryFormat,
}

/// `tidemark backfill`: a sync of an explicit historical range, in the same resumable jobs.
pub async fn backfill(args: BackfillArgs) -> anyhow::Result<ExitCode> {
    if args.from > args.to {
        bail!("--from {} is after --to {}", args.from, args.to);
    }
    run(SyncArgs {
        project: args.project,
        sources: args.sources,
        accounts: args.accounts,
        from: Some(args.from),
        to: Some(args.to),
        today: None,
        backfill: true,
        run: args.run,
        replay: None,
        resume: None,
        queue: None,
        workers: args.workers,
        commit_every: Some(args.commit_every),
        format: args.format,
    })
    .await
}

/// Plan the run, put its jobs on the queue and wait until workers have committed or
/// journaled every one of them.
async fn distribute(
    warehouse: &engine::Warehouse,
    clients: &[std::sync::Arc<dyn connectors::source::Source>],
    windows: &[Window],
    options: &SyncOptions,
    queue_url: &str,
    format: SummaryFormat,
) -> anyhow::Result<ExitCode> {
    let queue = connectors::queue::RedisQueue::connect(queue_url, warehouse.url().as_str()).await?;
    let plan = connectors::sync::plan_run(warehouse, clients, windows, options).await?;
    for job in &plan.jobs {
        queue.enqueue(&plan.run, job).await?;
    }
    let total = plan.jobs.len();
    eprintln!(
        "run {}: {total} job(s) queued on {}; waiting for workers (Ctrl-C stops waiting, the workers go on)",
        plan.run,
        queue.server()
    );
    let journal = connectors::journal::Journal::new(warehouse.storage().store(), &plan.run)?;
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(total as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "[{bar:30}] {pos}/{len} jobs  {msg} ({elapsed}, eta {eta})",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        bar
    });
    let (committed, unloaded) = loop {
        let committed = journal.committed().await?.len();
        let unloaded = journal.unloaded().await?;
        if let Some(bar) = &bar {
            bar.set_position((committed + unloaded.len()) as u64);
            bar.set_message(format!(
                "{} in progress",
                queue.pending().await.unwrap_or(0)
            ));
        }
        if committed + unloaded.len() >= total {
            break (committed, unloaded);
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {},
            _ = tokio::signal::ctrl_c() => {
                eprintln!("stopped waiting; run {} goes on in the workers (see tidemark status)", plan.run);
                return Ok(ExitCode::FAILURE);
            }
        }
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if format == SummaryFormat::Json {
        crate::outln!(
            "{}",
            serde_json::json!({"run": plan.run, "jobs": total, "committed": committed, "unloaded": unloaded})
        );
    } else {
        crate::outln!(
            "run {} done by workers: {committed} of {total} job(s) committed",
            plan.run
        );
        for u in &unloaded {
            crate::outln!("{} {}: {}", u.outcome.to_uppercase(), u.unit, u.reason);
        }
    }
    Ok(if unloaded.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
