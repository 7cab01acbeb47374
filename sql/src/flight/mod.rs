//! The Arrow Flight SQL endpoint (`tidemark serve`): BI tools and notebooks run statements
//! over gRPC and get Arrow batches back as the query produces them.
//!
//! - Every call is authenticated ([`auth`]): the handshake takes Basic credentials and
//!   returns a signed bearer token with an expiry; later calls carry it (Basic on any call
//!   works too, for clients that never handshake).
//! - Each statement runs in its own session that lists only what the user may read and has
//!   its own memory pool, under a per-query timeout and per-user and global caps on
//!   concurrent queries ([`limits`]). Statements that change the warehouse need the admin role.
//! - Statements go through [`crate::plan_statement`], so tidemark's statements and time
//!   travel work here as in the shell. Large results over a day-partitioned table are offered
//!   as several endpoints, one per group of days ([`results`]); tickets are described in
//!   [`tickets`].
//! - Finished results are kept ([`result_cache`]) under the statement and the table versions
//!   it read, so a dashboard's repeated query is sent again without running it.

pub mod auth;
pub mod config;
pub mod limits;
pub mod metadata;
pub mod result_cache;
pub mod results;
pub mod service;
pub mod tickets;

pub use config::{FlightConfig, ServeConfig, UserConfig};
pub use service::{FlightMetrics, TidemarkFlightSql};
