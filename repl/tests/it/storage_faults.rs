//! `tidemark sync` against an S3 store that fails: what the user is told, and that
//! `--resume` finishes the run once the store answers again; a sync of both simulated
//! platforms through seeded faults resumes to the tables of an unfaulted sync; Flight SQL
//! readers during faulty writes see only committed states.

use std::process::Command;

use connectors::sim::SimConfig;
use testdata::s3_proxy::{Behaviour, FaultPlan, S3Proxy};
use testdata::Backend;

use crate::support::meta_and_google_ads_sources;
use crate::sync::{run, simulator, text, with_sim_tokens};

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
    let text = text(&out);
    assert!(!out.status.success(), "{text}");
    let failed = text
        .lines()
        .find(|l| l.starts_with("FAILED meta/"))
        .unwrap_or_else(|| panic!("no FAILED line: {text}"));
    // The job, that it was not committed, the request, the object and the status; not "parse";
    // and how to finish the run.
    assert!(failed.contains("not committed, storage failed"), "{failed}");
    assert!(
        failed.contains("table 'meta_insights': a storage request failed: PUT "),
        "{failed}"
    );
    assert!(
        failed.contains(".parquet: 503 Service Unavailable (SlowDown)"),
        "{failed}"
    );
    assert!(!text.contains("parse"), "{text}");
    assert!(
        text.contains("`tidemark sync --resume faulty` retries the failed jobs"),
        "{text}"
    );
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

/// A project syncing both simulated platforms into `warehouse`, with a retry budget small
/// enough that the proxy's faults reach tidemark.
fn two_platform_project(warehouse: &str, sim: &connectors::sim::RunningSim) -> tempfile::TempDir {
    let project = tempfile::tempdir().unwrap();
    std::fs::write(
        project.path().join("tidemark.toml"),
        format!(
            r#"warehouse = "{warehouse}"

[storage]
max_retries = 1
retry_timeout = "5s"
request_timeout = "2s"
connect_timeout = "2s"

{sources}"#,
            sources = meta_and_google_ads_sources(
                &sim.base_url(),
                "window_days = 5\npoll_interval = \"5ms\"",
                "window_days = 5",
            )
        ),
    )
    .unwrap();
    project
}

/// `tidemark` on a two-platform project, reaching S3 at `endpoint`.
fn two_platform_tidemark(project: &std::path::Path, endpoint: &str) -> Command {
    let mut cmd = tidemark(project, endpoint);
    with_sim_tokens(&mut cmd);
    cmd
}

/// Columns that say when and from which landed payload a row was loaded: they differ between
/// any two runs, so they are left out of the comparison.
const LINEAGE: [&str; 2] = ["_fetched_at", "_raw_ref"];

/// Every row of every loaded table (not tidemark's own) without its lineage columns, as
/// sorted JSON lines per table.
async fn loaded_tables(
    backend: &Backend,
    project: &std::path::Path,
) -> std::collections::BTreeMap<String, Vec<String>> {
    let warehouse = backend.open().await;
    let endpoint = backend.endpoint.as_deref().unwrap();
    let mut tables = std::collections::BTreeMap::new();
    for name in warehouse.list(engine::Namespace::Tables).await.unwrap() {
        let out = run({
            let mut cmd = two_platform_tidemark(project, endpoint);
            cmd.args([
                "sql",
                "--format",
                "jsonl",
                "-c",
                &format!("SELECT * FROM {name}"),
            ]);
            cmd
        })
        .await;
        assert!(out.status.success(), "{}", text(&out));
        let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|line| {
                let mut row: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(line).unwrap();
                for column in LINEAGE {
                    row.remove(column);
                }
                serde_json::Value::Object(row).to_string()
            })
            .collect();
        lines.sort();
        tables.insert(name, lines);
    }
    tables
}

