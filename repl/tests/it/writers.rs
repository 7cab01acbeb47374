//! Concurrent writers: two `tidemark load` processes replacing disjoint slices of one table at
//! the same moment both land (conflicts are retried); nothing is lost.
//!
//! To make the race certain rather than likely, both writers are held at the moment just before
//! their commit (both have planned against the same table version) and released together: one
//! of them must find its log version taken and retry.

use std::io::Read;

use engine::SliceKey;
use testdata::rows::{day, json_lines, slice_rows, Row};
use testdata::{Backend, BackendKind};

use crate::support::{hold_at_failpoint, run_ok, table_lines, tidemark};

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

    let mut retries = 0;
    let mut expected: Vec<Row> = Vec::new();
    for round in 1..=ROUNDS {
        expected.clear();
        let mut children = Vec::new();
        let release = dir.path().join(format!("release-{round}"));
        for (w, account) in ["a1", "a2"].iter().enumerate() {
            let rows: Vec<Row> = slices_of(account)
                .iter()
                .flat_map(|s| slice_rows(s, 2 + w + round as usize % 2, round))
                .collect();
            expected.extend(rows.iter().cloned());
            let file = dir.path().join(format!("w{w}-r{round}.jsonl"));
            std::fs::write(&file, json_lines(&rows)).unwrap();
            let mut cmd = tidemark(&backend);
            cmd.args(["load", "-t", TABLE])
                .arg(&file)
                .env("TIDEMARK_FAILPOINT_RELEASE", &release);
            children.push(hold_at_failpoint(
                &mut cmd,
                engine::failpoint::BEFORE_COMMIT,
            ));
        }
        // Both are prepared against the same version: release them together.
        std::fs::write(&release, b"go").unwrap();
        for mut child in children {
            let status = child.wait().unwrap();
            let mut stdout = String::new();
            child
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut stdout)
                .unwrap();
            assert!(status.success(), "a writer failed: {stdout}");
            let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
            let skipped =
                report["version"].as_i64().unwrap() - report["planned_version"].as_i64().unwrap();
            if skipped > 1 {
                retries += 1; // it committed past the other writer's version
            }
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
        "{kind:?}: {} commits by 2 writers released together; {retries} retries after losing a race",
        ROUNDS * 2
    );
    assert_eq!(
        retries, ROUNDS,
        "in every round exactly one writer must commit past the other"
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
