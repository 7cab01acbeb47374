//! Distributed collection on Redis Streams: `tidemark sync --queue` puts a run's jobs on the
//! queue and waits; `tidemark worker` processes do them. A worker killed in the middle of a
//! job loses nothing: after the lease another worker takes the job over (XAUTOCLAIM), and
//! every row ends up in the warehouse exactly once.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use connectors::sim::SimConfig;

use crate::support::hold_at_failpoint;

/// A redis-server on a free loopback port, killed on drop.
pub(crate) struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    pub(crate) fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (.ci/run installs it with apt-get)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Redis { child, port }
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A project on the simulators, a redis-server, and the `tidemark` commands that use them.
struct QueueSetup {
    redis: Redis,
    sim: connectors::sim::RunningSim,
    project: tempfile::TempDir,
}

impl QueueSetup {
    /// The simulators and the usual two-source project (8 jobs for 2026-11-20).
    async fn new() -> Self {
        let redis = Redis::start();
        let sim = crate::resume::start_sim().await;
        let project = crate::resume::project_for(&sim);
        QueueSetup {
            redis,
            sim,
            project,
        }
    }

    fn tidemark(&self) -> Command {
        let mut cmd = crate::resume::tidemark(self.project.path());
        cmd.env_remove("TIDEMARK_QUEUE");
        cmd
    }

    /// `tidemark sync --queue` for 2026-11-20 with a JSON summary, running.
    fn queued_sync(&self, extra: &[&str]) -> Child {
        self.tidemark()
            .args(["sync", "--today", "2026-11-20", "--format", "json"])
            .args(extra)
            .arg("--queue")
            .arg(self.redis.url())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// A worker takes a job, lands its pages, and is killed just before committing it.
    async fn worker_dies_holding_a_job(&self, lease: &str) {
        let mut worker = self.tidemark();
        worker
            .args(["worker", "--lease", lease, "--queue"])
            .arg(self.redis.url());
        tokio::task::spawn_blocking(move || {
            let mut child = hold_at_failpoint(&mut worker, "replace.before-commit");
            child.kill().unwrap();
            child.wait().unwrap();
        })
        .await
        .unwrap();
    }

    /// Run a worker with `args` until it exits; its stderr at log level warn.
    async fn worker(&self, args: &[&str]) -> String {
        let mut worker = self.tidemark();
        worker
            .arg("worker")
            .args(args)
            .arg("--queue")
            .arg(self.redis.url())
            .env("RUST_LOG", "warn");
        let out = tokio::task::spawn_blocking(move || worker.output().unwrap())
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        stderr
    }

    /// Every row the simulators report for the 14-day window is in the warehouse exactly once.
    async fn assert_truth(&self) {
        let window = connectors::Window::trailing_days("2026-11-20".parse().unwrap(), 14);
        let expected = crate::resume::reported_rows(&self.sim, window);
        assert_eq!(
            crate::resume::counts(self.project.path(), "true").await,
            format!("{expected},{expected}")
        );
    }
}

/// Wait (up to two minutes) for a queued sync to end; its output.
async fn finish(sync: Child) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        let mut sync = sync;
        let deadline = Instant::now() + Duration::from_secs(120);
        while sync.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "sync --queue did not finish");
            std::thread::sleep(Duration::from_millis(100));
        }
        sync.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

