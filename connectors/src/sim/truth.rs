//! The ground truth of a simulated platform and the reports it gives.
//!
//! Everything derives from a seed through a stateless hash, so any (ad, day) cell can be
//! computed on its own and two runs with one seed agree exactly.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// Reported values keep changing for this many days after the day itself.
pub const MATURITY_DAYS: i64 = 28;
/// A row that appears late shows up once the day is this many days old.
pub const LATE_ROW_AGE: i64 = 3;
/// A row that vanishes (invalid traffic removed) is gone once the day is this many days old.
pub const VANISH_AGE: i64 = 5;

/// An advertiser account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Account {
    pub id: String,
    pub name: String,
    pub currency: String,
}

/// One ad with its place in the hierarchy.
#[derive(Debug, Clone)]
pub struct Ad {
    pub account_index: usize,
    pub campaign_id: String,
    pub campaign_name: String,
    pub ad_group_id: String,
    pub ad_group_name: String,
    pub ad_id: String,
    pub ad_name: String,
}

/// Metrics of one ad on one day, as reported at some moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    pub impressions: i64,
    pub clicks: i64,
    pub spend_micros: i64,
    pub installs: i64,
    /// Conversions in hundredths (platforms report fractional conversions).
    pub conversions_centi: i64,
    pub revenue_micros: i64,
}

/// The platform's whole world.
#[derive(Debug, Clone)]
pub struct Truth {
    seed: u64,
    pub accounts: Vec<Account>,
    pub ads: Vec<Ad>,
}

const ACCOUNT_NAMES: [(&str, &str); 4] = [
    ("Brand Korea", "KRW"),
    ("Puzzle Game Global", "USD"),
    ("Fashion Commerce", "KRW"),
    ("Fintech App", "USD"),
];
const CAMPAIGN_THEMES: [&str; 4] = ["Awareness", "Install", "Retargeting", "Search"];

/// How a platform spells ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdStyle {
    /// `act_1001`, `act_1001_c1`, `act_1001_c1_g1_a1`.
    Readable,
    /// Digits only, as Meta and Google Ads use: accounts from `base`, children by appending
    /// two digits per level.
    Numeric { base: u64 },
    /// Naver Search Ad's: numeric customer ids from `base`; `cmp-a001-01-…`, `grp-a001-01-…`
    /// and `nad-a001-01-…` entity ids (the prefixes of Naver's samples) nesting by digits.
    Naver { base: u64 },
    /// App ids as AppsFlyer spells iOS apps: `id` and digits from `base`.
    App { base: u64 },
}

impl Truth {
    /// A world of `accounts` accounts, each with 3 campaigns × 2 ad groups × 2 ads.
    pub fn new(seed: u64, accounts: usize) -> Self {
        Self::with_ids(seed, accounts, IdStyle::Readable)
    }

    /// The same shape of world with ids spelled in `style`.
    pub fn with_ids(seed: u64, accounts: usize, style: IdStyle) -> Self {
        Self::with_shape(seed, accounts, style, 2)
    }

