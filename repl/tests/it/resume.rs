//! A sync killed with SIGKILL between commits resumes with `--resume RUN`: the jobs it had
//! committed are skipped, the rest are loaded (from raw when their pages had landed), and
//! nothing is lost or doubled.

use std::path::Path;
use std::process::Command;

use connectors::config::Platform;
use connectors::sim::SimConfig;
use connectors::Window;

use crate::support::{kill_at_failpoint, meta_and_google_ads_sources};

pub fn tidemark(project: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tidemark"));
    let c = SimConfig::default();
    cmd.env("RUST_LOG", "warn")
        .env_remove("TIDEMARK_WAREHOUSE")
        .env_remove("TIDEMARK_FAILPOINT")
        .env("TIDEMARK_PROJECT", project)
        .env("SIM_META_TOKEN", c.meta_token)
        .env("SIM_GOOGLE_TOKEN", c.google_token)
        .env("SIM_DEV_TOKEN", c.google_developer_token);
    cmd
}

/// A project whose sources are the simulators' (14-day windows, weekly Google chunks).
pub fn project_for(sim: &connectors::sim::RunningSim) -> tempfile::TempDir {
    let project = tempfile::tempdir().unwrap();
    std::fs::write(
        project.path().join("tidemark.toml"),
        format!(
            "warehouse = \"wh\"\n\n{}",
            meta_and_google_ads_sources(
                &sim.base_url(),
                "window_days = 14\npoll_interval = \"5ms\"",
                "window_days = 14\nchunk_days = 7",
            )
        ),
    )
    .unwrap();

    project
}

