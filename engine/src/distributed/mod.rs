//! Queries on a Ballista cluster, for warehouses one machine cannot query fast enough.
//!
//! tidemark does not run a cluster of its own: it uses Ballista, which runs DataFusion plans
//! across executors. What tidemark adds is what a stock Ballista cannot know:
//! - **Its tables in plans** ([`codec`]). A query's table is a
//!   [`SnapshotTable`](crate::scan::SnapshotTable) pinned at the version the client planned
//!   on. The plan sent to the scheduler carries that pin (table URL, Delta table id,
//!   version), never a name, so the scheduler opens exactly that version, and the executors
//!   get plain Parquet scans of its files: no executor ever opens a table's latest version. The restatement audit (`restatements(…)`) travels as its request.
//! - **Its functions** (`ctr`, `roas`, … and the run-wise `date_trunc`), registered in the
//!   scheduler's sessions and the executors' function registry ([`tidemark_functions`]).
//! - **Its storage**: object stores built on demand from the same storage settings as the
//!   warehouse's ([`stores`]), so `s3://` warehouses work on every executor.
//!
//! A stock `ballista-executor` binary has none of this, so `tidemark ballista scheduler` and
//! `tidemark ballista executor` run the cluster's roles with it built in.
//!
//! # Only reads are distributed
//! Writes (slice replaces, the commit of a mart refresh, compaction, vacuum) stay on one
//! coordinator process. A Delta commit is a single put-if-absent of the next log entry, and
//! each write's correctness rests on reading the log it commits against; spreading one write
//! across executors would need a distributed commit protocol for no gain, since writes are
//! bounded by the 30-day window, not by history. A mart refresh runs its query on the cluster
//! and commits the result itself.

pub mod codec;
pub mod stores;

use std::str::FromStr;
use std::sync::Arc;

use ballista_core::extension::{SessionConfigExt, SessionStateExt};
use ballista_core::registry::BallistaFunctionRegistry;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::{FunctionRegistry, SessionState, SessionStateBuilder};
use datafusion::logical_expr::{AggregateUDF, ScalarUDF};
use datafusion::prelude::SessionConfig;

use crate::error::{Error, Result};
use crate::storage::StorageConfig;

pub use codec::TidemarkLogicalCodec;

// A Ballista built on another DataFusion major cannot read our plans: fail the build, not a
// query (Ballista's major follows DataFusion's: ballista 55 <-> datafusion 55).
const _: () = assert!(
    same_major(
        datafusion::DATAFUSION_VERSION,
        ballista_core::BALLISTA_VERSION
    ),
    "ballista-core and datafusion have different major versions; move them together"
);

/// Whether two version strings have the same major version (the text before the first '.').
const fn same_major(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut i = 0;
    loop {
        let end_a = i == a.len() || a[i] == b'.';
        let end_b = i == b.len() || b[i] == b'.';
        if end_a || end_b {
            return end_a && end_b;
        }
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
}

/// The port a Ballista scheduler listens on when the URL names none.
pub const DEFAULT_SCHEDULER_PORT: u16 = 50050;

/// Where a session's queries run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum QueryEngine {
    /// In this process (the default).
    #[default]
    Local,
    /// On the Ballista cluster whose scheduler is at `host:port`.
    Ballista { host: String, port: u16 },
}

impl QueryEngine {
    /// The scheduler's gRPC address as Ballista's client wants it.
    fn scheduler_url(host: &str, port: u16) -> String {
        format!("http://{host}:{port}")
    }
}

impl FromStr for QueryEngine {
    type Err = Error;

    /// `local`, or `ballista://HOST[:PORT]` (port 50050 when left out).
    fn from_str(text: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidEngine {
            given: text.to_string(),
            reason: reason.to_string(),
        };
        if text == "local" {
            return Ok(QueryEngine::Local);
        }
        let Some(address) = text.strip_prefix("ballista://") else {
            return Err(invalid("it is neither 'local' nor 'ballista://HOST:PORT'"));
        };
        let address = address.trim_end_matches('/');
        let (host, port) = match address.rsplit_once(':') {
            Some((host, port)) => (
                host,
                port.parse()
                    .map_err(|_| invalid(&format!("'{port}' is not a port number")))?,
            ),
            None => (address, DEFAULT_SCHEDULER_PORT),
        };
        if host.is_empty() || host.contains('/') {
            return Err(invalid("it names no scheduler host"));
        }
        Ok(QueryEngine::Ballista {
            host: host.to_string(),
            port,
        })
    }
}

