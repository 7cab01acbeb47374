//! The benchmark's query suite and its data: a deterministic `ad_performance` (sources ×
//! accounts × days × ads, long-tail spend, a third of the ads idle each day) written one
//! replace per (source, day) as syncs leave it, the `accounts` dimension seed, and the
//! statements timed. Shared by the `tidemark-bench` binary and the tests that run the suite on
//! other engines (Ballista) and compare answers.

use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::NaiveDate;
use connectors::normalize::{self, AdRow};
use engine::{SliceKey, Warehouse};

/// How much data a run generates.
#[derive(Debug, Clone, Copy)]
pub struct Size {
    pub name: &'static str,
    pub sources: usize,
    pub accounts: usize,
    pub days: u32,
    /// Ads per account (each reports every day it is live).
    pub ads: usize,
    /// The ingest comparison: simulated Meta accounts (1–4) × days of pages.
    pub ingest: (usize, u64),
}

impl Size {
    pub fn named(name: &str) -> anyhow::Result<Self> {
        let (sources, accounts, days, ads, ingest) = match name {
            // ~25 k rows: to try the suite out.
            "tiny" => (4, 8, 35, 90, (1, 14)),
            // ~1 M rows: the CI smoke size.
            "small" => (4, 20, 60, 210, (4, 60)),
            // ~20 M rows.
            "medium" => (4, 200, 120, 210, (4, 365)),
            // ~100 M rows.
            "large" => (4, 500, 240, 210, (4, 730)),
            other => anyhow::bail!("size {other:?}: use tiny, small, medium or large"),
        };
        Ok(Size {
            name: match name {
                "tiny" => "tiny",
                "small" => "small",
                "medium" => "medium",
                _ => "large",
            },
            sources,
            accounts,
            days,
            ads,
            ingest,
        })
    }

    pub fn rows(&self) -> usize {
        self.sources * self.accounts * self.days as usize * self.ads
    }
}

/// The benchmark's statements: (name, SQL, whether DuckDB can run it too).
pub fn statements(size: &Size, versions: (u64, u64)) -> Vec<(&'static str, String, bool)> {
    let last = first_day() + chrono::Days::new(u64::from(size.days) - 1);
    let month_ago = last - chrono::Days::new(29);
    let week_ago = last - chrono::Days::new(6);
    vec![
        ("spend by source and day", "SELECT source, date, sum(spend) AS spend FROM ad_performance GROUP BY source, date ORDER BY source, date".to_string(), true),
        ("ROAS by campaign", "SELECT campaign_id, CAST(sum(revenue) AS DOUBLE) / nullif(CAST(sum(spend) AS DOUBLE), 0) AS roas FROM ad_performance GROUP BY campaign_id ORDER BY roas DESC NULLS LAST, campaign_id LIMIT 20".to_string(), true),
        ("top ads by CPI", "SELECT ad_id, CAST(sum(spend) AS DOUBLE) / sum(installs) AS cpi FROM ad_performance GROUP BY ad_id HAVING sum(installs) > 0 ORDER BY cpi, ad_id LIMIT 20".to_string(), true),
        ("30-day account window", format!("SELECT date, sum(impressions) AS impressions, sum(clicks) AS clicks, sum(spend) AS spend FROM ad_performance WHERE account_id = 'acct0007' AND date BETWEEN DATE '{month_ago}' AND DATE '{last}' GROUP BY date ORDER BY date"), true),
        ("week-over-week deltas", "WITH w AS (SELECT source, date_trunc('week', date) AS week, sum(spend) AS spend FROM ad_performance GROUP BY source, date_trunc('week', date)) SELECT source, week, spend, spend - lag(spend) OVER (PARTITION BY source ORDER BY week) AS delta FROM w ORDER BY source, week".to_string(), true),
        ("rolling 7-day installs", "WITH d AS (SELECT date, sum(installs) AS installs FROM ad_performance GROUP BY date) SELECT date, sum(installs) OVER (ORDER BY date ROWS BETWEEN 6 PRECEDING AND CURRENT ROW) AS installs_7d FROM d ORDER BY date".to_string(), true),
        ("distinct active ads", "SELECT date, count(DISTINCT ad_id) AS active_ads FROM ad_performance WHERE impressions > 0 GROUP BY date ORDER BY date".to_string(), true),
        ("CTR by account and month", "SELECT account_id, date_trunc('month', date) AS month, CAST(sum(clicks) AS DOUBLE) / nullif(sum(impressions), 0) AS ctr FROM ad_performance GROUP BY account_id, date_trunc('month', date) ORDER BY account_id, month".to_string(), true),
        ("one account's last week", format!("SELECT * FROM ad_performance WHERE account_id = 'acct0003' AND date >= DATE '{week_ago}' ORDER BY date, ad_id"), true),
        ("count", "SELECT count(*) AS n FROM ad_performance".to_string(), true),
        ("join to account dimension", "SELECT a.region, a.tier, sum(p.spend) AS spend, sum(p.installs) AS installs FROM ad_performance p JOIN accounts a ON p.account_id = a.account_id GROUP BY a.region, a.tier ORDER BY a.region, a.tier".to_string(), true),
        ("cost per install by source and month", "SELECT source, date_trunc('month', date) AS month, CAST(sum(spend) AS DOUBLE) / nullif(sum(installs), 0) AS cpi FROM ad_performance GROUP BY source, date_trunc('month', date) ORDER BY source, month".to_string(), true),
        ("time travel: two versions compared", format!(
            "SELECT n.source, sum(n.spend) - sum(o.spend) AS change FROM (SELECT source, sum(spend) AS spend FROM ad_performance VERSION AS OF {} GROUP BY source) n JOIN (SELECT source, sum(spend) AS spend FROM ad_performance VERSION AS OF {} GROUP BY source) o ON n.source = o.source GROUP BY n.source ORDER BY n.source",
            versions.1, versions.0
        ), false),
    ]
}

pub const SOURCES: [&str; 4] = ["meta", "google_ads", "naver_search_ad", "kakao_moment"];
pub const FIRST_DAY: (i32, u32, u32) = (2026, 6, 1);

pub fn first_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(FIRST_DAY.0, FIRST_DAY.1, FIRST_DAY.2).expect("valid date")
}

/// A stable pseudo-random number.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// One (source, account, day) slice: every ad of the account, a third of them idle that day,
/// spend long-tailed (a few ads take most of it).
pub fn slice_rows(source: usize, account: usize, day: NaiveDate, ads: usize) -> Vec<AdRow> {
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
pub async fn generate(warehouse: &Warehouse, size: &Size) -> anyhow::Result<(u64, u64)> {
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
pub fn write_accounts_seed(dir: &Path, size: &Size) -> anyhow::Result<PathBuf> {
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
