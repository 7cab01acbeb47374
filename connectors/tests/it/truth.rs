//! After a sync at simulated time T, every (account, day, ad, metric) cell of the window
//! equals what the platform reports at T; after time moves on and values restate (and rows
//! appear and vanish), a second sync makes that true again.

use testdata::Backend;

use crate::support::{assert_cells_equal, cells, day, Harness, TODAY};

/// The whole claim on a harness: sync, compare, move the clock, sync, compare.
pub async fn every_cell_matches_the_report_of(h: Harness) {
    let ad_level = h.platforms.iter().all(|p| p.feeds_ad_performance());
    let t1 = day(TODAY);
    let report = h.sync(t1, "t1").await;
    assert!(report.is_clean(), "{report:#?}");
    let expected = h.expected(t1);
    let loaded = h.loaded(t1).await;
    assert_cells_equal(&loaded, &expected);
    println!(
        "sync at {t1}: {} of {} cells match (100%)",
        cells(&loaded),
        cells(&expected)
    );

    let t2 = t1 + chrono::Days::new(6);
    let report = h.sync(t2, "t2").await;
    assert!(report.is_clean(), "{report:#?}");
    let expected2 = h.expected(t2);
    let loaded2 = h.loaded(t2).await;
    assert_cells_equal(&loaded2, &expected2);
    // Rows that were reported at t1 and are gone at t2 (vanished upstream) are gone here too.
    let vanished = expected
        .keys()
        .filter(|k| k.2 >= crate::support::day("2026-10-27") && !expected2.contains_key(*k))
        .count();
    // Ad-level rows vanish; a campaign's row (attribution platforms) only if all its ads do.
    assert!(
        vanished > 0 || !ad_level,
        "the simulator should have vanished some rows between syncs"
    );
    let restated = expected
        .iter()
        .filter(|(k, v)| expected2.get(*k).is_some_and(|v2| v2 != *v))
        .count();
    assert!(restated > 0, "values should have restated between syncs");
    println!(
        "sync at {t2}: {} of {} cells match (100%); {restated} rows restated, {vanished} vanished",
        cells(&loaded2),
        cells(&expected2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cell_matches_the_report_locally() {
    every_cell_matches_the_report_of(Harness::new(Backend::local(), "", "").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cell_matches_the_report_on_s3() {
    every_cell_matches_the_report_of(Harness::new(Backend::s3(), "", "").await).await;
}
