//! `tidemark demo` runs end to end with nothing else running, and `tidemark sql` reads its mart.

use std::process::Command;

fn tidemark() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tidemark"));
    cmd.env_remove("TIDEMARK_WAREHOUSE").env("RUST_LOG", "warn");
    cmd
}

#[test]
fn demo_syncs_twice_builds_the_mart_and_is_queryable() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = dir.path().join("wh");
    let out = tidemark()
        .args(["demo", "--dir"])
        .arg(&warehouse)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "sync 1: today 2026-11-20, google_ads",
        "sync 1: today 2026-11-20, meta",
        "sync 2: today 2026-11-23, meta",
        "What sync 2",
        "Top rows of mart daily_campaign",
        "Timings:",
        "tidemark sql --warehouse",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
    // Rows appeared and vanished between the syncs.
    assert!(stdout.contains("vanished"), "{stdout}");

    let query = tidemark()
        .args(["sql", "--warehouse"])
        .arg(&warehouse)
        .args([
            "--format",
            "csv",
            "-c",
            "SELECT count(DISTINCT date) AS days, count(DISTINCT account_id) AS accounts FROM daily_campaign",
        ])
        .output()
        .unwrap();
    assert!(
        query.status.success(),
        "{}",
        String::from_utf8_lossy(&query.stderr)
    );
    // Two 30-day windows three days apart cover 33 days; three accounts on each spend
    // platform (AppsFlyer and GA4 rows are not in ad_performance).
    assert_eq!(
        String::from_utf8_lossy(&query.stdout).trim(),
        format!(
            "days,accounts\n33,{}",
            3 * connectors::config::Platform::ALL
                .iter()
                .filter(|p| p.feeds_ad_performance())
                .count()
        )
    );

    // Running the demo again replaces the same slices: the mart keeps the same shape.
    let again = tidemark()
        .args(["demo", "--dir"])
        .arg(&warehouse)
        .output()
        .unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

#[test]
fn sql_errors_name_the_problem_and_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let out = tidemark()
        .args(["sql", "--warehouse"])
        .arg(dir.path())
        .args(["-c", "SELECT * FROM no_such_table"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no_such_table"), "{stderr}");
}
