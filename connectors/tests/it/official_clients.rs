//! The simulators answer requests shaped as the platforms' official client libraries send
//! them: Meta's Python SDK (facebook_business) runs an async insights report, polls it, pages
//! through the results following `paging.next`, and gets Graph errors it understands.
//! Google's official libraries speak gRPC and the simulator serves REST, so the REST answer
//! for the default version is parsed into that version's protobuf messages from Google's
//! Python library (`google-ads`), unknown fields refused. Google's GA4 Data API client
//! (`google-analytics-data`) runs tidemark's report against the GA4 simulator over its REST
//! transport, paging by offset.

use std::io::Write;
use std::process::{Command, Stdio};

use connectors::config::Platform;
use connectors::sim::{RunningSim, SimConfig};
use connectors::Window;

/// The simulators on 2026-11-20.
async fn simulator() -> RunningSim {
    connectors::sim::start_local(SimConfig {
        today: "2026-11-20".parse().unwrap(),
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

/// Run `tests/it/scripts/NAME` with `args`, `stdin` on its standard input, and read the JSON
/// summary it prints; `needs` names the package `.ci/run` installs for it.
async fn python(name: &str, args: Vec<String>, stdin: String, needs: &str) -> serde_json::Value {
    let script = format!("{}/tests/it/scripts/{name}", env!("CARGO_MANIFEST_DIR"));
    let out = tokio::task::spawn_blocking(move || {
        let mut child = Command::new("python3")
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{name} failed (it needs {needs}; .ci/run installs it):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON summary")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metas_python_sdk_reads_the_meta_simulator() {
    let sim = simulator().await;
    let window = Window::trailing_days(sim.world.now(), 7);
    let args = vec![
        sim.base_url(),
        sim.world.config.meta_token.clone(),
        "1000000001".into(),
        window.since.to_string(),
        window.until.to_string(),
    ];
    let summary = python("meta_sdk.py", args, String::new(), "facebook_business").await;
    let truth = sim
        .world
        .reported(Platform::Meta, "1000000001", window, sim.world.now());
    assert_eq!(summary["async_rows"], truth.len(), "{summary}");
    assert_eq!(summary["sync_rows"], truth.len(), "{summary}");
    assert_eq!(
        summary["impressions"],
        truth.iter().map(|r| r.metrics.impressions).sum::<i64>(),
        "{summary}"
    );
    assert_eq!(
        summary["same"], true,
        "async and sync results agree: {summary}"
    );
    assert_eq!(
        summary["retired_version"],
        serde_json::json!({"status": 400, "code": 2635}),
        "a version past its expiration gets Meta's deprecated-version error: {summary}"
    );
    let sdk_version = summary["sdk_version"].as_str().unwrap().to_string();
    assert_eq!(
        connectors::api_versions::check(Platform::Meta, &sdk_version, sim.world.now()),
        connectors::api_versions::Verdict::Live,
        "the SDK's default version {sdk_version} is one we list as live"
    );
    assert_eq!(
        summary["bad_token"],
        serde_json::json!({"status": 400, "code": 190, "type": "OAuthException"}),
        "{summary}"
    );
}

/// What the simulator streams for `version`, as our client asks for it (same GAQL, headers).
async fn search_stream(
    sim: &connectors::sim::RunningSim,
    version: &str,
    account: &str,
    window: Window,
) -> (u16, String) {
    let unit = connectors::raw::Unit::new("google_ads", account, window);
    let c = &sim.world.config;
    let response = reqwest::Client::new()
        .post(format!(
            "{}/{version}/customers/{account}/googleAds:searchStream",
            sim.base_url()
        ))
        .bearer_auth(&c.google_token)
        .header("developer-token", &c.google_developer_token)
        .json(&serde_json::json!({ "query": connectors::google_ads::query(&unit) }))
        .send()
        .await
        .expect("the simulator answers");
    let status = response.status().as_u16();
    (status, response.text().await.expect("a body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn googles_protobufs_parse_the_simulators_stream_for_the_default_version() {
    let sim = simulator().await;
    let version = connectors::api_versions::default_version(Platform::GoogleAds);
    let window = Window::trailing_days(sim.world.now(), 7);
    let account = "1234567001";
    let (status, body) = search_stream(&sim, version, account, window).await;
    assert_eq!(status, 200, "{body}");
    // Fails on any field the version's SearchGoogleAdsStreamResponse does not have.
    let summary = python(
        "google_ads_proto.py",
        vec![version.to_string()],
        body,
        "google-ads",
    )
    .await;
    let truth = sim
        .world
        .reported(Platform::GoogleAds, account, window, sim.world.now());
    assert!(!truth.is_empty());
    assert_eq!(summary["rows"], truth.len(), "{summary}");
    assert_eq!(
        summary["impressions"],
        truth.iter().map(|r| r.metrics.impressions).sum::<i64>(),
        "{summary}"
    );
    let shipped: Vec<String> = serde_json::from_value(summary["library_versions"].clone()).unwrap();
    assert!(
        shipped.iter().any(|v| v == version),
        "the official library ships {shipped:?}, not our default {version}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_google_simulator_refuses_a_sunset_version_as_google_does() {
    let sim = simulator().await;
    let window = Window::trailing_days(sim.world.now(), 7);
    // v22 was switched off on 2026-10-07; v23 still answers.
    let (status, body) = search_stream(&sim, "v22", "1234567001", window).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("NOT_FOUND"), "{body}");
    let (status, _) = search_stream(&sim, "v23", "1234567001", window).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn googles_ga4_client_reads_the_ga4_simulator() {
    let sim = simulator().await;
    let window = Window::trailing_days(sim.world.now(), 10);
    let args = vec![
        sim.base_url(),
        sim.world.config.google_token.clone(),
        "400000001".into(),
        window.since.to_string(),
        window.until.to_string(),
        "7".into(),
    ];
    let summary = python(
        "ga4_client.py",
        args,
        String::new(),
        "google-analytics-data",
    )
    .await;
    let (index, _) = sim.world.truth(Platform::Ga4).account("400000001").unwrap();
    let rows = connectors::sim::ga4::report_rows(
        &sim.world,
        index,
        window.since,
        window.until,
        sim.world.now(),
        false,
    );
    assert_eq!(summary["rows"], rows.len(), "{summary}");
    assert_eq!(summary["row_count"], rows.len(), "{summary}");
    assert_eq!(summary["pages"], rows.len().div_ceil(7), "{summary}");
    assert_eq!(
        summary["sessions"],
        rows.iter().map(|r| r.sessions).sum::<i64>(),
        "{summary}"
    );
    assert_eq!(
        summary["key_events"],
        rows.iter().map(|r| r.key_events).sum::<i64>(),
        "{summary}"
    );
    let revenue: i64 = rows.iter().map(|r| r.revenue_micros).sum();
    let parsed = summary["revenue"].as_f64().unwrap();
    assert!((parsed - revenue as f64 / 1e6).abs() < 1e-3, "{summary}");
    assert_eq!(summary["currency"], "KRW");
    assert!(summary["tokens_per_hour_remaining"].as_i64().unwrap() > 0);
    assert_eq!(
        summary["first_date"],
        window.since.format("%Y%m%d").to_string()
    );
}
