//! The connectors' error type. Messages name the platform, account and request; they never
//! carry tokens (requests are described by path and parameters, credentials travel in headers
//! and are not echoed).

/// Result alias for connectors.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong talking to a platform.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is wrong; the message names the key and the fix.
    #[error("{0}")]
    Config(String),
    /// The platform could not be reached or the connection broke.
    #[error("{platform}: request {path} failed: {reason}")]
    Transport {
        platform: String,
        path: String,
        reason: String,
    },
    /// The platform answered with an error status.
    #[error("{platform}: request {path} was refused with HTTP {status}: {message}")]
    Status {
        platform: String,
        path: String,
        status: u16,
        message: String,
    },
    /// A payload could not be read.
    #[error("{platform}: payload of {path} cannot be parsed: {reason}")]
    Payload {
        platform: String,
        path: String,
        reason: String,
    },
    /// A request was given up: refused for good, or still failing after its retries.
    #[error("{source_name}: {request} gave up after {attempts} attempt(s): {reason}")]
    Request {
        source_name: String,
        request: String,
        attempts: u32,
        reason: String,
        /// The last body received, kept so an unreadable payload can be quarantined.
        last_body: Option<bytes::Bytes>,
    },
    /// Reading or writing `raw/` failed.
    #[error("raw landing at {path}: {reason}")]
    Raw { path: String, reason: String },
    /// Reading or writing a run's journal (`_tidemark/runs/RUN/`) failed.
    #[error("run journal at {path}: {reason}")]
    Journal { path: String, reason: String },
    /// Writing to the warehouse failed (boxed: engine errors are large).
    #[error(transparent)]
    Engine(Box<engine::Error>),
}

impl Error {
    /// Whether storage failed (landing a payload, or a commit): the job succeeds when run
    /// again once the store answers, so a sync marks it failed and goes on with the others.
    pub fn is_storage(&self) -> bool {
        match self {
            Error::Raw { .. } | Error::Journal { .. } => true,
            Error::Engine(e) => e.is_storage(),
            _ => false,
        }
    }
}

impl From<engine::Error> for Error {
    fn from(e: engine::Error) -> Self {
        Error::Engine(Box::new(e))
    }
}
