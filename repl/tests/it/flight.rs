//! `tidemark serve` driven by a real client from outside the project: the Python ADBC Flight
//! SQL driver (`tests/flight/client.py`). Covers listing, queries into pyarrow, a prepared
//! statement with a parameter, time travel, authentication (none, wrong password, forged and
//! expired tokens), grants, 50 concurrent clients, the per-query memory limit, split
//! endpoints, cancellation, TLS, the result cache, and commits made between two queries of one
//! connection.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub(crate) const ADMIN: (&str, &str) = ("ana", "ana-password-1");
const READER: (&str, &str) = ("rui", "rui-password-1");

/// A running `tidemark serve`, stopped (SIGTERM) when dropped.
pub(crate) struct Server {
    child: Child,
    pub(crate) url: String,
    /// `http://…/metrics` when `[serve] metrics_addr` is set.
    metrics: Option<String>,
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident memory so far (VmHWM), in MiB.
    fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kib: f64 = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap();
        kib / 1024.0
    }

    fn stop(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let status = self.child.wait().unwrap();
        std::mem::forget(self);
        status
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A project around the fixture warehouse, with an admin and a reader granted marts only.
fn project(serve: &str) -> tempfile::TempDir {
    let dir = testdata::fixture::temp_warehouse();
    let hash = |p: &str| sql::flight::auth::hash_password(p).unwrap();
    std::fs::write(
        dir.path().join("tidemark.toml"),
        format!(
            "warehouse = \"wh\"\n\n[serve]\n{serve}\n\n[users.{}]\npassword_hash = \"{}\"\nrole = \"admin\"\ngrants = [\"*\"]\n\n[users.{}]\npassword_hash = \"{}\"\ngrants = [\"channel_daily\", \"installs_*\"]\n",
            ADMIN.0,
            hash(ADMIN.1),
            READER.0,
            hash(READER.1)
        ),
    )
    .unwrap();
    dir
}

fn serve(project: &Path) -> Server {
    serve_with_env(project, &[])
}

/// `tidemark serve` on `project` with extra environment (an S3 endpoint, credentials).
pub(crate) fn serve_with_env(project: &Path, env: &[(&str, &str)]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["serve", "--addr", "127.0.0.1:0", "--project"])
        .arg(project)
        .env("RUST_LOG", "warn")
        .env_remove("TIDEMARK_WAREHOUSE")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Owned by a Server from here, so a failed start still stops the process.
    let mut server = Server {
        child,
        url: String::new(),
        metrics: None,
    };
    let mut lines = BufReader::new(stdout).lines();
    while server.url.is_empty() {
        let line = lines.next().expect("serve prints its address").unwrap();
        let word = |prefixes: &[&str]| {
            line.split_whitespace()
                .find(|w| prefixes.iter().any(|p| w.starts_with(p)))
                .map(str::to_string)
        };
        if line.starts_with("metrics:") {
            server.metrics = word(&["http://"]);
        } else {
            server.url = word(&["grpc://", "grpc+tls://"])
                .unwrap_or_else(|| panic!("no address in {line:?}"));
        }
    }
    std::thread::spawn(move || for _ in lines {});
    server
}

fn client_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/flight/client.py")
}

