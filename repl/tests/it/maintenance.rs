//! `tidemark compact`, `tidemark history`, `tidemark sql --as-of` and the settled-day guard,
//! driven through the binary over the fixture warehouse (and a simulator project for the guard).

use std::process::{Command, Output};

fn tidemark(project: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(args)
        .arg("--project")
        .arg(project)
        .env("RUST_LOG", "warn")
        .env_remove("TIDEMARK_WAREHOUSE")
        .output()
        .unwrap()
}

fn stdout_ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The fixture warehouse in a project directory.
fn project() -> tempfile::TempDir {
    let dir = testdata::fixture::temp_warehouse();
    std::fs::write(dir.path().join("tidemark.toml"), "warehouse = \"wh\"\n").unwrap();
    dir
}

#[test]
fn compact_reports_each_table_and_vacuum_guards_its_retention() {
    let dir = project();
    let totals = || {
        stdout_ok(&tidemark(
            dir.path(),
            &[
                "sql",
                "--format",
                "csv",
                "-c",
                "SELECT sum(clicks), sum(installs) FROM ad_performance",
            ],
        ))
    };
    let before = totals();
    let out = stdout_ok(&tidemark(dir.path(), &["compact", "--format", "json"]));
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let tables: Vec<&str> = report["compacted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["table"].as_str().unwrap())
        .collect();
    for name in ["ad_performance", "channel_daily", "fx_rates"] {
        assert!(tables.contains(&name), "{name} not in {tables:?}");
    }
    let after = totals();
    assert_eq!(before, after);

    let short = tidemark(
        dir.path(),
        &["compact", "ad_performance", "--vacuum", "--retain", "1h"],
    );
    assert_eq!(short.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&short.stderr).contains("shorter than the 7-day minimum"),
        "{}",
        String::from_utf8_lossy(&short.stderr)
    );
    let dry = stdout_ok(&tidemark(
        dir.path(),
        &["compact", "ad_performance", "--vacuum", "--dry-run"],
    ));
    assert!(dry.contains("would delete 0 files"), "{dry}");
    let unknown = tidemark(dir.path(), &["compact", "ad_perf"]);
    assert_eq!(unknown.status.code(), Some(1));
}

#[test]
fn history_charts_how_a_restated_day_grew() {
    let dir = project();
    let out = stdout_ok(&tidemark(
        dir.path(),
        &["history", "2026-11-02", "--source", "meta"],
    ));
    assert!(
        out.contains("ad_performance · 2026-11-02 · 2 versions changed it"),
        "{out}"
    );
    // The chart: installs 13 at version 0, 17 after the restatement (the peak: a full bar).
    let lines: Vec<&str> = out.lines().collect();
    let chart: Vec<&&str> = lines.iter().filter(|l| l.contains('█')).collect();
    assert_eq!(chart.len(), 2, "{out}");
    assert!(chart[0].contains(" 13 "), "{}", chart[0]);
    assert!(
        chart[1].contains(" 17 ") && chart[1].contains(&"█".repeat(24)),
        "{}",
        chart[1]
    );
    // Then the changes: m-c1 restated with 4 more installs.
    assert!(out.contains("restated"), "{out}");
    let json = stdout_ok(&tidemark(
        dir.path(),
        &[
            "history",
            "2026-11-02",
            "--source",
            "meta",
            "--format",
            "json",
        ],
    ));
    let rows: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    let restated: Vec<&serde_json::Value> =
        rows.iter().filter(|r| r["change"] == "restated").collect();
    assert_eq!(restated.len(), 1, "{json}");
    assert_eq!(restated[0]["campaign_id"], "m-c1");
    assert_eq!(restated[0]["installs_delta"], 4);
    let quiet = stdout_ok(&tidemark(dir.path(), &["history", "2026-10-01"]));
    assert!(quiet.contains("no rows for 2026-10-01"), "{quiet}");
}

/// When a version was committed, as Delta time travel reads it: its log entry's modification
/// time (the `commitInfo` timestamp is taken a little earlier, while the commit is built).
fn committed_at(dir: &std::path::Path, version: u64) -> chrono::DateTime<chrono::Utc> {
    let log = dir.join(format!(
        "wh/tables/ad_performance/_delta_log/{version:020}.json"
    ));
    let modified: chrono::DateTime<chrono::Utc> =
        std::fs::metadata(&log).unwrap().modified().unwrap().into();
    // Time travel resolves to the millisecond.
    chrono::DateTime::from_timestamp_millis(modified.timestamp_millis()).unwrap()
}

#[test]
fn as_of_reads_every_table_at_one_instant() {
    let dir = project();
    let (first, second) = (committed_at(dir.path(), 0), committed_at(dir.path(), 1));
    assert!(
        second > first,
        "the fixture's two commits share a millisecond"
    );
    let sums = |as_of: &str| {
        stdout_ok(&tidemark(
            dir.path(),
            &[
                "sql",
                "--as-of",
                as_of,
                "--format",
                "csv",
                "-c",
                "SELECT sum(clicks) AS clicks FROM ad_performance",
            ],
        ))
    };
    assert_eq!(sums(&first.to_rfc3339()), "clicks\n264\n");
    assert_eq!(sums(&second.to_rfc3339()), "clicks\n269\n");
    let early = tidemark(
        dir.path(),
        &[
            "sql",
            "--as-of",
            "2020-01-01",
            "-c",
            "SELECT count(*) FROM ad_performance",
        ],
    );
    assert_eq!(early.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&early.stderr).contains("before its first commit"),
        "{}",
        String::from_utf8_lossy(&early.stderr)
    );
    let bad = tidemark(
        dir.path(),
        &["sql", "--as-of", "last tuesday", "-c", "SELECT 1"],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not an instant"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_reaching_settled_days_is_refused_unless_a_backfill() {
    let sim = crate::resume::start_sim().await;
    let project = crate::resume::project_for(&sim);
    let out = crate::resume::tidemark(project.path())
        .args([
            "sync",
            "--today",
            "2026-11-20",
            "--from",
            "2026-10-01",
            "--to",
            "2026-10-03",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(
        error.contains("is settled for")
            && error.contains("tidemark backfill --from 2026-10-01 --to 2026-10-03"),
        "{error}"
    );
    // Nothing was written.
    assert!(!project.path().join("wh/tables").exists());
}
