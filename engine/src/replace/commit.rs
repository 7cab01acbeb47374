//! Writing one commit entry and settling what happened when the store's answer leaves it open.
//!
//! A `_delta_log` entry is written put-if-absent. On S3 a write can be stored and still be
//! answered with an error: a `500` or a dropped connection after the object landed. object_store
//! retries such a request, the retry meets `412 Precondition Failed` and the writer sees
//! "version already exists" for its own commit; with no retry left it sees the transport error
//! (shared/reference/delta-s3-flight.md §1.4). Either way the log decides: the entry at that
//! version is byte for byte this writer's (landed), another writer's (taken), or absent (the
//! write did not land). Only when the log cannot be read either is the outcome reported as
//! unknown, and then a rerun of the same job is safe because its `txn` makes it idempotent.

use bytes::Bytes;
use deltalake::kernel::transaction::TransactionError;
use deltalake::logstore::{CommitOrBytes, LogStore};

use crate::error::{Error, Result};

/// What writing a commit entry at a version came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Written {
    /// The entry is in the log at the version. `ambiguous` when the store answered with an
    /// error although it had stored the entry (found by reading the log back).
    Landed { ambiguous: bool },
    /// Another writer's entry holds the version.
    Taken,
}

/// Write `entry` as `version` of the table's log, and settle an ambiguous answer by reading
/// the log back.
pub(crate) async fn write_entry(
    log_store: &dyn LogStore,
    table: &str,
    version: u64,
    entry: &Bytes,
) -> Result<Written> {
    let written = log_store
        .write_commit_entry(
            version,
            CommitOrBytes::LogBytes(entry.clone()),
            uuid::Uuid::new_v4(),
        )
        .await;
    let failure = match written {
        Ok(()) => return Ok(Written::Landed { ambiguous: false }),
        Err(TransactionError::VersionAlreadyExists(_)) => None,
        Err(e) => Some(e),
    };
    match log_store.read_commit_entry(version).await {
        Ok(Some(found)) if found == *entry => {
            tracing::warn!(
                table, version,
                error = failure.as_ref().map(|e| e.to_string()).unwrap_or_else(|| "version already exists".into()),
                "the store answered a commit with an error after storing it; the commit is in the log"
            );
            Ok(Written::Landed { ambiguous: true })
        }
        Ok(Some(_)) => Ok(Written::Taken),
        Ok(None) => match failure {
            Some(e) => Err(Error::delta(table, e.into())),
            // "Already exists" yet nothing there: a store that lost the object. Not ours.
            None => Ok(Written::Taken),
        },
        Err(read) => match failure {
            // The version was taken; whose entry it is is unknown.
            None => Err(Error::CommitOutcomeUnknown {
                table: table.to_string(),
                version,
                request: Error::describe_request(&read),
            }),
            Some(e) => Err(Error::CommitOutcomeUnknown {
                table: table.to_string(),
                version,
                request: Error::describe_request(&deltalake::DeltaTableError::from(e)),
            }),
        },
    }
}
