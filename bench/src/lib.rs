//! What the benchmark shares with tests: its query suite and the data it runs on ([`suite`]).

pub mod suite;
