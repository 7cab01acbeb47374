//! Marts over synced data: incremental refresh equals a full rebuild after random
//! restatements; a restatement of two days touches only those days of dependent marts;
//! readers see a whole version during refreshes; broken definitions fail alone and clearly.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::resume::{project_for, start_sim, stdout_of};

/// A project on the simulators with the sample marts and seeds of `testdata/`.
struct MartProject {
    sim: connectors::sim::RunningSim,
    project: tempfile::TempDir,
}

impl MartProject {
    async fn new() -> Self {
        let sim = start_sim().await;
        let project = project_for(&sim);
        let testdata = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata");
        for dir in ["marts", "seeds"] {
            std::fs::create_dir_all(project.path().join(dir)).unwrap();
            for entry in std::fs::read_dir(testdata.join(dir)).unwrap() {
                let path = entry.unwrap().path();
                std::fs::copy(
                    &path,
                    project.path().join(dir).join(path.file_name().unwrap()),
                )
                .unwrap();
            }
        }
        MartProject { sim, project }
    }

    fn path(&self) -> &Path {
        self.project.path()
    }

    fn warehouse(&self) -> PathBuf {
        self.path().join("wh")
    }

    /// Move the simulators' clock (their numbers for past days mature) and sync `args`.
    async fn restate(&self, today: &str, args: &[&str]) {
        self.sim.world.set_now(today.parse().unwrap());
        let mut all = vec!["sync", "--today", today];
        all.extend_from_slice(args);
        stdout_of(self.path(), &all).await;
    }

    /// `tidemark mart refresh --format json` (plus `extra`): the reports by mart.
    async fn refresh(&self, extra: &[&str]) -> serde_json::Value {
        let mut args = vec!["mart", "refresh", "--format", "json"];
        args.extend_from_slice(extra);
        let out = stdout_of(self.path(), &args).await;
        let reports: serde_json::Value = serde_json::from_str(&out).unwrap();
        let mut by_mart = serde_json::Map::new();
        for r in reports.as_array().unwrap() {
            by_mart.insert(r["mart"].as_str().unwrap().to_string(), r.clone());
        }
        serde_json::Value::Object(by_mart)
    }

    /// A mart's rows, sorted, as CSV lines.
    async fn rows(&self, mart: &str) -> Vec<String> {
        let wh = self.warehouse().display().to_string();
        let sql = format!("SELECT * FROM {mart}");
        let out = stdout_of(
            self.path(),
            &["sql", "-w", &wh, "--format", "csv", "-c", &sql],
        )
        .await;
        let mut lines: Vec<String> = out.lines().skip(1).map(str::to_string).collect();
        lines.sort();
        lines
    }
}

const MARTS: [&str; 3] = [
    "daily_campaign_performance",
    "channel_daily",
    "installs_rolling_7d",
];

