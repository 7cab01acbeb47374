//! `tidemark sync` against an S3 store that fails: what the user is told, and that
//! `--resume` finishes the run once the store answers again.

use std::process::Command;

use connectors::sim::SimConfig;
use testdata::s3_proxy::{Behaviour, S3Proxy};
use testdata::Backend;

/// `tidemark` on `project`, reaching S3 at `endpoint`.
fn tidemark(project: &std::path::Path, endpoint: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tidemark"));
    cmd.env("RUST_LOG", "error")
        .env("RUST_BACKTRACE", "0")
        .env_remove("TIDEMARK_WAREHOUSE")
        .env("TIDEMARK_PROJECT", project)
        .env("TIDEMARK_S3_ENDPOINT", endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("SIM_META_TOKEN", SimConfig::default().meta_token);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_whose_data_writes_fail_says_what_failed_and_how_to_finish() {
    let sim = connectors::sim::start_local(SimConfig {
        today: "2026-11-20".parse().unwrap(),
        meta_job_polls: 1,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let s3 = Backend::s3();
    let proxy = S3Proxy::start(
        s3.endpoint.as_deref().unwrap(),
        Behaviour::FailPuts(503, ".parquet"),
    )
    .await;
    let project = tempfile::tempdir().unwrap();
    std::fs::write(
        project.path().join("tidemark.toml"),
        format!(
            "warehouse = \"{}\"\n[storage]\nmax_retries = 1\n\n[sources.meta]\nbase_url = \"{}\"\naccess_token = {{ env = \"SIM_META_TOKEN\" }}\naccounts = [\"1000000001\"]\nwindow_days = 3\npoll_interval = \"5ms\"\n",
            s3.url,
            sim.base_url()
        ),
    )
    .unwrap();
    let out = tidemark(project.path(), &proxy.endpoint)
        .args(["sync", "--today", "2026-11-20", "--run", "faulty"])
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    let error = text
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line: {text}"));
    // The run, how to finish it, the request, the object and the status; not "parse".
    assert!(error.contains("run faulty stopped"), "{error}");
    assert!(error.contains("`tidemark sync --resume faulty`"), "{error}");
    assert!(
        error.contains("table 'meta_insights': a storage request failed: PUT "),
        "{error}"
    );
    assert!(
        error.contains(".parquet: 503 Service Unavailable (SlowDown)"),
        "{error}"
    );
    assert!(!error.contains("parse"), "{error}");
    assert!(proxy.requests() > 0);

    // Once the store answers again, --resume finishes the run: the day's rows are there.
    let direct = s3.endpoint.as_deref().unwrap();
    let out = tidemark(project.path(), direct)
        .args(["sync", "--resume", "faulty"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = tidemark(project.path(), direct)
        .args(["sql", "--format", "csv", "-c"])
        .arg("SELECT count(*) AS n FROM meta_insights")
        .output()
        .unwrap();
    let expected = sim
        .world
        .reported(
            connectors::config::Platform::Meta,
            "1000000001",
            connectors::Window::trailing_days("2026-11-20".parse().unwrap(), 3),
            "2026-11-20".parse().unwrap(),
        )
        .len();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("n\n{expected}"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
