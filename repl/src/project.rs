//! The project: a directory holding `tidemark.toml`, and the warehouse it names.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use connectors::config::ProjectConfig;
use engine::distributed::QueryEngine;

/// Where the project and its warehouse are.
#[derive(Debug, Clone, Args)]
pub struct ProjectArgs {
    /// Project directory holding tidemark.toml.
    #[arg(long, default_value = ".", env = "TIDEMARK_PROJECT")]
    pub project: PathBuf,

    /// Warehouse URL (a local directory or s3://bucket/prefix); overrides `warehouse` in
    /// tidemark.toml.
    #[arg(long, short = 'w', env = "TIDEMARK_WAREHOUSE")]
    pub warehouse: Option<String>,

    /// Endpoint of an S3-compatible server (e.g. http://127.0.0.1:9000). Credentials come from
    /// the usual AWS_* environment variables.
    #[arg(long, env = "TIDEMARK_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
}

impl ProjectArgs {
    /// Read `tidemark.toml`.
    pub fn config(&self) -> anyhow::Result<ProjectConfig> {
        let path = self.project.join("tidemark.toml");
        if !path.exists() {
            bail!(
                "{} does not exist: create it with [sources.*] sections (see `tidemark sync --help`), \
                 or point --project at the directory that has it",
                path.display()
            );
        }
        ProjectConfig::load(&path).map_err(anyhow::Error::msg)
    }

    /// `tidemark.toml`, or defaults when there is none but --warehouse names the warehouse
    /// (for commands that need no sources).
    pub fn config_or_default(&self) -> anyhow::Result<ProjectConfig> {
        if self.warehouse.is_some() && !self.project.join("tidemark.toml").exists() {
            return Ok(ProjectConfig::default());
        }
        self.config()
    }

    /// The warehouse URL: the flag, else the config's (relative to the project directory).
    pub fn warehouse_url(&self, config: &ProjectConfig) -> anyhow::Result<String> {
        if let Some(url) = &self.warehouse {
            return Ok(url.clone());
        }
        let Some(url) = &config.warehouse else {
            bail!("no warehouse: pass --warehouse or set warehouse = \"…\" in tidemark.toml");
        };
        if url.contains("://") || Path::new(url).is_absolute() {
            Ok(url.clone())
        } else {
            Ok(self.project.join(url).to_string_lossy().into_owned())
        }
    }

    /// Open the warehouse.
    pub async fn open(&self, config: &ProjectConfig) -> anyhow::Result<engine::Warehouse> {
        let url = self.warehouse_url(config)?;
        let storage = engine::StorageConfig {
            s3_endpoint: self.s3_endpoint.clone(),
            retry: retry_budget(config.other.get("storage"), |key| std::env::var(key).ok())?,
            cache_bytes: cache_bytes(config.other.get("storage"), |key| std::env::var(key).ok())?,
            ..Default::default()
        };
        let engine = query_engine(config.other.get("engine"))?;
        let warehouse = engine::Warehouse::open(&url, &storage)
            .await
            .with_context(|| format!("opening warehouse {url}"))?;
        Ok(warehouse.with_query_engine(engine))
    }
}

