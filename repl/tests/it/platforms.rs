//! `tidemark sync` against the Naver Search Ad, Kakao Moment, AppsFlyer and GA4 simulators as
//! a user runs it, at trace level with JSON logs: faults are retried, an unreadable account
//! is named, a wrong Naver secret key and a wrong Kakao token fail naming what to fix, replay
//! needs no credentials, and no secret appears in any output line or any warehouse file.

use std::path::Path;
use std::process::Command;

use connectors::config::Platform;
use connectors::sim::{Drift, Faults, SimConfig};

use crate::sync::{run, text, warehouse_bytes};

const NAVER_KEY: &str = "0100000000naverLicenseKey9d1e";
const NAVER_SECRET: &str = "AQAAAABnaverSecretKey==7c2f";
const KAKAO_TOKEN: &str = "kakaoBusinessTokenSecret-51ab";
const APPSFLYER_TOKEN: &str = "eyJhbGciOiJappsflyerSecret.3e1f";
const GA4_TOKEN: &str = "ya29.ga4SecretAccessToken-9a2c";

fn tidemark(project: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tidemark"));
    cmd.env_remove("RUST_LOG")
        .env_remove("TIDEMARK_WAREHOUSE")
        .env("TIDEMARK_PROJECT", project)
        .env("SIM_NAVER_API_KEY", NAVER_KEY)
        .env("SIM_NAVER_SECRET", NAVER_SECRET)
        .env("SIM_KAKAO_TOKEN", KAKAO_TOKEN)
        .env("SIM_APPSFLYER_TOKEN", APPSFLYER_TOKEN)
        .env("SIM_GA4_TOKEN", GA4_TOKEN);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn naver_kakao_appsflyer_ga4_sync_name_failures_replay_and_never_show_a_secret() {
    let sim = connectors::sim::start_local(SimConfig {
        today: "2026-11-20".parse().unwrap(),
        naver_api_key: NAVER_KEY.into(),
        naver_secret: NAVER_SECRET.into(),
        naver_job_polls: 1,
        kakao_token: KAKAO_TOKEN.into(),
        kakao_report_interval_ms: 200,
        appsflyer_token: APPSFLYER_TOKEN.into(),
        google_token: GA4_TOKEN.into(),
        ..SimConfig::default()
    })
    .await
    .expect("start simulator");
    let project = tempfile::tempdir().unwrap();
    std::fs::write(
        project.path().join("tidemark.toml"),
        format!(
            r#"
warehouse = "wh"

[sources.naver_search_ad]
base_url = "{base}"
api_key = {{ env = "SIM_NAVER_API_KEY" }}
secret_key = {{ env = "SIM_NAVER_SECRET" }}
accounts = ["1100001", "1100002"]
window_days = 3
poll_interval = "5ms"
backoff = "10ms"

[sources.kakao_moment]
base_url = "{base}"
access_token = {{ env = "SIM_KAKAO_TOKEN" }}
accounts = ["300001", "300002"]
window_days = 3
report_interval = "200ms"
backoff = "10ms"

[sources.appsflyer]
base_url = "{base}"
access_token = {{ env = "SIM_APPSFLYER_TOKEN" }}
accounts = ["id1500000001", "id1500000002"]
window_days = 3
backoff = "10ms"

[sources.ga4]
base_url = "{base}"
access_token = {{ env = "SIM_GA4_TOKEN" }}
accounts = ["400000001"]
window_days = 3
page_size = 4
backoff = "10ms"
"#,
            base = sim.base_url()
        ),
    )
    .unwrap();
    let world = &sim.world;
    world.set_faults(
        Platform::NaverSearchAd,
        Faults {
            throttle: 3,
            server_errors: 2,
            truncate: 1,
            ..Faults::default()
        },
    );
    world.set_faults(
        Platform::KakaoMoment,
        Faults {
            server_errors: 2,
            ..Faults::default()
        },
    );
    for platform in [Platform::AppsFlyer, Platform::Ga4] {
        world.set_faults(
            platform,
            Faults {
                throttle: 1,
                server_errors: 1,
                ..Faults::default()
            },
        );
    }
    world.set_drift(
        Platform::KakaoMoment,
        Drift {
            malformed_account: Some("300002".into()),
            ..Drift::default()
        },
    );
    let mut outputs = Vec::new();

    // 1. Faults pass; Kakao's second account cannot be read: named, the rest loads.
    let mut cmd = tidemark(project.path());
    cmd.args([
        "-vv",
        "--log-format",
        "json",
        "sync",
        "--today",
        "2026-11-20",
        "--run",
        "first",
    ]);
    let first = run(cmd).await;
    let out = text(&first);
    assert_eq!(first.status.code(), Some(1), "{out}");
    assert!(out.contains("QUARANTINED kakao_moment/300002"), "{out}");
    let summary = String::from_utf8_lossy(&first.stdout).to_string();
    assert!(
        summary.contains("naver_search_ad") && summary.contains("6/6"),
        "{summary}"
    );
    assert!(
        summary.contains("appsflyer") && summary.contains("ga4"),
        "{summary}"
    );
    outputs.push(out);

    // 2. A wrong Naver secret key: refused signatures, named fix, the wrong key not shown.
    world.set_drift(Platform::KakaoMoment, Drift::default());
    let mut cmd = tidemark(project.path());
    cmd.env("SIM_NAVER_SECRET", "AQAAAABwrongButSecret==0b9d")
        .env("SIM_KAKAO_TOKEN", "kakaoWrongButSecret-77c0")
        .args(["-vv", "sync", "--today", "2026-11-20"]);
    let rejected = run(cmd).await;
    let out = text(&rejected);
    assert_eq!(rejected.status.code(), Some(1), "{out}");
    assert!(out.contains("FAILED naver_search_ad/1100001"), "{out}");
    assert!(out.contains("secret_key"), "{out}");
    assert!(out.contains("FAILED kakao_moment/300001"), "{out}");
    assert!(
        out.contains("environment variable SIM_KAKAO_TOKEN"),
        "{out}"
    );
    for wrong in ["AQAAAABwrongButSecret==0b9d", "kakaoWrongButSecret-77c0"] {
        assert!(!out.contains(wrong), "{out}");
    }
    outputs.push(out);

    // 3. Replay needs neither the network nor credentials.
    drop(sim);
    let mut cmd = tidemark(project.path());
    cmd.env_remove("SIM_NAVER_API_KEY")
        .env_remove("SIM_NAVER_SECRET")
        .env_remove("SIM_KAKAO_TOKEN")
        .env_remove("SIM_APPSFLYER_TOKEN")
        .env_remove("SIM_GA4_TOKEN")
        .args(["-vv", "sync", "--replay", "first"]);
    let replay = run(cmd).await;
    let out = text(&replay);
    assert!(out.contains("run first replayed"), "{out}");
    outputs.push(out);

    let secrets = [
        NAVER_KEY,
        NAVER_SECRET,
        KAKAO_TOKEN,
        APPSFLYER_TOKEN,
        GA4_TOKEN,
    ];
    for (i, output) in outputs.iter().enumerate() {
        for secret in secrets {
            assert!(!output.contains(secret), "run {i} printed a secret");
        }
    }
    let mut files = Vec::new();
    warehouse_bytes(&project.path().join("wh"), &mut files);
    assert!(
        files.iter().any(|(p, _)| p.ends_with(".tsv.gz")),
        "Naver reports land as TSV"
    );
    for (path, data) in &files {
        let data = String::from_utf8_lossy(data);
        for secret in secrets {
            assert!(!data.contains(secret), "{path} holds a secret");
        }
    }
    let lines: usize = outputs.iter().map(|o| o.lines().count()).sum();
    println!(
        "checked {lines} output lines and {} warehouse files for {} secrets: none found",
        files.len(),
        secrets.len()
    );
}
