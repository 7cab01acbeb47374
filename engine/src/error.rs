//! The engine's one error type. Every variant names the thing that failed
//! (warehouse, table, slice, column, file) and, where there is one, what to do.

use std::fmt;

/// Result alias used throughout the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The warehouse URL could not be understood.
    #[error(
        "invalid warehouse URL '{url}': {reason}. Use a local directory or s3://bucket/prefix"
    )]
    InvalidWarehouseUrl { url: String, reason: String },

    /// `--engine` / `[engine]` names no engine tidemark can run queries on.
    #[error(
        "invalid query engine '{given}': {reason}. Use 'local' or 'ballista://HOST:PORT' (a \
         scheduler started with `tidemark ballista scheduler`)"
    )]
    InvalidEngine { given: String, reason: String },

    /// The warehouse storage did not answer.
    #[error("cannot reach warehouse {url}: {reason}. Check the path or endpoint, network and credentials")]
    Unreachable { url: String, reason: String },

    /// An S3-compatible endpoint was given without keys.
    #[error(
        "no credentials for the S3 endpoint of warehouse {url}: set AWS_ACCESS_KEY_ID and \
         AWS_SECRET_ACCESS_KEY (values are never logged)"
    )]
    MissingCredentials { url: String },

    /// The S3 server accepted a second create of the same key, so concurrent commits would be unsafe.
    #[error(
        "the object store behind {url} ignores conditional writes (If-None-Match); concurrent Delta \
         commits would silently lose data. Use a server that supports conditional PUT"
    )]
    UnsafeObjectStore { url: String },

    /// A table name that cannot be used as a path segment.
    #[error("invalid table name '{name}': use lowercase letters, digits and '_' (starting with a letter)")]
    InvalidTableName { name: String },

    /// No such table in the warehouse.
    #[error("table '{name}' does not exist in warehouse {warehouse}")]
    TableNotFound { name: String, warehouse: String },

    /// A replace was called with nothing in it.
    #[error(
        "empty batch for table '{table}': no slices were given, so there is nothing to replace"
    )]
    EmptyBatch { table: String },

    /// A row belongs to a slice the batch did not declare.
    #[error(
        "row {row} of the batch for table '{table}' belongs to slice {slice}, which is not among the \
         slices being replaced; declare every slice the rows belong to"
    )]
    RowOutsideSlices {
        table: String,
        row: usize,
        slice: String,
    },

    /// A slice column is missing from the batch or has a null in it.
    #[error("table '{table}': column '{column}' {problem}")]
    BadSliceColumn {
        table: String,
        column: String,
        problem: String,
    },

    /// The incoming rows have a column whose type differs from the table's.
    #[error(
        "type conflict in table '{table}', column '{column}': the table has {old}, the new rows have \
         {new}. The table was left unchanged; cast the column or rename it"
    )]
    TypeConflict {
        table: String,
        column: String,
        old: String,
        new: String,
    },

    /// A non-nullable table column is absent from the incoming rows.
    #[error(
        "table '{table}': the new rows lack column '{column}', which the table declares NOT NULL"
    )]
    MissingRequiredColumn { table: String, column: String },

    /// The table exists but is not laid out for slice replacement.
    #[error("table '{table}' cannot take slice replaces: {reason}")]
    NotSliceTable { table: String, reason: String },

    /// A maturity curve or projection asked of a table whose history cannot give one.
    #[error("table '{table}' has no restatement history to follow: {reason}")]
    NoHistory { table: String, reason: String },

    /// Someone else holds a lease (one scheduler per warehouse, one refresher per mart).
    #[error("{path} is held by {holder} until {until} (it renews while running; a dead holder's lease expires then)")]
    LeaseHeld {
        path: String,
        holder: String,
        until: String,
    },

    /// Time travel to a version that is not there.
    #[error("table '{name}' has no version {asked}; its newest is {newest} (DESCRIBE HISTORY {name} lists them)")]
    NoSuchVersion {
        name: String,
        asked: String,
        newest: u64,
    },

    /// A mart's SQL file cannot be used.
    /// The session is not allowed to read a table (a Flight SQL user without a grant on it).
    #[error("you may not read '{name}': it is not among your grants (an admin can add it to your [users.<name>] grants in tidemark.toml)")]
    NotReadable { name: String },

    /// A vacuum asked for a retention shorter than the safe minimum.
    #[error("table '{table}': a vacuum retention of {asked} is shorter than the minimum {minimum}; files that recent may still be read by time travel or by a writer's commit in flight. Keep the default, or force it where the command offers --force")]
    RetentionTooShort {
        table: String,
        asked: String,
        minimum: String,
    },

    /// Time travel to a version whose files a vacuum deleted.
    #[error("table '{table}': version {version} can no longer be read, a vacuum deleted files it needs; the oldest readable version is {oldest}. Vacuum keeps removed files for its retention (`tidemark compact --vacuum --retain …`)")]
    Vacuumed {
        table: String,
        version: u64,
        oldest: u64,
    },

    #[error("mart '{mart}': {problem}")]
    MartDefinition { mart: String, problem: String },

    /// Marts that read each other in a circle.
    #[error("marts depend on each other in a cycle: {cycle}. Break it by reading a table instead of one of these marts")]
    MartCycle { cycle: String },

    /// A mart reads a table that does not exist.
    #[error("mart '{mart}' reads '{input}', which is neither a table nor a mart of this warehouse{hint}")]
    MartInput {
        mart: String,
        input: String,
        hint: String,
    },

    /// A mart's query failed; the mart keeps its previous contents.
    #[error("mart '{mart}': its query failed, so it keeps its previous contents: {message}")]
    MartQuery { mart: String, message: String },

    /// Concurrent commits kept conflicting after every retry.
    #[error("table '{table}': gave up after {attempts} commit attempts that conflicted with other writers: {last}")]
    CommitConflict {
        table: String,
        attempts: usize,
        last: String,
    },

    /// The object store failed a request the Delta layer made (a data file write, a read):
    /// which request, which object, what status, after how many attempts.
    /// (The Delta error is kept but not chained: its text, "Failed to parse parquet: External:
    /// …", would mislead.)
    #[error("table '{table}': a storage request failed: {request}")]
    Storage {
        table: String,
        request: String,
        delta: Box<deltalake::DeltaTableError>,
    },

    /// A commit's write failed in a way that leaves its outcome open (the store may have
    /// stored the entry before the error), and asking the log afterwards failed too.
    #[error(
        "table '{table}': the store failed while committing version {version} and could not be \
         asked afterwards whether the commit landed, so its outcome is unknown ({request}). Run \
         the same work again once the store answers: a job already in the log is not committed \
         twice"
    )]
    CommitOutcomeUnknown {
        table: String,
        version: u64,
        request: String,
    },

    /// Error from the Delta layer, with the table it concerns.
    #[error("table '{table}': {source}")]
    Delta {
        table: String,
        #[source]
        source: deltalake::DeltaTableError,
    },

    /// Error from the query engine.
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),

    /// Error from Arrow.
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),

    /// Error from object storage, with the path it concerns.
    #[error("object store error at {path}: {}", describe_storage_failure(&.source.to_string()))]
    ObjectStore {
        path: String,
        #[source]
        source: object_store::Error,
    },
}

