//! What the benchmark shares with tests: its query suite and the data it runs on ([`suite`]),
//! and the scale simulation ([`scale`]).

pub mod scale;
pub mod suite;
