//! # tidemark-engine
//!
//! The storage core of tidemark: a warehouse is a URL (a local directory or
//! `s3://bucket/prefix`) holding Delta tables, and the one write that matters is the
//! **replace contract**: a sync of (source, account, days) replaces exactly those slices in one
//! atomic commit, removing rows that vanished upstream and leaving every other slice's files
//! untouched. Readers pin one table snapshot per query, so they see a slice before or after a
//! replace, never empty or mixed.
//!
//! # Layout
//! - [`storage`]: warehouse URLs, storage options, reachability and conditional-put checks.
//! - [`warehouse`]: namespaces (`tables/`, `marts/`), listing and opening tables.
//! - [`model`]: the canonical `ad_performance` schema.
//! - [`slice`]: slice keys and layouts; splitting rows by slice.
//! - [`replace`]: the replace contract (staging, planning removals, committing, retrying).
//! - [`inspect`]: a table's commit history and partitions, from its Delta log.
//! - [`lease`]: at most one holder of a warehouse object (scheduler, mart refresher).
//! - [`ledger`]: the slice ledger (`tidemark.slices`): when each slice was last replaced.
//! - [`marts`]: SQL-defined marts, incremental refresh by day, data tests, seeds.
//! - [`functions`]: ratio metrics (`ctr`, `cpc`, `cpi`, `cpa`, `roas`) as ratios of sums.
//! - [`runwise`]: `date_trunc` evaluated once per run of equal days (partition columns).
//! - [`maintenance`]: restatement-aware compaction (settled days packed and clustered once),
//!   checkpoints, and vacuum (with the oldest version time travel can still read).
//! - [`maturity`]: maturity curves and projected final values from the restatement history
//!   (`maturity(…)`, `projected(…)`).
//! - [`audit`]: the restatement audit (`restatements(…)`): how a day's numbers changed per sync.
//! - [`table_functions`]: named arguments of the table functions, put in their positions.
//! - [`session`]: a DataFusion session whose catalog is the warehouse.
//! - [`scan`]: how a query reads one table version (file list, pruning, Parquet scan).
//! - [`distributed`]: queries on a Ballista cluster (plan codec, functions, object stores);
//!   writes stay on one coordinator.
//! - [`file_cache`]: the warm cache of a remote warehouse's data files (LRU, bounded in bytes).
//! - [`failpoint`]: named points where crash tests freeze the process.
//!
//! # Key decision
//! Tables are partitioned by (source, day) and every file the engine writes holds one slice.
//! The files of a slice are then found from the Delta log alone (partition values plus account
//! statistics), so a replace neither lists directories nor rewrites other slices' rows.

pub mod audit;
pub mod distributed;
pub mod error;
pub mod failpoint;
pub mod file_cache;
pub mod functions;
pub mod inspect;
pub mod lease;
pub mod ledger;
pub mod maintenance;
pub mod marts;
pub mod maturity;
pub mod model;
pub mod names;
pub mod replace;
pub mod runwise;
pub mod scan;
pub mod session;
pub mod slice;
pub mod storage;
pub mod table_functions;
pub mod warehouse;

pub use error::{describe_storage_failure, Error, Result};
pub use replace::{ReplaceReport, ReplaceSlices};
pub use session::WarehouseSession;
pub use slice::{SliceKey, SliceLayout};
pub use storage::{RetryBudget, StorageConfig};
pub use warehouse::{Namespace, Warehouse};

/// Re-exports so dependants use the exact versions the engine was built with.
pub use arrow;
pub use datafusion;
pub use deltalake;
