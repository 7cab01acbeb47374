//! The benchmark's data: a deterministic `ad_performance` (sources × accounts × days × ads,
//! long-tail spend, a third of the ads idle each day) written one replace per (source, day) as
//! syncs leave it, a compacted copy, the `accounts` dimension seed, and the record that lets
//! `--reuse` measure them again.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use chrono::NaiveDate;
use connectors::normalize::{self, AdRow};
use engine::maintenance::{self, CompactOptions, Settled};
use engine::{Namespace, SliceKey, StorageConfig, Warehouse};

use super::Size;

pub(super) const SOURCES: [&str; 4] = ["meta", "google_ads", "naver_search_ad", "kakao_moment"];
pub(super) const FIRST_DAY: (i32, u32, u32) = (2026, 6, 1);

pub(super) fn first_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(FIRST_DAY.0, FIRST_DAY.1, FIRST_DAY.2).expect("valid date")
}

/// A stable pseudo-random number.
pub(super) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// One (source, account, day) slice: every ad of the account, a third of them idle that day,
/// spend long-tailed (a few ads take most of it).
pub(super) fn slice_rows(source: usize, account: usize, day: NaiveDate, ads: usize) -> Vec<AdRow> {
    let d = day.to_epoch_days() as u64;
    (0..ads)
        .map(|ad| {
            let h = mix((source as u64) << 48 ^ (account as u64) << 24 ^ (ad as u64) << 8 ^ d);
            let idle = h.is_multiple_of(3);
            // Long tail: spend ∝ 1/(rank+1) with noise.
            let weight = 1_000_000 / (ad as i64 + 1);
            let impressions = if idle {
                0
            } else {
                50 + (h >> 8) as i64 % (weight / 20 + 1)
            };
            let clicks = impressions * ((h >> 20) % 40) as i64 / 1000;
            let installs = clicks * ((h >> 28) % 12) as i64 / 100;
            let spend = i128::from(clicks) * i128::from(100_000 + (h >> 36) as i64 % 900_000);
            AdRow {
                account_id: format!("acct{account:04}"),
                date: Some(day),
                account_name: Some(format!("Account {account}")),
                campaign_id: Some(format!("s{source}a{account}c{}", ad % 12)),
                campaign_name: Some(format!("Campaign {}", ad % 12)),
                ad_group_id: Some(format!("s{source}a{account}g{}", ad % 40)),
                ad_group_name: None,
                ad_id: Some(format!("s{source}a{account}ad{ad}")),
                ad_name: None,
                currency: Some(
                    if account.is_multiple_of(3) {
                        "USD"
                    } else {
                        "KRW"
                    }
                    .into(),
                ),
                impressions: Some(impressions),
                clicks: Some(clicks),
                spend: Some(spend),
                conversions: Some(installs as f64 * 0.4),
                installs: Some(installs),
                revenue: Some(spend * i128::from((h >> 44) as i64 % 300) / 100),
            }
        })
        .collect()
}

/// Write the fragmented layout: one replace per (source, day) covering every account.
/// Returns the first and the last table version.
pub(super) async fn generate(warehouse: &Warehouse, size: &Size) -> anyhow::Result<(u64, u64)> {
    let started = Instant::now();
    let mut versions = (u64::MAX, 0);
    for (s, source) in SOURCES.iter().take(size.sources).enumerate() {
        for d in 0..size.days {
            let day = first_day() + chrono::Days::new(u64::from(d));
            let mut batches = Vec::new();
            for a in 0..size.accounts {
                batches.push(
                    normalize::ad_performance_batch(source, &slice_rows(s, a, day, size.ads))
                        .map_err(anyhow::Error::msg)?,
                );
            }
            let report = warehouse
                .replace_slices(engine::model::AD_PERFORMANCE)
                .with_slices(
                    (0..size.accounts).map(|a| SliceKey::new(*source, format!("acct{a:04}"), day)),
                )
                .with_rows(batches)
                .await?;
            versions.0 = versions.0.min(report.version);
            versions.1 = versions.1.max(report.version);
        }
        eprintln!(
            "  {source}: {} days written ({:.0} s so far)",
            size.days,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(versions)
}

/// The `accounts` dimension as a seed CSV.
pub(super) fn write_accounts_seed(dir: &Path, size: &Size) -> anyhow::Result<PathBuf> {
    let seeds = dir.join("seeds");
    std::fs::create_dir_all(&seeds)?;
    let mut csv = String::from("account_id,region,tier\n");
    for a in 0..size.accounts {
        let region = ["KR", "JP", "US", "SEA"][a % 4];
        let tier = ["enterprise", "growth", "long_tail"][mix(a as u64) as usize % 3];
        csv.push_str(&format!("acct{a:04},{region},{tier}\n"));
    }
    let path = seeds.join("accounts.csv");
    std::fs::write(&path, csv)?;
    Ok(path)
}

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
pub(super) struct Dataset {
    pub(super) size: String,
    /// The versions the time-travel statement compares.
    pub(super) versions: (u64, u64),
    pub(super) generated_seconds: f64,
    pub(super) files_before: usize,
    pub(super) files_after: usize,
    pub(super) compacted_seconds: f64,
}

/// Generate `size`'s data in `dir` in both layouts (or reuse what a previous run left).
pub(super) async fn dataset(dir: &Path, size: &Size, reuse: bool) -> anyhow::Result<Dataset> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_and_long_tailed() {
        let day = first_day();
        let a = slice_rows(1, 2, day, 210);
        let b = slice_rows(1, 2, day, 210);
        assert_eq!(
            a.iter().map(|r| r.spend).collect::<Vec<_>>(),
            b.iter().map(|r| r.spend).collect::<Vec<_>>()
        );
        let idle = a.iter().filter(|r| r.impressions == Some(0)).count();
        assert!(idle > 40 && idle < 110, "{idle} idle of 210");
        let spend: Vec<i128> = a.iter().map(|r| r.spend.unwrap_or(0)).collect();
        let top: i128 = spend.iter().take(20).sum();
        let all: i128 = spend.iter().sum();
        assert!(
            top * 3 > all,
            "the first 20 of 210 ads take several times their tenth (uniform: ~10%): {top} of {all}"
        );
        assert_eq!(Size::named("small").unwrap().rows(), 1_008_000);
    }
}
