//! Prometheus metrics of the scheduler, served on `/metrics`: jobs and rows per source,
//! throttling, failures, sync runs, and freshness (lag) per source and account.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use connectors::status::Status;
use connectors::sync::SyncReport;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    source: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AccountLabels {
    source: String,
    account: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    task: String,
    result: String,
}

/// The scheduler's metrics.
pub struct Metrics {
    registry: Registry,
    runs: Family<ResultLabels, Counter>,
    jobs: Family<JobLabels, Counter>,
    rows: Family<SourceLabels, Counter>,
    requests: Family<SourceLabels, Counter>,
    throttled: Family<SourceLabels, Counter>,
    throttle_wait: Family<SourceLabels, Counter<f64, AtomicU64>>,
    lag: Family<AccountLabels, Gauge>,
    last_success: Family<AccountLabels, Gauge>,
    queue: Gauge,
    tasks: Family<TaskLabels, Counter>,
    gap_days: Gauge,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tidemark");
        let m = Metrics {
            runs: Family::default(),
            jobs: Family::default(),
            rows: Family::default(),
            requests: Family::default(),
            throttled: Family::default(),
            throttle_wait: Family::default(),
            lag: Family::default(),
            last_success: Family::default(),
            queue: Gauge::default(),
            tasks: Family::default(),
            gap_days: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "sync_runs",
            "Sync runs by result (clean, incomplete, error)",
            m.runs.clone(),
        );
        registry.register(
            "jobs",
            "Jobs finished by source and outcome (loaded, quarantined, failed)",
            m.jobs.clone(),
        );
        registry.register("rows", "Rows loaded into ad_performance", m.rows.clone());
        registry.register(
            "requests",
            "Requests sent to the platform",
            m.requests.clone(),
        );
        registry.register(
            "throttled",
            "Throttled answers from the platform",
            m.throttled.clone(),
        );
        registry.register(
            "throttle_wait_seconds",
            "Time waited because of throttling",
            m.throttle_wait.clone(),
        );
        registry.register(
            "freshness_lag_days",
            "Days between the freshest loaded day and today",
            m.lag.clone(),
        );
        registry.register(
            "last_success_timestamp_seconds",
            "When a job of the account last committed (Unix time)",
            m.last_success.clone(),
        );
        registry.register(
            "queue_depth",
            "Jobs planned and not committed",
            m.queue.clone(),
        );
        registry.register(
            "scheduler_tasks",
            "Scheduler tasks run (sync, gap_fill, mart_refresh, compaction) by result (ok, error)",
            m.tasks.clone(),
        );
        registry.register(
            "gap_days",
            "Days of the configured history the slice ledger lacks (after the last gap fill)",
            m.gap_days.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Count what a sync did.
    pub fn record_sync(&self, report: &SyncReport) {
        let result = if report.is_clean() {
            "clean"
        } else {
            "incomplete"
        };
        self.runs
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc();
        for s in &report.sources {
            let source = SourceLabels {
                source: s.source.clone(),
            };
            let job = |outcome: &str, n: usize| {
                self.jobs
                    .get_or_create(&JobLabels {
                        source: s.source.clone(),
                        outcome: outcome.into(),
                    })
                    .inc_by(n as u64);
            };
            job("loaded", s.loaded_units);
            job("quarantined", s.quarantined.len());
            job("failed", s.failed.len());
            self.rows.get_or_create(&source).inc_by(s.rows as u64);
            self.requests.get_or_create(&source).inc_by(s.http.requests);
            self.throttled
                .get_or_create(&source)
                .inc_by(s.http.throttled);
            self.throttle_wait
                .get_or_create(&source)
                .inc_by(s.http.waited_ms as f64 / 1000.0);
        }
    }

    /// A scheduler task finished.
    pub fn record_task(&self, task: &str, ok: bool) {
        self.tasks
            .get_or_create(&TaskLabels {
                task: task.into(),
                result: if ok { "ok" } else { "error" }.into(),
            })
            .inc();
    }

    /// Days still missing from the history.
    pub fn record_gap_days(&self, days: usize) {
        self.gap_days.set(days as i64);
    }

    /// A sync that could not run at all.
    pub fn record_error(&self) {
        self.runs
            .get_or_create(&ResultLabels {
                result: "error".into(),
            })
            .inc();
    }

    /// Freshness after a sync.
    pub fn record_status(&self, status: &Status) {
        for a in &status.accounts {
            let labels = AccountLabels {
                source: a.source.clone(),
                account: a.account.clone(),
            };
            if let Some(lag) = a.lag_days {
                self.lag.get_or_create(&labels).set(lag);
            }
            if let Some(t) = a.last_success {
                self.last_success.get_or_create(&labels).set(t.timestamp());
            }
        }
        self.queue.set(status.queue_depth as i64);
    }

    /// Also report what `collector` gathers at each scrape.
    pub fn with_collector(
        mut self,
        collector: Box<dyn prometheus_client::collector::Collector>,
    ) -> Self {
        self.registry.register_collector(collector);
        self
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Serve `/metrics` on `addr` until the process ends.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> anyhow::Result<SocketAddr> {
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot serve metrics on {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let metrics = Arc::clone(&metrics);
            async move {
                (
                    [(
                        "content-type",
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    metrics.encode(),
                )
            }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    Ok(bound)
}

/// The Flight SQL endpoint's counters, read at each scrape.
#[derive(Debug)]
pub struct FlightCollector(pub Arc<sql::flight::FlightMetrics>);

impl prometheus_client::collector::Collector for FlightCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        use std::sync::atomic::Ordering::Relaxed;
        let m = &self.0;
        for (name, help, value) in [
            (
                "flight_queries",
                "Queries started over Flight SQL",
                &m.queries,
            ),
            (
                "flight_failed_queries",
                "Flight SQL queries that ended in an error",
                &m.failed_queries,
            ),
            (
                "flight_rows_sent",
                "Rows sent to Flight SQL clients",
                &m.rows_sent,
            ),
            (
                "flight_failed_logins",
                "Logins refused for a wrong user or password",
                &m.failed_logins,
            ),
            (
                "flight_result_cache_hits",
                "Statements answered from the result cache",
                &m.result_cache_hits,
            ),
            (
                "flight_result_cache_misses",
                "Cacheable statements the result cache had no answer for",
                &m.result_cache_misses,
            ),
        ] {
            let counter = ConstCounter::new(value.load(Relaxed));
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        for (name, help, value) in [
            (
                "flight_running_queries",
                "Flight SQL queries streaming results now",
                m.running_queries.load(Relaxed),
            ),
            (
                "flight_result_cache_bytes",
                "Bytes of finished results the result cache holds",
                m.result_cache_bytes.load(Relaxed),
            ),
        ] {
            let gauge = ConstGauge::new(value as i64);
            let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(metric)?;
        }
        Ok(())
    }
}
