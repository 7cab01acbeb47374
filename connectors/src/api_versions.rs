//! Which platform API versions are alive: each version tidemark knows with the day the
//! platform switches it off, the default a source uses, and the verdict for a configured
//! version on a given day (live, sunsetting within 30 days, or gone and what to move to).
//!
//! Platforms retire versions on published dates and a scheduled sync that keeps calling a
//! retired one fails every night, so `tidemark sync` and `tidemark doctor` check the
//! configured version before the first request, and the simulators refuse retired versions
//! the way the platforms do. Update the tables when a platform publishes a date; the source
//! of every date is noted beside it.

use chrono::NaiveDate;

use crate::config::{Platform, ResolvedSource};

/// Days before a sunset from which a sync warns.
pub const WARN_DAYS: i64 = 30;

/// One API version and the day it stops answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiVersion {
    /// As it appears in the request path: `v26` (Google Ads), `v26.0` (Meta).
    pub name: &'static str,
    /// The first day requests fail; `None` while the platform has not published one.
    pub sunset: Option<NaiveDate>,
    /// The platform gave only a month ("projected February 2027"): `sunset` is that month's
    /// first day, so a warning comes early rather than late.
    pub projected: bool,
}

const fn date(y: i32, m: u32, d: u32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(y, m, d)
}

const fn gone(name: &'static str, y: i32, m: u32, d: u32) -> ApiVersion {
    ApiVersion {
        name,
        sunset: date(y, m, d),
        projected: false,
    }
}

const fn projected(name: &'static str, y: i32, m: u32) -> ApiVersion {
    ApiVersion {
        name,
        sunset: date(y, m, 1),
        projected: true,
    }
}

const fn open(name: &'static str) -> ApiVersion {
    ApiVersion {
        name,
        sunset: None,
        projected: false,
    }
}

/// Meta Marketing API versions, oldest first. Expiration dates from Meta's "Marketing API
/// version history" (developers.facebook.com/documentation/ads-commerce/marketing-api/
/// marketing-api-changelog/versions, read 2026-12-02). The Marketing API retires versions
/// sooner than the Graph API's dates for the same number; insights are Marketing API.
const META: &[ApiVersion] = &[
    gone("v19.0", 2025, 2, 4),
    gone("v20.0", 2025, 5, 6),
    gone("v21.0", 2025, 9, 9),
    gone("v22.0", 2026, 2, 19),
    gone("v23.0", 2026, 6, 9),
    gone("v24.0", 2026, 11, 10),
    gone("v25.0", 2027, 2, 23),
    open("v26.0"), // released 2026-07-29; the facebook_business SDK 26.x default
    open("v27.0"), // released 2026-11-04
];

/// Google Ads API versions, oldest first. v19–v22 from the Google Ads developer blog's sunset
/// notices (v19 2026-02-11, v20 2026-06-10, v21 2026-08-05, v22 2026-10-07); v23–v26 are the
/// months projected in "More frequent releases coming" (2025-09-04), each major version living
/// about a year. The official client library (PyPI google-ads 34) ships v23–v26 and defaults
/// to v26, which the sunset-dates page recommends to new users.
const GOOGLE_ADS: &[ApiVersion] = &[
    gone("v19", 2026, 2, 11),
    gone("v20", 2026, 6, 10),
    gone("v21", 2026, 8, 5),
    gone("v22", 2026, 10, 7),
    projected("v23", 2027, 2),
    projected("v24", 2027, 5),
    projected("v25", 2027, 8),
    projected("v26", 2027, 11),
];

/// The versions tidemark knows for a platform, oldest first; empty for a platform whose API
/// is not versioned (Naver Search Ad's paths carry no version and changes are announced on
/// its notice board, github.com/naver/searchad-apidoc).
pub fn known(platform: Platform) -> &'static [ApiVersion] {
    match platform {
        Platform::Meta => META,
        Platform::GoogleAds => GOOGLE_ADS,
        Platform::NaverSearchAd => &[],
        Platform::KakaoMoment => KAKAO_MOMENT,
        Platform::AppsFlyer => APPSFLYER,
        Platform::Ga4 => GA4,
    }
}

/// AppsFlyer's Pull API reports end in `/v5` (dev.appsflyer.com Pull API reference, read
/// 2026-12-02); no retirement is announced.
const APPSFLYER: &[ApiVersion] = &[open("v5")];

