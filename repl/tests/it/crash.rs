//! Crash safety: `tidemark load` killed with SIGKILL after staging files, just before the
//! commit, and after the commit but before acknowledging leaves the table at its last committed
//! version; running the same job again converges to the same content.

use engine::SliceKey;
use testdata::rows::{day, json_lines, slice_rows, Row};
use testdata::{Backend, BackendKind};

use crate::support::{kill_at_failpoint, run_ok, table_lines, table_version, tidemark};

const TABLE: &str = "perf";

/// Sorted (source, account, date, ad, clicks, generation) of rows, as `table_lines` prints them.
fn expected_lines(rows: &[Row]) -> Vec<String> {
    let mut rows = rows.to_vec();
    rows.sort();
    rows.iter()
        .map(|r| {
            format!(
                "{{\"source\":\"{}\",\"account_id\":\"{}\",\"date\":\"{}\",\"ad_id\":\"{}\",\"clicks\":{},\"generation\":{}}}",
                r.slice.source, r.slice.account, r.slice.date, r.ad_id, r.clicks, r.generation
            )
        })
        .collect()
}

fn crash_and_rerun(kind: BackendKind, failpoint: &str) {
    let backend = Backend::new(kind);
    let dir = tempfile::tempdir().unwrap();
    let a1d1 = SliceKey::new("meta", "a1", day(1));
    let a1d2 = SliceKey::new("meta", "a1", day(2));
    let a2d1 = SliceKey::new("meta", "a2", day(1));

    let seed: Vec<Row> = [&a1d1, &a1d2, &a2d1]
        .iter()
        .flat_map(|s| slice_rows(s, 2, 1))
        .collect();
    let seed_file = dir.path().join("seed.jsonl");
    std::fs::write(&seed_file, json_lines(&seed)).unwrap();
    run_ok(
        tidemark(&backend)
            .args(["load", "-t", TABLE, "--job", "sync:1"])
            .arg(&seed_file),
    );
    let seed_version = table_version(&backend, TABLE);

    // The restatement: a1/d1 gets three new rows, a1/d2 lost all its rows, a2/d1 is untouched.
    let restated = slice_rows(&a1d1, 3, 2);
    let restated_file = dir.path().join("restated.jsonl");
    std::fs::write(&restated_file, json_lines(&restated)).unwrap();
    let load_restated = || {
        let mut cmd = tidemark(&backend);
        cmd.args([
            "load",
            "-t",
            TABLE,
            "--job",
            "sync:2",
            "--slice",
            "meta/a1/2026-11-02",
        ])
        .arg(&restated_file);
        cmd
    };
    let mut after: Vec<Row> = restated.clone();
    after.extend(slice_rows(&a2d1, 2, 1));

    kill_at_failpoint(&mut load_restated(), failpoint);

    let version = table_version(&backend, TABLE);
    if failpoint == engine::failpoint::AFTER_COMMIT {
        assert_eq!(
            version,
            seed_version + 1,
            "the commit landed before the kill"
        );
        assert_eq!(table_lines(&backend, TABLE), expected_lines(&after));
    } else {
        assert_eq!(version, seed_version, "nothing committed at {failpoint}");
        assert_eq!(table_lines(&backend, TABLE), expected_lines(&seed));
    }

    // Rerun the same job: it converges, and a job already in the log is not applied twice.
    let out = run_ok(&mut load_restated());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["already_applied"].as_bool(),
        Some(failpoint == engine::failpoint::AFTER_COMMIT),
        "{report}"
    );
    assert_eq!(table_lines(&backend, TABLE), expected_lines(&after));
    assert_eq!(
        table_version(&backend, TABLE),
        seed_version + 1,
        "exactly one commit for the job"
    );

    // And once more, for good measure: still the same.
    run_ok(&mut load_restated());
    assert_eq!(table_lines(&backend, TABLE), expected_lines(&after));
}

#[test]
fn killed_after_staging_local() {
    crash_and_rerun(BackendKind::Local, engine::failpoint::AFTER_STAGE);
}

#[test]
fn killed_before_commit_local() {
    crash_and_rerun(BackendKind::Local, engine::failpoint::BEFORE_COMMIT);
}

#[test]
fn killed_after_commit_local() {
    crash_and_rerun(BackendKind::Local, engine::failpoint::AFTER_COMMIT);
}

#[test]
fn killed_after_staging_s3() {
    crash_and_rerun(BackendKind::S3, engine::failpoint::AFTER_STAGE);
}

#[test]
fn killed_before_commit_s3() {
    crash_and_rerun(BackendKind::S3, engine::failpoint::BEFORE_COMMIT);
}

#[test]
fn killed_after_commit_s3() {
    crash_and_rerun(BackendKind::S3, engine::failpoint::AFTER_COMMIT);
}