/// The JSON summary of a successful queued sync.
fn summary_of(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_share_a_run_and_take_over_a_dead_workers_job() {
    let setup = QueueSetup::new().await;
    let sync = setup.queued_sync(&["--run", "dist"]);

    // Worker A takes a job, lands its pages, and dies just before committing it.
    setup.worker_dies_holding_a_job("2s").await;

    // Worker B does the rest, and A's job once A's lease has run out.
    let b_err = setup
        .worker(&["--lease", "2s", "--exit-when-idle", "5s"])
        .await;
    assert!(
        b_err.contains("took over a job whose worker went silent"),
        "{b_err}"
    );

    let summary = summary_of(&finish(sync).await);
    assert_eq!(summary["jobs"], 8, "{summary}");
    assert_eq!(summary["committed"], 8, "{summary}");
    setup.assert_truth().await;
}

/// Two processes' throttles on one credential: when one is told to wait, the other waits too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttle_pause_is_shared_through_redis() {
    use connectors::throttle::{generic_verdict, Limits, SharedThrottle, Throttle};
    use std::sync::Arc;

    let redis = Redis::start();
    let sim = connectors::sim::start_local(SimConfig::default())
        .await
        .unwrap();
    let warehouse = format!("memory://shared-pause-{}", std::process::id());
    let queue = connectors::queue::RedisQueue::connect(&redis.url(), &warehouse)
        .await
        .unwrap();
    let shared: Arc<dyn SharedThrottle> = Arc::new(queue.throttle_state());
    let (a, b) = (
        Throttle::new("meta/abcd1234", Limits::default()),
        Throttle::new("meta/abcd1234", Limits::default()),
    );
    a.share_with(Arc::clone(&shared));
    b.share_with(Arc::clone(&shared));

    a.pause(Duration::from_millis(1500), "told to slow down");
    let deadline = Instant::now() + Duration::from_secs(5);
    while shared.read("meta/abcd1234").await.is_none() {
        assert!(Instant::now() < deadline, "the pause never reached redis");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let http = reqwest::Client::new();
    let url = format!("{}/_sim/clock", sim.base_url());
    let started = Instant::now();
    b.send("GET /_sim/clock", || http.get(&url), generic_verdict)
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "b waited only {:?}",
        started.elapsed()
    );
    assert!(b.stats().waited_ms >= 1000, "{:?}", b.stats());
}

/// Four workers on one credential paced at `max_requests_per_second`: together they stay
/// within the platform's limit (the simulator counts arrivals in every one-second window).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_workers_together_keep_one_credentials_rate_limit() {
    use connectors::config::Platform;
    use connectors::sim::faults::Faults;

    const ALLOWED: u32 = 20;
    const PACE: u32 = 15;
    let setup = QueueSetup::new().await;
    setup.sim.world.set_faults(
        Platform::Meta,
        Faults {
            rate_limit_per_second: ALLOWED,
            ..Faults::default()
        },
    );
    std::fs::write(
        setup.project.path().join("tidemark.toml"),
        format!(
            "warehouse = \"wh\"\n\n[sources.meta]\nbase_url = \"{}\"\naccess_token = {{ env = \"SIM_META_TOKEN\" }}\n\
             accounts = [\"1000000001\", \"1000000002\"]\nwindow_days = 10\nchunk_days = 1\npoll_interval = \"5ms\"\n\
             max_concurrency = 4\nmax_requests_per_second = {PACE}\n",
            setup.sim.base_url()
        ),
    )
    .unwrap();
    let started = Instant::now();
    let sync = setup.queued_sync(&[]);
    let workers = (0..4).map(|_| setup.worker(&["--exit-when-idle", "3s"]));
    let timed = async {
        let out = finish(sync).await;
        (out, started.elapsed())
    };
    let ((out, elapsed), _) = tokio::join!(timed, futures::future::join_all(workers));
    let summary = summary_of(&out);
    assert_eq!(summary["committed"], 20, "{summary}");

    let sim = &setup.sim;
    let stats = sim.world.stats(Platform::Meta);
    println!(
        "4 workers, one credential: {} requests in {:.1} s, peak {} requests in one second; allowed {ALLOWED}/s, paced at {PACE}/s; throttled answers: {}",
        stats.requests,
        elapsed.as_secs_f64(),
        stats.peak_requests_per_second,
        stats.throttled
    );
    assert!(
        stats.peak_requests_per_second <= u64::from(ALLOWED),
        "peak {} > allowed {ALLOWED}",
        stats.peak_requests_per_second
    );
    assert_eq!(
        stats.throttled, 0,
        "the platform never had to refuse a request"
    );
}

