//! A simulator, a warehouse and a config pointing one at the other; reading back what was
//! loaded, and what the simulator says should have been.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Date32Type, Decimal128Type, Float64Type, Int64Type};
use chrono::NaiveDate;
use connectors::config::{Platform, ProjectConfig};
use connectors::sim::{RunningSim, SimConfig};
use connectors::source::Source;
use connectors::sync::{SyncOptions, SyncReport};
use connectors::{Purpose, Window};
use engine::{Warehouse, WarehouseSession};
use testdata::Backend;

pub const TODAY: &str = "2026-11-20";

/// The simulated Kakao pace of report calls per ad account (Kakao's is 5 s; tests that are
/// not about pacing use a shorter one, and the source's `report_interval` follows it).
pub const KAKAO_INTERVAL_MS: u64 = 300;

pub fn day(s: &str) -> NaiveDate {
    s.parse().expect("test dates are valid")
}

/// One `ad_performance` cell group: the metrics of (source, account, day, ad).
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    pub impressions: Option<i64>,
    pub clicks: Option<i64>,
    pub spend: Option<i128>,
    pub conversions: Option<f64>,
    pub installs: Option<i64>,
    pub revenue: Option<i128>,
}

pub type Key = (String, String, NaiveDate, String);

pub struct Harness {
    pub sim: RunningSim,
    /// The platforms configured, one source each (named as the platform).
    pub platforms: Vec<Platform>,
    pub _backend: Backend,
    pub warehouse: Warehouse,
    pub config: ProjectConfig,
    pub sources: Vec<Arc<dyn Source>>,
    _secrets: tempfile::TempDir,
}

impl Harness {
    /// A simulator at [`TODAY`] and a warehouse, with Meta and Google Ads pulling 30-day
    /// windows. `extra` is appended to each source section (e.g. aliases).
    pub async fn new(backend: Backend, meta_extra: &str, google_extra: &str) -> Self {
        Self::build(
            backend,
            &[
                (Platform::Meta, meta_extra),
                (Platform::GoogleAds, google_extra),
            ],
            None,
        )
        .await
    }

    /// One platform's source alone, with `extra` appended to its section.
    pub async fn only(backend: Backend, platform: Platform, extra: &str) -> Self {
        Self::build(backend, &[(platform, extra)], None).await
    }

    /// Like [`Harness::new`], with Google Ads authenticating through OAuth with this refresh
    /// token (the simulator accepts only its own).
    pub async fn with_google_oauth(backend: Backend, refresh_token: &str) -> Self {
        Self::build(
            backend,
            &[(Platform::Meta, ""), (Platform::GoogleAds, "")],
            Some(refresh_token),
        )
        .await
    }

