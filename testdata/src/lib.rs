//! # tidemark-testdata
//!
//! What tidemark's tests share: the backends a test runs against (a temporary local
//! directory, or a bucket on a real S3-compatible server on loopback) and row fixtures.
//! A dev-dependency only; nothing in the product depends on it.
//!
//! # The S3 server
//! moto (`pip install "moto[server]"`) enforces `If-None-Match: *` and `If-Match` on PUT,
//! which Delta commits on S3 rely on to stay safe under concurrent writers (see
//! shared/reference/stack.md). One server is started per test process on a free loopback
//! port and stops within a second of the process exiting; each test gets its own bucket.
//! [`s3_proxy`] puts a misbehaving server in front of it (no conditional writes, or errors).

pub mod backend;
pub mod fixture;
pub mod rows;
pub mod s3_proxy;

pub use backend::{Backend, BackendKind};
