//! Rate limiting as each platform signals it: Meta's HTTP 400 codes with usage headers,
//! Google's 429 RESOURCE_EXHAUSTED with a retryDelay in the body, and plain 429 +
//! Retry-After. The sync waits, completes, and loads every day.

use connectors::config::Platform;
use connectors::sim::Faults;
use testdata::Backend;

use crate::support::{assert_cells_equal, day, Harness, TODAY};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_storm_slows_the_sync_but_loses_nothing() {
    let h = Harness::new(Backend::local(), "", "").await;
    h.sim.world.set_faults(
        Platform::Meta,
        Faults {
            throttle: 16,
            retry_after: 2,
            ..Faults::default()
        },
    );
    h.sim.world.set_faults(
        Platform::GoogleAds,
        Faults {
            throttle: 6,
            retry_delay_ms: 50,
            retry_after: 2,
            ..Faults::default()
        },
    );
    let today = day(TODAY);
    let report = h.sync(today, "storm").await;
    assert!(report.is_clean(), "{report:#?}");
    assert_cells_equal(&h.loaded(today).await, &h.expected(today));
    let meta = h.sim.world.stats(Platform::Meta);
    let google = h.sim.world.stats(Platform::GoogleAds);
    assert_eq!(meta.throttled, 18, "every planned throttle was served");
    assert_eq!(google.throttled, 8);
    let seen: u64 = report.sources.iter().map(|s| s.http.throttled).sum();
    assert_eq!(seen, 26, "the client counted every throttled answer");
    for s in &report.sources {
        println!(
            "{}: {} requests, {} throttled, waited {} ms, {} of {} units loaded",
            s.source, s.http.requests, s.http.throttled, s.http.waited_ms, s.loaded_units, s.units
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_daily_quota_fails_fast_and_names_the_units() {
    let h = Harness::new(Backend::local(), "", "max_wait = \"1m\"").await;
    h.sim.world.set_faults(
        Platform::GoogleAds,
        Faults {
            quota_exhausted: true,
            ..Faults::default()
        },
    );
    let report = h.sync(day(TODAY), "quota").await;
    let google = report
        .sources
        .iter()
        .find(|s| s.source == "google_ads")
        .unwrap();
    assert_eq!(google.failed.len(), 2, "{google:#?}");
    for f in &google.failed {
        assert!(f.reason.contains("more than max_wait"), "{}", f.reason);
    }
    assert_eq!(google.http.requests, 2, "a day-long wait is not retried");
    let meta = report.sources.iter().find(|s| s.source == "meta").unwrap();
    assert!(meta.failed.is_empty() && meta.loaded_units == meta.units);
}