    async fn build(
        backend: Backend,
        platforms: &[(Platform, &str)],
        refresh_token: Option<&str>,
    ) -> Self {
        let sim = connectors::sim::start_local(SimConfig {
            today: day(TODAY),
            meta_job_polls: 1,
            naver_job_polls: 1,
            kakao_report_interval_ms: KAKAO_INTERVAL_MS,
            ..SimConfig::default()
        })
        .await
        .expect("start simulator");
        let secrets = tempfile::tempdir().expect("temp dir");
        let file = |name: &str, value: &str| {
            let path = secrets.path().join(name);
            std::fs::write(&path, value).expect("write token file");
            path.display().to_string()
        };
        let c = &sim.world.config;
        let mut text = String::new();
        for (platform, extra) in platforms {
            let (credentials, accounts) = match platform {
                Platform::Meta => (
                    format!("access_token = {{ file = \"{}\" }}\npoll_interval = \"5ms\"", file("meta", &c.meta_token)),
                    r#"["act_1000000001", "1000000002"]"#,
                ),
                Platform::GoogleAds => (
                    format!(
                        "{}\ndeveloper_token = {{ file = \"{}\" }}\nlogin_customer_id = \"999-000-1111\"",
                        match refresh_token {
                            None => format!("access_token = {{ file = \"{}\" }}", file("google", &c.google_token)),
                            Some(refresh) => format!(
                                "oauth = {{ client_id = \"{}\", client_secret = {{ file = \"{}\" }}, refresh_token = {{ file = \"{}\" }}, token_url = \"{}/token\" }}",
                                c.google_client_id,
                                file("client_secret", &c.google_client_secret),
                                file("refresh", refresh),
                                sim.base_url()
                            ),
                        },
                        file("dev", &c.google_developer_token),
                    ),
                    r#"["123-456-7001", "1234567002"]"#,
                ),
                Platform::NaverSearchAd => (
                    format!(
                        "api_key = {{ file = \"{}\" }}\nsecret_key = {{ file = \"{}\" }}\npoll_interval = \"5ms\"",
                        file("naver_key", &c.naver_api_key),
                        file("naver_secret", &c.naver_secret)
                    ),
                    r#"["1100001", "1100002"]"#,
                ),
                Platform::KakaoMoment => (
                    format!(
                        "oauth = {{ client_id = \"{}\", client_secret = {{ file = \"{}\" }}, refresh_token = {{ file = \"{}\" }}, token_url = \"{}/oauth/token\" }}\n{}",
                        c.kakao_client_id,
                        file("kakao_secret", &c.kakao_client_secret),
                        file("kakao_refresh", &c.kakao_refresh_token),
                        sim.base_url(),
                        if extra.contains("report_interval") {
                            String::new()
                        } else {
                            format!("report_interval = \"{KAKAO_INTERVAL_MS}ms\"")
                        }
                    ),
                    r#"["300001", "300002"]"#,
                ),
                Platform::AppsFlyer => (
                    format!("access_token = {{ file = \"{}\" }}", file("appsflyer", &c.appsflyer_token)),
                    r#"["id1500000001", "id1500000002"]"#,
                ),
                Platform::Ga4 => (
                    format!(
                        "access_token = {{ file = \"{}\" }}\npage_size = 40",
                        file("ga4", &c.google_token)
                    ),
                    r#"["properties/400000001", "400000002"]"#,
                ),
            };
            text.push_str(&format!(
                "\n[sources.{platform}]\nbase_url = \"{base}\"\n{credentials}\naccounts = {accounts}\n\
                 window_days = 30\nbackoff = \"10ms\"\nrequest_timeout = \"2s\"\n{extra}\n",
                base = sim.base_url(),
            ));
        }
        let config = ProjectConfig::parse(&text).expect("test config parses");
        let sources =
            connectors::build_sources(&config.sources().expect("sources"), Purpose::Fetch)
                .expect("build sources");
        let warehouse = backend.open().await;
        Harness {
            sim,
            platforms: platforms.iter().map(|(p, _)| *p).collect(),
            _backend: backend,
            warehouse,
            config,
            sources,
            _secrets: secrets,
        }
    }

    /// Sync every source for the 30 days before `today` (moving the simulator's clock there).
    pub async fn sync(&self, today: NaiveDate, run: &str) -> SyncReport {
        self.sim.world.set_now(today);
        let window = Window::trailing_days(today, 30);
        let windows = vec![window; self.sources.len()];
        let options = SyncOptions {
            run: run.to_string(),
            today,
            window: None,
            accounts: None,
            workers: SyncOptions::DEFAULT_WORKERS,
            commit_every: SyncOptions::DEFAULT_COMMIT_EVERY,
        };
        connectors::sync::sync(&self.warehouse, &self.sources, &windows, &options, &|_| {})
            .await
            .expect("sync runs")
    }

    /// What the simulator reports now for every account of the configured platforms over
    /// the window, in `ad_performance` terms.
    pub fn expected(&self, today: NaiveDate) -> BTreeMap<Key, Metrics> {
        let window = Window::trailing_days(today, 30);
        let mut out = BTreeMap::new();
        for platform in self.platforms.iter().copied() {
            let world = &self.sim.world;
            if !platform.feeds_ad_performance() {
                let report = self
                    .config
                    .sources
                    .get(platform.name())
                    .and_then(|c| c.report.clone());
                out.extend(expected_by_campaign(
                    world,
                    platform,
                    report.as_deref(),
                    window,
                    today,
                ));
                continue;
            }
            for account in &world.truth(platform).accounts {
                for r in world.reported(platform, &account.id, window, today) {
                    out.insert(
                        (
                            platform.name().to_string(),
                            account.id.clone(),
                            r.date,
                            r.ad.ad_id.clone(),
                        ),
                        expected_metrics(platform, &r.metrics),
                    );
                }
            }
        }
        out
    }

