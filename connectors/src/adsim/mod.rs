//! `adsim`: a small ad platform that restates the last 30 days, used by `tidemark demo`.
//!
//! - [`truth`]: the deterministic ground truth (accounts, campaigns, ads, metrics per day) and
//!   what the platform reports for a day at a given simulated time: values mature over ~28 days,
//!   some rows appear late and some vanish.
//! - [`server`]: the HTTP JSON API (bearer auth, cursor paging, numbers as strings, money in
//!   micros) with a clock that tests and the demo move forward.
//! - [`client`]: fetches a window over HTTP and normalizes it into `ad_performance` batches.

pub mod client;
pub mod server;
pub mod truth;

/// The `source` value of rows from this platform.
pub const SOURCE: &str = "adsim";
