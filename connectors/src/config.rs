//! Source configuration from `tidemark.toml`: which platforms, which accounts, where the
//! credentials are, the restatement window and the throttling limits of each source.
//!
//! ```toml
//! [sources.meta]                       # the key names the source; platform defaults to it
//! access_token = { env = "META_ACCESS_TOKEN" }
//! accounts = ["act_1234567890"]
//! # window_days = 28                   # default: the platform's documented restatement
//!
//! [sources.google_ads]
//! developer_token = { env = "GOOGLE_ADS_DEVELOPER_TOKEN" }
//! login_customer_id = "111-222-3333"
//! accounts = ["123-456-7890"]
//! # access tokens last an hour: give the OAuth client and refresh token instead
//! oauth = { client_id = "x.apps.googleusercontent.com", client_secret = { env = "S" }, refresh_token = { env = "R" } }
//!
//! [sources.naver_search_ad]            # HMAC-signed: an API license and its secret key
//! api_key = { env = "NAVER_API_KEY" }
//! secret_key = { env = "NAVER_SECRET_KEY" }
//! accounts = ["1234567"]               # customer ids (sent as X-Customer)
//!
//! [sources.kakao_moment]               # a business token, or an [oauth] refresh token
//! oauth = { client_id = "REST API key", client_secret = { env = "S" }, refresh_token = { env = "R" } }
//! accounts = ["123456"]                # ad account ids (sent as the adAccountId header)
//!
//! [sources.appsflyer]                  # API token V2; accounts are app ids
//! access_token = { env = "APPSFLYER_API_TOKEN" }
//! accounts = ["id1234567890", "com.example.app"]
//! # report = "installs_report"         # raw rows instead of the aggregate report
//!
//! [sources.ga4]                        # Data API: OAuth like Google Ads; accounts are property ids
//! oauth = { client_id = "x.apps.googleusercontent.com", client_secret = { env = "S" }, refresh_token = { env = "R" } }
//! accounts = ["properties/123456789"]
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::secret::SecretRef;

/// The platforms tidemark has clients for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    Meta,
    GoogleAds,
    NaverSearchAd,
    KakaoMoment,
    #[serde(rename = "appsflyer")]
    AppsFlyer,
    Ga4,
}

impl Platform {
    /// Every platform tidemark has a client for.
    pub const ALL: [Platform; 6] = [
        Platform::Meta,
        Platform::GoogleAds,
        Platform::NaverSearchAd,
        Platform::KakaoMoment,
        Platform::AppsFlyer,
        Platform::Ga4,
    ];

    /// Whether the platform's rows are ad-level spend rows for `ad_performance`. AppsFlyer
    /// and GA4 measure what happened after the click (installs, sessions, revenue) by
    /// campaign, not spend by ad: they fill their own tables, and the
    /// `attributed_performance` mart joins them to spend by campaign.
    pub fn feeds_ad_performance(self) -> bool {
        !matches!(self, Platform::AppsFlyer | Platform::Ga4)
    }
}