    pub async fn query(&self, sql: &str) -> Vec<RecordBatch> {
        let session = WarehouseSession::new(self.warehouse.clone())
            .await
            .expect("session");
        session
            .sql(sql)
            .await
            .expect("query plans")
            .collect()
            .await
            .expect("query runs")
    }

    /// The loaded `ad_performance` cells within the window before `today`, and for the
    /// attribution platforms their own tables' cells in the same shape.
    pub async fn loaded(&self, today: NaiveDate) -> BTreeMap<Key, Metrics> {
        let w = Window::trailing_days(today, 30);
        let within = format!("date BETWEEN DATE '{}' AND DATE '{}'", w.since, w.until);
        let mut batches = Vec::new();
        if self.platforms.iter().any(|p| p.feeds_ad_performance()) {
            batches = self
                .query(&format!(
                    "SELECT source, account_id, date, ad_id, impressions, clicks, spend, conversions, installs, revenue \
                     FROM ad_performance WHERE {within}"
                ))
                .await;
        }
        let none_int = "CAST(NULL AS BIGINT)";
        let none_money = "CAST(NULL AS DECIMAL(20, 6))";
        for platform in &self.platforms {
            let sql = match platform {
                // AppsFlyer raw reports: rows counted per event day and campaign.
                Platform::AppsFlyer
                    if self.config.sources["appsflyer"].report.as_deref()
                        == Some("installs_report") =>
                {
                    format!(
                        "SELECT _source AS source, _account_id AS account_id, _date AS date, campaign AS ad_id, \
                         {none_int} AS impressions, {none_int} AS clicks, {none_money} AS spend, \
                         CAST(NULL AS DOUBLE) AS conversions, count(*) AS installs, {none_money} AS revenue \
                         FROM appsflyer_raw_events WHERE _date BETWEEN DATE '{}' AND DATE '{}' GROUP BY 1, 2, 3, 4",
                        w.since, w.until
                    )
                }
                Platform::AppsFlyer
                    if self.config.sources["appsflyer"].report.as_deref()
                        == Some("in_app_events_report") =>
                {
                    format!(
                        "SELECT _source AS source, _account_id AS account_id, _date AS date, campaign AS ad_id, \
                         {none_int} AS impressions, {none_int} AS clicks, {none_money} AS spend, \
                         CAST(count(*) AS DOUBLE) AS conversions, {none_int} AS installs, \
                         CAST(sum(event_revenue) AS DECIMAL(20, 6)) AS revenue \
                         FROM appsflyer_raw_events WHERE _date BETWEEN DATE '{}' AND DATE '{}' GROUP BY 1, 2, 3, 4",
                        w.since, w.until
                    )
                }
                // AppsFlyer: one row per (day, campaign); the campaign name stands for the ad.
                Platform::AppsFlyer => format!(
                    "SELECT _source AS source, _account_id AS account_id, date, campaign_c AS ad_id, \
                     impressions, clicks, total_cost AS spend, CAST(NULL AS DOUBLE) AS conversions, \
                     installs, total_revenue AS revenue FROM appsflyer_partners_daily WHERE {within}"
                ),
                // GA4: sessions and users in the impressions and clicks places.
                Platform::Ga4 => format!(
                    "SELECT _source AS source, _account_id AS account_id, date, \
                     concat(session_source, '/', session_medium, '/', session_campaign_name) AS ad_id, \
                     sessions AS impressions, total_users AS clicks, {none_money} AS spend, \
                     key_events AS conversions, {none_int} AS installs, purchase_revenue AS revenue \
                     FROM ga4_traffic_daily WHERE {within}"
                ),
                _ => continue,
            };
            batches.extend(self.query(&sql).await);
        }
        let mut out = BTreeMap::new();
        for b in &batches {
            let text = |i: usize| {
                arrow::compute::cast(b.column(i), &arrow::datatypes::DataType::Utf8)
                    .expect("text columns cast to Utf8")
                    .as_string::<i32>()
                    .clone()
            };
            let (source, account, ad) = (text(0), text(1), text(3));
            let date = b.column(2).as_primitive::<Date32Type>();
            let int = |i: usize| b.column(i).as_primitive::<Int64Type>().clone();
            let dec = |i: usize| b.column(i).as_primitive::<Decimal128Type>().clone();
            let (impressions, clicks, installs) = (int(4), int(5), int(8));
            let (spend, revenue) = (dec(6), dec(9));
            let conversions = b.column(7).as_primitive::<Float64Type>();
            let opt_i =
                |a: &arrow::array::Int64Array, r: usize| (!a.is_null(r)).then(|| a.value(r));
            let opt_d =
                |a: &arrow::array::Decimal128Array, r: usize| (!a.is_null(r)).then(|| a.value(r));
            for r in 0..b.num_rows() {
                let key = (
                    source.value(r).to_string(),
                    account.value(r).to_string(),
                    Date32Type::to_naive_date_opt(date.value(r)).expect("valid date"),
                    ad.value(r).to_string(),
                );
                let previous = out.insert(
                    key.clone(),
                    Metrics {
                        impressions: opt_i(&impressions, r),
                        clicks: opt_i(&clicks, r),
                        spend: opt_d(&spend, r),
                        conversions: (!conversions.is_null(r)).then(|| conversions.value(r)),
                        installs: opt_i(&installs, r),
                        revenue: opt_d(&revenue, r),
                    },
                );
                assert!(previous.is_none(), "duplicate row for {key:?}");
            }
        }
        out
    }

