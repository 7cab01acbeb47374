//! The sample `attributed_performance` mart (testdata/attribution_marts/) on a fixture small
//! enough to compute by hand: spend from two platforms and currencies, AppsFlyer installs
//! and revenue, GA4 sessions with an `(other)` row, and campaign names that differ only in
//! case and spacing. `tidemark mart refresh` must give exactly the hand-computed rows.

use std::path::Path;

use chrono::NaiveDate;
use connectors::normalize::{self, AdRow, Provenance, Record};
use engine::model::AD_PERFORMANCE;
use engine::{SliceKey, StorageConfig, Warehouse};
use serde_json::Value;

use crate::resume::stdout_of;

const DAY: &str = "2026-11-01";

fn day() -> NaiveDate {
    DAY.parse().unwrap()
}

fn spend(
    source: &str,
    account: &str,
    campaign: Option<&str>,
    currency: &str,
    micros: i128,
    impressions: i64,
) -> (String, AdRow) {
    (
        source.to_string(),
        AdRow {
            account_id: account.into(),
            date: Some(day()),
            account_name: None,
            campaign_id: Some(format!("{source}-{}", campaign.unwrap_or("none"))),
            campaign_name: campaign.map(str::to_string),
            ad_group_id: None,
            ad_group_name: None,
            ad_id: Some(format!("{source}-ad-{impressions}")),
            ad_name: None,
            currency: Some(currency.into()),
            impressions: Some(impressions),
            clicks: Some(impressions / 20),
            spend: Some(micros),
            conversions: None,
            installs: None,
            revenue: None,
        },
    )
}

fn record(fields: &[(&str, &str)]) -> Record {
    fields
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect()
}

async fn write_source_table(
    warehouse: &Warehouse,
    spec: &'static normalize::TableSpec,
    source: &str,
    account: &str,
    records: Vec<Record>,
) {
    let provenance = Provenance {
        source: source.into(),
        account: account.into(),
        fetched_at: chrono::Utc::now(),
        raw_ref: "fixture".into(),
    };
    let rows: Vec<(Record, Provenance)> = records
        .into_iter()
        .map(|r| (r, provenance.clone()))
        .collect();
    let batch = normalize::source_batch(spec, "date", &rows).unwrap();
    warehouse
        .replace_slices(spec.table)
        .with_layout(normalize::source_layout())
        .with_slices([SliceKey::new(source, account, day())])
        .with_rows(vec![batch])
        .await
        .unwrap();
}

