//! Running the bench's Python scripts (`bench/*.py`: the DuckDB and Polars peers, the chart):
//! one place that finds the script, runs it and turns a failure into an error naming the
//! packages it needs.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

use anyhow::Context;

/// Run `bench/<script>` with `args` under `python`; its standard output. `needs` names the
/// Python packages the script imports, for the error when it fails.
pub fn run_script<I, S>(python: &str, script: &str, args: I, needs: &str) -> anyhow::Result<Vec<u8>>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(script);
    let out = Command::new(python)
        .arg(&script)
        .args(args)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "{} failed (needs the Python {needs}):\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out.stdout)
}