/// Run the Python client in `mode`; its JSON answer.
pub(crate) fn client(args: &[&str]) -> serde_json::Value {
    let out = Command::new("python3")
        .arg(client_script())
        .args(args)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "client.py {args:?} failed (pip install adbc-driver-flightsql pyarrow):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "client.py printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn text(v: &serde_json::Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

#[test]
fn adbc_lists_queries_prepares_and_time_travels() {
    let dir = project("");
    let server = serve(dir.path());
    let out = client(&["smoke", &server.url, ADMIN.0, ADMIN.1]);
    let tables: Vec<String> = serde_json::from_value(out["tables"].clone()).unwrap();
    for name in [
        "ad_performance",
        "channel_daily",
        "daily_campaign_performance",
        "slices",
    ] {
        assert!(
            tables.contains(&name.to_string()),
            "{name} not in {tables:?}"
        );
    }
    assert_eq!(
        out["table_types"],
        serde_json::json!(["SYSTEM TABLE", "TABLE"])
    );
    assert!(out["channel_daily_columns"]
        .to_string()
        .contains("spend_krw"));
    assert_eq!(
        out["clicks"],
        serde_json::json!([{"source": "google_ads", "clicks": 141}, {"source": "meta", "clicks": 128}])
    );
    // Strings arrive as plain utf8 (not views) for every client.
    assert_eq!(out["clicks_types"][0], "string");
    assert_eq!(
        out["prepared"],
        serde_json::json!([{"n": 6, "installs": 43}])
    );
    assert_eq!(out["prepared_qmark"], out["prepared"], "? binds as $1 does");
    assert_eq!(
        out["qmarks"],
        serde_json::json!([{"a": 42, "q": "?", "b": "x"}])
    );
    assert!(
        text(&out["mixed"]).contains("mixes ? and $n"),
        "{}",
        out["mixed"]
    );
    assert_eq!(out["version0"], serde_json::json!([{"clicks": 264}]));
    assert_eq!(out["history"], serde_json::json!([1, 0]));
    assert!(out["show_tables"].to_string().contains("channel_daily"));
    // The table functions, as a BI tool sends them.
    assert_eq!(
        out["projected"],
        serde_json::json!([
            {"source": "google_ads", "day": "2026-11-01", "basis": "settled"},
            {"source": "meta", "day": "2026-11-01", "basis": "settled"}
        ])
    );
    // Admins may change the warehouse.
    assert!(out["writes"].is_null(), "admin refresh: {}", out["writes"]);
    assert!(
        text(&out["bad_sql"]).contains("did you mean 'ad_performance'"),
        "{}",
        out["bad_sql"]
    );
    let status = server.stop();
    assert!(status.success(), "serve exits 0 on SIGTERM: {status:?}");
}

#[test]
fn strangers_forgers_and_expired_tokens_are_refused() {
    let dir = project("");
    let server = serve(dir.path());
    let short_dir = project("token_ttl = \"2s\"");
    let short = serve(short_dir.path());
    let out = client(&["auth", &server.url, ADMIN.0, ADMIN.1, &short.url]);
    for (case, want) in [
        ("no_credentials", "no credentials"),
        ("wrong_password", "unknown user or wrong password"),
        ("forged_token", "not valid"),
        ("expired_token", "expired"),
    ] {
        let error = text(&out[case]);
        assert!(
            error.contains(want),
            "{case}: expected '{want}', got {:?}",
            out[case]
        );
    }
    assert_eq!(out["token_works"], serde_json::json!([{"one": 1}]));
}

#[test]
fn a_reader_sees_and_reads_only_its_grants() {
    let dir = project("");
    let server = serve(dir.path());
    let out = client(&["grants", &server.url, READER.0, READER.1]);
    assert_eq!(
        out["tables"],
        serde_json::json!(["channel_daily", "installs_rolling_7d"])
    );
    assert_eq!(out["granted"], serde_json::json!([{"n": 6}]));
    for case in [
        "not_granted",
        "not_granted_history",
        "not_granted_maturity",
        "not_granted_time_travel",
    ] {
        let error = text(&out[case]);
        assert!(
            error.contains("ad_performance")
                && (error.contains("not among your grants") || error.contains("no table or mart")),
            "{case}: {:?}",
            out[case]
        );
    }
    assert!(
        text(&out["writes"]).contains("needs the admin role"),
        "{}",
        out["writes"]
    );
    assert!(text(&out["ddl"]).contains("admin role"), "{}", out["ddl"]);
    assert_eq!(
        out["information_schema"],
        serde_json::json!(["channel_daily", "installs_rolling_7d"])
    );
}

#[test]
fn fifty_clients_for_twenty_seconds_get_right_answers() {
    let dir = project("max_concurrent_queries = 8\nmax_queries_per_user = 64");
    let server = serve(dir.path());
    let out = client(&["load", &server.url, ADMIN.0, ADMIN.1, "50", "20"]);
    let queries = out["queries"].as_u64().unwrap();
    let peak = server.peak_rss_mib();
    println!("50 clients × 20 s: {queries} queries, peak server RSS {peak:.0} MiB");
    assert_eq!(out["errors"], serde_json::json!([]));
    assert_eq!(out["wrong"], 0);
    assert!(
        queries >= 50,
        "every client ran at least one query: {queries}"
    );
    assert_eq!(out["after"], serde_json::json!([{"one": 1}]));
    assert!(peak < 1024.0, "peak RSS {peak:.0} MiB");
}

#[test]
fn a_query_over_its_memory_limit_fails_alone() {
    let dir = project("memory_limit = \"64MiB\"");
    let server = serve(dir.path());
    let out = client(&["memory", &server.url, ADMIN.0, ADMIN.1]);
    let big = text(&out["big"]);
    assert!(big.contains("more memory than its limit"), "{big}");
    assert_eq!(out["small_errors"], serde_json::json!([]));
    assert!(out["small_ok"].as_u64().unwrap() >= 1, "{out}");
    assert_eq!(out["small"], serde_json::json!([[{"n": 12}]]));
}

#[test]
fn serve_needs_users() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tidemark.toml"), "warehouse = \"wh\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["serve", "--project"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no users"));
}

