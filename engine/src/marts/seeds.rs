//! Seeds: small CSV files in the project's `seeds/` directory (currency rates, channel
//! mappings) loaded into warehouse tables of the same name, so marts can join them. A seed is
//! reloaded, in one overwrite commit, only when its file changed.

use std::path::Path;

use datafusion::prelude::{CsvReadOptions, SessionContext};
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;
use object_store::path::Path as StorePath;
use object_store::{ObjectStoreExt, PutPayload};

use crate::error::{Error, Result};
use crate::warehouse::{Namespace, Warehouse};

/// What loading one seed did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SeedReport {
    pub seed: String,
    pub rows: usize,
    /// False when the file was unchanged since its last load.
    pub loaded: bool,
}

fn digest_path(seed: &str) -> StorePath {
    StorePath::from(format!("_tidemark/seeds/{seed}.sha256"))
}

/// Load every `*.csv` of `dir` whose content changed (a missing directory has none).
pub async fn load_seeds(warehouse: &Warehouse, dir: &Path) -> Result<Vec<SeedReport>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .collect();
    files.sort();
    let mut reports = Vec::new();
    for path in files {
        let seed = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        crate::warehouse::validate_table_name(&seed)?;
        let bytes = std::fs::read(&path).map_err(|e| Error::MartDefinition {
            mart: seed.clone(),
            problem: format!("cannot read seed {}: {e}", path.display()),
        })?;
        let digest = {
            use sha2::{Digest, Sha256};
            hex::encode(Sha256::digest(&bytes))
        };
        let store = warehouse.storage().store();
        let known = match store.get(&digest_path(&seed)).await {
            Ok(got) => got
                .bytes()
                .await
                .ok()
                .map(|b| String::from_utf8_lossy(&b).into_owned()),
            Err(_) => None,
        };
        if known.as_deref() == Some(digest.as_str())
            && warehouse.exists(Namespace::Tables, &seed).await?
        {
            reports.push(SeedReport {
                seed,
                rows: 0,
                loaded: false,
            });
            continue;
        }
        let ctx = SessionContext::new();
        let batches = ctx
            .read_csv(
                path.display().to_string(),
                CsvReadOptions::new().has_header(true),
            )
            .await
            .map_err(|e| Error::MartDefinition {
                mart: seed.clone(),
                problem: format!(
                    "seed {} is not a readable CSV with a header: {e}",
                    path.display()
                ),
            })?
            .collect()
            .await?;
        let rows = batches.iter().map(|b| b.num_rows()).sum();
        warehouse.check_writable().await?;
        let table = if warehouse.exists(Namespace::Tables, &seed).await? {
            warehouse.open_table(Namespace::Tables, &seed).await?
        } else {
            warehouse.unloaded_table(Namespace::Tables, &seed)?
        };
        table
            .write(batches)
            .with_save_mode(SaveMode::Overwrite)
            .with_schema_mode(SchemaMode::Overwrite)
            .await
            .map_err(|e| Error::delta(&seed, e))?;
        store
            .put(&digest_path(&seed), PutPayload::from(digest.into_bytes()))
            .await
            .map_err(|e| Error::store(digest_path(&seed), e))?;
        tracing::info!(seed, rows, "seed loaded");
        reports.push(SeedReport {
            seed,
            rows,
            loaded: true,
        });
    }
    Ok(reports)
}
