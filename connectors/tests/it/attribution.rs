//! AppsFlyer (aggregate CSV) and GA4 (runReport) against their simulators: every campaign
//! cell equals the report after a sync and after a restating clock move; throttling and
//! passing faults lose nothing; a spent daily quota fails fast naming the units; drift (new
//! in-app event columns, `N/A` cells, GA4's renamed conversions, `(other)` rows and
//! thresholding) loads and is kept visible; an unreadable account is quarantined.

use connectors::config::Platform;
use connectors::sim::faults::Rename;
use connectors::sim::{Drift, Faults};
use testdata::Backend;

use crate::support::{assert_cells_equal, day, Harness, TODAY};

const APPSFLYER: Platform = Platform::AppsFlyer;
const GA4: Platform = Platform::Ga4;

async fn only(platform: Platform, extra: &str) -> Harness {
    Harness::only(Backend::local(), platform, extra).await
}

fn text_of(batches: &[arrow::array::RecordBatch]) -> String {
    arrow::util::pretty::pretty_format_batches(batches)
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appsflyer_every_cell_matches_the_report() {
    crate::truth::every_cell_matches_the_report_of(only(APPSFLYER, "").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ga4_every_cell_matches_the_report_across_pages() {
    let h = only(GA4, "").await;
    let world = std::sync::Arc::clone(&h.sim.world);
    crate::truth::every_cell_matches_the_report_of(h).await;
    // 30 days × 3 campaigns = 90 rows per property, 40 per page: 3 pages per sync.
    assert_eq!(
        world.stats(GA4).requests,
        2 * 2 * 3,
        "{:?}",
        world.stats(GA4)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attribution_throttling_and_passing_faults_lose_nothing() {
    for platform in [APPSFLYER, GA4] {
        let h = only(platform, "").await;
        h.sim.world.set_faults(
            platform,
            Faults {
                throttle: 3,
                retry_after: 1,
                server_errors: 2,
                truncate: 1,
                slow: 1,
                slow_ms: 3_000,
                ..Faults::default()
            },
        );
        let today = day(TODAY);
        let report = h.sync(today, "storm").await;
        assert!(report.is_clean(), "{platform}: {report:#?}");
        assert_cells_equal(&h.loaded(today).await, &h.expected(today));
        let s = h.sim.world.stats(platform);
        assert_eq!(
            (s.throttled, s.server_errors, s.truncated, s.slow),
            (4, 2, 1, 1),
            "{platform}: {s:?}"
        );
        let http = &report.sources[0].http;
        assert_eq!(
            (http.throttled, http.retried),
            (4, 4),
            "{platform}: {http:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_daily_quota_fails_fast_and_names_the_units() {
    // AppsFlyer asks to wait until 00:00 UTC, more than max_wait (1 s) all day but its last
    // second; GA4's daily tokens are not waited for at all.
    for (platform, says) in [(APPSFLYER, "00:00 UTC"), (GA4, "daily tokens are spent")] {
        let h = only(platform, "max_wait = \"1s\"").await;
        h.sim.world.set_faults(
            platform,
            Faults {
                quota_exhausted: true,
                ..Faults::default()
            },
        );
        let report = h.sync(day(TODAY), "quota").await;
        let s = &report.sources[0];
        assert_eq!(s.failed.len(), 2, "{platform}: {s:#?}");
        for f in &s.failed {
            assert!(f.reason.contains(says), "{}", f.reason);
            assert!(f.reason.contains("gave up after 1 attempt"), "{}", f.reason);
        }
        assert_eq!(
            s.http.requests, 2,
            "{platform}: a day-long wait is not retried"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appsflyer_new_event_columns_load_and_an_unreadable_app_is_quarantined() {
    let h = only(APPSFLYER, "").await;
    h.sim.world.set_drift(
        APPSFLYER,
        Drift {
            added_field: true,
            ..Drift::default()
        },
    );
    let t1 = day(TODAY);
    assert!(h.sync(t1, "events").await.is_clean());
    assert_cells_equal(&h.loaded(t1).await, &h.expected(t1));
    let events = text_of(
        &h.query(
            "SELECT count(af_complete_registration_event_counter) > 0 AS new_event, \
             count(af_purchase_sales_in_usd) > 0 AS purchases, count(roi) < count(*) AS some_na \
             FROM appsflyer_partners_daily",
        )
        .await,
    );
    assert!(events.contains("| true      | true      |"), "{events}");

    h.sim.world.set_drift(
        APPSFLYER,
        Drift {
            malformed_account: Some("id1500000002".into()),
            ..Drift::default()
        },
    );
    let report = h.sync(t1 + chrono::Days::new(1), "malformed").await;
    let s = &report.sources[0];
    assert_eq!(s.quarantined.len(), 1, "{s:#?}");
    assert!(
        s.quarantined[0].reason.contains("installs = \"n/a\""),
        "{}",
        s.quarantined[0].reason
    );
    assert!(s.quarantined[0].path.contains("id1500000002"));
    assert_eq!(s.loaded_units, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ga4_renamed_conversions_load_and_other_rows_stay_visible() {
    let h = only(GA4, "").await;
    h.sim.world.set_drift(
        GA4,
        Drift {
            rename: Some(Rename {
                from: "keyEvents".into(),
                to: "conversions".into(),
            }),
            ..Drift::default()
        },
    );
    let t1 = day(TODAY);
    assert!(h.sync(t1, "renamed").await.is_clean());
    assert_cells_equal(&h.loaded(t1).await, &h.expected(t1));

    h.sim.world.set_drift(
        GA4,
        Drift {
            folded_rows: true,
            ..Drift::default()
        },
    );
    let t2 = t1 + chrono::Days::new(1);
    assert!(h.sync(t2, "folded").await.is_clean());
    let folded = text_of(
        &h.query(&format!(
            "SELECT count(*) AS other_rows, min(subject_to_thresholding) AS thresholded, \
             min(data_loss_from_other_row) AS folded FROM ga4_traffic_daily \
             WHERE session_campaign_name = '(other)' AND date >= DATE '{}'",
            t2 - chrono::Days::new(30)
        ))
        .await,
    );
    assert!(
        folded.contains("| 60         | true        | true   |"),
        "one (other) row per day and property, flagged:\n{folded}"
    );

    h.sim.world.set_drift(
        GA4,
        Drift {
            malformed_account: Some("400000002".into()),
            ..Drift::default()
        },
    );
    let report = h.sync(t2 + chrono::Days::new(1), "malformed").await;
    let s = &report.sources[0];
    assert_eq!(s.quarantined.len(), 1, "{s:#?}");
    assert_eq!(s.quarantined[0].unit.account, "400000002");
    assert!(
        s.quarantined[0].reason.contains("sessions = \"n/a\""),
        "{}",
        s.quarantined[0].reason
    );
    assert_eq!(s.loaded_units, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appsflyer_raw_installs_and_events_match_the_report_and_split_at_maximum_rows() {
    for report in ["installs_report", "in_app_events_report"] {
        // A cap well under a 30-day range's rows: every unit is fetched again day by day.
        let h = only(
            APPSFLYER,
            &format!("report = \"{report}\"\npage_size = 2000"),
        )
        .await;
        let today = day(TODAY);
        let report_ = h.sync(today, "raw").await;
        assert!(report_.is_clean(), "{report}: {report_:#?}");
        let expected = h.expected(today);
        assert!(!expected.is_empty());
        assert_cells_equal(&h.loaded(today).await, &expected);
        let s = &report_.sources[0];
        assert!(
            s.pages > s.units,
            "{report}: the capped answers were fetched again by day ({} pages for {} units)",
            s.pages,
            s.units
        );
        let rows = text_of(
            &h.query("SELECT count(DISTINCT appsflyer_id) = count(*) AS unique_ids FROM appsflyer_raw_events")
                .await,
        );
        assert!(rows.contains("true"), "{rows}");
        // A restating move: rows appear (late installs, purchases) and the slices follow.
        let later = today + chrono::Days::new(3);
        assert!(h.sync(later, "raw-later").await.is_clean());
        assert_cells_equal(&h.loaded(later).await, &h.expected(later));
        println!(
            "{report}: {} pages for {} units, cells equal after two syncs",
            s.pages, s.units
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appsflyer_raw_quota_and_a_day_over_the_cap_are_named() {
    let h = only(APPSFLYER, "report = \"installs_report\"\nmax_wait = \"1s\"").await;
    h.sim.world.set_faults(
        APPSFLYER,
        Faults {
            quota_exhausted: true,
            ..Faults::default()
        },
    );
    let report = h.sync(day(TODAY), "quota").await;
    let s = &report.sources[0];
    assert_eq!(s.failed.len(), 2, "{s:#?}");
    assert!(
        s.failed[0].reason.contains("calls limit has been reached"),
        "{}",
        s.failed[0].reason
    );

    let h = only(APPSFLYER, "report = \"installs_report\"\npage_size = 3").await;
    let report = h.sync(day(TODAY), "cap").await;
    let s = &report.sources[0];
    assert_eq!(s.failed.len(), 2, "{s:#?}");
    assert!(
        s.failed[0].reason.contains("raise page_size"),
        "{}",
        s.failed[0].reason
    );
}
