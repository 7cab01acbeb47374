//! Connector behaviour against the built-in simulators on loopback: every cell equals the
//! platform's report, rate-limit storms and faults lose nothing, drift loads or is
//! quarantined, and a replay from raw equals the original load.

extern crate tidemark_connectors as connectors;

mod attribution;
mod drift;
mod faults;
mod kakao;
mod naver;
mod oauth;
mod official_clients;
mod support;
mod throttling;
mod truth;