/// Issue 23, test 2: a sync of both simulated platforms with 10% of storage requests faulted
/// either completes or names its failed jobs; `--resume` completes it; the tables then equal
/// an unfaulted sync of the same simulated day, cell for cell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_through_ten_percent_storage_faults_resumes_to_the_unfaulted_tables() {
    let sim = simulator("2026-11-20").await;
    let faulty = Backend::s3();
    let proxy = S3Proxy::start(
        faulty.endpoint.as_deref().unwrap(),
        Behaviour::Faults(FaultPlan {
            stall: std::time::Duration::from_millis(2500),
            ..FaultPlan::new(23, 100)
        }),
    )
    .await;
    let project = two_platform_project(&faulty.url, &sim);
    let sync = |args: &[&str]| {
        let mut cmd = two_platform_tidemark(project.path(), &proxy.endpoint);
        cmd.args(["sync", "--today", "2026-11-20"]).args(args);
        cmd
    };
    let mut out = run(sync(&["--run", "faulty"])).await;
    let mut attempts = 1;
    while !out.status.success() {
        let said = text(&out);
        // Failed jobs are named, or the run says it stopped; either way it says how to finish.
        assert!(
            said.contains("FAILED ") || said.contains("run faulty stopped"),
            "{said}"
        );
        assert!(said.contains("tidemark sync --resume faulty"), "{said}");
        assert!(!said.contains("parse"), "{said}");
        for line in said.lines() {
            if line.starts_with("FAILED ") || line.starts_with("error: ") {
                eprintln!("attempt {attempts}: {line}");
            }
        }
        assert!(
            attempts < 20,
            "--resume did not finish the run in 20 attempts:\n{said}"
        );
        out = run({
            let mut cmd = two_platform_tidemark(project.path(), &proxy.endpoint);
            cmd.args(["sync", "--resume", "faulty"]);
            cmd
        })
        .await;
        attempts += 1;
    }
    let injected = proxy.injected_by_kind();
    eprintln!(
        "sync through 10% faults: finished after {attempts} attempt(s); {} requests, faults {injected:?}",
        proxy.requests()
    );
    assert!(!injected.is_empty(), "no fault was injected");

    let clean = Backend::s3();
    let reference = two_platform_project(&clean.url, &sim);
    let out = run({
        let mut cmd = two_platform_tidemark(reference.path(), clean.endpoint.as_deref().unwrap());
        cmd.args(["sync", "--today", "2026-11-20", "--run", "clean"]);
        cmd
    })
    .await;
    assert!(out.status.success(), "{}", text(&out));

    let expected = loaded_tables(&clean, reference.path()).await;
    let actual = loaded_tables(&faulty, project.path()).await;
    assert!(expected.contains_key("ad_performance"), "{expected:?}");
    assert_eq!(
        actual.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (table, rows) in &expected {
        assert!(!rows.is_empty(), "{table} is empty");
        assert_eq!(
            &actual[table], rows,
            "table {table} differs from the unfaulted sync"
        );
    }
    // The slice ledger names every slice once, with the rows it holds, as after the clean run.
    let ledger = |project: &std::path::Path, endpoint: &str| {
        let mut cmd = two_platform_tidemark(project, endpoint);
        cmd.args([
            "sql",
            "--format",
            "csv",
            "-c",
            "SELECT source, account_id, CAST(date AS VARCHAR) AS day, rows, source_table              FROM tidemark.slices ORDER BY 1, 2, 3",
        ]);
        cmd
    };
    let clean_ledger = run(ledger(reference.path(), clean.endpoint.as_deref().unwrap())).await;
    let faulty_ledger = run(ledger(project.path(), faulty.endpoint.as_deref().unwrap())).await;
    assert!(faulty_ledger.status.success(), "{}", text(&faulty_ledger));
    assert!(
        String::from_utf8_lossy(&clean_ledger.stdout)
            .lines()
            .count()
            > 10,
        "{}",
        text(&clean_ledger)
    );
    assert_eq!(
        String::from_utf8_lossy(&faulty_ledger.stdout),
        String::from_utf8_lossy(&clean_ledger.stdout),
        "the slice ledger differs from the unfaulted sync's"
    );
}

/// The answer of `sql` (one row of integers) at every version of `table`, read without faults.
async fn answers_at_every_version(
    warehouse: &engine::Warehouse,
    table: &str,
    sql: &str,
) -> Vec<serde_json::Value> {
    let newest = warehouse
        .open_table(engine::Namespace::Tables, table)
        .await
        .unwrap()
        .version()
        .unwrap();
    let mut answers = Vec::new();
    for version in 0..=newest {
        let ctx = engine::datafusion::prelude::SessionContext::new();
        engine::session::register_version(
            &ctx,
            warehouse,
            engine::Namespace::Tables,
            table,
            version,
            table,
        )
        .await
        .unwrap();
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let batch = &batches[0];
        let row: Vec<serde_json::Value> = (0..batch.num_columns())
            .map(|c| {
                let column = engine::arrow::compute::cast(
                    batch.column(c),
                    &engine::arrow::datatypes::DataType::Int64,
                )
                .unwrap();
                use engine::arrow::array::AsArray;
                let value = column
                    .as_primitive::<engine::arrow::datatypes::Int64Type>()
                    .value(0);
                serde_json::Value::from(value)
            })
            .collect();
        answers.push(serde_json::Value::Array(vec![serde_json::Value::Array(
            row,
        )]));
    }
    answers
}

