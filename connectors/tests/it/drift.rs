//! Schema drift: added fields become columns, renamed fields map through aliases, key case
//! does not matter; what cannot be read is quarantined while everything else loads; and a
//! replay from raw rebuilds exactly what the sync loaded.

use connectors::config::Platform;
use connectors::sim::faults::Rename;
use connectors::sim::{Drift, KeyCase};
use testdata::Backend;

use crate::support::{assert_cells_equal, day, Harness, TODAY};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_renamed_and_recased_fields_still_load() {
    let h = Harness::new(
        Backend::local(),
        "",
        "[sources.google_ads.aliases]\nmetrics_spend_micros = \"metrics_cost_micros\"",
    )
    .await;
    h.sim.world.set_drift(
        Platform::Meta,
        Drift {
            added_field: true,
            key_case: KeyCase::Upper,
            ..Drift::default()
        },
    );
    h.sim.world.set_drift(
        Platform::GoogleAds,
        Drift {
            added_field: true,
            key_case: KeyCase::Pascal,
            rename: Some(Rename {
                from: "costMicros".into(),
                to: "spendMicros".into(),
            }),
            ..Drift::default()
        },
    );
    let today = day(TODAY);
    let report = h.sync(today, "drift").await;
    assert!(report.is_clean(), "{report:#?}");
    assert_cells_equal(&h.loaded(today).await, &h.expected(today));
    let added = h
        .query("SELECT count(quality_ranking) AS n FROM meta_insights")
        .await;
    assert!(arrow::util::pretty::pretty_format_batches(&added)
        .unwrap()
        .to_string()
        .contains('|'));
    let videos = h
        .query("SELECT count(metrics_video_views) AS n, count(metrics_cost_micros) AS c FROM google_ads_ad_daily")
        .await;
    let text = arrow::util::pretty::pretty_format_batches(&videos)
        .unwrap()
        .to_string();
    assert!(
        !text.contains("| 0 "),
        "added and aliased columns are filled:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_payload_is_quarantined_and_the_rest_loads() {
    let h = Harness::new(Backend::local(), "chunk_days = 10", "").await;
    let t1 = day(TODAY);
    assert!(h.sync(t1, "clean").await.is_clean());
    let before = h.loaded(t1).await;

    h.sim.world.set_drift(
        Platform::Meta,
        Drift {
            malformed_account: Some("1000000002".into()),
            ..Drift::default()
        },
    );
    h.sim.world.set_drift(
        Platform::GoogleAds,
        Drift {
            rename: Some(Rename {
                from: "costMicros".into(),
                to: "costAmountMicros".into(),
            }),
            ..Drift::default()
        },
    );
    let t2 = t1 + chrono::Days::new(1);
    let report = h.sync(t2, "drifted").await;
    assert!(!report.is_clean());
    let meta = report.sources.iter().find(|s| s.source == "meta").unwrap();
    assert_eq!(meta.quarantined.len(), 3, "{meta:#?}");
    assert!(meta
        .quarantined
        .iter()
        .all(|q| q.unit.account == "1000000002"));
    assert!(
        meta.quarantined[0].reason.contains("impressions = \"n/a\""),
        "{}",
        meta.quarantined[0].reason
    );
    assert_eq!(meta.loaded_units, 3, "the other account's units load");
    let google = report
        .sources
        .iter()
        .find(|s| s.source == "google_ads")
        .unwrap();
    assert_eq!(google.quarantined.len(), 2);
    let reason = &google.quarantined[0].reason;
    assert!(
        reason.contains("metrics_cost_micros")
            && reason.contains("metrics_cost_amount_micros = \"metrics_cost_micros\""),
        "the reason says what to map: {reason}"
    );

    // Quarantined payloads are kept with their reason.
    let store = h.warehouse.storage().store();
    use futures::TryStreamExt;
    let kept: Vec<String> = store
        .list(Some(&"raw/quarantine/drifted".into()))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        kept.iter().filter(|p| p.ends_with(".reason.json")).count(),
        5,
        "{kept:#?}"
    );
    assert_eq!(
        kept.iter().filter(|p| p.ends_with(".json.gz")).count(),
        5,
        "{kept:#?}"
    );

    // Quarantined slices keep the last good load; the rest is current.
    let after = h.loaded(t2).await;
    let expected = h.expected(t2);
    for (key, metrics) in &after {
        let quarantined = key.0 == "google_ads" || key.1 == "1000000002";
        if quarantined {
            if key.2 < t1 {
                assert_eq!(
                    Some(metrics),
                    before.get(key),
                    "{key:?} keeps its last good load"
                );
            }
        } else {
            assert_eq!(Some(metrics), expected.get(key), "{key:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_from_raw_equals_the_original_load() {
    let h = Harness::new(Backend::local(), "", "").await;
    h.sim.world.set_drift(
        Platform::Meta,
        Drift {
            added_field: true,
            key_case: KeyCase::Pascal,
            ..Drift::default()
        },
    );
    let t1 = day(TODAY);
    assert!(h.sync(t1, "original").await.is_clean());
    // The original run's days (the later sync adds days after them; those stay).
    let w = connectors::Window::trailing_days(t1, 30);
    let days = |col: &str| format!("{col} BETWEEN DATE '{}' AND DATE '{}'", w.since, w.until);
    let tables = [
        ("ad_performance", days("date")),
        ("meta_insights", days("_date")),
        ("google_ads_ad_daily", days("_date")),
    ];
    let mut original = Vec::new();
    for (t, filter) in &tables {
        original.push(h.contents(t, filter).await);
    }
    h.sim.world.set_drift(Platform::Meta, Drift::default());
    assert!(h.sync(t1 + chrono::Days::new(4), "later").await.is_clean());
    assert_ne!(
        h.contents("ad_performance", &tables[0].1).await,
        original[0]
    );

    // No network: the simulator is gone and the sources are built without credentials.
    let Harness {
        sim,
        warehouse,
        config,
        ..
    } = h;
    drop(sim);
    let offline =
        connectors::build_sources(&config.sources().unwrap(), connectors::Purpose::Replay).unwrap();
    let report = connectors::sync::replay(&warehouse, &offline, "original", &|_| {})
        .await
        .unwrap();
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!(
        report.sources.iter().map(|s| s.http.requests).sum::<u64>(),
        0
    );
    let session_h = ReadBack { warehouse };
    for ((t, filter), before) in tables.iter().zip(&original) {
        let replayed = session_h.contents(t, filter).await;
        assert_eq!(replayed.len(), before.len(), "{t}");
        assert!(
            replayed == *before,
            "{t}: replayed content differs from the original load"
        );
    }
}

/// Reading tables after the harness is taken apart.
struct ReadBack {
    warehouse: engine::Warehouse,
}

impl ReadBack {
    async fn contents(&self, table: &str, filter: &str) -> Vec<String> {
        crate::support::table_contents(&self.warehouse, table, filter).await
    }
}