#[test]
fn a_big_result_is_offered_as_day_parts_that_add_up() {
    // 12 rows over 3 days; past 4 rows a result is split.
    let dir = project("split_rows = 4");
    let server = serve(dir.path());
    let out = client(&["split", &server.url, ADMIN.0, ADMIN.1]);
    assert_eq!(out["partitions"], 3, "{out}");
    assert_eq!(out["part_rows"], serde_json::json!([4, 4, 4]), "{out}");
    assert_eq!(out["days_per_part"], serde_json::json!([1, 1, 1]), "{out}");
    assert_eq!(out["whole_rows"], 12);
    assert_eq!(out["same_rows"], true);
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[test]
fn cancel_flight_info_stops_a_running_query() {
    let dir = project("");
    let server = serve(dir.path());
    let out = client(&["cancel", &server.url, ADMIN.0, ADMIN.1]);
    assert_eq!(out["running_before_cancel"], true, "{out}");
    assert_eq!(out["cancel_status"], "0801", "CANCELLED: {out}");
    // The reader's stream ended in an error (pyarrow calls a CANCELLED status KeyboardInterrupt).
    let error = text(&out["error"]).to_lowercase();
    assert!(
        error.contains("cancel") || error.contains("keyboardinterrupt"),
        "{out}"
    );
    let stopped = out["stopped_within_s"].as_f64().unwrap();
    assert!(
        (0.0..5.0).contains(&stopped),
        "the reader saw the end {stopped} s after the cancel"
    );
    // Nothing left to cancel: NOT_CANCELLABLE (3).
    assert_eq!(out["cancel_again"], "0803", "{out}");
    assert_eq!(out["after"], serde_json::json!([{"one": 1}]));
    // The query really stopped: the server is idle, not still counting.
    let before = cpu_seconds(server.pid());
    std::thread::sleep(std::time::Duration::from_secs(2));
    let burnt = cpu_seconds(server.pid()) - before;
    assert!(
        burnt < 0.5,
        "server used {burnt} CPU-s in 2 s after the cancel"
    );
}

/// A self-signed certificate for 127.0.0.1 and localhost: (certificate, key) PEM paths.
fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("openssl (apt-get install openssl)");
    assert!(status.success(), "openssl req failed");
    (cert, key)
}

#[test]
fn tls_serves_trusting_clients_and_refuses_plain_text() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(certs.path());
    let dir = project(&format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"",
        cert.display(),
        key.display()
    ));
    let server = serve(dir.path());
    assert!(server.url.starts_with("grpc+tls://"), "{}", server.url);
    let out = client(&["tls", &server.url, ADMIN.0, ADMIN.1, cert.to_str().unwrap()]);
    assert_eq!(out["query"], serde_json::json!([{"n": 12}]), "{out}");
    assert!(!out["plaintext"].is_null(), "plain text was served: {out}");
    assert!(
        !out["untrusted"].is_null(),
        "an untrusted certificate was accepted: {out}"
    );
}

/// A counter or gauge from the server's `/metrics`.
fn metric(server: &Server, name: &str) -> f64 {
    let url = server.metrics.clone().expect("serve with metrics_addr");
    let body = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async { reqwest::get(&url).await?.text().await })
        .unwrap();
    body.lines()
        .find_map(|l| {
            let (key, value) = l.split_once(' ')?;
            (key == name || key == format!("{name}_total")).then(|| value.parse().ok())?
        })
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{body}"))
}