impl Platform {
    pub fn name(self) -> &'static str {
        match self {
            Platform::Meta => "meta",
            Platform::GoogleAds => "google_ads",
            Platform::NaverSearchAd => "naver_search_ad",
            Platform::KakaoMoment => "kakao_moment",
            Platform::AppsFlyer => "appsflyer",
            Platform::Ga4 => "ga4",
        }
    }

    /// Days a sync re-pulls by default, from each platform's documented restatement:
    /// Meta freezes insights 28 days after the day; Google Ads conversions can change for up
    /// to 90 days (conversion windows). Naver back-fills its conversion reports as indirect
    /// conversions arrive and publishes no horizon; 14 days is an assumption (the field
    /// reports in shared/reference/ad-apis.md §3 suggest 7–14), set `window_days` to widen it.
    /// Kakao Moment: a day's report "may change until 8:00 AM the next day" (KST) and the
    /// 7-day conversion fields keep counting for 7 days after the day, so 8.
    /// AppsFlyer's aggregate reports are lifetime-value data: a past install date keeps
    /// gaining events and revenue, and late attribution and fraud rejection move installs;
    /// 30 days follows AppsFlyer's advice for revenue KPIs. GA4 allows "a data processing
    /// delay of 24-48 hours" during which data may change, so 3.
    pub fn default_window_days(self) -> u64 {
        match self {
            Platform::Meta => 28,
            Platform::GoogleAds => 90,
            Platform::NaverSearchAd => 14,
            Platform::KakaoMoment => 8,
            Platform::AppsFlyer => 30,
            Platform::Ga4 => 3,
        }
    }

    /// Days per request unit: Meta's async report jobs are cheaper in weekly pieces; a
    /// Google Ads search stream returns a whole window in one response; a Naver stat report
    /// covers exactly one day; Kakao Moment allows at most 31 days per report call.
    pub fn default_chunk_days(self) -> u64 {
        match self {
            Platform::Meta => 7,
            Platform::GoogleAds => 30,
            Platform::NaverSearchAd => 1,
            Platform::KakaoMoment => 31,
            // One aggregate call per app and sync: ranges of 3+ days cost one of 24 daily calls.
            Platform::AppsFlyer => 31,
            Platform::Ga4 => 31,
        }
    }

    pub fn default_base_url(self) -> &'static str {
        match self {
            Platform::Meta => "https://graph.facebook.com",
            Platform::GoogleAds => "https://googleads.googleapis.com",
            Platform::NaverSearchAd => "https://api.searchad.naver.com",
            Platform::KakaoMoment => "https://apis.moment.kakao.com",
            Platform::AppsFlyer => "https://hq1.appsflyer.com",
            Platform::Ga4 => "https://analyticsdata.googleapis.com",
        }
    }

    /// Where an `[oauth]` refresh token is exchanged when `token_url` is not set.
    pub fn default_token_url(self) -> &'static str {
        match self {
            // Kakao's token endpoint (refresh_token grant, developers.kakao.com REST API docs).
            Platform::KakaoMoment => "https://kauth.kakao.com/oauth/token",
            _ => crate::oauth::GOOGLE_TOKEN_URL,
        }
    }

    /// The format of the payloads the platform returns, as a file extension in `raw/`.
    pub fn payload_format(self) -> &'static str {
        match self {
            Platform::Meta | Platform::GoogleAds => "json",
            Platform::NaverSearchAd => "tsv",
            Platform::KakaoMoment | Platform::Ga4 => "json",
            Platform::AppsFlyer => "csv",
        }
    }

    /// A version alive today (see [`crate::api_versions`] for the dates).
    pub fn default_api_version(self) -> &'static str {
        crate::api_versions::default_version(self)
    }

    /// The per-source table this platform's rows land in.
    pub fn table(self) -> &'static str {
        match self {
            Platform::Meta => "meta_insights",
            Platform::GoogleAds => "google_ads_ad_daily",
            Platform::NaverSearchAd => "naver_search_ad_stats",
            Platform::KakaoMoment => "kakao_moment_creative_daily",
            Platform::AppsFlyer => "appsflyer_partners_daily",
            Platform::Ga4 => "ga4_traffic_daily",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Platform::ALL.into_iter().find(|p| p.name() == name)
    }

    /// What a source section of this platform must hold to authenticate, if anything is
    /// missing or does not fit.
    fn credential_problem(self, name: &str, config: &SourceConfig) -> Option<String> {
        let env = "= { env = \"…\" }";
        match self {
            Platform::Meta
            | Platform::GoogleAds
            | Platform::KakaoMoment
            | Platform::AppsFlyer
            | Platform::Ga4 => {
                match (&config.access_token, &config.oauth) {
                    (Some(_), Some(_)) => {
                        return Some(format!(
                            "[sources.{name}]: give access_token or [sources.{name}.oauth], not both"
                        ))
                    }
                    (None, None) => {
                        return Some(format!(
                            "[sources.{name}]: no credential: add access_token {env}{}",
                            if matches!(self, Platform::Meta | Platform::AppsFlyer) { "" } else { " or an [oauth] section" }
                        ))
                    }
                    (None, Some(_)) if self == Platform::Meta => {
                        return Some(format!(
                            "[sources.{name}]: Meta takes access_token (a system-user token), not oauth"
                        ))
                    }
                    (None, Some(_)) if self == Platform::AppsFlyer => {
                        return Some(format!(
                            "[sources.{name}]: AppsFlyer takes access_token (the API token V2 from the dashboard's API tokens page), not oauth"
                        ))
                    }
                    _ => {}
                }
                if self == Platform::GoogleAds && config.developer_token.is_none() {
                    return Some(format!(
                        "[sources.{name}]: Google Ads needs developer_token {env}"
                    ));
                }
                None
            }
            Platform::NaverSearchAd => match (&config.api_key, &config.secret_key) {
                (Some(_), Some(_)) => None,
                _ => Some(format!(
                    "[sources.{name}]: no credential: Naver Search Ad signs every request with \
                     an API license and its secret key: add api_key {env} and secret_key {env} \
                     (searchad.naver.com → Tools → API manager)"
                )),
            },
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The whole `tidemark.toml`, as far as connectors care.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ProjectConfig {
    /// Warehouse URL; relative paths are relative to the project directory.
    pub warehouse: Option<String>,
    #[serde(default)]
    pub sources: BTreeMap<String, SourceConfig>,
    /// Sections other subsystems own (marts, schedule, serve, …).
    #[serde(flatten)]
    pub other: BTreeMap<String, toml::Value>,
}

/// One `[sources.NAME]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// The platform; defaults to the section name.
    pub platform: Option<Platform>,
    /// Account ids (Meta `act_…` or digits; Google Ads customer ids with or without dashes).
    pub accounts: Vec<String>,
    /// The API token (Meta: a system-user token; Google Ads: an OAuth access token, which
    /// expires within the hour: prefer `oauth`).
    pub access_token: Option<SecretRef>,
    /// Google Ads: an OAuth client and refresh token; access tokens are refreshed as needed.
    pub oauth: Option<OAuthConfig>,
    /// Google Ads developer token.
    pub developer_token: Option<SecretRef>,
    /// Google Ads manager (MCC) account the calls are made through.
    pub login_customer_id: Option<String>,
    /// Naver Search Ad: the API license (access license), sent as `X-API-KEY`.
    pub api_key: Option<SecretRef>,
    /// Naver Search Ad: the secret key that signs each request (never sent).
    pub secret_key: Option<SecretRef>,
    /// API host, e.g. a simulator's `http://127.0.0.1:PORT`.
    pub base_url: Option<String>,
    pub api_version: Option<String>,
    /// Days each sync re-pulls (the restatement window).
    pub window_days: Option<u64>,
    /// Days per request unit.
    pub chunk_days: Option<u64>,
    /// Requests in flight at once for this source's credential.
    pub max_concurrency: Option<usize>,
    /// Requests per second sent with this source's credential, by every process together
    /// (workers share the pace through Redis). Unset: no pacing, only the platform's answers.
    pub max_requests_per_second: Option<f64>,
    /// Attempts per request before giving up (throttled or failed).
    pub max_attempts: Option<u32>,
    /// The longest single wait honoured when the platform asks for one ("15m").
    #[serde(default, with = "opt_duration")]
    pub max_wait: Option<Duration>,
    #[serde(default, with = "opt_duration")]
    pub request_timeout: Option<Duration>,
    /// First backoff after a failure or an unspecified throttle; doubles per retry ("500ms").
    #[serde(default, with = "opt_duration")]
    pub backoff: Option<Duration>,
    /// Kakao Moment: the least time between two report calls for one ad account, kept by
    /// every worker together (Kakao allows one per 5 s; "5s").
    #[serde(default, with = "opt_duration")]
    pub report_interval: Option<Duration>,
    /// GA4: rows per `runReport` page (default 10,000; GA4 allows up to 250,000).
    /// AppsFlyer raw reports: `maximum_rows` per call (default 1,000,000); a range that
    /// reaches it is fetched again day by day.
    pub page_size: Option<u64>,
    /// AppsFlyer: which Pull API report the source pulls: `partners_by_date_report` (the
    /// default, aggregate by media source and campaign), `installs_report` or
    /// `in_app_events_report` (raw rows, into `appsflyer_raw_events`).
    pub report: Option<String>,
    /// Delay between polls of an async report job ("10s").
    #[serde(default, with = "opt_duration")]
    pub poll_interval: Option<Duration>,
    /// Renamed fields: `new_name = "canonical_name"` (snake_case names).
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
    /// Meta `action_type`s folded into installs / conversions / revenue, first match wins.
    #[serde(default)]
    pub actions: ActionTypes,
}

/// `[sources.NAME.oauth]`: the refresh-token flow.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthConfig {
    pub client_id: String,
    pub client_secret: SecretRef,
    pub refresh_token: SecretRef,
    /// Token endpoint; default Google's.
    pub token_url: Option<String>,
}

