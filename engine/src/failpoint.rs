//! Named points where a test can freeze the process so that it can be killed there.
//!
//! `TIDEMARK_FAILPOINT=<name>` makes the process print `FAILPOINT <name>` on stderr when it
//! reaches that point and then wait forever; a crash-safety test kills it with SIGKILL at that
//! moment. With `TIDEMARK_FAILPOINT_RELEASE=<file>` as well, the process waits only until that
//! file exists and then goes on: a test holds several writers at the same point and releases
//! them together to force a race. Unset (the normal case) a failpoint costs one environment
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

/// Freeze here if this failpoint is armed.
pub async fn hit(name: &str) {
    if std::env::var(ENV).is_ok_and(|armed| armed == name) {
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
