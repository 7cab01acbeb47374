//! The peers measured beside tidemark: DuckDB and Polars, each run in Python over the same
//! Parquet files (`bench/duckdb_queries.py`, `bench/polars_queries.py`).

use std::path::Path;

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
    let args = [
        list.as_os_str().to_owned(),
        accounts.as_os_str().to_owned(),
        runs.to_string().into(),
        serde_json::to_string(queries)?.into(),
    ];
    let out = crate::python::run_script(
        python,
        script,
        args,
        "`duckdb`, `polars` and `pyarrow` packages",
    )?;
    Ok(serde_json::from_slice(&out)?)
}
