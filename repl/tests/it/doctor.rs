//! `tidemark doctor` on a project against the simulators: all green on a good project, and
//! for each injected fault exactly the red line it should give, exit 1, and no secret in the
//! output.

use std::path::Path;
use std::process::{Command, Output};

use connectors::sim::SimConfig;
use testdata::s3_proxy::{Behaviour, S3Proxy};
use testdata::Backend;

use crate::distributed::Redis;

const META_TOKEN: &str = "EAAGdoctorMetaToken51c2";
const GOOGLE_TOKEN: &str = "ya29.doctorGoogleToken-77e1";
const DEVELOPER_TOKEN: &str = "devDoctorToken90bb";
const TODAY: &str = "2026-11-20";

/// A project on the simulators; `google_extra` is appended to the Google Ads section.
fn write_project(dir: &Path, base: &str, warehouse: &str, google_extra: &str, rest: &str) {
    std::fs::write(
        dir.join("tidemark.toml"),
        format!(
            r#"
warehouse = "{warehouse}"

[sources.meta]
base_url = "{base}"
access_token = {{ env = "DOC_META_TOKEN" }}
accounts = ["1000000001"]
max_attempts = 2
backoff = "10ms"

[sources.google_ads]
base_url = "{base}"
access_token = {{ env = "DOC_GOOGLE_TOKEN" }}
developer_token = {{ env = "DOC_DEV_TOKEN" }}
accounts = ["1234567001"]
max_attempts = 2
backoff = "10ms"
{google_extra}
{rest}"#
        ),
    )
    .unwrap();
}

