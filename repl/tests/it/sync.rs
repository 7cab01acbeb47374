//! `tidemark sync` as a user runs it: against the simulators on loopback, with faults and a
//! payload that cannot be read. It exits non-zero naming what was quarantined or failed,
//! `--replay` rebuilds from raw without credentials, and no configured secret appears in any
//! output line (at trace level, as JSON logs) or anywhere in the warehouse.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output};

use connectors::config::Platform;
use connectors::sim::{Drift, Faults, SimConfig};

use crate::support::meta_and_google_ads_sources;

const META_TOKEN: &str = "EAAGsecretMetaToken7f3a9c1d";
const GOOGLE_TOKEN: &str = "ya29.secretGoogleToken-b81d";
const DEVELOPER_TOKEN: &str = "devSecretToken42aa";

fn tidemark(project: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tidemark"));
    cmd.env_remove("RUST_LOG")
        .env_remove("TIDEMARK_WAREHOUSE")
        .env("TIDEMARK_PROJECT", project);
    with_sim_tokens(&mut cmd);
    cmd
}

/// `cmd` with the variables that give a project of `support::meta_and_google_ads_sources` the
/// tokens `simulator` accepts.
pub(crate) fn with_sim_tokens(cmd: &mut Command) -> &mut Command {
    cmd.env("SIM_META_TOKEN", META_TOKEN)
        .env("SIM_GOOGLE_TOKEN", GOOGLE_TOKEN)
        .env("SIM_DEV_TOKEN", DEVELOPER_TOKEN)
}

/// The simulators on `today`, accepting this file's tokens.
pub(crate) async fn simulator(today: &str) -> connectors::sim::RunningSim {
    connectors::sim::start_local(SimConfig {
        today: today.parse().unwrap(),
        meta_token: META_TOKEN.into(),
        google_token: GOOGLE_TOKEN.into(),
        google_developer_token: DEVELOPER_TOKEN.into(),
        meta_job_polls: 1,
        ..SimConfig::default()
    })
    .await
    .expect("start simulator")
}

pub(crate) async fn run(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("run tidemark"))
        .await
        .expect("join")
}

