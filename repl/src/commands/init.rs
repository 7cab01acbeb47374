//! `tidemark init [DIR]`: scaffold a project — `tidemark.toml` with commented source and
//! schedule sections, sample marts (daily campaign performance, spend and ROAS by channel,
//! 7-day rolling installs and CPI) and a currency-rates seed. Existing files are never
//! overwritten.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The project directory (created if missing).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
}

const CONFIG: &str = r#"# tidemark project. Secrets come from the environment or files, never from this file.
warehouse = "warehouse"          # a local directory, or s3://bucket/prefix

# [sources.meta]
# access_token = { env = "META_ACCESS_TOKEN" }
# accounts = ["act_1234567890"]

# [sources.google_ads]
# developer_token = { env = "GOOGLE_ADS_DEVELOPER_TOKEN" }
# login_customer_id = "111-222-3333"
# accounts = ["123-456-7890"]
# oauth = { client_id = "….apps.googleusercontent.com", client_secret = { env = "GOOGLE_ADS_CLIENT_SECRET" }, refresh_token = { env = "GOOGLE_ADS_REFRESH_TOKEN" } }

# Try it without accounts: `tidemark sim serve` prints [sources.*] sections for its simulators.

[schedule]                       # tidemark run
sync_every = "1h"
history_days = 90
compact_at = "03:00"
"#;

/// The files `init` writes, relative to the project directory.
const FILES: [(&str, &str); 6] = [
    ("tidemark.toml", CONFIG),
    (
        "marts/daily_campaign_performance.sql",
        include_str!("../../../testdata/marts/daily_campaign_performance.sql"),
    ),
    (
        "marts/channel_daily.sql",
        include_str!("../../../testdata/marts/channel_daily.sql"),
    ),
    (
        "marts/installs_rolling_7d.sql",
        include_str!("../../../testdata/marts/installs_rolling_7d.sql"),
    ),
    (
        "marts/daily_campaign_projected.sql",
        include_str!("../../../testdata/marts/daily_campaign_projected.sql"),
    ),
    (
        "seeds/fx_rates.csv",
        include_str!("../../../testdata/seeds/fx_rates.csv"),
    ),
];

pub async fn run(args: InitArgs) -> anyhow::Result<ExitCode> {
    let mut written = 0;
    for (relative, content) in FILES {
        let path = args.dir.join(relative);
        if path.exists() {
            eprintln!("kept {} (exists)", path.display());
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, content)
            .with_context(|| format!("cannot write {}", path.display()))?;
        crate::outln!("wrote {}", path.display());
        written += 1;
    }
    crate::outln!(
        "{written} file(s) written. Next: add [sources.*] to {}, then `tidemark sync` and `tidemark mart refresh`.",
        args.dir.join("tidemark.toml").display()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scaffold_parses() {
        let config: connectors::config::ProjectConfig = toml::from_str(CONFIG).unwrap();
        assert!(config.sources().unwrap().is_empty());
        crate::schedule::Schedule::from_config(&config).unwrap();
        for (name, text) in &FILES[1..4] {
            let stem = name.trim_start_matches("marts/").trim_end_matches(".sql");
            engine::marts::MartDefinition::parse(stem, text).unwrap();
        }
    }
}