impl Error {
    /// A Delta error about `table`; one caused by the object store says so (deltalake and
    /// parquet wrap it as "Failed to parse parquet: External: …" even for a failed PUT).
    pub(crate) fn delta(table: impl fmt::Display, source: deltalake::DeltaTableError) -> Self {
        // A tidemark error passed through deltalake (a callback's) comes back as it was.
        let source = match source {
            deltalake::DeltaTableError::GenericError { source } => {
                match source.downcast::<Error>() {
                    Ok(error) => return *error,
                    Err(source) => deltalake::DeltaTableError::GenericError { source },
                }
            }
            other => other,
        };
        match storage_request(&source) {
            Some(request) => Error::Storage {
                table: table.to_string(),
                request,
                delta: Box::new(source),
            },
            None => Error::Delta {
                table: table.to_string(),
                source,
            },
        }
    }

    /// Whether the object store failed (a request, or a commit whose outcome it left
    /// unknown), as opposed to the data or the request being wrong: work that failed this way
    /// succeeds when run again once the store answers.
    pub fn is_storage(&self) -> bool {
        matches!(
            self,
            Error::Storage { .. }
                | Error::CommitOutcomeUnknown { .. }
                | Error::ObjectStore { .. }
                | Error::Unreachable { .. }
        )
    }