/// The simulators on [`TODAY`], accepting this test's tokens.
async fn simulator() -> connectors::sim::RunningSim {
    connectors::sim::start_local(SimConfig {
        today: TODAY.parse().unwrap(),
        meta_token: META_TOKEN.into(),
        google_token: GOOGLE_TOKEN.into(),
        google_developer_token: DEVELOPER_TOKEN.into(),
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

fn doctor(project: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tidemark"));
    cmd.env_remove("RUST_LOG")
        .env_remove("TIDEMARK_WAREHOUSE")
        .env_remove("TIDEMARK_QUEUE")
        .env_remove("TIDEMARK_S3_ENDPOINT")
        .env("TIDEMARK_PROJECT", project)
        .env("DOC_META_TOKEN", META_TOKEN)
        .env("DOC_GOOGLE_TOKEN", GOOGLE_TOKEN)
        .env("DOC_DEV_TOKEN", DEVELOPER_TOKEN)
        .args(["doctor", "--today", TODAY])
        .args(extra);
    cmd
}

async fn run(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("run tidemark"))
        .await
        .unwrap()
}

/// (check, state) pairs of a `--format json` report; asserts no secret was printed.
fn states(out: &Output) -> Vec<(String, String, String)> {
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for secret in [META_TOKEN, GOOGLE_TOKEN, DEVELOPER_TOKEN] {
        assert!(!all.contains(secret), "a secret was printed:\n{all}");
    }
    let checks: Vec<serde_json::Value> =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {all}"));
    checks
        .iter()
        .map(|c| {
            (
                c["check"].as_str().unwrap().to_string(),
                c["state"].as_str().unwrap().to_string(),
                c["detail"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The checks that failed, with their details.
fn failed(checks: &[(String, String, String)]) -> Vec<(String, String)> {
    checks
        .iter()
        .filter(|(_, state, _)| state == "fail")
        .map(|(check, _, detail)| (check.clone(), detail.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_is_green_on_a_good_project_and_names_each_fault() {
    let sim = simulator().await;
    let base = sim.base_url();
    let project = tempfile::tempdir().unwrap();
    let dir = project.path();
    let redis = Redis::start();

    // A good project, with a queue: every line ok (the Flight users are skipped: none).
    write_project(dir, &base, "wh", "", "");
    let out = run(doctor(dir, &["--format", "json", "--queue", &redis.url()])).await;
    let checks = states(&out);
    assert!(out.status.success(), "{checks:#?}");
    let names: Vec<&str> = checks.iter().map(|(c, _, _)| c.as_str()).collect();
    assert_eq!(
        names,
        [
            "config",
            "secrets google_ads",
            "api version google_ads",
            "source google_ads",
            "secrets meta",
            "api version meta",
            "source meta",
            "warehouse",
            "conditional writes",
            "queue",
            "flight users"
        ]
    );
    for (check, state, detail) in &checks {
        let expected = if check == "flight users" {
            "skip"
        } else {
            "ok"
        };
        assert_eq!(state, expected, "{check}: {detail}");
    }

    // The text form: one line per check, the same order.
    let out = run(doctor(dir, &[])).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert_eq!(text.lines().count(), 11, "{text}");
    assert!(
        text.lines().next().unwrap().starts_with("ok    config"),
        "{text}"
    );

    // A token the platform refuses: the source's line is red with the platform's own error.
    let mut cmd = doctor(dir, &["--format", "json"]);
    cmd.env("DOC_META_TOKEN", "EAAGnotTheRightToken000");
    let out = run(cmd).await;
    let checks = states(&out);
    assert_eq!(out.status.code(), Some(1));
    let red = failed(&checks);
    assert_eq!(red.len(), 1, "{red:#?}");
    assert_eq!(red[0].0, "source meta");
    assert!(
        red[0].1.contains("190"),
        "Meta's invalid-token code: {}",
        red[0].1
    );
    assert!(
        !red[0].1.contains("EAAGnotTheRightToken000"),
        "{}",
        red[0].1
    );

    // A developer token that is missing from the environment: the secrets line names it,
    // and the source is not called.
    let mut cmd = doctor(dir, &["--format", "json"]);
    cmd.env_remove("DOC_DEV_TOKEN");
    let out = run(cmd).await;
    let checks = states(&out);
    assert_eq!(out.status.code(), Some(1));
    let red = failed(&checks);
    assert_eq!(red.len(), 1, "{red:#?}");
    assert_eq!(red[0].0, "secrets google_ads");
    assert!(red[0].1.contains("DOC_DEV_TOKEN"), "{}", red[0].1);
    assert!(checks.contains(&(
        "source google_ads".into(),
        "skip".into(),
        "not called: its secrets did not resolve".into()
    )));

    // A developer token Google refuses: the source's line says which credential it is.
    let mut cmd = doctor(dir, &["--format", "json"]);
    cmd.env("DOC_DEV_TOKEN", "devTokenOfAnotherManager");
    let red = failed(&states(&run(cmd).await));
    assert_eq!(red.len(), 1, "{red:#?}");
    assert_eq!(red[0].0, "source google_ads");
    assert!(
        red[0].1.contains("DEVELOPER_TOKEN_INVALID") && red[0].1.contains("check developer_token"),
        "{}",
        red[0].1
    );

    // A malformed login customer id: Google's own error code, on the source's line.
    write_project(dir, &base, "wh", r#"login_customer_id = "123-45""#, "");
    let red = failed(&states(&run(doctor(dir, &["--format", "json"])).await));
    assert_eq!(red.len(), 1, "{red:#?}");
    assert_eq!(red[0].0, "source google_ads");
    assert!(red[0].1.contains("INVALID_CUSTOMER_ID"), "{}", red[0].1);

    // A switched-off API version: red, naming the version to move to.
    write_project(dir, &base, "wh", r#"api_version = "v22""#, "");
    let out = run(doctor(dir, &["--format", "json"])).await;
    let red = failed(&states(&out));
    assert_eq!(red.len(), 1, "{red:#?}");
    assert_eq!(red[0].0, "api version google_ads");
    assert!(red[0].1.contains(r#"api_version = "v26""#), "{}", red[0].1);

    // Redis down: the queue line is red.
    write_project(dir, &base, "wh", "", "");
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let queue = format!("redis://127.0.0.1:{closed}");
    let out = run(doctor(dir, &["--format", "json", "--queue", &queue])).await;
    let red = failed(&states(&out));
    assert_eq!(red.len(), 1, "{red:#?}");
    assert_eq!(red[0].0, "queue");

    // A malformed Flight user: red, naming the user and the fix.
    write_project(
        dir,
        &base,
        "wh",
        "",
        "[users.analyst]\npassword_hash = \"plaintext\"\nrole = \"reader\"\n",
    );
    let out = run(doctor(dir, &["--format", "json"])).await;
    let red = failed(&states(&out));
    assert_eq!(red.len(), 1, "{red:#?}");
    assert_eq!(red[0].0, "flight users");
    assert!(
        red[0].1.contains("tidemark user add analyst"),
        "{}",
        red[0].1
    );

    // A config that does not parse: one red line naming where.
    std::fs::write(
        dir.join("tidemark.toml"),
        "warehouse = \"wh\"\n[sources.meta]\naccounts = 3\n",
    )
    .unwrap();
    let out = run(doctor(dir, &["--format", "json"])).await;
    let checks = states(&out);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(checks.len(), 1, "{checks:#?}");
    assert_eq!(checks[0].0, "config");
    assert!(checks[0].2.contains("line 3"), "{}", checks[0].2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_an_unreachable_warehouse_and_an_s3_server_without_conditional_writes() {
    let sim = simulator().await;
    let project = tempfile::tempdir().unwrap();
    let dir = project.path();
    let s3 = Backend::s3();
    write_project(dir, &sim.base_url(), &s3.url, "", "");
    let endpoint = s3.endpoint.clone().unwrap();
    let with_endpoint = |endpoint: &str| {
        let mut cmd = doctor(dir, &["--format", "json"]);
        cmd.env("TIDEMARK_S3_ENDPOINT", endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1");
        cmd
    };

    // moto enforces conditional writes: green.
    let out = run(with_endpoint(&endpoint)).await;
    let checks = states(&out);
    assert!(out.status.success(), "{checks:#?}");
    assert!(checks
        .iter()
        .any(|(c, s, _)| c == "conditional writes" && s == "ok"));

    // The same bucket behind a server that ignores If-None-Match: refused.
    let lax = S3Proxy::start(&endpoint, Behaviour::DropConditionalWrites).await;
    let out = run(with_endpoint(&lax.endpoint)).await;
    let red = failed(&states(&out));
    assert_eq!(red.len(), 1, "{red:#?}");
    assert_eq!(red[0].0, "conditional writes");

    // A server answering 503 SlowDown to everything: the warehouse line is red after exactly
    // 1 + [storage] max_retries attempts, and the environment twin overrides the file.
    let down = S3Proxy::start(&endpoint, Behaviour::Answer(503)).await;
    write_project(
        dir,
        &sim.base_url(),
        &s3.url,
        "",
        "[storage]\nmax_retries = 2\n",
    );
    let out = run(with_endpoint(&down.endpoint)).await;
    let red = failed(&states(&out));
    assert_eq!(red.len(), 1, "{red:#?}");
    assert_eq!(red[0].0, "warehouse");
    assert!(red[0].1.contains("503"), "{}", red[0].1);
    assert_eq!(down.requests(), 3, "1 attempt + max_retries = 2");
    let mut cmd = with_endpoint(&down.endpoint);
    cmd.env("TIDEMARK_STORAGE_MAX_RETRIES", "0");
    let red = failed(&states(&run(cmd).await));
    assert_eq!(red[0].0, "warehouse");
    assert_eq!(
        down.requests(),
        3 + 1,
        "TIDEMARK_STORAGE_MAX_RETRIES=0: one attempt"
    );
    write_project(dir, &sim.base_url(), &s3.url, "", "");

    // Nothing listening at the endpoint: the warehouse line is red.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let out = run(with_endpoint(&format!("http://127.0.0.1:{closed}"))).await;
    let red = failed(&states(&out));
    assert_eq!(red.len(), 1, "{red:#?}");
    assert_eq!(red[0].0, "warehouse");
}
