//! The simulators answer requests shaped as the platforms' official client libraries send
//! them: Meta's Python SDK (facebook_business) runs an async insights report, polls it, pages
//! through the results following `paging.next`, and gets Graph errors it understands.
//! Google's official libraries speak gRPC and the simulator serves REST, so the REST answer
//! for the default version is parsed into that version's protobuf messages from Google's
//! Python library (`google-ads`), unknown fields refused.

use std::process::Command;

use connectors::config::Platform;
use connectors::sim::SimConfig;
use connectors::Window;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metas_python_sdk_reads_the_meta_simulator() {
    let sim = connectors::sim::start_local(SimConfig {
        today: "2026-11-20".parse().unwrap(),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let window = Window::trailing_days(sim.world.now(), 7);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/scripts/meta_sdk.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script).args([
        sim.base_url(),
        sim.world.config.meta_token.clone(),
        "1000000001".into(),
        window.since.to_string(),
        window.until.to_string(),
    ]);
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("python3 runs"))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "the SDK script failed (is facebook_business installed? .ci/run installs it):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
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
    let sim = connectors::sim::start_local(SimConfig {
        today: "2026-11-20".parse().unwrap(),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let version = connectors::api_versions::default_version(Platform::GoogleAds);
    let window = Window::trailing_days(sim.world.now(), 7);
    let account = "1234567001";
    let (status, body) = search_stream(&sim, version, account, window).await;
    assert_eq!(status, 200, "{body}");

    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/it/scripts/google_ads_proto.py"
    );
    let mut child = Command::new("python3")
        .args([script, version])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), body.as_bytes()).unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{version}'s SearchGoogleAdsStreamResponse (PyPI google-ads; .ci/run installs it) refused the simulator's answer:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
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
    let sim = connectors::sim::start_local(SimConfig {
        today: "2026-11-20".parse().unwrap(),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let window = Window::trailing_days(sim.world.now(), 7);
    // v22 was switched off on 2026-10-07; v23 still answers.
    let (status, body) = search_stream(&sim, "v22", "1234567001", window).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("NOT_FOUND"), "{body}");
    let (status, _) = search_stream(&sim, "v23", "1234567001", window).await;
    assert_eq!(status, 200);
}
