//! `tidemark sql` without a terminal: `-c`, `-f FILE` and statements piped on stdin run in
//! order and stop at the first error (exit 1); CSV and JSON output parse back to the same values.

use std::io::Write;
use std::process::{Command, Stdio};

fn tidemark() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tidemark"));
    cmd.env("RUST_LOG", "warn").env_remove("TIDEMARK_WAREHOUSE");
    cmd
}

/// A warehouse with table `perf`: two accounts' rows for one day.
fn warehouse() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("rows.csv");
    std::fs::write(
        &csv,
        "source,account_id,date,clicks,name\nmeta,act1,2026-11-01,5,\"a, quoted; name\"\nmeta,act2,2026-11-01,7,plain\n",
    )
    .unwrap();
    let out = tidemark()
        .args(["load", "-w"])
        .arg(dir.path().join("wh"))
        .args(["-t", "perf"])
        .arg(&csv)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

fn sql(dir: &tempfile::TempDir, args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = tidemark()
        .args(["sql", "-w"])
        .arg(dir.path().join("wh"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn files_and_stdin_run_in_order_and_stop_at_the_first_error() {
    let dir = warehouse();
    let script = dir.path().join("q.sql");
    std::fs::write(
        &script,
        "-- two statements; the first has a ; inside a string\nSELECT 'x;y' AS s;\nSELECT count(*) AS n FROM perf;\n",
    )
    .unwrap();
    let out = sql(
        &dir,
        &["--format", "csv", "-f", script.to_str().unwrap()],
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "s\nx;y\nn\n2\n");

    let out = sql(
        &dir,
        &["--format", "markdown"],
        "SELECT account_id, clicks FROM perf ORDER BY 1;",
    );
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "| account_id | clicks |\n| --- | --- |\n| act1 | 5 |\n| act2 | 7 |\n"
    );

    let out = sql(
        &dir,
        &["--format", "csv"],
        "SELECT 1 AS a; SELEC 2; SELECT 3 AS c;",
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "a\n1\n",
        "nothing after the error runs"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("statement 2 failed"));
}

#[test]
fn csv_and_json_round_trip_to_the_same_values() {
    let dir = warehouse();
    let query = "SELECT account_id, date, clicks, name FROM perf ORDER BY account_id";
    let csv = sql(&dir, &["--format", "csv", "-c", query], "");
    let json = sql(&dir, &["--format", "json", "-c", query], "");
    assert!(csv.status.success() && json.status.success());
    let from_json: Vec<serde_json::Value> = serde_json::from_slice(&json.stdout).unwrap();
    let mut reader = csv::Reader::from_reader(&csv.stdout[..]);
    let headers = reader.headers().unwrap().clone();
    let from_csv: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(from_csv.len(), 2);
    for (record, object) in from_csv.iter().zip(&from_json) {
        for (name, value) in headers.iter().zip(record.iter()) {
            let json_value = match &object[name] {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            assert_eq!(value, json_value, "{name}");
        }
    }
    assert_eq!(&from_csv[0][3], "a, quoted; name");
}