/// Which Meta `action_type` values count as installs, conversions and revenue. Meta reports
/// overlapping types (`omni_purchase` includes `purchase`), so the first present type of
/// each list is taken, not the sum.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionTypes {
    #[serde(default = "default_installs")]
    pub installs: Vec<String>,
    #[serde(default = "default_purchases")]
    pub conversions: Vec<String>,
    #[serde(default = "default_purchases")]
    pub revenue: Vec<String>,
}

impl Default for ActionTypes {
    fn default() -> Self {
        ActionTypes {
            installs: default_installs(),
            conversions: default_purchases(),
            revenue: default_purchases(),
        }
    }
}

fn default_installs() -> Vec<String> {
    vec!["mobile_app_install".into(), "app_install".into()]
}

fn default_purchases() -> Vec<String> {
    vec![
        "omni_purchase".into(),
        "purchase".into(),
        "offsite_conversion.fb_pixel_purchase".into(),
        "app_custom_event.fb_mobile_purchase".into(),
    ]
}

/// A source section with every default applied and names checked.
#[derive(Debug, Clone)]
pub struct ResolvedSource {
    pub name: String,
    pub platform: Platform,
    pub config: SourceConfig,
}

impl ResolvedSource {
    pub fn window_days(&self) -> u64 {
        self.config
            .window_days
            .unwrap_or(self.platform.default_window_days())
    }
    pub fn chunk_days(&self) -> u64 {
        self.config
            .chunk_days
            .unwrap_or(self.platform.default_chunk_days())
    }
    pub fn base_url(&self) -> String {
        self.config
            .base_url
            .clone()
            .unwrap_or_else(|| self.platform.default_base_url().to_string())
            .trim_end_matches('/')
            .to_string()
    }
    pub fn api_version(&self) -> String {
        self.config
            .api_version
            .clone()
            .unwrap_or_else(|| self.platform.default_api_version().to_string())
    }
    pub fn poll_interval(&self) -> Duration {
        self.config.poll_interval.unwrap_or(Duration::from_secs(10))
    }
    /// Accounts as the platform's API spells them in paths: digits only.
    pub fn account_ids(&self) -> Vec<String> {
        self.config
            .accounts
            .iter()
            .map(|a| normalize_account_id(self.platform, a))
            .collect()
    }
}

