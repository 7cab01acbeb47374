//! The peers measured beside tidemark: DuckDB and Polars, each run in Python over the same
//! Parquet files (`bench/duckdb_queries.py`, `bench/polars_queries.py`).

use std::path::Path;
use std::process::Command;

use anyhow::Context;

/// The engines measured beside tidemark.
#[derive(Debug, Clone, Copy)]
pub(super) enum Peer {
    DuckDb,
    Polars,
}

/// Run a peer's script (`bench/<script>`) over the files in `list`; its JSON answers.
pub(super) fn run_peer(
    python: &str,
    script: &str,
    list: &Path,
    accounts: &Path,
    runs: usize,
    queries: &[serde_json::Value],
) -> anyhow::Result<Vec<serde_json::Value>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(script);
    let out = Command::new(python)
        .arg(&script)
        .arg(list)
        .arg(accounts)
        .arg(runs.to_string())
        .arg(serde_json::to_string(queries)?)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "{} failed (needs the Python `duckdb`, `polars` and `pyarrow` packages):\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}