    /// Rows of a table as sorted strings (every column), for comparing whole contents.
    pub async fn contents(&self, table: &str, filter: &str) -> Vec<String> {
        table_contents(&self.warehouse, table, filter).await
    }
}

/// An ad-day of the ground truth as `ad_performance` holds it after a sync of `platform`:
/// what each platform reports and how (Google has no installs metric; Naver reports whole
/// conversions and whole-KRW sales and no installs; Kakao whole purchases and amounts).
pub fn expected_metrics(platform: Platform, m: &connectors::sim::truth::Metrics) -> Metrics {
    let (conversions, revenue, installs) = match platform {
        Platform::Meta => (
            m.conversions_centi as f64 / 100.0,
            i128::from(m.revenue_micros),
            Some(m.installs),
        ),
        Platform::GoogleAds => (
            m.conversions_centi as f64 / 100.0,
            i128::from(m.revenue_micros),
            None,
        ),
        Platform::NaverSearchAd => {
            let (count, sales) = connectors::sim::naver::conversions_and_sales(m);
            (count as f64, i128::from(sales) * 1_000_000, None)
        }
        Platform::KakaoMoment => {
            let (count, amount) = connectors::sim::kakao::purchases_and_amount(m);
            (
                count as f64,
                i128::from(amount) * 1_000_000,
                Some(m.installs),
            )
        }
        Platform::AppsFlyer | Platform::Ga4 => {
            unreachable!("attribution platforms are compared by campaign")
        }
    };
    Metrics {
        impressions: Some(m.impressions),
        clicks: Some(m.clicks),
        spend: Some(i128::from(m.spend_micros)),
        conversions: Some(conversions),
        installs,
        revenue: Some(revenue),
    }
}

