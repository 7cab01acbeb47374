//! `tidemark run` on a compressed clock (one real second is one scheduled hour): syncs every
//! hour, backfills the history the slice ledger lacks, refreshes the project's marts after
//! each sync, compacts once when the clock passes
//! 03:00, serves metrics, refuses a second scheduler on the same warehouse, and on SIGTERM
//! finishes cleanly and releases its lease.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use connectors::sim::SimConfig;

use crate::support::free_port;

/// The scheduler process, killed if the test ends early (a failed assertion must not leave
/// a scheduler running).
struct Scheduler(Option<std::process::Child>);

impl Drop for Scheduler {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn metrics(port: u16) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    use std::io::Write;
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    Some(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_syncs_serves_metrics_holds_its_lease_and_stops_on_sigterm() {
    // The clock starts at 22:00 on Nov 1 and runs 3600× fast: 03:00 on Nov 2 comes 5 s in.
    let clock_start = "2026-11-01T22:00:00Z";
    let sim = connectors::sim::start_local(SimConfig {
        today: chrono::NaiveDate::from_ymd_opt(2026, 11, 2).unwrap(),
        meta_job_polls: 1,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let project = tempfile::tempdir().unwrap();
    std::fs::write(
        project.path().join("tidemark.toml"),
        format!(
            "warehouse = \"wh\"\n\n[schedule]\nsync_every = \"1h\"\nhistory_days = 10\ncompact_at = \"03:00\"\n\n[sources.meta]\nbase_url = \"{}\"\n\
             access_token = {{ env = \"SIM_META_TOKEN\" }}\naccounts = [\"1000000001\"]\nwindow_days = 3\npoll_interval = \"5ms\"\n",
            sim.base_url()
        ),
    )
    .unwrap();
    std::fs::create_dir_all(project.path().join("marts")).unwrap();
    std::fs::write(
        project.path().join("marts/daily_spend.sql"),
        "-- unique_key = [\"date\", \"source\"]\nSELECT date, source, sum(spend) AS spend FROM ad_performance GROUP BY date, source\n",
    )
    .unwrap();
    let tidemark = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tidemark"));
        cmd.env("RUST_LOG", "warn")
            .env_remove("TIDEMARK_WAREHOUSE")
            .env("TIDEMARK_PROJECT", project.path())
            .env("SIM_META_TOKEN", SimConfig::default().meta_token);
        cmd
    };
    let port = free_port();
    let mut scheduler = Scheduler(Some(
        tidemark()
            .args([
                "run",
                "--metrics-addr",
                &format!("127.0.0.1:{port}"),
                "--clock-start",
                clock_start,
                "--clock-speed",
                "3600",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    ));

    // Eight scheduled hours pass (past 03:00): a sync each hour, one gap fill of the 7 days
    // of history before the window, one compaction.
    let deadline = Instant::now() + Duration::from_secs(120);
    let text = loop {
        let text = tokio::task::spawn_blocking(move || metrics(port))
            .await
            .unwrap();
        if let Some(t) = text
            .filter(|t| t.contains("tidemark_scheduler_tasks_total{task=\"sync\",result=\"ok\"} 8"))
        {
            break t;
        }
        assert!(Instant::now() < deadline, "no eighth sync within 120 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let count = |task: &str| {
        let prefix = format!("tidemark_scheduler_tasks_total{{task=\"{task}\",result=\"ok\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .map(|n| n.trim().parse::<u64>().unwrap())
            .unwrap_or(0)
    };
    assert_eq!(count("compaction"), 1, "{text}");
    assert!(
        count("mart_refresh") >= 7,
        "a mart refresh after each sync: {text}"
    );
    assert!(count("gap_fill") >= 1, "{text}");
    assert!(!text.contains("result=\"error\""), "{text}");
    assert!(text.contains("tidemark_gap_days 0"), "{text}");
    assert!(
        text.contains("tidemark_freshness_lag_days{source=\"meta\",account=\"1000000001\"} 1"),
        "{text}"
    );

    // The first row of a query's CSV answer.
    let answer = |sql: &str| {
        let out = tidemark()
            .args(["sql", "-w", project.path().join("wh").to_str().unwrap()])
            .args(["--format", "csv", "-c", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let csv = String::from_utf8_lossy(&out.stdout).into_owned();
        csv.lines().nth(1).unwrap_or_default().to_string()
    };

    // The slice ledger holds every day of the history, each settling 4 days after it ends.
    assert_eq!(
        answer(
            "SELECT count(DISTINCT date) AS days, \
                    sum(CASE WHEN settles_at = CAST(date + INTERVAL '4 days' AS TIMESTAMP) THEN 1 ELSE 0 END) = count(*) AS settle_ok, \
                    bool_and(settled) AS all_settled \
             FROM tidemark.slices WHERE date BETWEEN DATE '2026-10-23' AND DATE '2026-11-01'"
        ),
        "10,true,true"
    );

    // The mart follows the data: its days are the days synced so far.
    assert_eq!(
        answer("SELECT (SELECT count(DISTINCT date) FROM daily_spend) = (SELECT count(DISTINCT date) FROM ad_performance) AS same_days"),
        "true"
    );

    // A second scheduler on the same warehouse is refused, naming the holder.
    let second = tidemark()
        .args([
            "run",
            "--metrics-addr",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .output()
        .unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("scheduler.lock is held by"), "{stderr}");

    // SIGTERM: the first one finishes and releases the lease.
    let killed = Command::new("kill")
        .args(["-TERM", &scheduler.0.as_ref().unwrap().id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let started = Instant::now();
    let mut child = scheduler.0.take().unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "exit {status}");
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(
        !project.path().join("wh/_tidemark/scheduler.lock").exists(),
        "lease released"
    );
}

#[test]
fn the_scheduler_will_not_start_when_every_source_is_on_a_switched_off_api_version() {
    let project = tempfile::tempdir().unwrap();
    std::fs::write(
        project.path().join("tidemark.toml"),
        "warehouse = \"wh\"\n\n[sources.google_ads]\nbase_url = \"http://127.0.0.1:9\"\napi_version = \"v22\"\n\
         access_token = { env = \"UNUSED_TOKEN\" }\ndeveloper_token = { env = \"UNUSED_DEV\" }\naccounts = [\"1234567001\"]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .env("RUST_LOG", "warn")
        .env_remove("TIDEMARK_WAREHOUSE")
        .env("TIDEMARK_PROJECT", project.path())
        .args(["run", "--clock-start", "2026-11-20T00:00:00Z"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("left out of the schedule: source 'google_ads': Google Ads API v22 was switched off on 2026-10-07")
            && stderr.contains("every source is on an API version that is switched off"),
        "{stderr}"
    );
    assert!(!project.path().join("wh").exists(), "nothing was written");
}