impl std::fmt::Display for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueryEngine::Local => f.write_str("local"),
            QueryEngine::Ballista { host, port } => write!(f, "ballista://{host}:{port}"),
        }
    }
}

/// tidemark's own functions, for sessions built without a context (a scheduler's, and the
/// executors' registry).
pub fn tidemark_functions() -> (Vec<Arc<ScalarUDF>>, Vec<Arc<AggregateUDF>>) {
    (crate::runwise::udfs(), crate::functions::udafs())
}

/// The state of a client session whose queries run on the cluster at `engine`: `config`
/// with tidemark's codec, planned here and executed there. Register catalogs and functions
/// on the context made from it as for a local session.
pub fn client_state(
    config: SessionConfig,
    runtime: Arc<RuntimeEnv>,
    host: &str,
    port: u16,
) -> Result<SessionState> {
    let config = config.with_ballista_logical_extension_codec(Arc::new(TidemarkLogicalCodec::new(
        StorageConfig::default(),
    )));
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .with_runtime_env(runtime)
        .build();
    Ok(state.upgrade_for_ballista(QueryEngine::scheduler_url(host, port))?)
}

/// The session of a scheduler: Ballista's, with tidemark's functions and object stores.
pub fn scheduler_session(
    config: SessionConfig,
    stores: &Arc<stores::WarehouseStores>,
) -> datafusion::error::Result<SessionState> {
    let runtime = stores.runtime(None)?;
    let state = ballista_core::utils::default_session_builder(config)?;
    let mut state = SessionStateBuilder::new_from_existing(state)
        .with_runtime_env(runtime)
        .build();
    let (scalars, aggregates) = tidemark_functions();
    for udf in scalars {
        state.register_udf(udf)?;
    }
    for udaf in aggregates {
        state.register_udaf(udaf)?;
    }
    Ok(state)
}

/// The function registry of an executor: DataFusion's and Ballista's, then tidemark's (the
/// run-wise `date_trunc` takes the place of DataFusion's).
pub fn executor_functions() -> BallistaFunctionRegistry {
    let mut registry = BallistaFunctionRegistry::default();
    let (scalars, aggregates) = tidemark_functions();
    for udf in scalars {
        registry
            .scalar_functions
            .insert(udf.name().to_string(), udf);
    }
    for udaf in aggregates {
        registry
            .aggregate_functions
            .insert(udaf.name().to_string(), udaf);
    }
    registry
}

/// The DataFusion settings scheduler and executor sessions start from: Ballista's, then
/// tidemark's own (a client's session sends its settings with each job, and they win).
pub fn cluster_config() -> SessionConfig {
    let mut config = SessionConfig::new_with_ballista();
    for (key, value, _why) in crate::session::TIDEMARK_OPTIONS {
        let _ = config.options_mut().set(key, value);
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majors_compare() {
        assert!(same_major("55.2.0", "55.0.0"));
        assert!(!same_major("55.2.0", "56.0.0"));
        assert!(!same_major("5.2.0", "55.0.0"));
        assert!(same_major(
            datafusion::DATAFUSION_VERSION,
            ballista_core::BALLISTA_VERSION
        ));
    }

    #[test]
    fn engines_parse() {
        assert_eq!("local".parse::<QueryEngine>().unwrap(), QueryEngine::Local);
        assert_eq!(
            "ballista://10.0.0.5:50070".parse::<QueryEngine>().unwrap(),
            QueryEngine::Ballista {
                host: "10.0.0.5".into(),
                port: 50070
            }
        );
        assert_eq!(
            "ballista://sched".parse::<QueryEngine>().unwrap(),
            QueryEngine::Ballista {
                host: "sched".into(),
                port: DEFAULT_SCHEDULER_PORT
            }
        );
        for bad in [
            "ballista://",
            "df://x:1",
            "ballista://h:port",
            "spark://h:1",
        ] {
            let err = bad.parse::<QueryEngine>().unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
    }
}