#[test]
fn a_repeated_query_comes_from_the_result_cache_until_the_data_changes() {
    let dir = project("metrics_addr = \"127.0.0.1:0\"");
    let server = serve(dir.path());
    let total = "SELECT sum(clicks) AS clicks FROM ad_performance";
    let clicks = |out: &serde_json::Value| -> Vec<serde_json::Value> {
        out["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["rows"][0]["clicks"].clone())
            .collect()
    };
    let counts = || {
        (
            metric(&server, "tidemark_flight_result_cache_hits"),
            metric(&server, "tidemark_flight_result_cache_misses"),
        )
    };

    let out = client(&["queries", &server.url, ADMIN.0, ADMIN.1, total, total]);
    assert_eq!(clicks(&out), [269, 269]);
    assert_eq!(counts(), (1.0, 1.0), "the second run is a hit");
    assert!(metric(&server, "tidemark_flight_result_cache_bytes") > 0.0);

    // A sync commits a new version of the table: the next run reads it, then it is kept.
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let warehouse =
            engine::Warehouse::open(dir.path().join("wh").to_str().unwrap(), &Default::default())
                .await
                .unwrap();
        testdata::fixture::replace(&warehouse, testdata::fixture::ad_rows("ad_performance.csv"))
            .await;
    });
    let out = client(&["queries", &server.url, ADMIN.0, ADMIN.1, total, total]);
    assert_eq!(clicks(&out), [264, 264], "the restated numbers are gone");
    assert_eq!(counts(), (2.0, 2.0));

    // Time travel to a fixed version is cached; now() and information_schema are not.
    let pinned = "SELECT sum(clicks) AS clicks FROM ad_performance VERSION AS OF 1";
    let out = client(&["queries", &server.url, ADMIN.0, ADMIN.1, pinned, pinned]);
    assert_eq!(clicks(&out), [269, 269]);
    assert_eq!(counts(), (3.0, 3.0));
    let moving = "SELECT sum(clicks) AS clicks, CAST(now() AS VARCHAR) AS at FROM ad_performance";
    let random = "SELECT sum(clicks) AS clicks, random() AS r FROM ad_performance";
    let listing = "SELECT count(*) AS clicks FROM information_schema.tables";
    let out = client(&[
        "queries",
        &server.url,
        ADMIN.0,
        ADMIN.1,
        moving,
        moving,
        random,
        random,
        listing,
        listing,
    ]);
    assert_eq!(clicks(&out)[..4], [264, 264, 264, 264], "{out}");
    assert_eq!(counts(), (3.0, 3.0), "neither is looked up nor kept");

    // A reader without the grant is refused before the cache is consulted.
    let out = client(&["queries", &server.url, READER.0, READER.1, total]);
    assert!(
        text(&out["results"][0]["error"]).contains("ad_performance"),
        "{out}"
    );
    assert_eq!(counts(), (3.0, 3.0));
}

/// The server plans each statement once and keeps table snapshots and Parquet footers between
/// statements; none of that may hide a commit. On one connection: a table created after the
/// connection opened is found, and a restatement committed between two queries is seen by the
/// second, plainly and through a prepared statement executed again with `?` bound.
#[test]
fn a_commit_between_two_queries_on_one_connection_is_seen_by_the_second() {
    use testdata::rows::{day, json_lines, slice_rows};
    let dir = project("");
    let server = serve(dir.path());
    let a1 = engine::SliceKey::new("meta", "a1", day(1));
    let a2 = engine::SliceKey::new("meta", "a2", day(1));
    let mut seed = slice_rows(&a1, 2, 1);
    seed.extend(slice_rows(&a2, 2, 1));
    let restated = slice_rows(&a1, 3, 2);
    let seed_file = dir.path().join("seed.jsonl");
    let restated_file = dir.path().join("restated.jsonl");
    std::fs::write(&seed_file, json_lines(&seed)).unwrap();
    std::fs::write(&restated_file, json_lines(&restated)).unwrap();
    let load = |file: &Path| {
        serde_json::json!([
            env!("CARGO_BIN_EXE_tidemark"),
            "load",
            "-w",
            dir.path().join("wh"),
            "-t",
            "perf",
            file
        ])
    };
    let commands = serde_json::json!([load(&seed_file), load(&restated_file)]).to_string();
    let out = client(&["between", &server.url, ADMIN.0, ADMIN.1, &commands]);
    // Seed: a1 has clicks 100 + 101, a2 the same. Restated a1: 200 + 201 + 202.
    assert_eq!(
        out["after"],
        serde_json::json!([
            {"plain": [{"n": 4, "clicks": 402}], "prepared": [{"clicks": 201}]},
            {"plain": [{"n": 5, "clicks": 804}], "prepared": [{"clicks": 603}]},
        ]),
        "each query sees the commit made just before it"
    );
}
