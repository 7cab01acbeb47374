//! Kakao Moment against its simulator: every cell equals the report (through a refreshed
//! business token) after a sync and after a restating clock move; four workers on one ad
//! account keep Kakao's one-report-call-per-5-seconds pace; a -813 storm, 5xx, cut-off bodies
//! and slow answers are retried; drift loads or is quarantined.

use std::time::Duration;

use connectors::config::Platform;
use connectors::sim::faults::Rename;
use connectors::sim::{Drift, Faults, KeyCase};
use connectors::sync::SyncOptions;
use testdata::Backend;

use crate::support::{assert_cells_equal, day, Harness, TODAY};

const KAKAO: Platform = Platform::KakaoMoment;

async fn kakao(extra: &str) -> Harness {
    Harness::only(Backend::local(), KAKAO, extra).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kakao_every_cell_matches_the_report() {
    let h = kakao("").await;
    let world = std::sync::Arc::clone(&h.sim.world);
    crate::truth::every_cell_matches_the_report_of(h).await;
    assert!(
        world.stats(KAKAO).token_refreshes >= 1,
        "the business token came from the refresh token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kakao_four_workers_keep_one_report_call_per_account_per_five_seconds() {
    // Six 5-day units per account, four workers: without the shared lane they would call
    // the same account's report within the same second.
    let h = kakao("chunk_days = 5\nreport_interval = \"5s\"").await;
    h.sim
        .world
        .set_kakao_report_interval(Duration::from_secs(5));
    let today = day(TODAY);
    h.sim.world.set_now(today);
    let window = connectors::Window::trailing_days(today, 30);
    let options = SyncOptions {
        run: "paced".into(),
        today,
        window: None,
        accounts: None,
        workers: 4,
        commit_every: SyncOptions::DEFAULT_COMMIT_EVERY,
    };
    let started = std::time::Instant::now();
    let report = connectors::sync::sync(&h.warehouse, &h.sources, &[window], &options, &|_| {})
        .await
        .expect("sync runs");
    assert!(report.is_clean(), "{report:#?}");
    assert_cells_equal(&h.loaded(today).await, &h.expected(today));
    let stats = h.sim.world.stats(KAKAO);
    for account in ["300001", "300002"] {
        assert_eq!(
            h.sim.world.kakao_peak_report_calls(account),
            1,
            "{account}: peak report calls within 5 s"
        );
    }
    assert_eq!(
        stats.throttled, 0,
        "no call was refused with -813: {stats:?}"
    );
    assert_eq!(stats.report_runs, 12);
    println!(
        "12 report calls over 2 accounts with 4 workers in {:.1} s; peak per account per 5 s = 1",
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kakao_a_throttling_storm_and_passing_faults_lose_nothing() {
    let h = kakao("").await;
    h.sim.world.set_faults(
        KAKAO,
        Faults {
            throttle: 4,
            retry_after: 1,
            server_errors: 3,
            truncate: 2,
            slow: 1,
            slow_ms: 3_000,
            ..Faults::default()
        },
    );
    let today = day(TODAY);
    let report = h.sync(today, "storm").await;
    assert!(report.is_clean(), "{report:#?}");
    assert_cells_equal(&h.loaded(today).await, &h.expected(today));
    let s = h.sim.world.stats(KAKAO);
    assert_eq!(
        (s.throttled, s.server_errors, s.truncated, s.slow),
        (5, 3, 2, 1),
        "{s:?}"
    );
    let http = &report.sources[0].http;
    assert_eq!((http.throttled, http.retried), (5, 6), "{http:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kakao_drift_loads_and_an_unreadable_account_is_quarantined() {
    let h = kakao("[sources.kakao_moment.aliases]\nmetrics_impressions = \"metrics_imp\"").await;
    h.sim.world.set_drift(
        KAKAO,
        Drift {
            added_field: true,
            key_case: KeyCase::Upper,
            rename: Some(Rename {
                from: "imp".into(),
                to: "impressions".into(),
            }),
            ..Drift::default()
        },
    );
    let t1 = day(TODAY);
    let report = h.sync(t1, "drift").await;
    assert!(report.is_clean(), "{report:#?}");
    assert_cells_equal(&h.loaded(t1).await, &h.expected(t1));
    let added = h
        .query("SELECT count(metrics_video_play_100p) AS n FROM kakao_moment_creative_daily")
        .await;
    let text = arrow::util::pretty::pretty_format_batches(&added)
        .unwrap()
        .to_string();
    assert!(
        !text.contains("| 0 "),
        "the added metric is a column:\n{text}"
    );

    h.sim.world.set_drift(
        KAKAO,
        Drift {
            malformed_account: Some("300002".into()),
            ..Drift::default()
        },
    );
    let t2 = t1 + chrono::Days::new(1);
    let report = h.sync(t2, "malformed").await;
    let s = &report.sources[0];
    assert_eq!(s.quarantined.len(), 1, "{s:#?}");
    assert_eq!(s.quarantined[0].unit.account, "300002");
    assert!(
        s.quarantined[0].reason.contains("metrics_imp = \"n/a\""),
        "{}",
        s.quarantined[0].reason
    );
    assert_eq!(s.loaded_units, 1);
}
