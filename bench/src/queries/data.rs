//! The benchmark's data: a deterministic `ad_performance` (sources × accounts × days × ads,
//! long-tail spend, a third of the ads idle each day) written one replace per (source, day) as
//! syncs leave it, a compacted copy, the `accounts` dimension seed, and the record that lets
//! `--reuse` measure them again.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use engine::maintenance::{self, CompactOptions, Settled};
use engine::{Namespace, StorageConfig, Warehouse};

use tidemark_bench::suite::{first_day, generate, write_accounts_seed, Size};

/// Copy a directory tree.
pub(super) fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// The table's active data files, as local paths.
pub(super) async fn active_files(warehouse: &Warehouse) -> anyhow::Result<Vec<String>> {
    let table = warehouse
        .open_table(Namespace::Tables, engine::model::AD_PERFORMANCE)
        .await?;
    let files: Vec<String> = table
        .get_file_uris()?
        .map(|uri| uri.strip_prefix("file://").unwrap_or(&uri).to_string())
        .collect();
    Ok(files)
}

/// What generating a size's data left in the bench dir (`dataset.json`), so `--reuse` can
/// measure it again without generating and compacting it again.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Dataset {
    pub(super) size: String,
    /// The versions the time-travel statement compares.
    pub(crate) versions: (u64, u64),
    pub(super) generated_seconds: f64,
    pub(super) files_before: usize,
    pub(super) files_after: usize,
    pub(super) compacted_seconds: f64,
}

/// Generate `size`'s data in `dir` in both layouts (or reuse what a previous run left).
pub(crate) async fn dataset(dir: &Path, size: &Size, reuse: bool) -> anyhow::Result<Dataset> {
    let marker = dir.join("dataset.json");
    if reuse {
        if let Ok(text) = std::fs::read_to_string(&marker) {
            let kept: Dataset = serde_json::from_str(&text)?;
            if kept.size == size.name {
                eprintln!("reusing the {} data in {}", size.name, dir.display());
                return Ok(kept);
            }
        }
    }
    let fragmented = dir.join("fragmented");
    let compacted = dir.join("compacted");
    for d in [&fragmented, &compacted] {
        if d.exists() {
            std::fs::remove_dir_all(d)?;
        }
    }
    let _ = std::fs::remove_file(&marker);
    eprintln!(
        "generating {} rows ({} sources × {} accounts × {} days × {} ads), one file per slice",
        size.rows(),
        size.sources,
        size.accounts,
        size.days,
        size.ads
    );
    let started = Instant::now();
    let warehouse = Warehouse::open(
        fragmented.join("wh").to_str().context("utf-8 path")?,
        &StorageConfig::default(),
    )
    .await?;
    let versions = generate(&warehouse, size).await?;
    write_accounts_seed(&fragmented, size)?;
    let generated = started.elapsed();
    copy_dir(&fragmented, &compacted)?;
    let compacted_wh = Warehouse::open(
        compacted.join("wh").to_str().context("utf-8 path")?,
        &StorageConfig::default(),
    )
    .await?;
    let options = CompactOptions {
        settled: Settled::before(
            first_day() + chrono::Days::new(u64::from(size.days) + 60),
            30,
        ),
        ..Default::default()
    };
    let compaction = maintenance::compact(
        &compacted_wh,
        Namespace::Tables,
        engine::model::AD_PERFORMANCE,
        &options,
        &|_, _| {},
    )
    .await?;
    eprintln!(
        "generated in {:.1} s; compacted {} files → {} in {:.1} s",
        generated.as_secs_f64(),
        compaction.files_before,
        compaction.files_after,
        compaction.elapsed.as_secs_f64()
    );
    // The compacted copy keeps the versions compared (compaction added one after them).
    let data = Dataset {
        size: size.name.to_string(),
        versions,
        generated_seconds: generated.as_secs_f64(),
        files_before: compaction.files_before,
        files_after: compaction.files_after,
        compacted_seconds: compaction.elapsed.as_secs_f64(),
    };
    std::fs::write(&marker, serde_json::to_string(&data)?)?;
    Ok(data)
}
