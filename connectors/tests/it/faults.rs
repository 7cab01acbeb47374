//! Faults: 5xx, truncated bodies, slow answers and failed report runs are retried within
//! bounds; a permanent failure leaves committed data as it was and names the failed slices.

use connectors::config::Platform;
use connectors::sim::Faults;
use testdata::Backend;

use crate::support::{assert_cells_equal, day, Harness, TODAY};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passing_faults_are_retried_and_everything_loads() {
    let h = Harness::new(Backend::local(), "", "").await;
    let faults = Faults {
        server_errors: 3,
        truncate: 2,
        slow: 1,
        slow_ms: 3_000, // longer than request_timeout (2s): the request times out and is retried
        ..Faults::default()
    };
    h.sim.world.set_faults(
        Platform::Meta,
        Faults {
            job_failures: 1,
            ..faults.clone()
        },
    );
    h.sim.world.set_faults(Platform::GoogleAds, faults);
    let today = day(TODAY);
    let report = h.sync(today, "faults").await;
    assert!(report.is_clean(), "{report:#?}");
    assert_cells_equal(&h.loaded(today).await, &h.expected(today));
    for platform in [Platform::Meta, Platform::GoogleAds] {
        let s = h.sim.world.stats(platform);
        assert_eq!(
            (s.server_errors, s.truncated, s.slow),
            (3, 2, 1),
            "{platform}: {s:?}"
        );
    }
    let retried: u64 = report.sources.iter().map(|s| s.http.retried).sum();
    assert_eq!(
        retried, 12,
        "each 5xx, cut body and timeout retried once: {report:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_keeps_committed_data_and_names_the_slices() {
    let h = Harness::new(Backend::local(), "max_attempts = 3", "max_attempts = 3").await;
    let t1 = day(TODAY);
    assert!(h.sync(t1, "before").await.is_clean());
    let before = h.loaded(t1).await;

    h.sim.world.set_faults(
        Platform::Meta,
        Faults {
            fail_account: Some("1000000002".into()),
            ..Faults::default()
        },
    );
    let t2 = t1 + chrono::Days::new(2);
    let report = h.sync(t2, "after").await;
    let meta = report.sources.iter().find(|s| s.source == "meta").unwrap();
    assert!(!report.is_clean());
    let failed: Vec<String> = meta.failed.iter().map(|f| f.unit.to_string()).collect();
    assert_eq!(meta.failed.len(), 5, "{failed:?}");
    assert!(
        failed.iter().all(|u| u.starts_with("meta/1000000002 ")),
        "{failed:?}"
    );
    assert!(
        meta.failed[0].reason.contains("HTTP 500"),
        "{}",
        meta.failed[0].reason
    );
    assert!(
        meta.failed[0].reason.contains("failed 3 times"),
        "{}",
        meta.failed[0].reason
    );

    // The failed account's slices are exactly as the first sync left them; the rest moved on.
    let after = h.loaded(t2).await;
    let expected = h.expected(t2);
    for (key, metrics) in &after {
        if key.0 == "meta" && key.1 == "1000000002" {
            if key.2 < t1 {
                assert_eq!(Some(metrics), before.get(key), "{key:?} must be untouched");
            }
        } else {
            assert_eq!(Some(metrics), expected.get(key), "{key:?} must be current");
        }
    }
    let untouched_days = after
        .keys()
        .filter(|k| k.0 == "meta" && k.1 == "1000000002")
        .count();
    assert!(untouched_days > 0);
}