/// The GA4 Data API: `v1beta` is the version Google's docs and client libraries use for
/// `runReport` (developers.google.com/analytics/devguides/reporting/data/v1, read
/// 2026-12-02); `v1alpha` holds previews. No sunset is published.
const GA4: &[ApiVersion] = &[open("v1beta")];

/// Kakao Moment's Open API is `v4` in every path of its current docs
/// (developers.kakao.com/docs/latest/ko/kakaomoment/report, read 2026-12-02); no sunset is
/// published.
const KAKAO_MOMENT: &[ApiVersion] = &[open("v4")];

/// Whether requests to the platform name an API version at all.
pub fn is_versioned(platform: Platform) -> bool {
    !known(platform).is_empty()
}

/// The version a source uses when `api_version` is not set (empty when unversioned).
pub fn default_version(platform: Platform) -> &'static str {
    match platform {
        Platform::Meta => "v26.0",
        Platform::GoogleAds => "v26",
        Platform::NaverSearchAd => "",
        Platform::KakaoMoment => "v4",
        Platform::AppsFlyer => "v5",
        Platform::Ga4 => "v1beta",
    }
}

/// What a configured version means on a given day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Answering, with no sunset within [`WARN_DAYS`].
    Live,
    /// Answering, but switched off on `sunset`, `days_left` days from now.
    SunsetSoon {
        sunset: NaiveDate,
        days_left: i64,
        projected: bool,
    },
    /// Switched off since `sunset` (`None`: older than any version tidemark lists).
    Sunset { sunset: Option<NaiveDate> },
    /// Not a version tidemark knows (newer than its tables, or misspelt).
    Unknown,
}

/// The verdict for `version` of `platform` on `today`.
pub fn check(platform: Platform, version: &str, today: NaiveDate) -> Verdict {
    let versions = known(platform);
    if versions.is_empty() {
        return Verdict::Live;
    }
    match versions.iter().find(|v| v.name == version) {
        Some(v) => match v.sunset {
            Some(sunset) if sunset <= today => Verdict::Sunset {
                sunset: Some(sunset),
            },
            Some(sunset) if (sunset - today).num_days() <= WARN_DAYS => Verdict::SunsetSoon {
                sunset,
                days_left: (sunset - today).num_days(),
                projected: v.projected,
            },
            _ => Verdict::Live,
        },
        None if older_than_all(versions, version) => Verdict::Sunset { sunset: None },
        None => Verdict::Unknown,
    }
}

/// Whether a version number is below every listed one (`v12`, `v18.0`): long retired.
fn older_than_all(versions: &[ApiVersion], version: &str) -> bool {
    let oldest = versions.first().and_then(|v| major(v.name));
    matches!((major(version), oldest), (Some(n), Some(oldest)) if n < oldest)
}

/// The major number of `v26` or `v26.0`.
pub fn major(version: &str) -> Option<u32> {
    let digits = version.strip_prefix('v')?;
    digits.split('.').next()?.parse().ok()
}

/// The version to move to: the default, which is always live.
pub fn move_to(platform: Platform) -> &'static str {
    default_version(platform)
}

/// The sentence a user reads for a verdict that is not [`Verdict::Live`], naming the source,
/// the version, the date and what to set instead. `None` for a live version.
pub fn advice(
    source: &str,
    platform: Platform,
    version: &str,
    verdict: &Verdict,
) -> Option<String> {
    let target = move_to(platform);
    let fix = format!("set api_version = \"{target}\" in [sources.{source}] (or remove the key to use the default)");
    match verdict {
        Verdict::Live => None,
        Verdict::SunsetSoon {
            sunset,
            days_left,
            projected,
        } => Some(format!(
            "source '{source}': {} API {version} will be switched off {}{sunset} ({days_left} days from now); {fix}",
            label(platform),
            if *projected { "around " } else { "on " },
        )),
        Verdict::Sunset { sunset } => Some(format!(
            "source '{source}': {} API {version} was switched off{}; every request to it fails; {fix}",
            label(platform),
            sunset.map(|d| format!(" on {d}")).unwrap_or_default(),
        )),
        Verdict::Unknown => Some(format!(
            "source '{source}': {} API version '{version}' is not one tidemark knows (known: {}); if the platform released it after this tidemark, it may work, otherwise {fix}",
            label(platform),
            known(platform).iter().map(|v| v.name).collect::<Vec<_>>().join(", "),
        )),
    }
}

