//! Named points where a test can freeze the process so that it can be killed there.
//!
//! `TIDEMARK_FAILPOINT=<name>` makes the process print `FAILPOINT <name>` on stderr when it
//! reaches that point and then wait forever; a crash-safety test kills it with SIGKILL at that
//! moment. Unset (the normal case) a failpoint costs one environment lookup.

use std::io::Write;

/// The environment variable that arms a failpoint.
pub const ENV: &str = "TIDEMARK_FAILPOINT";

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
        std::future::pending::<()>().await;
    }
}
