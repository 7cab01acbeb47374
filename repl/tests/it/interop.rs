//! Another Delta reader (the Python `deltalake` package, installed by .ci/run) reads what
//! tidemark commits: tidemark writes standard Delta log entries itself, so this checks them.

use std::process::Command;

use engine::SliceKey;
use testdata::rows::{day, json_lines, slice_rows, Row};
use testdata::Backend;

use crate::support::{run_ok, tidemark};

const READ_WITH_PYTHON: &str = r#"
import sys
from deltalake import DeltaTable
import pyarrow.compute as pc
t = DeltaTable(sys.argv[1]).to_pyarrow_table()
print(t.num_rows, pc.sum(t["clicks"]).as_py(), pc.max(t["generation"]).as_py(), flush=True)
# deltalake's background threads sometimes abort the interpreter's teardown ("terminate called
# without an active exception"); the answer is printed, so leave without tearing down.
import os
os._exit(0)
"#;

#[test]
fn python_deltalake_reads_replaced_slices() {
    let backend = Backend::local();
    let dir = tempfile::tempdir().unwrap();
    let a1 = SliceKey::new("meta", "a1", day(1));
    let a2 = SliceKey::new("meta", "a2", day(1));
    let first: Vec<Row> = [&a1, &a2]
        .iter()
        .flat_map(|s| slice_rows(s, 3, 1))
        .collect();
    let second = slice_rows(&a1, 2, 2);
    for (i, rows) in [&first, &second].iter().enumerate() {
        let file = dir.path().join(format!("{i}.jsonl"));
        std::fs::write(&file, json_lines(rows)).unwrap();
        run_ok(tidemark(&backend).args(["load", "-t", "perf"]).arg(&file));
    }
    let expected: Vec<&Row> = second
        .iter()
        .chain(first.iter().filter(|r| r.slice == a2))
        .collect();
    let clicks: i64 = expected.iter().map(|r| r.clicks).sum();

    let table = std::path::Path::new(&backend.url).join("tables/perf");
    let out = Command::new("python3")
        .args(["-c", READ_WITH_PYTHON])
        .arg(&table)
        .output()
        .expect("python3 is needed for the interop test");
    assert!(
        out.status.success(),
        "python deltalake could not read the table (pip install deltalake pyarrow): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{} {clicks} 2", expected.len())
    );
}
