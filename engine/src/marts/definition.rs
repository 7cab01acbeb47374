//! A mart's definition: one SQL file `marts/<name>.sql` holding one SELECT, led by a header of
//! `--` comment lines written in TOML:
//!
//! ```sql
//! -- unique_key = ["date", "source", "campaign_id"]
//! -- partition_by = "date"        # default "date"; the day column refreshes replace
//! -- lookback_days = 6            # an output day reads this many earlier input days too
//! -- [tests]
//! -- not_null = ["date", "source"]
//! -- accepted_values = { source = ["meta", "google_ads"] }
//! -- accepted_range = { spend = { min = 0 } }
//! -- relationships = { campaign_id = "ad_performance.campaign_id" }
//! -- freshness_days = 2
//! -- max_row_change = 0.5
//! SELECT …
//! ```
//! The header ends at the first line that is not a `--` comment.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Bounds of an accepted range.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// Data tests declared in a mart's header.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataTests {
    pub not_null: Vec<String>,
    /// Column → the only values it may hold.
    pub accepted_values: BTreeMap<String, Vec<String>>,
    /// Column → bounds its values stay within.
    pub accepted_range: BTreeMap<String, Range>,
    /// Column → `table.column` every non-null value must appear in.
    pub relationships: BTreeMap<String, String>,
    /// The newest day is at most this many days before today.
    pub freshness_days: Option<u64>,
    /// The row count changes by at most this fraction between refreshes (0.5 = ±50%).
    pub max_row_change: Option<f64>,
}

/// A mart's header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Header {
    /// Columns that identify a row (checked by the `unique` test).
    pub unique_key: Vec<String>,
    /// The DATE column the mart is partitioned and refreshed by.
    pub partition_by: String,
    /// How many days before an output day its inputs reach (6 for a 7-day rolling window).
    pub lookback_days: u64,
    /// A one-line description for `tidemark mart list`.
    pub description: Option<String>,
    pub tests: DataTests,
}

impl Default for Header {
    fn default() -> Self {
        Header {
            unique_key: Vec::new(),
            partition_by: "date".into(),
            lookback_days: 0,
            description: None,
            tests: DataTests::default(),
        }
    }
}

/// A mart as defined by its SQL file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MartDefinition {
    pub name: String,
    pub header: Header,
    /// The SELECT, without the header.
    pub sql: String,
}

impl MartDefinition {
    /// Parse the text of `marts/<name>.sql`.
    pub fn parse(name: &str, text: &str) -> Result<Self> {
        crate::warehouse::validate_table_name(name)?;
        let mut header = String::new();
        let mut body = Vec::new();
        let mut in_header = true;
        for line in text.lines() {
            let trimmed = line.trim_start();
            if in_header {
                if let Some(comment) = trimmed.strip_prefix("--") {
                    header.push_str(comment.strip_prefix(' ').unwrap_or(comment));
                    header.push('\n');
                    continue;
                }
                if trimmed.is_empty() {
                    continue;
                }
                in_header = false;
            }
            body.push(line);
        }
        let header: Header = toml::from_str(&header).map_err(|e| Error::MartDefinition {
            mart: name.into(),
            problem: format!("its `--` header is not valid TOML: {}", e.message()),
        })?;
        let sql = body
            .join("\n")
            .trim()
            .trim_end_matches(';')
            .trim()
            .to_string();
        if sql.is_empty() {
            return Err(Error::MartDefinition {
                mart: name.into(),
                problem: "the file has no SELECT after its header".into(),
            });
        }
        Ok(MartDefinition {
            name: name.into(),
            header,
            sql,
        })
    }

    /// A hash of what decides the mart's content (a changed definition needs a full rebuild).
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        hasher.update(self.sql.as_bytes());
        hasher.update(self.header.partition_by.as_bytes());
        hasher.update(self.header.lookback_days.to_le_bytes());
        hex::encode(&hasher.finalize()[..8])
    }
}

/// Every `*.sql` file of a project's `marts/` directory, sorted by name. A missing directory
/// holds no marts.
pub fn load_dir(dir: &Path) -> Result<Vec<MartDefinition>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::MartDefinition {
                mart: dir.display().to_string(),
                problem: format!("cannot read the marts directory: {e}"),
            })
        }
    };
    let mut marts = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| Error::MartDefinition {
                mart: dir.display().to_string(),
                problem: e.to_string(),
            })?
            .path();
        if path.extension().is_none_or(|e| e != "sql") {
            continue;
        }
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let text = std::fs::read_to_string(&path).map_err(|e| Error::MartDefinition {
            mart: name.clone(),
            problem: format!("cannot read {}: {e}", path.display()),
        })?;
        marts.push(MartDefinition::parse(&name, &text)?);
    }
    marts.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(marts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_body_are_split() {
        let mart = MartDefinition::parse(
            "by_day",
            "-- unique_key = [\"date\"]\n-- lookback_days = 6\n-- [tests]\n-- not_null = [\"date\"]\n\nSELECT date, sum(clicks) AS clicks\n-- a comment in the body\nFROM ad_performance GROUP BY date;\n",
        )
        .unwrap();
        assert_eq!(mart.header.unique_key, vec!["date"]);
        assert_eq!(mart.header.lookback_days, 6);
        assert_eq!(mart.header.partition_by, "date");
        assert_eq!(mart.header.tests.not_null, vec!["date"]);
        assert!(mart.sql.starts_with("SELECT date"));
        assert!(!mart.sql.ends_with(';'));
    }

    #[test]
    fn mistakes_name_the_mart() {
        let e = MartDefinition::parse("m", "-- uniqe_key = []\nSELECT 1").unwrap_err();
        assert!(
            e.to_string().contains("mart 'm'") && e.to_string().contains("uniqe_key"),
            "{e}"
        );
        let e = MartDefinition::parse("m", "-- unique_key = []\n").unwrap_err();
        assert!(e.to_string().contains("no SELECT"), "{e}");
    }
}
