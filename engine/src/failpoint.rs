//! Named points where a test can freeze the process so that it can be killed there.
//!
//! `TIDEMARK_FAILPOINT=<name>` makes the process print `FAILPOINT <name>` on stderr when it
//! reaches that point and then wait forever; a crash-safety test kills it with SIGKILL at that
//! moment. With `TIDEMARK_FAILPOINT_RELEASE=<file>` as well, the process waits only until that
//! file exists and then goes on: a test holds several writers at the same point and releases
//! them together to force a race. `<name>#N` freezes at the N-th time the point is reached
//! (e.g. the third commit of a sync). Unset (the normal case) a failpoint costs one environment
//! lookup.

use std::io::Write;

/// The environment variable that arms a failpoint.
pub const ENV: &str = "TIDEMARK_FAILPOINT";
/// The environment variable naming the file whose creation releases a waiting failpoint.
pub const RELEASE_ENV: &str = "TIDEMARK_FAILPOINT_RELEASE";

/// How often a held failpoint looks for its release file.
const RELEASE_POLL: std::time::Duration = std::time::Duration::from_millis(5);

/// Staged Parquet files are written; nothing is committed.
pub const AFTER_STAGE: &str = "replace.after-stage";
/// The commit is prepared and about to be written to the log.
pub const BEFORE_COMMIT: &str = "replace.before-commit";
/// The commit is in the log; the caller has not been told.
pub const AFTER_COMMIT: &str = "replace.after-commit";

/// Times each armed failpoint has been reached in this process.
static HITS: std::sync::Mutex<Option<std::collections::HashMap<String, u64>>> =
    std::sync::Mutex::new(None);

/// Whether reaching `name` now should freeze: the armed spec is `name` or `name#N`.
fn armed(name: &str) -> bool {
    let Ok(spec) = std::env::var(ENV) else {
        return false;
    };
    let (point, nth) = match spec.split_once('#') {
        Some((point, n)) => (point.to_string(), n.parse::<u64>().unwrap_or(1)),
        None => (spec, 1),
    };
    if point != name {
        return false;
    }
    let mut hits = HITS.lock().unwrap_or_else(|e| e.into_inner());
    let count = hits
        .get_or_insert_with(Default::default)
        .entry(point)
        .or_insert(0);
    *count += 1;
    *count == nth
}

/// Freeze here if this failpoint is armed.
pub async fn hit(name: &str) {
    if armed(name) {
        let mut stderr = std::io::stderr();
        let _ = writeln!(stderr, "FAILPOINT {name}");
        let _ = stderr.flush();
        match std::env::var_os(RELEASE_ENV) {
            Some(release) => {
                let release = std::path::PathBuf::from(release);
                while !release.exists() {
                    tokio::time::sleep(RELEASE_POLL).await;
                }
            }
            None => std::future::pending::<()>().await,
        }
    }
}
