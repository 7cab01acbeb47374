//! Concurrent writers: two `tidemark load` processes replacing disjoint slices of one table at
//! the same moment both land (conflicts are retried); nothing is lost.

use std::process::Stdio;

use engine::SliceKey;
use testdata::rows::{day, json_lines, slice_rows, Row};
use testdata::{Backend, BackendKind};

use crate::support::{run_ok, table_lines, tidemark};

const TABLE: &str = "perf";
const ROUNDS: i64 = 4;

fn two_writers(kind: BackendKind) {
    let backend = Backend::new(kind);
    let dir = tempfile::tempdir().unwrap();
    // Both writers touch the same (source, day) partitions, different accounts.
    let slices_of = |account: &str| -> Vec<SliceKey> {
        (1..=3)
            .map(|d| SliceKey::new("meta", account, day(d)))
            .collect()
    };
    let seed: Vec<Row> = ["a1", "a2"]
        .iter()
        .flat_map(|a| slices_of(a))
        .flat_map(|s| slice_rows(&s, 1, 0))
        .collect();
    let seed_file = dir.path().join("seed.jsonl");
    std::fs::write(&seed_file, json_lines(&seed)).unwrap();
    run_ok(
        tidemark(&backend)
            .args(["load", "-t", TABLE])
            .arg(&seed_file),
    );

    let mut total_attempts = 0;
    let mut expected: Vec<Row> = Vec::new();
    for round in 1..=ROUNDS {
        expected.clear();
        let mut children = Vec::new();
        for (w, account) in ["a1", "a2"].iter().enumerate() {
            let rows: Vec<Row> = slices_of(account)
                .iter()
                .flat_map(|s| slice_rows(s, 2 + w + round as usize % 2, round))
                .collect();
            expected.extend(rows.iter().cloned());
            let file = dir.path().join(format!("w{w}-r{round}.jsonl"));
            std::fs::write(&file, json_lines(&rows)).unwrap();
            children.push(
                tidemark(&backend)
                    .args(["load", "-t", TABLE])
                    .arg(&file)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap(),
            );
        }
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "a writer failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            total_attempts += report["attempts"].as_i64().unwrap();
        }
        expected.sort();
        let lines = table_lines(&backend, TABLE);
        assert_eq!(
            lines.len(),
            expected.len(),
            "round {round}: rows lost or doubled"
        );
        for (line, row) in lines.iter().zip(&expected) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["account_id"], row.slice.account.as_str());
            assert_eq!(v["generation"], row.generation, "round {round}: {line}");
        }
    }
    eprintln!(
        "{kind:?}: {} commits by 2 concurrent writers took {total_attempts} attempts",
        ROUNDS * 2
    );
}

#[test]
fn concurrent_writers_disjoint_slices_local() {
    two_writers(BackendKind::Local);
}

#[test]
fn concurrent_writers_disjoint_slices_s3() {
    two_writers(BackendKind::S3);
}