pub(crate) fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Every file under `dir`, gunzipped when it is gzip.
pub(crate) fn warehouse_bytes(dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            warehouse_bytes(&path, out);
            continue;
        }
        let data = std::fs::read(&path).expect("read file");
        let data = if path.extension().is_some_and(|e| e == "gz") {
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(&data[..])
                .read_to_end(&mut plain)
                .expect("gunzip");
            plain
        } else {
            data
        };
        out.push((path.display().to_string(), data));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_names_what_it_could_not_load_replays_and_never_shows_a_secret() {
    let sim = simulator("2026-11-20").await;
    let project = tempfile::tempdir().unwrap();
    std::fs::write(
        project.path().join("tidemark.toml"),
        format!(
            "warehouse = \"wh\"\n\n{}",
            meta_and_google_ads_sources(
                &sim.base_url(),
                "window_days = 10\npoll_interval = \"5ms\"\nbackoff = \"10ms\"\nrequest_timeout = \"2s\"",
                "backoff = \"10ms\"",
            )
        ),
    )
    .unwrap();
    let world = &sim.world;
    world.set_faults(
        Platform::Meta,
        Faults {
            throttle: 4,
            server_errors: 2,
            truncate: 1,
            job_failures: 1,
            ..Faults::default()
        },
    );
    world.set_faults(
        Platform::GoogleAds,
        Faults {
            throttle: 2,
            retry_delay_ms: 20,
            ..Faults::default()
        },
    );
    world.set_drift(
        Platform::Meta,
        Drift {
            malformed_account: Some("1000000002".into()),
            ..Drift::default()
        },
    );
    let mut outputs = Vec::new();

    // 1. A sync with faults and one unreadable account: the rest loads, exit 1, names it.
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
    assert!(
        out.contains("QUARANTINED meta/1000000002 2026-11-10..2026-11-16"),
        "{out}"
    );
    assert!(
        out.contains("impressions = \\\"n/a\\\"") || out.contains("impressions = \"n/a\""),
        "{out}"
    );
    assert!(
        out.contains("\"level\":\"DEBUG\""),
        "debug logging was on: {out}"
    );
    let summary = String::from_utf8_lossy(&first.stdout).to_string();
    println!("{summary}");
    assert!(
        summary.contains("google_ads") && summary.contains("2/2"),
        "{summary}"
    );
    assert!(
        summary.contains("meta") && summary.contains("2/4"),
        "{summary}"
    );
    outputs.push(out);

    // Status names the quarantined payloads and the jobs they left unfinished.
    let mut cmd = tidemark(project.path());
    cmd.args(["status", "--today", "2026-11-20", "--format", "json"]);
    let status = run(cmd).await;
    assert!(status.status.success(), "{}", text(&status));
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let account = status["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["source"] == "meta" && a["account"] == "1000000002")
        .unwrap();
    assert_eq!(account["quarantined"], 2, "{status:#}");
    assert_eq!(account["unfinished_jobs"], 2, "{status:#}");
    assert_eq!(status["queue_depth"], 2, "{status:#}");

    // 2. A rejected credential fails that source's units, naming where the token came from.
    world.set_drift(Platform::Meta, Drift::default());
    let mut cmd = tidemark(project.path());
    cmd.env("SIM_GOOGLE_TOKEN", "ya29.wrongButAlsoSecret-0c7e")
        .args([
            "-vv",
            "sync",
            "--today",
            "2026-11-20",
            "--source",
            "google_ads",
        ]);
    let rejected = run(cmd).await;
    let out = text(&rejected);
    assert_eq!(rejected.status.code(), Some(1), "{out}");
    assert!(out.contains("FAILED google_ads/1234567001"), "{out}");
    assert!(
        out.contains("environment variable SIM_GOOGLE_TOKEN"),
        "{out}"
    );
    assert!(!out.contains("ya29.wrongButAlsoSecret-0c7e"), "{out}");
    outputs.push(out);

    // 3. A missing variable is named before anything runs.
    let mut cmd = tidemark(project.path());
    cmd.env_remove("SIM_META_TOKEN")
        .args(["sync", "--today", "2026-11-20"]);
    let missing = run(cmd).await;
    let out = text(&missing);
    assert_eq!(missing.status.code(), Some(1), "{out}");
    assert!(out.contains("SIM_META_TOKEN is not set"), "{out}");
    outputs.push(out);

    // 4. Replay needs neither the network nor credentials.
    drop(sim);
    let mut cmd = tidemark(project.path());
    cmd.env_remove("SIM_META_TOKEN")
        .env_remove("SIM_GOOGLE_TOKEN")
        .env_remove("SIM_DEV_TOKEN")
        .args(["-vv", "sync", "--replay", "first"]);
    let replay = run(cmd).await;
    let out = text(&replay);
    assert!(out.contains("run first replayed"), "{out}");
    assert!(
        out.contains("QUARANTINED meta/1000000002"),
        "the unreadable payload stays unreadable: {out}"
    );
    outputs.push(out);

    // No secret anywhere: not in any output line, not in any file of the warehouse.
    let secrets = [META_TOKEN, GOOGLE_TOKEN, DEVELOPER_TOKEN];
    let lines: usize = outputs.iter().map(|o| o.lines().count()).sum();
    for (i, output) in outputs.iter().enumerate() {
        for secret in secrets {
            assert!(!output.contains(secret), "run {i} printed a secret");
        }
    }
    let mut files = Vec::new();
    warehouse_bytes(&project.path().join("wh"), &mut files);
    for (path, data) in &files {
        let data = String::from_utf8_lossy(data);
        for secret in secrets {
            assert!(!data.contains(secret), "{path} holds a secret");
        }
    }
    println!(
        "checked {lines} output lines and {} warehouse files for {} secrets: none found",
        files.len(),
        secrets.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_refuses_a_switched_off_api_version_and_warns_once_before_a_sunset() {
    // On 2027-01-30 Meta's v25.0 has 24 days left (it expires 2027-02-23) and Google's v22
    // has been off since 2026-10-07.
    let today = "2027-01-30";
    let sim = simulator(today).await;
    let project = tempfile::tempdir().unwrap();
    let write_config = |google_version: &str| {
        std::fs::write(
            project.path().join("tidemark.toml"),
            format!(
                r#"
warehouse = "wh"

[sources.meta]
base_url = "{base}"
api_version = "v25.0"
access_token = {{ env = "SIM_META_TOKEN" }}
accounts = ["1000000001"]
window_days = 3
poll_interval = "5ms"

[sources.google_ads]
base_url = "{base}"
{google_version}
access_token = {{ env = "SIM_GOOGLE_TOKEN" }}
developer_token = {{ env = "SIM_DEV_TOKEN" }}
accounts = ["1234567001"]
window_days = 3
"#,
                base = sim.base_url()
            ),
        )
        .unwrap();
    };

    // 1. A retired version: refused before anything is fetched or written, naming the fix.
    write_config(r#"api_version = "v22""#);
    let mut cmd = tidemark(project.path());
    cmd.args(["sync", "--today", today]);
    let out = run(cmd).await;
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(
        all.contains("source 'google_ads': Google Ads API v22 was switched off on 2026-10-07")
            && all.contains(r#"set api_version = "v26" in [sources.google_ads]"#),
        "{all}"
    );
    assert!(
        !project.path().join("wh").exists(),
        "nothing written: {all}"
    );

    // 2. The default Google version and a Meta version 24 days from its sunset: the sync
    //    runs, and says so once.
    write_config("");
    let mut cmd = tidemark(project.path());
    cmd.args(["sync", "--today", today]);
    let out = run(cmd).await;
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    let warning = "source 'meta': Meta Marketing API v25.0 will be switched off on 2027-02-23 (24 days from now)";
    assert_eq!(all.matches(warning).count(), 1, "{all}");
    assert!(!all.contains("source 'google_ads'"), "{all}");
}