    /// A world whose ad groups hold `ads_per_group` ads each (the benchmarks' bigger pages).
    pub fn with_shape(seed: u64, accounts: usize, style: IdStyle, ads_per_group: usize) -> Self {
        let child = |parent: &str, tag: char, n: usize| match style {
            IdStyle::Readable => format!("{parent}_{tag}{n}"),
            IdStyle::Numeric { .. } | IdStyle::App { .. } => format!("{parent}{n:02}"),
            IdStyle::Naver { .. } => {
                let digits = parent.rsplit('-').next().unwrap_or(parent);
                let prefix = match tag {
                    'c' => "cmp",
                    'g' => "grp",
                    _ => "nad",
                };
                format!("{prefix}-a001-01-{digits}{n:02}")
            }
        };
        // Any number of accounts: the first four are the named ones, then the names repeat
        // with a number (a scale run has thousands). Only the hierarchy is held; each day's
        // metrics are computed from the seed when a report asks for them.
        let accounts: Vec<Account> = (0..accounts.max(1))
            .map(|i| {
                let (name, currency) = ACCOUNT_NAMES[i % ACCOUNT_NAMES.len()];
                let name = match i / ACCOUNT_NAMES.len() {
                    0 => name.to_string(),
                    n => format!("{name} {}", n + 1),
                };
                (i, name, currency)
            })
            .map(|(i, name, currency)| Account {
                id: match style {
                    IdStyle::Readable => format!("act_{}", 1001 + i),
                    IdStyle::Numeric { base } | IdStyle::Naver { base } => {
                        (base + i as u64).to_string()
                    }
                    IdStyle::App { base } => format!("id{}", base + i as u64),
                },
                name,
                currency: currency.to_string(),
            })
            .collect();
        let mut ads = Vec::new();
        for (a, account) in accounts.iter().enumerate() {
            for c in 0..3 {
                let theme = CAMPAIGN_THEMES[(a + c) % CAMPAIGN_THEMES.len()];
                let campaign_id = child(&account.id, 'c', c + 1);
                for g in 0..2 {
                    let ad_group_id = child(&campaign_id, 'g', g + 1);
                    for n in 0..ads_per_group.max(1) {
                        ads.push(Ad {
                            account_index: a,
                            campaign_id: campaign_id.clone(),
                            campaign_name: format!("{theme} {}", c + 1),
                            ad_group_id: ad_group_id.clone(),
                            ad_group_name: format!("{theme} {} / group {}", c + 1, g + 1),
                            ad_id: child(&ad_group_id, 'a', n + 1),
                            ad_name: format!("{theme} creative {}", g * ads_per_group + n + 1),
                        });
                    }
                }
            }
        }
        Truth {
            seed,
            accounts,
            ads,
        }
    }

    /// The account with this id.
    pub fn account(&self, id: &str) -> Option<(usize, &Account)> {
        self.accounts.iter().enumerate().find(|(_, a)| a.id == id)
    }

    /// A stable pseudo-random number for (ad, day, salt), for how a simulator splits or
    /// spells a reported value.
    pub fn noise(&self, ad: &Ad, day: NaiveDate, salt: u64) -> u64 {
        self.hash(&ad.ad_id, day, salt.wrapping_add(1000))
    }

    fn hash(&self, ad: &str, day: NaiveDate, salt: u64) -> u64 {
        let mut h = self.seed ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        for b in ad.bytes() {
            h = splitmix(h ^ u64::from(b));
        }
        splitmix(h ^ day.to_epoch_days() as u64)
    }

    /// The final (fully matured) metrics of an ad on a day.
    pub fn final_metrics(&self, ad: &Ad, day: NaiveDate) -> Metrics {
        let h = |salt| self.hash(&ad.ad_id, day, salt);
        let impressions = 2_000 + (h(1) % 18_000) as i64;
        let clicks = impressions * (50 + (h(2) % 250) as i64) / 10_000;
        let cpc_micros = 150_000 + (h(3) % 1_200_000) as i64;
        let installs = clicks * (5 + (h(4) % 25) as i64) / 100;
        let conversions_centi = installs * (40 + (h(5) % 60) as i64);
        let revenue_micros = installs * (500_000 + (h(6) % 4_000_000) as i64);
        Metrics {
            impressions,
            clicks,
            spend_micros: clicks * cpc_micros,
            installs,
            conversions_centi,
            revenue_micros,
        }
    }

    /// Whether the platform reports this ad-day when the day is `age` days old.
    pub fn row_visible(&self, ad: &Ad, day: NaiveDate, age: i64) -> bool {
        let h = self.hash(&ad.ad_id, day, 7);
        let late = h.is_multiple_of(13);
        let vanishes = h % 17 == 1;
        !(late && age < LATE_ROW_AGE || vanishes && age >= VANISH_AGE)
    }