/// Issue 23, test 3: Flight SQL readers (the Python ADBC driver on `tidemark serve`) while a
/// writer replaces slices, with serve and the writer both reaching S3 through 10% faults:
/// every answer a reader gets equals the table at some committed version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flight_readers_during_faulty_writes_see_only_committed_states() {
    use testdata::rows::{batch, day, slice_rows};
    const SQL: &str =
        "SELECT count(*) AS n, sum(clicks) AS clicks, sum(generation) AS generations FROM perf";
    let backend = Backend::s3();
    let direct = backend.open().await;
    let slices: Vec<engine::SliceKey> = ["a1", "a2", "a3"]
        .iter()
        .flat_map(|a| (1..=3).map(move |d| engine::SliceKey::new("meta", *a, day(d))))
        .collect();
    let rows: Vec<_> = slices.iter().flat_map(|s| slice_rows(s, 2, 1)).collect();
    direct
        .replace_slices("perf")
        .with_slices(slices.clone())
        .with_rows([batch(&rows)])
        .await
        .unwrap();

    let proxy = S3Proxy::start(
        backend.endpoint.as_deref().unwrap(),
        Behaviour::Faults(FaultPlan {
            stall: std::time::Duration::from_millis(2500),
            ..FaultPlan::new(3, 0)
        }),
    )
    .await;
    let project = tempfile::tempdir().unwrap();
    let (user, password) = crate::flight::ADMIN;
    std::fs::write(
        project.path().join("tidemark.toml"),
        format!(
            "warehouse = \"{}\"\n\n[storage]\nrequest_timeout = \"2s\"\nretry_timeout = \"8s\"\n\n[users.{user}]\npassword_hash = \"{}\"\nrole = \"admin\"\ngrants = [\"*\"]\n",
            backend.url,
            sql::flight::auth::hash_password(password).unwrap()
        ),
    )
    .unwrap();
    let server = crate::flight::serve_with_env(
        project.path(),
        &[
            ("TIDEMARK_S3_ENDPOINT", proxy.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
        ],
    );
    let mut faulty_config = backend.storage_config();
    faulty_config.s3_endpoint = Some(proxy.endpoint.clone());
    faulty_config.retry.request_timeout = std::time::Duration::from_secs(2);
    let writer = engine::Warehouse::open(&backend.url, &faulty_config)
        .await
        .unwrap();
    proxy.set_per_mille(100);

    let stop = project.path().join("stop");
    let reader = {
        let (url, stop) = (server.url.clone(), stop.display().to_string());
        tokio::task::spawn_blocking(move || {
            crate::flight::client(&["repeat", &url, user, password, &stop, SQL])
        })
    };
    let started = project.path().join("stop.started");
    for _ in 0..600 {
        if started.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(started.exists(), "the reader did not start within a minute");
    // Twelve writes, each replacing one account's days with a new generation; a write that
    // fails is run again (its job id makes that safe) until it lands.
    let mut write_failures = 0;
    for generation in 2..=13 {
        let account = ["a1", "a2", "a3"][generation as usize % 3];
        let mine: Vec<engine::SliceKey> = slices
            .iter()
            .filter(|s| s.account == account)
            .cloned()
            .collect();
        let rows: Vec<_> = mine
            .iter()
            .flat_map(|s| slice_rows(s, 1 + generation as usize % 3, generation))
            .collect();
        let mut tries = 0;
        loop {
            let result = writer
                .replace_slices("perf")
                .with_slices(mine.clone())
                .with_rows([batch(&rows)])
                .with_job(format!("writer-{generation}"), 1)
                .await;
            match result {
                Ok(_) => break,
                Err(e) => {
                    write_failures += 1;
                    tries += 1;
                    assert!(tries < 10, "write {generation} kept failing: {e}");
                }
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    }
    std::fs::write(&stop, "").unwrap();
    let answer = reader.await.unwrap();
    drop(server);

    let committed = answers_at_every_version(&direct, "perf", SQL).await;
    let answers = answer["answers"].as_array().unwrap();
    let errors = answer["errors"].as_array().unwrap();
    eprintln!(
        "readers during faulty writes: {} answers, {} errors, {write_failures} failed writes retried, {} committed versions, faults {:?}",
        answers.len(),
        errors.len(),
        committed.len(),
        proxy.injected_by_kind()
    );
    assert!(!answers.is_empty(), "no reader answer; errors: {errors:?}");
    let distinct: std::collections::BTreeSet<String> =
        answers.iter().map(|a| a.to_string()).collect();
    for answer in answers {
        assert!(
            committed.contains(answer),
            "a reader saw {answer}, which no committed version holds ({committed:?})"
        );
    }
    assert!(
        distinct.len() > 1,
        "the readers saw only one state; the test did not overlap reads and writes"
    );
    for error in errors {
        let error = error.as_str().unwrap_or_default();
        assert!(!error.contains("parse"), "{error}");
    }
    assert!(!proxy.injected().is_empty(), "no fault was injected");
}