    /// The failed storage request in `error` as one line, or its whole text.
    pub(crate) fn describe_request(error: &(dyn std::error::Error + 'static)) -> String {
        storage_request(error).unwrap_or_else(|| error.to_string())
    }

    pub(crate) fn store(path: impl fmt::Display, source: object_store::Error) -> Self {
        Error::ObjectStore {
            path: path.to_string(),
            source,
        }
    }
}

/// The object-store failure in `error`'s causes, as one line: the operation and object, the
/// attempts, and the status with the store's error code (the XML body left out).
fn storage_request(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cause = Some(error);
    while let Some(e) = cause {
        // An io::Error wrapping one (the async writer's path) hides it from `source()`.
        let wrapped = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref());
        let store = e
            .downcast_ref::<object_store::Error>()
            .or_else(|| wrapped.and_then(|w| w.downcast_ref::<object_store::Error>()));
        match store {
            // A request that failed (status, connection, timeout); "not found" and
            // precondition answers are facts about the table, not failures of the store.
            Some(store @ object_store::Error::Generic { .. }) => {
                return Some(describe_store_error(&store.to_string()))
            }
            Some(_) => return None,
            None => {}
        }
        cause = e.source();
    }
    // Some paths keep the store's failure only as text (deltalake's Z-order wraps it in a
    // Parquet error message; delta_kernel's object_store is another crate version).
    let text = error.to_string();
    let marker = "Generic S3 error: ";
    let at = text.find(marker)? + marker.len();
    Some(describe_storage_failure(&text[at..]))
}

/// An object store failure's text, made short: `… Error performing PUT URL in 107ms, after 1
/// retries, … - Server returned non-2xx status code: 503 Service Unavailable: <?xml …>` →
/// `PUT URL: 503 Service Unavailable (SlowDown); 107ms, after 1 retries, …`. Text without a
/// failed request in it comes back as it is.
pub fn describe_storage_failure(text: &str) -> String {
    let marker = "Error performing ";
    let Some(at) = text.rfind(marker) else {
        return text.to_string();
    };
    let rest = &text[at + marker.len()..];
    let (request, rest) = rest.split_once(" in ").unwrap_or((rest, ""));
    let Some((timing, status)) = rest.split_once(" - Server returned non-2xx status code: ") else {
        return format!("{request}: {}", rest.trim());
    };
    let code = status
        .split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map(|(code, _)| format!(" ({code})"))
        .unwrap_or_default();
    let status = status.split_once(": <").map_or(status, |(s, _)| s).trim();
    format!("{request}: {status}{code}; {}", timing.trim())
}

/// An `object_store::Error::Generic`'s text without its `Generic S3 error: ` prefix, made short
/// by [`describe_storage_failure`].
fn describe_store_error(text: &str) -> String {
    describe_storage_failure(text.split_once(" error: ").map_or(text, |(_, rest)| rest))
}

impl From<Error> for datafusion::error::DataFusionError {
    fn from(e: Error) -> Self {
        match e {
            Error::DataFusion(e) => e,
            other => datafusion::error::DataFusionError::External(Box::new(other)),
        }
    }
}

#[cfg(test)]
mod storage_tests {
    use super::*;

    #[test]
    fn a_store_failure_kept_only_as_text_is_found() {
        let error = deltalake::DeltaTableError::Generic("Parquet error: Z-order failed while scanning data: Parquet error: Failed to fetch metadata for file x.parquet: Object Store error: Generic S3 error: Error performing GET http://h/b/x.parquet in 110ms, after 1 retries, max_retries: 1, retry_timeout: 10s  - HTTP error: error sending request".into());
        assert_eq!(
            storage_request(&error).as_deref(),
            Some("GET http://h/b/x.parquet: 110ms, after 1 retries, max_retries: 1, retry_timeout: 10s  - HTTP error: error sending request")
        );
        let plain = deltalake::DeltaTableError::Generic("schema mismatch".into());
        assert_eq!(storage_request(&plain), None);
    }

    #[test]
    fn a_failed_put_reads_as_one_request_with_its_status() {
        let text = "Generic S3 error: Error performing PUT http://127.0.0.1:1/b/w/tables/t/x.parquet in 107ms, after 1 retries, max_retries: 1, retry_timeout: 15s  - Server returned non-2xx status code: 503 Service Unavailable: <?xml version=\"1.0\"?><Error><Code>SlowDown</Code><Message>m</Message></Error>";
        assert_eq!(
            describe_store_error(text),
            "PUT http://127.0.0.1:1/b/w/tables/t/x.parquet: 503 Service Unavailable (SlowDown); 107ms, after 1 retries, max_retries: 1, retry_timeout: 15s"
        );
        assert_eq!(
            describe_store_error("Object at location x not found: no such file"),
            "Object at location x not found: no such file"
        );
    }
}
