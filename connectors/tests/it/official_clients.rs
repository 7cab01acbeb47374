//! The simulators answer requests shaped as the platforms' official client libraries send
//! them: Meta's Python SDK (facebook_business) runs an async insights report, polls it, pages
//! through the results following `paging.next`, and gets Graph errors it understands.
//! (Google's official libraries speak gRPC; the Google Ads simulator serves the REST API.)

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
        summary["bad_token"],
        serde_json::json!({"status": 400, "code": 190, "type": "OAuthException"}),
        "{summary}"
    );
}