/// Run `tidemark ARGS` for the project, check it succeeded, and return its stdout.
pub async fn stdout_of(project: &Path, args: &[&str]) -> String {
    let mut cmd = tidemark(project);
    cmd.args(args);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `tidemark status --format json` as of the simulators' today.
async fn status(project: &Path) -> serde_json::Value {
    let out = stdout_of(
        project,
        &["status", "--today", "2026-11-20", "--format", "json"],
    )
    .await;
    serde_json::from_str(&out).unwrap()
}

/// Both simulators at 2026-11-20, Meta report runs completing on the first poll.
pub async fn start_sim() -> connectors::sim::RunningSim {
    connectors::sim::start_local(SimConfig {
        today: "2026-11-20".parse().unwrap(),
        meta_job_polls: 1,
        ..SimConfig::default()
    })
    .await
    .expect("start simulators")
}

/// Rows the simulators report for `window` today.
pub fn reported_rows(sim: &connectors::sim::RunningSim, window: Window) -> usize {
    [Platform::Meta, Platform::GoogleAds]
        .into_iter()
        .map(|platform| {
            sim.world
                .account_ids(platform)
                .iter()
                .map(|a| {
                    sim.world
                        .reported(platform, a, window, sim.world.now())
                        .len()
                })
                .sum::<usize>()
        })
        .sum()
}

/// `count(*)` and distinct (source, account, day, ad) of ad_performance, as "n,d".
pub async fn counts(project: &Path, filter: &str) -> String {
    let sql = format!(
        "SELECT count(*) AS n, count(DISTINCT concat(source, '/', account_id, '/', CAST(date AS VARCHAR), '/', ad_id)) AS d FROM ad_performance WHERE {filter}"
    );
    let wh = project.join("wh").display().to_string();
    stdout_of(project, &["sql", "-w", &wh, "--format", "csv", "-c", &sql])
        .await
        .lines()
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_sync_resumes_without_redoing_or_doubling() {
    let sim = start_sim().await;
    let project = project_for(&sim);

    // 8 jobs, three commits each (per-source table, ad_performance, slice ledger); frozen at
    // the fourth commit (the first job is committed and journaled, the second half-way) and
    // killed.
    let p = project.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut cmd = tidemark(&p);
        cmd.args([
            "sync",
            "--today",
            "2026-11-20",
            "--run",
            "killed",
            "--commit-every",
            "1",
            "--workers",
            "2",
        ]);
        kill_at_failpoint(&mut cmd, "replace.after-commit#4");
    })
    .await
    .unwrap();

    // Status sees the interrupted run: one job committed, seven waiting.
    let before = status(project.path()).await;
    assert_eq!(before["queue_depth"], 7, "{before:#}");
    assert!(before["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["last_run"] == "killed"));

    let resumed = stdout_of(
        project.path(),
        &["sync", "--resume", "killed", "--format", "json"],
    )
    .await;
    let report: serde_json::Value = serde_json::from_str(&resumed).unwrap();
    let sources = report["sources"].as_array().unwrap();
    let sum = |key: &str| {
        sources
            .iter()
            .map(|s| s[key].as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!(sum("units"), 8, "{report:#}");
    assert_eq!(
        sum("already_committed"),
        1,
        "the committed job is skipped: {report:#}"
    );
    assert_eq!(sum("loaded_units"), 7, "{report:#}");
    let commits: usize = sources
        .iter()
        .map(|s| s["commits"].as_array().unwrap().len())
        .sum();
    assert_eq!(
        commits, 14,
        "two data commits for each of the 7 remaining jobs only (the resume kept the run's --commit-every 1)"
    );

    let after = status(project.path()).await;
    assert_eq!(after["queue_depth"], 0, "{after:#}");
    for account in after["accounts"].as_array().unwrap() {
        assert_eq!(account["freshest_day"], "2026-11-19", "{account:#}");
        assert_eq!(account["stalest_day"], "2026-11-06", "{account:#}");
        assert_eq!(account["lag_days"], 1, "{account:#}");
        assert!(account["last_success"].is_string(), "{account:#}");
    }

    // Every row the platforms report for the window is there exactly once.
    let window = Window::trailing_days("2026-11-20".parse().unwrap(), 14);
    let expected = reported_rows(&sim, window);
    assert_eq!(
        counts(project.path(), "true").await,
        format!("{expected},{expected}")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_loads_a_historical_range_in_chunks() {
    let sim = start_sim().await;
    let project = project_for(&sim);
    let out = stdout_of(
        project.path(),
        &[
            "backfill",
            "--from",
            "2026-07-01",
            "--to",
            "2026-08-31",
            "--format",
            "json",
        ],
    )
    .await;
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    // 62 days: 9 weekly chunks per account for both sources (chunk_days 7), 2 accounts each.
    for source in report["sources"].as_array().unwrap() {
        assert_eq!(source["units"], 18, "{source:#}");
        assert_eq!(source["loaded_units"], 18, "{source:#}");
    }
    let window = Window::new("2026-07-01".parse().unwrap(), "2026-08-31".parse().unwrap()).unwrap();
    let expected = reported_rows(&sim, window);
    assert_eq!(
        counts(
            project.path(),
            "date BETWEEN DATE '2026-07-01' AND DATE '2026-08-31'"
        )
        .await,
        format!("{expected},{expected}")
    );
}

/// The Delta `txn` app ids in a table's log, one entry per commit that carried a job.
pub fn committed_jobs(table_dir: &Path) -> Vec<String> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(table_dir.join("_delta_log")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let action: serde_json::Value = serde_json::from_str(line).unwrap();
            if let Some(app) = action["txn"]["appId"].as_str() {
                ids.push(app.to_string());
            }
        }
    }
    ids.sort();
    ids
}

/// A small deterministic generator for kill delays (xorshift).
pub fn delays(seed: u64, n: usize, range_ms: std::ops::Range<u64>) -> Vec<u64> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            range_ms.start + x % (range_ms.end - range_ms.start)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_killed_at_random_moments_again_and_again_converges_to_the_truth() {
    let sim = start_sim().await;
    let project = project_for(&sim);
    let wh = project.path().join("wh");

    // Killed with SIGKILL five times at seeded random moments, resumed after each kill.
    for (attempt, delay) in delays(0x5eed, 5, 100..800).into_iter().enumerate() {
        let p = project.path().to_path_buf();
        let out = tokio::task::spawn_blocking(move || {
            let mut cmd = tidemark(&p);
            cmd.args(["sync", "--commit-every", "1", "--workers", "2"]);
            if attempt == 0 {
                cmd.args(["--today", "2026-11-20", "--run", "chaos"]);
            } else {
                cmd.args(["--resume", "chaos"]);
            }
            let mut child = cmd
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(delay));
            let _ = child.kill(); // SIGKILL; the sync may already have finished
            child.wait_with_output().unwrap()
        })
        .await
        .unwrap();
        eprintln!(
            "attempt {attempt}: killed after {delay} ms ({})",
            if out.status.code().is_some() {
                "had already exited"
            } else {
                "killed"
            }
        );
    }
    stdout_of(
        project.path(),
        &[
            "sync",
            "--resume",
            "chaos",
            "--commit-every",
            "1",
            "--format",
            "json",
        ],
    )
    .await;

    // The tables equal the simulators' truth: every reported row exactly once.
    let window = Window::trailing_days("2026-11-20".parse().unwrap(), 14);
    let expected = reported_rows(&sim, window);
    assert_eq!(
        counts(project.path(), "true").await,
        format!("{expected},{expected}")
    );

    // Every job was committed exactly once into each table, across all attempts: 4 jobs of
    // each source (2 accounts × 2 chunks), whatever the kills interrupted.
    let meta = committed_jobs(&wh.join("tables/meta_insights"));
    let google = committed_jobs(&wh.join("tables/google_ads_ad_daily"));
    let unified = committed_jobs(&wh.join("tables/ad_performance"));
    let ledger = committed_jobs(&wh.join("_tidemark/tables/slices"));
    let distinct = |ids: &[String]| ids.iter().collect::<std::collections::BTreeSet<_>>().len();
    assert_eq!((meta.len(), distinct(&meta)), (4, 4), "{meta:?}");
    assert_eq!((google.len(), distinct(&google)), (4, 4), "{google:?}");
    let mut per_source = [meta, google].concat();
    per_source.sort();
    assert_eq!(
        unified, per_source,
        "ad_performance carries exactly the per-source jobs"
    );
    assert_eq!(ledger, per_source, "the ledger records exactly those jobs");

    // The ledger has one record per slice of the window, holding the slice's row count.
    let wh_arg = wh.display().to_string();
    let check = stdout_of(
        project.path(),
        &[
            "sql",
            "-w",
            &wh_arg,
            "--format",
            "csv",
            "-c",
            "SELECT count(*) AS slices, sum(CASE WHEN l.rows = coalesce(a.n, 0) THEN 1 ELSE 0 END) AS matching \
             FROM tidemark.slices l LEFT JOIN (SELECT source, account_id, date, count(*) AS n FROM ad_performance GROUP BY 1, 2, 3) a \
             ON l.source = a.source AND l.account_id = a.account_id AND l.date = a.date",
        ],
    )
    .await;
    assert_eq!(check.lines().nth(1), Some("56,56"));
}