/// What the configured versions of a run's sources mean on `today`: one warning per source
/// whose version sunsets within [`WARN_DAYS`] (or is unknown), one refusal per source whose
/// version is switched off.
#[derive(Debug, Default)]
pub struct Review {
    pub warnings: Vec<String>,
    /// (source name, why) for each source that must not run.
    pub refused: Vec<(String, String)>,
}

/// Check every source's configured (or default) version on `today`.
pub fn review(sources: &[ResolvedSource], today: NaiveDate) -> Review {
    let mut review = Review::default();
    for source in sources {
        let version = source.api_version();
        let verdict = check(source.platform, &version, today);
        let Some(text) = advice(&source.name, source.platform, &version, &verdict) else {
            continue;
        };
        match verdict {
            Verdict::Sunset { .. } => review.refused.push((source.name.clone(), text)),
            _ => review.warnings.push(text),
        }
    }
    review
}

fn label(platform: Platform) -> &'static str {
    match platform {
        Platform::Meta => "Meta Marketing",
        Platform::GoogleAds => "Google Ads",
        Platform::NaverSearchAd => "Naver Search Ad",
        Platform::KakaoMoment => "Kakao Moment",
        Platform::AppsFlyer => "AppsFlyer Pull",
        Platform::Ga4 => "GA4 Data",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn defaults_are_listed_and_alive_today() {
        for platform in Platform::ALL.into_iter().filter(|p| is_versioned(*p)) {
            let default = default_version(platform);
            assert!(known(platform).iter().any(|v| v.name == default));
            assert_eq!(check(platform, default, day("2026-12-02")), Verdict::Live);
        }
    }

    /// On purpose tied to the real date: the day a default comes within 30 days of its
    /// sunset, CI goes red until the tables and the default move on.
    #[test]
    fn defaults_are_not_within_a_month_of_their_sunset_on_the_wall_clock() {
        let today = chrono::Utc::now().date_naive();
        for platform in Platform::ALL {
            let default = default_version(platform);
            assert_eq!(
                check(platform, default, today),
                Verdict::Live,
                "{platform}'s default API version {default} sunsets within {WARN_DAYS} days of {today}: \
                 move the default (and this table) to a newer version"
            );
        }
    }

    #[test]
    fn a_sunset_version_is_refused_from_its_sunset_day() {
        let verdict = check(Platform::GoogleAds, "v22", day("2026-10-07"));
        assert_eq!(
            verdict,
            Verdict::Sunset {
                sunset: Some(day("2026-10-07"))
            }
        );
        assert!(matches!(
            check(Platform::GoogleAds, "v22", day("2026-10-06")),
            Verdict::SunsetSoon { days_left: 1, .. }
        ));
        let text = advice("google_ads", Platform::GoogleAds, "v22", &verdict).unwrap();
        assert!(text.contains("switched off on 2026-10-07"), "{text}");
        assert!(text.contains("api_version = \"v26\""), "{text}");
    }

    #[test]
    fn warns_within_thirty_days_only() {
        assert_eq!(
            check(Platform::Meta, "v25.0", day("2027-01-23")),
            Verdict::Live
        );
        assert_eq!(
            check(Platform::Meta, "v25.0", day("2027-01-24")),
            Verdict::SunsetSoon {
                sunset: day("2027-02-23"),
                days_left: 30,
                projected: false
            }
        );
    }

    #[test]
    fn old_and_unknown_versions() {
        assert_eq!(
            check(Platform::GoogleAds, "v12", day("2026-12-02")),
            Verdict::Sunset { sunset: None }
        );
        assert_eq!(
            check(Platform::Meta, "v18.0", day("2026-12-02")),
            Verdict::Sunset { sunset: None }
        );
        assert_eq!(
            check(Platform::GoogleAds, "v40", day("2026-12-02")),
            Verdict::Unknown
        );
        assert_eq!(
            check(Platform::GoogleAds, "latest", day("2026-12-02")),
            Verdict::Unknown
        );
        assert_eq!(major("v26.0"), Some(26));
    }

    #[test]
    fn tables_are_oldest_first_with_sunsets_in_order() {
        for platform in [Platform::Meta, Platform::GoogleAds] {
            let versions = known(platform);
            for pair in versions.windows(2) {
                assert!(major(pair[0].name) < major(pair[1].name));
                if let (Some(a), Some(b)) = (pair[0].sunset, pair[1].sunset) {
                    assert!(a < b, "{pair:?}");
                }
            }
        }
    }
}
