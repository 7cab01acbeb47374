//! # tidemark-connectors
//!
//! Everything that talks to ad platforms: platform clients, their normalization into the
//! canonical `ad_performance` rows, and built-in simulators that stand in for the platforms
//! on loopback (for `tidemark demo` and the tests).
//!
//! # Layout
//! - [`adsim`]: a small restating ad platform: deterministic ground truth, an HTTP JSON server
//!   with a controllable clock, and the client that syncs it into a warehouse.
//!
//! # Key decision
//! A sync produces the complete current rows of every (source, account, day) in its window and
//! hands them to the engine's replace contract in one commit; connectors never patch rows.

pub mod adsim;
pub mod error;

pub use error::{Error, Result};