/// Three workers on one queue; one of them is killed with SIGKILL mid-download three times
/// (and started again each time). No job is lost, none is committed twice, and the tables
/// equal the simulators' truth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_one_killed_again_and_again_lose_and_double_nothing() {
    use connectors::config::Platform;
    use connectors::sim::faults::Faults;

    let setup = QueueSetup::new().await;
    // Slow answers, so a kill lands in the middle of a download.
    for platform in [Platform::Meta, Platform::GoogleAds] {
        setup.sim.world.set_faults(
            platform,
            Faults {
                slow: 10_000,
                slow_ms: 120,
                ..Faults::default()
            },
        );
    }
    let sync = setup.queued_sync(&[]);
    let steady: Vec<_> = (0..2)
        .map(|_| setup.worker(&["--lease", "2s", "--exit-when-idle", "6s"]))
        .collect();
    let victim = async {
        for delay in crate::resume::delays(0xdead, 3, 300..900) {
            let mut worker = setup
                .tidemark()
                .args(["worker", "--lease", "2s", "--queue"])
                .arg(setup.redis.url())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            tokio::time::sleep(Duration::from_millis(delay)).await;
            worker.kill().unwrap();
            worker.wait().unwrap();
        }
    };
    let (steady_logs, ()) = tokio::join!(futures::future::join_all(steady), victim);
    let summary = summary_of(&finish(sync).await);
    assert_eq!(summary["committed"], 8, "{summary}");
    let takeovers = steady_logs
        .concat()
        .matches("took over a job whose worker went silent")
        .count();
    eprintln!("jobs of the killed worker taken over by the others: {takeovers}");
    assert!(takeovers >= 1, "no kill landed mid-job: {steady_logs:?}");

    setup.assert_truth().await;
    let wh = setup.project.path().join("wh");
    let jobs = |t: &str| crate::resume::committed_jobs(&wh.join(t));
    let mut per_source = [
        jobs("tables/meta_insights"),
        jobs("tables/google_ads_ad_daily"),
    ]
    .concat();
    per_source.sort();
    let distinct: std::collections::BTreeSet<_> = per_source.iter().collect();
    assert_eq!((per_source.len(), distinct.len()), (8, 8), "{per_source:?}");
    assert_eq!(jobs("tables/ad_performance"), per_source);
}

/// A job that keeps coming back (its worker dies each time) is given up after
/// `--max-deliveries`: journaled as failed, moved to the dead-letter stream and acked, so the
/// run ends (non-zero, naming it) instead of the job circling forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_keeps_coming_back_is_dead_lettered() {
    let setup = QueueSetup::new().await;
    let sync = setup.queued_sync(&[]);

    // The first worker dies holding a job (delivery 1); the next allows one delivery, so
    // taking the job over (the second) gives it up.
    setup.worker_dies_holding_a_job("1s").await;
    let b_err = setup
        .worker(&[
            "--lease",
            "1s",
            "--max-deliveries",
            "1",
            "--exit-when-idle",
            "4s",
        ])
        .await;
    assert!(b_err.contains("moved to the dead-letter stream"), "{b_err}");

    let out = finish(sync).await;
    assert!(!out.status.success(), "a given-up job fails the run");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["committed"], 7, "{summary}");
    let unloaded = summary["unloaded"].as_array().unwrap();
    assert_eq!(unloaded.len(), 1, "{summary}");
    assert!(
        unloaded[0]["reason"]
            .as_str()
            .unwrap()
            .contains("given up after 2 deliveries"),
        "{summary}"
    );

    // The dead-letter stream holds it.
    let warehouse = engine::Warehouse::open(
        setup.project.path().join("wh").to_str().unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    let queue =
        connectors::queue::RedisQueue::connect(&setup.redis.url(), warehouse.url().as_str())
            .await
            .unwrap();
    assert_eq!(queue.dead_letters().await.unwrap(), 1);
}
