//! Naver Search Ad against its simulator: every cell equals the report after a sync and after
//! a restating clock move; a 429 storm (no wait hint) slows the sync but loses nothing;
//! 5xx, cut-off TSV, slow answers and failed report jobs are retried; the documented drift
//! (no View count, conversion type codes, appended columns) loads; an unreadable file is
//! quarantined and replay rebuilds the same tables; and every signature the client sent,
//! downloads included, equals one computed by Python's `hmac` from the documented recipe.

use connectors::config::Platform;
use connectors::sim::{Drift, Faults};
use testdata::Backend;

use crate::support::{assert_cells_equal, day, Harness, TODAY};

const NAVER: Platform = Platform::NaverSearchAd;

async fn naver(extra: &str) -> Harness {
    Harness::only(Backend::local(), NAVER, extra).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn naver_every_cell_matches_the_report() {
    crate::truth::every_cell_matches_the_report_of(naver("").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn naver_a_429_storm_slows_the_sync_but_loses_nothing() {
    let h = naver("").await;
    h.sim.world.set_faults(
        NAVER,
        Faults {
            throttle: 20,
            retry_after: 3,
            ..Faults::default()
        },
    );
    let today = day(TODAY);
    let report = h.sync(today, "storm").await;
    assert!(report.is_clean(), "{report:#?}");
    assert_cells_equal(&h.loaded(today).await, &h.expected(today));
    let served = h.sim.world.stats(NAVER).throttled;
    assert_eq!(served, 23, "every planned throttle was served");
    let seen: u64 = report.sources.iter().map(|s| s.http.throttled).sum();
    assert_eq!(seen, 23, "the client counted every 429");
    let s = &report.sources[0];
    println!(
        "naver: {} requests, {} throttled, waited {} ms, {} of {} units loaded",
        s.http.requests, s.http.throttled, s.http.waited_ms, s.loaded_units, s.units
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn naver_passing_faults_and_failed_jobs_are_retried() {
    let h = naver("").await;
    h.sim.world.set_faults(
        NAVER,
        Faults {
            server_errors: 3,
            truncate: 2,
            slow: 1,
            slow_ms: 3_000, // beyond request_timeout (2s)
            job_failures: 2,
            ..Faults::default()
        },
    );
    let today = day(TODAY);
    let report = h.sync(today, "faults").await;
    assert!(report.is_clean(), "{report:#?}");
    assert_cells_equal(&h.loaded(today).await, &h.expected(today));
    let s = h.sim.world.stats(NAVER);
    assert_eq!((s.server_errors, s.truncated, s.slow), (3, 2, 1), "{s:?}");
    let retried: u64 = report.sources.iter().map(|s| s.http.retried).sum();
    assert_eq!(retried, 6, "each 5xx, cut body and timeout retried once");
    // 2 days × 2 reports per account, plus the two jobs that ended in ERROR, requested again.
    // The slow answer lands on whichever request comes next; when that is a job's creation, the
    // server made the job after the client had given up on it, and the retry makes another: an
    // orphan job, as on the real API. Which request it is depends on the concurrent order.
    let planned = 2 * 30 * 2 + 2;
    assert!(
        (planned..=planned + 1).contains(&s.report_runs),
        "{planned} report jobs, or one more if the timed-out request was a creation: {s:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn naver_a_permanent_failure_keeps_committed_data() {
    let h = naver("max_attempts = 2").await;
    let t1 = day(TODAY);
    assert!(h.sync(t1, "before").await.is_clean());
    let before = h.loaded(t1).await;
    h.sim.world.set_faults(
        NAVER,
        Faults {
            fail_account: Some("1100002".into()),
            ..Faults::default()
        },
    );
    let t2 = t1 + chrono::Days::new(2);
    let report = h.sync(t2, "after").await;
    let s = &report.sources[0];
    assert_eq!(s.failed.len(), 30, "one failed unit per day of the account");
    assert!(s.failed.iter().all(|f| f.unit.account == "1100002"));
    assert!(
        s.failed[0].reason.contains("HTTP 500"),
        "{}",
        s.failed[0].reason
    );
    let after = h.loaded(t2).await;
    let expected = h.expected(t2);
    for (key, metrics) in &after {
        if key.1 == "1100002" {
            if key.2 < t1 {
                assert_eq!(Some(metrics), before.get(key), "{key:?} must be untouched");
            }
        } else {
            assert_eq!(Some(metrics), expected.get(key), "{key:?} must be current");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn naver_documented_drift_loads_and_is_kept_as_returned() {
    let h = naver("").await;
    h.sim.world.set_drift(
        NAVER,
        Drift {
            legacy_format: true,
            ..Drift::default()
        },
    );
    let t1 = day(TODAY);
    assert!(h.sync(t1, "legacy").await.is_clean());
    assert_cells_equal(&h.loaded(t1).await, &h.expected(t1));
    let legacy = text_of(
        &h.query(
            "SELECT count(view_count) AS views, min(conversion_type) AS lo, max(conversion_type) AS hi \
             FROM naver_search_ad_stats",
        )
        .await,
    );
    assert!(
        legacy.contains("| 0     | 1  | 2  |"),
        "files without View count, codes as types:\n{legacy}"
    );

    h.sim.world.set_drift(
        NAVER,
        Drift {
            added_field: true,
            ..Drift::default()
        },
    );
    let t2 = t1 + chrono::Days::new(1);
    assert!(h.sync(t2, "appended").await.is_clean());
    assert_cells_equal(&h.loaded(t2).await, &h.expected(t2));
    let current = text_of(
        &h.query(&format!(
            "SELECT count(view_count) > 0 AS views, count(column_15) > 0 AS appended, \
             max(conversion_type) AS hi FROM naver_search_ad_stats WHERE _date >= DATE '{}'",
            t1 - chrono::Days::new(29)
        ))
        .await,
    );
    assert!(
        current.contains("| true  | true     | sign_up |"),
        "View count back, the appended column kept, types as names:\n{current}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn naver_an_unreadable_report_is_quarantined_and_replay_rebuilds_the_rest() {
    let h = naver("").await;
    h.sim.world.set_drift(
        NAVER,
        Drift {
            malformed_account: Some("1100002".into()),
            ..Drift::default()
        },
    );
    let t1 = day(TODAY);
    let report = h.sync(t1, "original").await;
    let s = &report.sources[0];
    assert_eq!(s.quarantined.len(), 30, "{s:#?}");
    assert!(s.quarantined.iter().all(|q| q.unit.account == "1100002"));
    assert!(
        s.quarantined[0].reason.contains("impressions = \"n/a\""),
        "{}",
        s.quarantined[0].reason
    );
    assert!(s.quarantined[0].path.ends_with(".reason.json"));
    assert_eq!(s.loaded_units, 30, "the other account loads");
    let w = connectors::Window::trailing_days(t1, 30);
    let filter = format!("_date BETWEEN DATE '{}' AND DATE '{}'", w.since, w.until);
    let original = h.contents("naver_search_ad_stats", &filter).await;
    assert!(!original.is_empty());

    let crate::support::Harness {
        sim,
        warehouse,
        config,
        ..
    } = h;
    drop(sim);
    let offline =
        connectors::build_sources(&config.sources().unwrap(), connectors::Purpose::Replay).unwrap();
    let replay = connectors::sync::replay(&warehouse, &offline, "original", &|_| {})
        .await
        .unwrap();
    assert_eq!(replay.sources[0].quarantined.len(), 30, "still unreadable");
    let replayed =
        crate::support::table_contents(&warehouse, "naver_search_ad_stats", &filter).await;
    assert!(
        replayed == original,
        "replay differs from the original load"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn naver_signatures_match_an_independent_hmac() {
    let h = naver("").await;
    let today = day(TODAY);
    let report = h.sync(today, "signed").await;
    assert!(report.is_clean(), "{report:#?}");
    let signed = h.sim.world.naver_signatures();
    let downloads = signed
        .iter()
        .filter(|s| s.path == "/report-download")
        .count();
    assert!(downloads >= 60, "downloads are signed too: {downloads}");
    assert!(signed
        .iter()
        .any(|s| s.method == "POST" && s.path == "/stat-reports"));
    assert!(signed.iter().any(|s| s.method == "DELETE"));
    // Python's hmac over "{timestamp}.{METHOD}.{path}" with the secret, base64 encoded.
    let lines: Vec<String> = signed
        .iter()
        .map(|s| format!("{}\t{}\t{}\t{}", s.timestamp, s.method, s.path, s.signature))
        .collect();
    let script = r#"
import base64, hashlib, hmac, sys
secret = sys.argv[1].encode()
bad = 0
n = 0
for line in sys.stdin:
    ts, method, path, sig = line.rstrip("\n").split("\t")
    mine = base64.b64encode(hmac.new(secret, f"{ts}.{method}.{path}".encode(), hashlib.sha256).digest()).decode()
    n += 1
    bad += mine != sig
print(n, bad)
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script, &h.sim.world.config.naver_secret])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs (installed by .ci/run)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.join("\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let verdict = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(
        verdict,
        format!("{} 0", signed.len()),
        "checked, mismatched"
    );
    println!(
        "{} signatures ({downloads} downloads) equal Python's hmac",
        signed.len()
    );

    // A wrong secret is refused with the fix named, and the secret is not in the message.
    let wrong = Harness::only(Backend::local(), NAVER, "").await;
    wrong.sim.world.set_now(today);
    let mut config = wrong.config.clone();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret");
    std::fs::write(&path, "not-the-secret-0x5eed").unwrap();
    let source = config.sources.get_mut("naver_search_ad").unwrap();
    source.secret_key = Some(
        toml::from_str::<toml::Value>(&format!("file = {:?}", path.display().to_string()))
            .unwrap()
            .try_into()
            .unwrap(),
    );
    let sources =
        connectors::build_sources(&config.sources().unwrap(), connectors::Purpose::Fetch).unwrap();
    let err = sources[0]
        .probe("1100001", today)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("secret_key") && err.contains("HTTP 401"),
        "{err}"
    );
    assert!(!err.contains("not-the-secret-0x5eed"), "{err}");
}

fn text_of(batches: &[arrow::array::RecordBatch]) -> String {
    arrow::util::pretty::pretty_format_batches(batches)
        .unwrap()
        .to_string()
}
