//! `[serve]` and `[users.*]` in tidemark.toml: where the Flight SQL endpoint listens, its TLS
//! certificate, token lifetime and resource limits, and who may connect with which grants.
//!
//! ```toml
//! [serve]
//! addr = "127.0.0.1:50051"
//! tls_cert = "server.pem"          # both or neither; without them the endpoint is plain gRPC
//! tls_key = "server.key"
//! token_ttl = "12h"
//! query_timeout = "5m"
//! memory_limit = "2GiB"            # per query
//! max_concurrent_queries = 16      # across users
//! max_queries_per_user = 4
//! split_rows = 1000000             # results of bigger tables are offered as several endpoints
//! result_cache = "1GiB"            # finished results kept for repeated queries; "0" turns it off
//!
//! [users.analyst]
//! password_hash = "$argon2id$…"    # written by `tidemark user add analyst`
//! role = "reader"                  # or "admin"
//! grants = ["daily_*", "channel_daily"]   # "*" for everything; "x_*" for a prefix
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::Role;

/// The `[serve]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    pub addr: String,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    #[serde(with = "duration_text")]
    pub token_ttl: Duration,
    #[serde(with = "duration_text")]
    pub query_timeout: Duration,
    /// Bytes, or a size like "512MiB" / "2GiB".
    pub memory_limit: ByteSize,
    pub max_concurrent_queries: usize,
    pub max_queries_per_user: usize,
    pub split_rows: u64,
    /// Bytes of finished results kept to answer the same statement over the same table
    /// versions again (0: off). A result over a quarter of it is not kept.
    pub result_cache: ByteSize,
    /// Where `/metrics` is served; `None`: not served.
    pub metrics_addr: Option<String>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            addr: "127.0.0.1:50051".into(),
            tls_cert: None,
            tls_key: None,
            token_ttl: Duration::from_secs(12 * 3600),
            query_timeout: Duration::from_secs(300),
            memory_limit: ByteSize(2 * 1024 * 1024 * 1024),
            max_concurrent_queries: 16,
            max_queries_per_user: 4,
            split_rows: 1_000_000,
            result_cache: ByteSize(1024 * 1024 * 1024),
            metrics_addr: None,
        }
    }
}

/// A size in bytes, written as a number or with a unit (KiB, MiB, GiB, KB, MB, GB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub usize);

impl ByteSize {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: f64 = number
            .parse()
            .map_err(|_| format!("'{text}' is not a size like 512MiB or 2GiB"))?;
        let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1.0,
            "kib" => 1024.0,
            "mib" => 1024.0 * 1024.0,
            "gib" => 1024.0 * 1024.0 * 1024.0,
            "kb" => 1e3,
            "mb" => 1e6,
            "gb" => 1e9,
            other => {
                return Err(format!(
                    "unknown size unit '{other}' in '{text}': use KiB, MiB or GiB"
                ))
            }
        };
        Ok(ByteSize((number * scale) as usize))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(ByteSize(n as usize)),
            Raw::Text(t) => ByteSize::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

/// Durations written like "30s", "5m", "12h" or "1h 30m" (humantime).
mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// One `[users.NAME]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// An argon2 PHC string (`tidemark user add NAME` writes it).
    pub password_hash: String,
    #[serde(default)]
    pub role: RoleName,
    /// What the user may read: `"*"`, names, or prefixes ending in `*`.
    #[serde(default)]
    pub grants: Vec<String>,
}

/// `role = "reader" | "admin"`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RoleName {
    #[default]
    Reader,
    Admin,
}

impl From<RoleName> for Role {
    fn from(r: RoleName) -> Role {
        match r {
            RoleName::Reader => Role::Reader,
            RoleName::Admin => Role::Admin,
        }
    }
}

/// The parts of tidemark.toml the endpoint reads.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FlightConfig {
    #[serde(default)]
    pub serve: ServeConfig,
    #[serde(default)]
    pub users: BTreeMap<String, UserConfig>,
}

impl FlightConfig {
    /// Read `[serve]` and `[users.*]` from tidemark.toml's sections (others are ignored).
    pub fn from_toml(table: &BTreeMap<String, toml::Value>) -> Result<Self, String> {
        let mut relevant = toml::Table::new();
        for key in ["serve", "users"] {
            if let Some(value) = table.get(key) {
                relevant.insert(key.into(), value.clone());
            }
        }
        relevant
            .try_into()
            .map_err(|e: toml::de::Error| format!("tidemark.toml: {}", e.message()))
    }
}

/// Parse a duration like "30s", "5m", "12h", "1d" or "1h 30m".
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("'{text}' is not a duration like 30s, 5m or 12h ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_parse() {
        assert_eq!(ByteSize::parse("2GiB"), Ok(ByteSize(2 << 30)));
        assert_eq!(ByteSize::parse("512 MiB"), Ok(ByteSize(512 << 20)));
        assert_eq!(ByteSize::parse("1000"), Ok(ByteSize(1000)));
        assert!(ByteSize::parse("2 parsecs")
            .unwrap_err()
            .contains("unknown size unit"));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86400)));
        assert!(parse_duration("5")
            .unwrap_err()
            .contains("not a duration like"));
    }

    #[test]
    fn config_reads_serve_and_users() {
        let table: toml::Table = toml::from_str(
            r#"
            warehouse = "wh"
            [serve]
            addr = "0.0.0.0:1234"
            memory_limit = "64MiB"
            query_timeout = "30s"
            [users.ana]
            password_hash = "$argon2id$x"
            grants = ["daily_*"]
            [users.root]
            password_hash = "$argon2id$y"
            role = "admin"
            grants = ["*"]
            "#,
        )
        .unwrap();
        let config = FlightConfig::from_toml(&table.into_iter().collect()).unwrap();
        assert_eq!(config.serve.addr, "0.0.0.0:1234");
        assert_eq!(config.serve.memory_limit, ByteSize(64 << 20));
        assert_eq!(config.serve.query_timeout, Duration::from_secs(30));
        assert_eq!(config.serve.max_concurrent_queries, 16);
        assert_eq!(config.users["ana"].role, RoleName::Reader);
        assert_eq!(config.users["root"].role, RoleName::Admin);
        let bad: toml::Table = toml::from_str("[serve]\nadress = \"x\"").unwrap();
        assert!(FlightConfig::from_toml(&bad.into_iter().collect())
            .unwrap_err()
            .contains("adress"));
    }
}
