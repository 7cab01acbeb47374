//! Marts: SQL-defined tables built from the warehouse's tables and other marts, refreshed
//! incrementally by day with the same all-or-nothing commit as syncs, and checked by data
//! tests declared next to their SQL.
//!
//! - [`definition`]: a mart's SQL file and its TOML header (keys, partition, lookback, tests).
//! - [`graph`]: inputs read from the SQL, refresh order, cycles.
//! - [`changes`]: which days of an input changed between two versions (from the Delta log).
//! - [`refresh`]: incremental and full refresh, per-mart watermarks under `_tidemark/marts/`.
//! - [`checks`]: data tests (not null, unique, accepted values and ranges, relationships,
//!   freshness, row-count change).
//! - [`seeds`]: CSV files of the project loaded as tables (e.g. currency rates).

pub mod changes;
pub mod checks;
pub mod definition;
pub mod graph;
pub mod refresh;
pub mod seeds;

pub use checks::{run_checks, CheckResult};
pub use definition::{load_dir, MartDefinition};
pub use graph::MartGraph;
pub use refresh::{read_state, refresh, stored_definitions, MartState, RefreshMode, RefreshReport};
pub use seeds::load_seeds;
