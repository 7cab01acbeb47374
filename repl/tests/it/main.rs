//! Integration tests that drive the real `tidemark` binary.

mod attributed_mart;
mod ballista;
mod console;
mod crash;
mod demo;
mod distributed;
mod doctor;
mod flight;
mod interop;
mod maintenance;
mod marts;
mod maturity;
mod platforms;
mod readme;
mod resume;
mod scale;
mod scheduler;
mod shell;
mod sql_cli;
mod storage_faults;
mod support;
mod sync;
mod writers;
