//! Google Ads with an OAuth client and refresh token instead of an hour-long access token.

use connectors::config::Platform;
use testdata::Backend;

use crate::support::{assert_cells_equal, day, Harness, TODAY};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_ads_refreshes_its_access_token_once_and_loads() {
    let h = Harness::with_google_oauth(Backend::local(), "sim-refresh-token").await;
    let today = day(TODAY);
    let report = h.sync(today, "oauth").await;
    assert!(report.is_clean(), "{report:#?}");
    assert_cells_equal(&h.loaded(today).await, &h.expected(today));
    assert_eq!(
        h.sim.world.stats(Platform::GoogleAds).token_refreshes,
        1,
        "the access token is cached for every unit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_refresh_token_fails_the_source_and_says_what_to_do() {
    let revoked = "1//revoked-refresh-token-value";
    let h = Harness::with_google_oauth(Backend::local(), revoked).await;
    let report = h.sync(day(TODAY), "revoked").await;
    let google = report
        .sources
        .iter()
        .find(|s| s.source == "google_ads")
        .unwrap();
    assert_eq!(google.failed.len(), 2, "{google:#?}");
    for f in &google.failed {
        assert!(f.reason.contains("invalid_grant"), "{}", f.reason);
        assert!(f.reason.contains("create a new one"), "{}", f.reason);
        assert!(!f.reason.contains(revoked), "{}", f.reason);
    }
    let meta = report.sources.iter().find(|s| s.source == "meta").unwrap();
    assert_eq!(meta.loaded_units, meta.units);
}