/// `cache_mb` of `[storage]` (or `TIDEMARK_STORAGE_CACHE_MB`) in bytes; `None` when unset.
pub fn cache_bytes(
    section: Option<&toml::Value>,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Option<u64>> {
    let (text, origin) = match env("TIDEMARK_STORAGE_CACHE_MB") {
        Some(v) => (v, "TIDEMARK_STORAGE_CACHE_MB".to_string()),
        None => match section.and_then(|s| s.get("cache_mb")) {
            Some(v) => (v.to_string(), "[storage] cache_mb".to_string()),
            None => return Ok(None),
        },
    };
    let megabytes: u64 = text
        .trim()
        .trim_matches('"')
        .parse()
        .with_context(|| format!("{origin} = {text} is not a whole number of MiB"))?;
    Ok(Some(megabytes << 20))
}

/// `[engine]` of tidemark.toml: where queries run when no --engine is given.
///
/// ```toml
/// [engine]
/// ballista = "sched-host:50050"   # or "ballista://sched-host:50050"; absent: in this process
/// ```
pub fn query_engine(section: Option<&toml::Value>) -> anyhow::Result<QueryEngine> {
    let Some(section) = section else {
        return Ok(QueryEngine::Local);
    };
    let toml::Value::Table(table) = section else {
        bail!("[engine] in tidemark.toml must be a table");
    };
    if let Some(key) = table.keys().find(|k| k.as_str() != "ballista") {
        bail!("[engine] has no key '{key}' (known: ballista = \"HOST:PORT\")");
    }
    match table.get("ballista") {
        None => Ok(QueryEngine::Local),
        Some(toml::Value::String(address)) => {
            let url = if address.starts_with("ballista://") {
                address.clone()
            } else {
                format!("ballista://{address}")
            };
            url.parse()
                .with_context(|| format!("[engine] ballista = {address:?} in tidemark.toml"))
        }
        Some(other) => bail!("[engine] ballista = {other} must be a string like \"HOST:PORT\""),
    }
}

/// `[storage]` of tidemark.toml, each key overridden by its `TIDEMARK_STORAGE_…` twin:
///
/// ```toml
/// [storage]                 # object store requests (S3); defaults shown
/// max_retries = 3           # retries of a failed request (5xx, SlowDown, resets, timeouts)
/// retry_timeout = "15s"     # no retry starts later than this after the first attempt
/// request_timeout = "30s"   # one attempt, to the last byte of the answer
/// connect_timeout = "5s"
/// cache_mb = 512            # data files of an S3 warehouse kept in memory for queries (0: none)
/// ```
pub fn retry_budget(
    section: Option<&toml::Value>,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<engine::RetryBudget> {
    let mut budget = engine::RetryBudget::default();
    let empty = toml::Table::new();
    let table = match section {
        None => &empty,
        Some(toml::Value::Table(t)) => t,
        Some(_) => bail!("[storage] in tidemark.toml must be a table"),
    };
    if let Some(key) = table.keys().find(|k| {
        ![
            "max_retries",
            "retry_timeout",
            "request_timeout",
            "connect_timeout",
            "cache_mb",
        ]
        .contains(&k.as_str())
    }) {
        bail!("[storage] has no key '{key}' (known: max_retries, retry_timeout, request_timeout, connect_timeout, cache_mb)");
    }
    let value = |key: &str| -> Option<(String, String)> {
        let twin = format!("TIDEMARK_STORAGE_{}", key.to_ascii_uppercase());
        match env(&twin) {
            Some(v) => Some((v, twin)),
            None => table.get(key).map(|v| match v {
                toml::Value::String(s) => (s.clone(), format!("[storage] {key}")),
                other => (other.to_string(), format!("[storage] {key}")),
            }),
        }
    };
    if let Some((text, origin)) = value("max_retries") {
        budget.max_retries = text
            .trim()
            .parse()
            .with_context(|| format!("{origin} = {text:?} is not a whole number"))?;
    }
    for (key, slot) in [
        ("retry_timeout", &mut budget.retry_timeout),
        ("request_timeout", &mut budget.request_timeout),
        ("connect_timeout", &mut budget.connect_timeout),
    ] {
        if let Some((text, origin)) = value(key) {
            *slot = humantime::parse_duration(text.trim()).with_context(|| {
                format!("{origin} = {text:?} is not a duration like 500ms, 15s or 2m")
            })?;
        }
    }
    Ok(budget)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn section(text: &str) -> toml::Value {
        toml::from_str::<toml::Table>(text).unwrap()["storage"].clone()
    }

    #[test]
    fn storage_budget_from_config_and_environment() {
        let none = |_: &str| None;
        assert_eq!(
            retry_budget(None, none).unwrap(),
            engine::RetryBudget::default()
        );
        let config = section("[storage]\nmax_retries = 7\nretry_timeout = \"1m\"\n");
        let budget = retry_budget(Some(&config), none).unwrap();
        assert_eq!(budget.max_retries, 7);
        assert_eq!(budget.retry_timeout, Duration::from_secs(60));
        assert_eq!(budget.request_timeout, Duration::from_secs(30));
        // The environment twin wins.
        let env = |k: &str| (k == "TIDEMARK_STORAGE_MAX_RETRIES").then(|| "1".to_string());
        assert_eq!(retry_budget(Some(&config), env).unwrap().max_retries, 1);
    }

    #[test]
    fn storage_mistakes_name_the_key() {
        let none = |_: &str| None;
        let err = retry_budget(Some(&section("[storage]\nretries = 2\n")), none).unwrap_err();
        assert!(err.to_string().contains("no key 'retries'"), "{err}");
        let err = retry_budget(
            Some(&section("[storage]\nconnect_timeout = \"soon\"\n")),
            none,
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("[storage] connect_timeout"),
            "{err:#}"
        );
        let env = |k: &str| (k == "TIDEMARK_STORAGE_MAX_RETRIES").then(|| "many".to_string());
        let err = retry_budget(None, env).unwrap_err();
        assert!(
            err.to_string().contains("TIDEMARK_STORAGE_MAX_RETRIES"),
            "{err}"
        );
    }
}