/// What an attribution platform reports by campaign over `window`, in [`Harness::loaded`]'s
/// shape.
fn expected_by_campaign(
    world: &connectors::sim::World,
    platform: Platform,
    report: Option<&str>,
    window: Window,
    today: NaiveDate,
) -> BTreeMap<Key, Metrics> {
    use connectors::sim::appsflyer::RawReport;
    let mut out = BTreeMap::new();
    let raw = match report {
        Some("installs_report") => Some(RawReport::Installs),
        Some("in_app_events_report") => Some(RawReport::InAppEvents),
        _ => None,
    };
    for (index, account) in world.truth(platform).accounts.iter().enumerate() {
        let key = |date, ad: String| (platform.name().to_string(), account.id.clone(), date, ad);
        if let Some(raw) = raw {
            // Raw rows counted (and purchases' revenue summed) per event day and campaign.
            for row in connectors::sim::appsflyer::raw_rows(
                world,
                index,
                raw,
                window.since,
                window.until,
                today,
            ) {
                let m = out
                    .entry(key(row.event_time.date(), row.campaign.clone()))
                    .or_insert(Metrics {
                        impressions: None,
                        clicks: None,
                        spend: None,
                        conversions: (raw == RawReport::InAppEvents).then_some(0.0),
                        installs: (raw == RawReport::Installs).then_some(0),
                        revenue: (raw == RawReport::InAppEvents).then_some(0),
                    });
                match raw {
                    RawReport::Installs => m.installs = m.installs.map(|n| n + 1),
                    RawReport::InAppEvents => {
                        m.conversions = m.conversions.map(|n| n + 1.0);
                        m.revenue = m
                            .revenue
                            .map(|r| r + i128::from(row.revenue_micros.unwrap_or(0)));
                    }
                }
            }
            continue;
        }
        if platform == Platform::Ga4 {
            for r in connectors::sim::ga4::report_rows(
                world,
                index,
                window.since,
                window.until,
                today,
                false,
            ) {
                out.insert(
                    key(r.date, format!("{}/{}/{}", r.source, r.medium, r.campaign)),
                    Metrics {
                        impressions: Some(r.sessions),
                        clicks: Some(r.users),
                        spend: None,
                        conversions: Some(r.key_events as f64),
                        installs: None,
                        revenue: Some(i128::from(r.revenue_micros)),
                    },
                );
            }
            continue;
        }
        for ((date, _, campaign), m) in connectors::sim::appsflyer::campaign_days(
            world,
            index,
            window.since,
            window.until,
            today,
        ) {
            out.insert(
                key(date, campaign),
                Metrics {
                    impressions: Some(m.impressions),
                    clicks: Some(m.clicks),
                    spend: Some(i128::from(m.spend_micros)),
                    conversions: None,
                    installs: Some(m.installs),
                    revenue: Some(i128::from(m.revenue_micros)),
                },
            );
        }
    }
    out
}

/// Rows of a table as sorted strings (every column, in name order), for comparing contents.
pub async fn table_contents(warehouse: &Warehouse, table: &str, filter: &str) -> Vec<String> {
    let session = WarehouseSession::new(warehouse.clone())
        .await
        .expect("session");
    let batches = session
        .sql(&format!("SELECT * FROM {table} WHERE {filter}"))
        .await
        .expect("query plans")
        .collect()
        .await
        .expect("query runs");
    let mut rows = Vec::new();
    for b in &batches {
        let columns: Vec<_> = b
            .columns()
            .iter()
            .map(|c| {
                arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &Default::default())
                    .expect("formatter")
            })
            .collect();
        let names: Vec<String> = b
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        for r in 0..b.num_rows() {
            let mut cells: Vec<(String, String)> = names
                .iter()
                .zip(&columns)
                .map(|(n, c)| (n.clone(), c.value(r).to_string()))
                .collect();
            cells.sort();
            rows.push(format!("{cells:?}"));
        }
    }
    rows.sort();
    rows
}

/// Compare loaded cells with expected ones; panics naming the first differences.
pub fn assert_cells_equal(loaded: &BTreeMap<Key, Metrics>, expected: &BTreeMap<Key, Metrics>) {
    let missing: Vec<_> = expected
        .keys()
        .filter(|k| !loaded.contains_key(*k))
        .take(5)
        .collect();
    let extra: Vec<_> = loaded
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .take(5)
        .collect();
    let wrong: Vec<_> = expected
        .iter()
        .filter(|(k, v)| loaded.get(*k).is_some_and(|l| l != *v))
        .take(5)
        .map(|(k, v)| format!("{k:?}: expected {v:?}, loaded {:?}", loaded[k]))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty() && wrong.is_empty(),
        "{} expected rows, {} loaded\nmissing: {missing:?}\nextra: {extra:?}\nwrong: {wrong:#?}",
        expected.len(),
        loaded.len()
    );
}

/// Count of metric cells (six per row).
pub fn cells(rows: &BTreeMap<Key, Metrics>) -> usize {
    rows.len() * 6
}