async fn fixture(warehouse_dir: &Path) {
    let warehouse = Warehouse::open(
        &warehouse_dir.display().to_string(),
        &StorageConfig::default(),
    )
    .await
    .unwrap();
    let rows = [
        // "Brand  Search" (two spaces, USD) and "brand search" are one campaign.
        spend("meta", "1", Some("Brand  Search"), "USD", 10_000_000, 1000),
        spend(
            "google_ads",
            "2",
            Some("brand search"),
            "KRW",
            5_000_000_000,
            3000,
        ),
        spend("meta", "1", Some("Retarget"), "KRW", 2_000_000_000, 500),
        // Naver stat reports name no campaign: cannot match, left out.
        spend("naver_search_ad", "3", None, "KRW", 700_000_000, 800),
    ];
    // One replace per (source, account) slice, with all of the slice's rows.
    let mut slices: std::collections::BTreeMap<(String, String), Vec<AdRow>> = Default::default();
    for (source, row) in rows {
        slices
            .entry((source, row.account_id.clone()))
            .or_default()
            .push(row);
    }
    for ((source, account), rows) in slices {
        let batch = normalize::ad_performance_batch(&source, &rows).unwrap();
        warehouse
            .replace_slices(AD_PERFORMANCE)
            .with_slices([SliceKey::new(&source, &account, day())])
            .with_rows(vec![batch])
            .await
            .unwrap();
    }
    write_source_table(
        &warehouse,
        &connectors::appsflyer::SPEC,
        "appsflyer",
        "id1",
        vec![
            record(&[
                ("date", DAY),
                ("media_source_pid", "Facebook Ads"),
                ("campaign_c", "Brand Search "),
                ("installs", "6"),
                ("total_revenue", "20000"),
            ]),
            record(&[
                ("date", DAY),
                ("media_source_pid", "googleadwords_int"),
                ("campaign_c", "brand search"),
                ("installs", "4"),
                ("total_revenue", "10000"),
            ]),
            record(&[
                ("date", DAY),
                ("media_source_pid", "naver_int"),
                ("campaign_c", "Only AF"),
                ("installs", "3"),
                ("total_revenue", "100"),
            ]),
        ],
    )
    .await;
    write_source_table(
        &warehouse,
        &connectors::ga4::SPEC,
        "ga4",
        "400",
        vec![
            record(&[
                ("date", DAY),
                ("session_source", "google"),
                ("session_campaign_name", "Brand Search"),
                ("sessions", "400"),
                ("key_events", "7"),
                ("purchase_revenue", "12.5"),
                ("currency_code", "USD"),
            ]),
            record(&[
                ("date", DAY),
                ("session_source", "facebook"),
                ("session_campaign_name", "retarget"),
                ("sessions", "20"),
                ("key_events", "1"),
                ("purchase_revenue", "1000"),
                ("currency_code", "KRW"),
            ]),
            record(&[
                ("date", DAY),
                ("session_source", "(other)"),
                ("session_campaign_name", "(other)"),
                ("sessions", "99"),
                ("key_events", "9"),
                ("purchase_revenue", "999"),
                ("currency_code", "KRW"),
                ("data_loss_from_other_row", "true"),
            ]),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attributed_performance_equals_a_hand_computation() {
    let project = tempfile::tempdir().unwrap();
    std::fs::write(project.path().join("tidemark.toml"), "warehouse = \"wh\"\n").unwrap();
    let testdata = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata");
    for (dir, from, file) in [
        ("marts", "attribution_marts", "attributed_performance.sql"),
        ("seeds", "seeds", "fx_rates.csv"),
    ] {
        std::fs::create_dir_all(project.path().join(dir)).unwrap();
        std::fs::copy(
            testdata.join(from).join(file),
            project.path().join(dir).join(file),
        )
        .unwrap();
    }
    fixture(&project.path().join("wh")).await;
    stdout_of(project.path(), &["mart", "refresh"]).await;
    let wh = project.path().join("wh").display().to_string();
    let out = stdout_of(
        project.path(),
        &[
            "sql", "-w", &wh, "--format", "csv", "-c",
            "SELECT campaign_key, impressions, spend_krw, af_installs, af_revenue_krw, ga_sessions, \
             ga_key_events, ga_revenue_krw, cpi_krw, af_roas FROM attributed_performance ORDER BY campaign_key",
        ],
    )
    .await;
    // By hand (fx_rates: USD = 1390.5 KRW):
    //   brand search: impressions 1000 + 3000 = 4000; spend 10 USD × 1390.5 + 5000 = 18905;
    //     installs 6 + 4 = 10; AppsFlyer revenue 20000 + 10000 = 30000; GA4 400 sessions,
    //     7 key events, 12.5 USD × 1390.5 = 17381.25; CPI 18905 / 10 = 1890.5;
    //     ROAS 30000 / 18905 = 1.58688… → 1.5869.
    //   only af: AppsFlyer only (3 installs, 100).
    //   retarget: spend 2000, no AppsFlyer row; GA4 20 sessions, 1 key event, 1000.
    //   Naver's unnamed spend and GA4's (other) row appear nowhere.
    let expected = "\
campaign_key,impressions,spend_krw,af_installs,af_revenue_krw,ga_sessions,ga_key_events,ga_revenue_krw,cpi_krw,af_roas
brand search,4000,18905.0000000000,10,30000.000000,400,7.0,17381.2500000000,1890.5,1.5869
only af,,,3,100.000000,,,,,
retarget,500,2000.0000000000,,,20,1.0,1000.0000000000,,";
    assert_eq!(out.trim(), expected, "{out}");
}
