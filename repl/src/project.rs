//! The project: a directory holding `tidemark.toml`, and the warehouse it names.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use connectors::config::ProjectConfig;

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
            ..Default::default()
        };
        engine::Warehouse::open(&url, &storage)
            .await
            .with_context(|| format!("opening warehouse {url}"))
    }
}