    /// What the platform reports for an ad-day at simulated time `now`; `None` if no row.
    pub fn reported(&self, ad: &Ad, day: NaiveDate, now: NaiveDate) -> Option<Metrics> {
        let age = (now - day).num_days();
        if age < 1 || !self.row_visible(ad, day, age) {
            return None;
        }
        let m = self.final_metrics(ad, day);
        // Delivery metrics settle within days; attributed outcomes keep growing for weeks.
        let delivery = maturity_per_mille(age, 2);
        let outcome = maturity_per_mille(age, 6);
        Some(Metrics {
            impressions: m.impressions * delivery / 1000,
            clicks: m.clicks * delivery / 1000,
            spend_micros: m.spend_micros * delivery / 1000,
            installs: m.installs * outcome / 1000,
            conversions_centi: m.conversions_centi * outcome / 1000,
            revenue_micros: m.revenue_micros * outcome / 1000,
        })
    }
}

/// Share of the final value reported at `age` days, in thousandths: 1 - 2^(-age/half_life),
/// reaching exactly 1000 at [`MATURITY_DAYS`].
fn maturity_per_mille(age: i64, half_life: i64) -> i64 {
    if age >= MATURITY_DAYS {
        return 1000;
    }
    let remaining = 1000.0 * 0.5f64.powf(age as f64 / half_life as f64);
    (1000.0 - remaining).floor() as i64
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn numeric_ids_nest_by_digits() {
        let t = Truth::with_ids(
            1,
            2,
            IdStyle::Numeric {
                base: 1_000_000_001,
            },
        );
        assert_eq!(t.accounts[1].id, "1000000002");
        assert_eq!(t.ads[0].campaign_id, "100000000101");
        assert_eq!(t.ads[0].ad_id, "1000000001010101");
        assert_eq!(t.ads.len(), 24);
    }

    #[test]
    fn deterministic_per_seed() {
        let a = Truth::new(7, 3);
        let b = Truth::new(7, 3);
        let ad = &a.ads[5];
        assert_eq!(
            a.final_metrics(ad, d("2026-11-01")),
            b.final_metrics(ad, d("2026-11-01"))
        );
        assert_ne!(
            a.final_metrics(ad, d("2026-11-01")),
            Truth::new(8, 3).final_metrics(ad, d("2026-11-01"))
        );
    }

    #[test]
    fn values_mature_and_settle() {
        let t = Truth::new(1, 2);
        let day = d("2026-10-01");
        let ad = t
            .ads
            .iter()
            .find(|ad| (1..40).all(|age| t.row_visible(ad, day, age)))
            .unwrap();
        let early = t.reported(ad, day, day + chrono::Days::new(1)).unwrap();
        let late = t.reported(ad, day, day + chrono::Days::new(20)).unwrap();
        let settled = t.reported(ad, day, day + chrono::Days::new(28)).unwrap();
        assert!(early.installs <= late.installs && late.installs <= settled.installs);
        assert_eq!(settled, t.final_metrics(ad, day));
        assert_eq!(t.reported(ad, day, day), None, "today is never reported");
    }

    #[test]
    fn some_rows_arrive_late_and_some_vanish() {
        let t = Truth::new(3, 4);
        let day = d("2026-10-10");
        let visible = |age| {
            t.ads
                .iter()
                .filter(|ad| t.row_visible(ad, day, age))
                .count()
        };
        let days: Vec<NaiveDate> = (0..30).map(|i| day + chrono::Days::new(i)).collect();
        let late = days
            .iter()
            .flat_map(|&dd| t.ads.iter().map(move |ad| (ad, dd)))
            .filter(|(ad, dd)| !t.row_visible(ad, *dd, 1) && t.row_visible(ad, *dd, 3))
            .count();
        let vanished = days
            .iter()
            .flat_map(|&dd| t.ads.iter().map(move |ad| (ad, dd)))
            .filter(|(ad, dd)| t.row_visible(ad, *dd, 1) && !t.row_visible(ad, *dd, 5))
            .count();
        assert!(late > 0 && vanished > 0, "late {late}, vanished {vanished}");
        assert!(visible(1) > 0);
    }
}