/// Two CSV rows equal field by field, numbers within a relative 1e-9 (ratios are floats
/// whose last bits depend on summation order).
fn same_row(a: &str, b: &str) -> bool {
    let (fa, fb): (Vec<&str>, Vec<&str>) = (a.split(',').collect(), b.split(',').collect());
    fa.len() == fb.len()
        && fa.iter().zip(&fb).all(|(x, y)| {
            x == y
                || match (x.parse::<f64>(), y.parse::<f64>()) {
                    (Ok(x), Ok(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
                    _ => false,
                }
        })
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_refresh_equals_a_full_rebuild_after_random_restatements() {
    for seed in [7u64, 1234, 0xfeed] {
        let p = MartProject::new().await;
        p.restate("2026-11-20", &[]).await;
        let first = p.refresh(&[]).await;
        for mart in MARTS {
            assert_eq!(first[mart]["mode"], "full", "{first:#}");
        }
        let mut state = seed;
        let accounts = ["1000000001", "1000000002", "1234567001", "1234567002"];
        for step in 0..3u64 {
            // A later "today", one account, a random stretch of its window restated.
            let today = format!("2026-11-{}", 21 + step);
            let account = accounts[(xorshift(&mut state) % 4) as usize];
            // Inside the 14-day window (settled days before it are frozen).
            let from = 7 + step + xorshift(&mut state) % 8;
            let to = (from + xorshift(&mut state) % 5).min(20 + step);
            p.restate(
                &today,
                &[
                    "--account",
                    account,
                    "--from",
                    &format!("2026-11-{from:02}"),
                    "--to",
                    &format!("2026-11-{to:02}"),
                ],
            )
            .await;
            let reports = p.refresh(&[]).await;
            assert_eq!(
                reports["daily_campaign_performance"]["mode"], "incremental",
                "seed {seed} step {step}: {reports:#}"
            );
        }
        let incremental: Vec<Vec<String>> =
            futures::future::join_all(MARTS.map(|m| p.rows(m))).await;
        let rebuilt = p.refresh(&["--full"]).await;
        for mart in MARTS {
            assert_eq!(rebuilt[mart]["mode"], "full");
        }
        for (mart, before) in MARTS.iter().zip(incremental) {
            let after = p.rows(mart).await;
            assert!(!after.is_empty(), "{mart} has rows");
            assert_eq!(before.len(), after.len(), "seed {seed}: {mart} row counts");
            for (a, b) in before.iter().zip(&after) {
                assert!(
                    same_row(a, b),
                    "seed {seed}: {mart} differs:\n  incremental {a}\n  full        {b}"
                );
            }
        }
    }
}

/// The day partitions (`date=…`) that the latest commit of a mart added or removed files in.
fn days_touched_by_last_commit(mart_dir: &Path) -> (BTreeSet<String>, usize, usize) {
    let log = mart_dir.join("_delta_log");
    let last = std::fs::read_dir(&log)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .max()
        .unwrap();
    let (mut days, mut added, mut removed) = (BTreeSet::new(), 0, 0);
    for line in std::fs::read_to_string(last).unwrap().lines() {
        let action: serde_json::Value = serde_json::from_str(line).unwrap();
        for (kind, count) in [("add", &mut added), ("remove", &mut removed)] {
            if let Some(file) = action.get(kind) {
                *count += 1;
                days.insert(
                    file["partitionValues"]["date"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                );
            }
        }
    }
    (days, added, removed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restating_two_days_recomputes_only_the_days_they_reach() {
    let p = MartProject::new().await;
    p.restate("2026-11-20", &[]).await;
    p.refresh(&[]).await;
    let total_days = p.rows("channel_daily").await.len() / 2; // two channels

    p.restate(
        "2026-11-22",
        &[
            "--source",
            "meta",
            "--account",
            "1000000001",
            "--from",
            "2026-11-10",
            "--to",
            "2026-11-11",
        ],
    )
    .await;
    let reports = p.refresh(&[]).await;
    let days = |mart: &str| -> Vec<String> {
        reports[mart]["days"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap().to_string())
            .collect()
    };
    let two = vec!["2026-11-10".to_string(), "2026-11-11".to_string()];
    assert_eq!(days("daily_campaign_performance"), two, "{reports:#}");
    assert_eq!(days("channel_daily"), two, "{reports:#}");
    // A 7-day rolling window: each restated day reaches the six days after it.
    let rolling: Vec<String> = (10..=17).map(|d| format!("2026-11-{d}")).collect();
    assert_eq!(days("installs_rolling_7d"), rolling, "{reports:#}");

    for (mart, expected) in [
        ("daily_campaign_performance", &two),
        ("channel_daily", &two),
        ("installs_rolling_7d", &rolling),
    ] {
        let (touched, added, removed) =
            days_touched_by_last_commit(&p.warehouse().join("marts").join(mart));
        let expected: BTreeSet<String> = expected.iter().cloned().collect();
        assert!(touched.is_subset(&expected), "{mart} touched {touched:?}");
        println!(
            "{mart}: {} rows written for {} of {total_days} days; last commit added {added} and removed {removed} files",
            reports[mart]["rows_written"],
            expected.len(),
        );
    }

    // The same from SQL: REFRESH MART refreshes a mart and the marts that read it.
    p.restate(
        "2026-11-23",
        &[
            "--source",
            "meta",
            "--account",
            "1000000002",
            "--from",
            "2026-11-12",
            "--to",
            "2026-11-12",
        ],
    )
    .await;
    let wh = p.warehouse().display().to_string();
    let out = stdout_of(
        p.path(),
        &[
            "sql",
            "-w",
            &wh,
            "--format",
            "csv",
            "-c",
            "REFRESH MART daily_campaign_performance",
        ],
    )
    .await;
    assert_eq!(
        out.lines().collect::<Vec<_>>()[..],
        [
            "mart,refresh,days_recomputed,rows",
            &format!(
                "daily_campaign_performance,incremental,1,{}",
                p.rows("daily_campaign_performance").await.len()
            ),
            "channel_daily,incremental,1,28",
            "installs_rolling_7d,incremental,7,28",
        ],
        "{out}"
    );
}

const PROBE: &str = "SELECT count(*) AS n, CAST(sum(spend_krw) AS VARCHAR) AS s FROM channel_daily";

/// One answer to [`PROBE`], printed.
async fn probe(session: &engine::WarehouseSession) -> String {
    let batches = session.sql(PROBE).await.unwrap().collect().await.unwrap();
    arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_during_refreshes_see_one_whole_version() {
    use engine::{Namespace, Warehouse, WarehouseSession};

    let p = MartProject::new().await;
    p.restate("2026-11-20", &[]).await;
    p.refresh(&[]).await;
    let warehouse = Warehouse::open(p.warehouse().to_str().unwrap(), &Default::default())
        .await
        .unwrap();

    // Restate and refresh four times while a reader queries the mart in a loop.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (warehouse, done) = (warehouse.clone(), done.clone());
        tokio::spawn(async move {
            let session = WarehouseSession::new(warehouse).await.unwrap();
            let mut seen = BTreeSet::new();
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                seen.insert(probe(&session).await);
            }
            seen
        })
    };
    for (i, today) in ["2026-11-21", "2026-11-22", "2026-11-23", "2026-11-24"]
        .iter()
        .enumerate()
    {
        let account = ["1000000001", "1234567001"][i % 2];
        p.restate(today, &["--account", account]).await;
        p.refresh(&[]).await;
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = reader.await.unwrap();

    // Every answer the reader saw is the answer of one committed version of the mart.
    let table = warehouse
        .open_table(Namespace::Marts, "channel_daily")
        .await
        .unwrap();
    let latest = table.version().unwrap();
    let mut versions = BTreeSet::new();
    for v in 0..=latest {
        let ctx = datafusion::prelude::SessionContext::new();
        engine::session::register_version(
            &ctx,
            &warehouse,
            Namespace::Marts,
            "channel_daily",
            v,
            "channel_daily",
        )
        .await
        .unwrap();
        let batches = ctx.sql(PROBE).await.unwrap().collect().await.unwrap();
        versions.insert(
            arrow::util::pretty::pretty_format_batches(&batches)
                .unwrap()
                .to_string(),
        );
    }
    println!(
        "reader saw {} distinct answers; the mart has {} versions",
        seen.len(),
        latest + 1
    );
    assert!(
        seen.len() >= 2,
        "the reader overlapped at least one refresh"
    );
    for answer in &seen {
        assert!(
            versions.contains(answer),
            "an answer no version gives:\n{answer}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_marts_fail_alone_with_clear_messages() {
    let p = MartProject::new().await;
    p.restate("2026-11-20", &[]).await;
    p.refresh(&[]).await;
    let version_of = |mart: &str| {
        std::fs::read_dir(p.warehouse().join("marts").join(mart).join("_delta_log"))
            .unwrap()
            .count()
    };
    let before: Vec<usize> = MARTS.map(version_of).to_vec();
    let marts = p.path().join("marts");
    let refresh = |p: &Path| {
        let mut cmd = crate::resume::tidemark(p);
        cmd.args(["mart", "refresh"]);
        cmd.output().unwrap()
    };

    // Broken SQL: that mart fails, naming itself; the others refresh (nothing changed).
    std::fs::write(marts.join("broken.sql"), "SELEC date FROM ad_performance").unwrap();
    let out = refresh(p.path());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        text.contains("FAILED broken: mart 'broken': its SQL does not parse"),
        "{text}"
    );
    assert!(
        text.contains("daily_campaign_performance: inputs unchanged"),
        "{text}"
    );
    std::fs::remove_file(marts.join("broken.sql")).unwrap();

    // A missing input table: named, with the closest names.
    std::fs::write(marts.join("typo.sql"), "SELECT date FROM ad_perfomance").unwrap();
    let out = refresh(p.path());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("mart 'typo' reads 'ad_perfomance', which is neither a table nor a mart of this warehouse; did you mean 'ad_performance'?"),
        "{text}"
    );
    std::fs::remove_file(marts.join("typo.sql")).unwrap();

    // A query that fails when it runs: the mart keeps its contents.
    std::fs::write(
        marts.join("bad_column.sql"),
        "SELECT date, no_such_column FROM ad_performance",
    )
    .unwrap();
    let out = refresh(p.path());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("FAILED bad_column: mart 'bad_column': its query failed, so it keeps its previous contents"), "{text}");
    std::fs::remove_file(marts.join("bad_column.sql")).unwrap();

    // A cycle: refused, naming it.
    std::fs::write(marts.join("a.sql"), "SELECT * FROM b").unwrap();
    std::fs::write(marts.join("b.sql"), "SELECT * FROM a").unwrap();
    let out = refresh(p.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("marts depend on each other in a cycle: a → b → a"),
        "{err}"
    );
    std::fs::remove_file(marts.join("a.sql")).unwrap();
    std::fs::remove_file(marts.join("b.sql")).unwrap();

    // A mart another refresher holds is refused, naming the holder; the others go on.
    let lock = p.warehouse().join("_tidemark/marts/channel_daily.lock");
    let until = chrono::Utc::now() + chrono::Duration::minutes(5);
    std::fs::write(
        &lock,
        serde_json::json!({"holder": "a shell elsewhere", "acquired_at": chrono::Utc::now(), "expires_at": until}).to_string(),
    )
    .unwrap();
    let out = refresh(p.path());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "FAILED channel_daily: _tidemark/marts/channel_daily.lock is held by a shell elsewhere"
        ),
        "{text}"
    );
    assert!(text.contains("FAILED installs_rolling_7d: mart 'installs_rolling_7d': its query failed, so it keeps its previous contents: skipped because the mart it reads, 'channel_daily', failed"), "{text}");
    assert!(
        text.contains("daily_campaign_performance: inputs unchanged"),
        "{text}"
    );
    std::fs::remove_file(&lock).unwrap();

    // Nothing else changed: every sample mart is at the version it had.
    assert_eq!(MARTS.map(version_of).to_vec(), before);

    // `mart list` shows each mart's inputs, version and rows.
    let list: serde_json::Value =
        serde_json::from_str(&stdout_of(p.path(), &["mart", "list", "--format", "json"]).await)
            .unwrap();
    let channel = list
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mart"] == "channel_daily")
        .unwrap();
    assert_eq!(
        channel["inputs"],
        serde_json::json!(["daily_campaign_performance"])
    );
    assert_eq!(channel["rows"], 28, "{list:#}");
    assert!(channel["last_refresh"].is_string(), "{list:#}");

    // A failing data test: FAIL with the failing rows, exit 1.
    let text = std::fs::read_to_string(marts.join("channel_daily.sql")).unwrap();
    std::fs::write(
        marts.join("channel_daily.sql"),
        text.replace(
            "-- [tests]",
            "-- [tests]\n-- accepted_values = { channel = [\"meta\"] }",
        ),
    )
    .unwrap();
    let mut cmd = crate::resume::tidemark(p.path());
    let out = cmd
        .args(["mart", "test", "--today", "2026-11-20"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("FAIL channel_daily.accepted_values(channel): 1 failing row(s)"),
        "{text}"
    );
    assert!(
        text.contains("google_ads"),
        "the failing value is shown: {text}"
    );
    assert!(
        text.contains(
            "PASS daily_campaign_performance.unique(date, source, account_id, campaign_id)"
        ),
        "{text}"
    );
    assert!(
        text.contains("PASS daily_campaign_performance.freshness(3 days)"),
        "{text}"
    );
}