/// `act_123` → `123` for Meta; `123-456-7890` → `1234567890` for Google Ads; Naver customer
/// ids as given.
pub fn normalize_account_id(platform: Platform, id: &str) -> String {
    let id = id.trim();
    match platform {
        Platform::Meta => id.strip_prefix("act_").unwrap_or(id).to_string(),
        Platform::GoogleAds => id.chars().filter(|c| *c != '-').collect(),
        Platform::NaverSearchAd | Platform::KakaoMoment | Platform::AppsFlyer => id.to_string(),
        Platform::Ga4 => id.strip_prefix("properties/").unwrap_or(id).to_string(),
    }
}

impl ProjectConfig {
    /// Read `tidemark.toml`; errors carry the file name and the line of the problem.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parse config text. The error gives the line and the parser's message but not the
    /// offending source line, which could hold a pasted secret.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e: toml::de::Error| {
            let line = e
                .span()
                .map(|span| text[..span.start.min(text.len())].lines().count().max(1));
            match line {
                Some(line) => format!("line {line}: {}", e.message().trim_end()),
                None => e.message().trim_end().to_string(),
            }
        })
    }

    /// Every source with its platform settled, in name order; an unknown platform or an
    /// empty account list is an error naming the section.
    pub fn sources(&self) -> Result<Vec<ResolvedSource>, String> {
        self.sources
            .iter()
            .map(|(name, config)| {
                let platform = match config.platform {
                    Some(p) => p,
                    None => Platform::parse(name).ok_or_else(|| {
                        format!(
                            "[sources.{name}]: cannot tell the platform from the name; add \
                             platform = one of {}",
                            Platform::ALL.map(|p| format!("\"{p}\"")).join(", ")
                        )
                    })?,
                };
                if config.accounts.is_empty() {
                    return Err(format!("[sources.{name}]: accounts is empty"));
                }
                if let Some(problem) = platform.credential_problem(name, config) {
                    return Err(problem);
                }
                if let Some(report) = &config.report {
                    let known = crate::appsflyer::Report::NAMES;
                    if platform != Platform::AppsFlyer {
                        return Err(format!(
                            "[sources.{name}]: report is an AppsFlyer setting; remove it"
                        ));
                    }
                    if !known.contains(&report.as_str()) {
                        return Err(format!(
                            "[sources.{name}]: report = {report:?} is not one tidemark pulls; use one of {}",
                            known.join(", ")
                        ));
                    }
                }
                if !name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                {
                    return Err(format!(
                        "[sources.{name}]: source names are lowercase letters, digits and _"
                    ));
                }
                Ok(ResolvedSource {
                    name: name.clone(),
                    platform,
                    config: config.clone(),
                })
            })
            .collect()
    }
}

mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| {
            humantime::parse_duration(&t).map_err(|e| {
                serde::de::Error::custom(format!("{t:?} is not a duration like \"30s\": {e}"))
            })
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_each_platforms_restatement() {
        let config = ProjectConfig::parse(
            r#"
            [sources.meta]
            access_token = { env = "T" }
            accounts = ["act_1"]
            [sources.gads]
            platform = "google_ads"
            access_token = { env = "T" }
            developer_token = { file = "/x" }
            accounts = ["123-456-7890"]
            window_days = 30
            "#,
        )
        .unwrap();
        let sources = config.sources().unwrap();
        assert_eq!(sources[0].name, "gads");
        assert_eq!(sources[0].window_days(), 30);
        assert_eq!(sources[0].account_ids(), vec!["1234567890"]);
        assert_eq!(sources[1].platform, Platform::Meta);
        assert_eq!(sources[1].window_days(), 28);
        assert_eq!(sources[1].account_ids(), vec!["1"]);
        assert_eq!(Platform::GoogleAds.default_window_days(), 90);
    }

    #[test]
    fn mistakes_are_named() {
        let typo = ProjectConfig::parse(
            "[sources.meta]\naccess_token = { env = \"T\" }\naccounts = [\"1\"]\nwindow_dayz = 3\n",
        )
        .unwrap_err();
        assert!(typo.contains("window_dayz"), "{typo}");
        let literal =
            ProjectConfig::parse("[sources.meta]\naccess_token = \"EAAB\"\naccounts = [\"1\"]\n")
                .unwrap_err();
        assert!(!literal.contains("EAAB"), "{literal}");
        assert!(literal.contains("env ="), "{literal}");
        let unknown = ProjectConfig::parse(
            "[sources.tiktok]\naccess_token = { env = \"T\" }\naccounts = [\"1\"]\n",
        )
        .unwrap()
        .sources()
        .unwrap_err();
        assert!(unknown.contains("sources.tiktok"), "{unknown}");
        let both = ProjectConfig::parse(
            "[sources.google_ads]\naccess_token = { env = \"T\" }\ndeveloper_token = { env = \"D\" }\naccounts = [\"1\"]\n\
             oauth = { client_id = \"c\", client_secret = { env = \"S\" }, refresh_token = { env = \"R\" } }\n",
        )
        .unwrap()
        .sources()
        .unwrap_err();
        assert!(both.contains("not both"), "{both}");
        let none = ProjectConfig::parse("[sources.meta]\naccounts = [\"1\"]\n")
            .unwrap()
            .sources()
            .unwrap_err();
        assert!(none.contains("no credential"), "{none}");
        let duration = ProjectConfig::parse(
            "[sources.meta]\naccess_token = { env = \"T\" }\naccounts = [\"1\"]\nmax_wait = \"soon\"\n",
        )
        .unwrap_err();
        assert!(duration.contains("soon"), "{duration}");
        let report = |platform: &str, report: &str| {
            ProjectConfig::parse(&format!(
                "[sources.x]\nplatform = \"{platform}\"\naccess_token = {{ env = \"T\" }}\naccounts = [\"1\"]\nreport = \"{report}\"\n"
            ))
            .unwrap()
            .sources()
        };
        assert!(report("appsflyer", "installs_report").is_ok());
        let unknown = report("appsflyer", "geo_report").unwrap_err();
        assert!(unknown.contains("in_app_events_report"), "{unknown}");
        let elsewhere = report("meta", "installs_report").unwrap_err();
        assert!(elsewhere.contains("AppsFlyer setting"), "{elsewhere}");
        let naver = ProjectConfig::parse(
            "[sources.naver_search_ad]\napi_key = { env = \"K\" }\naccounts = [\"1\"]\n",
        )
        .unwrap()
        .sources()
        .unwrap_err();
        assert!(naver.contains("secret_key"), "{naver}");
    }
}
