//! Engine integration tests, compiled as one binary. Each behaviour runs against a local
//! directory and against a real S3-compatible server (moto) on loopback.

extern crate tidemark_engine as engine;

mod bad_input;
mod checkpoint;
mod file_cache;
mod isolation;
mod ledger;
mod maintenance;
mod maturity;
mod mixed;
mod property;
mod scan;
mod storage_faults;
mod support;
