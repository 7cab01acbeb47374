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

/// Cells of a table printed as `| a | b |` lines (the header first), trimmed; NULL as empty.
fn table_cells(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("| ---"))
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| match c.trim() {
                    "NULL" => String::new(),
                    cell => cell.to_string(),
                })
                .collect()
        })
        .collect()
}

#[test]
fn every_output_format_round_trips_to_the_same_values() {
    let dir = testdata::fixture::temp_warehouse();
    let wh = dir.path().join("wh");
    let query = "SELECT source, date, campaign_name, clicks, spend, conversions, \
                 CASE WHEN installs > 8 THEN NULL ELSE installs END AS installs \
                 FROM ad_performance ORDER BY source, date, campaign_id";
    let run = |args: &[&str]| {
        let out = tidemark()
            .args(["sql", "-w"])
            .arg(&wh)
            .args(args)
            .args(["-c", query])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };

    // CSV is the reference: header and 12 rows of strings.
    let csv_text = run(&["--format", "csv"]);
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    let expected: Vec<Vec<String>> = reader
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect();
    assert_eq!(expected.len(), 12);
    assert!(
        expected.iter().any(|r| r[2] == "봄 세일 리타게팅"),
        "{expected:?}"
    );
    assert!(
        expected.iter().any(|r| r[6].is_empty()),
        "a NULL is in the data"
    );

    let json_rows = |objects: Vec<serde_json::Value>| -> Vec<Vec<String>> {
        objects
            .iter()
            .map(|o| {
                header
                    .iter()
                    .map(|name| match &o[name] {
                        serde_json::Value::Null => String::new(),
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect()
            })
            .collect()
    };
    // JSON carries numbers as numbers (decimals lose their trailing zeros): compare values.
    let same_values = |rows: Vec<Vec<String>>, what: &str| {
        assert_eq!(rows.len(), expected.len(), "{what}");
        for (row, want) in rows.iter().zip(&expected) {
            for ((got, want), name) in row.iter().zip(want).zip(&header) {
                match (got.parse::<f64>(), want.parse::<f64>()) {
                    (Ok(a), Ok(b)) => assert_eq!(a, b, "{what} {name}"),
                    _ => assert_eq!(got, want, "{what} {name}"),
                }
            }
        }
    };
    let json: Vec<serde_json::Value> = serde_json::from_str(&run(&["--format", "json"])).unwrap();
    same_values(json_rows(json), "json");
    let jsonl: Vec<serde_json::Value> = run(&["--format", "jsonl"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    same_values(json_rows(jsonl), "jsonl");

    for format in ["markdown", "table"] {
        let cells = table_cells(&run(&["--format", format]));
        assert_eq!(cells[0], header, "{format} header");
        assert_eq!(cells[1..], expected[..], "{format}");
    }

    // Parquet through --output, read back with the parquet crate.
    let file = dir.path().join("result.parquet");
    run(&["--output", file.to_str().unwrap()]);
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&file).unwrap(),
    )
    .unwrap()
    .build()
    .unwrap();
    let options = arrow::util::display::FormatOptions::default().with_null("");
    let mut from_parquet: Vec<Vec<String>> = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        assert_eq!(
            batch
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect::<Vec<_>>(),
            header
        );
        for row in 0..batch.num_rows() {
            from_parquet.push(
                batch
                    .columns()
                    .iter()
                    .map(|c| {
                        arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &options)
                            .unwrap()
                            .value(row)
                            .to_string()
                    })
                    .collect(),
            );
        }
    }
    assert_eq!(from_parquet, expected, "parquet");
}

#[test]
fn the_project_names_the_warehouse() {
    let dir = warehouse();
    std::fs::write(dir.path().join("tidemark.toml"), "warehouse = \"wh\"\n").unwrap();
    let out = tidemark()
        .args(["sql", "--format", "csv", "--project"])
        .arg(dir.path())
        .args(["-c", "SELECT count(*) AS n FROM perf"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "n\n2\n");

    let elsewhere = tempfile::tempdir().unwrap();
    let out = tidemark()
        .args(["sql", "--project"])
        .arg(elsewhere.path())
        .args(["-c", "SELECT 1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("which warehouse? Pass --warehouse"),
        "{stderr}"
    );

    // Errors point into the statement.
    let out = tidemark()
        .args(["sql", "--project"])
        .arg(dir.path())
        .args(["-c", "SELECT count(*)\nFROM prf"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "no table or mart named 'prf'; did you mean 'perf'?\n2 | FROM prf\n  |      ^^^"
        ),
        "{stderr}"
    );
}
