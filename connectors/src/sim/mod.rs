//! Faithful simulators of the Meta Marketing API (insights), the Google Ads API
//! (searchStream), Naver Search Ad (stat reports), Kakao Moment (creative reports), the
//! AppsFlyer Pull API (aggregate CSV) and the GA4 Data API (runReport), on one loopback HTTP
//! server, over a seeded ground truth.
//!
//! - [`truth`]: the seeded ground truth and what a platform reports of it at a given day.
//! - [`World`]: ground truth per platform (accounts, campaigns, ad groups, ads; final metrics
//!   per day that mature over 28 days; rows that appear late and rows that vanish), the
//!   simulated clock, fault plans, drift switches and request counters.
//! - [`faults`]: what goes wrong on demand (rate-limit storms in each platform's own dialect,
//!   5xx, truncated bodies, slow answers, failing report runs) and schema drift (an added
//!   field, a renamed field, keys in another case, unparseable values).
//! - [`meta`], [`google_ads`], [`naver`], [`kakao`], [`appsflyer`] and [`ga4`]: the
//!   platforms' real paths, auth
//!   (Naver's HMAC signatures, Kakao's business tokens), paging, async report jobs, error
//!   bodies and rate-limit signals (Kakao's one report call per account per 5 s).
//!
//! Control endpoints (not part of either API):
//! ```text
//! GET|POST /_sim/clock   {"now": "2026-11-20"}
//! GET|POST /_sim/faults  {"platform": "meta", "throttle": 20, "server_errors": 3, …}
//! POST     /_sim/drift   {"platform": "google_ads", "rename": {"from": "costMicros", "to": "spendMicros"}}
//! GET      /_sim/stats   request and fault counters per platform
//! ```
//! `POST /token` is Google's OAuth token endpoint and `POST /oauth/token` Kakao's
//! (refresh-token grant), for sources that refresh their access tokens.

pub mod appsflyer;
pub mod faults;
pub mod ga4;
pub mod google_ads;
pub mod kakao;
pub mod meta;
pub mod naver;
pub mod truth;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::config::Platform;
use crate::window::Window;
pub use faults::{Drift, Faults, KeyCase};
use truth::{Account, Ad, IdStyle, Metrics, Truth};

/// How a simulator world is made.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    /// Accounts per platform (the first four are named, the rest numbered).
    pub accounts: usize,
    /// The simulated "today".
    pub today: NaiveDate,
    pub meta_token: String,
    pub google_token: String,
    pub google_developer_token: String,
    /// The OAuth client and refresh token the simulated Google token endpoint accepts.
    pub google_client_id: String,
    pub google_client_secret: String,
    pub google_refresh_token: String,
    /// Status polls a Meta report run takes to complete.
    pub meta_job_polls: u32,
    /// Ads in each ad group (3 campaigns × 2 ad groups per account): 2 by default, more for
    /// benchmarks that want bigger pages.
    pub ads_per_group: usize,
    /// Naver Search Ad: the API license and the secret key signatures are checked with.
    pub naver_api_key: String,
    pub naver_secret: String,
    /// Status polls a Naver report job takes to be built.
    pub naver_job_polls: u32,
    /// Kakao Moment: the business token, the app (REST API key, secret) and refresh token
    /// the simulated token endpoint accepts, and the pace of report calls per ad account.
    pub kakao_token: String,
    pub kakao_client_id: String,
    pub kakao_client_secret: String,
    pub kakao_refresh_token: String,
    pub kakao_report_interval_ms: u64,
    /// AppsFlyer's API token V2. (GA4 takes the Google access token.)
    pub appsflyer_token: String,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 42,
            accounts: 2,
            today: NaiveDate::from_ymd_opt(2026, 11, 20).expect("valid date"),
            meta_token: "sim-meta-token".into(),
            google_token: "sim-google-token".into(),
            google_developer_token: "sim-developer-token".into(),
            google_client_id: "sim-client.apps.googleusercontent.com".into(),
            google_client_secret: "sim-client-secret".into(),
            google_refresh_token: "sim-refresh-token".into(),
            meta_job_polls: 2,
            ads_per_group: 2,
            naver_api_key: "sim-naver-api-key".into(),
            naver_secret: "sim-naver-secret".into(),
            naver_job_polls: 2,
            kakao_token: "sim-kakao-business-token".into(),
            kakao_client_id: "sim-kakao-rest-api-key".into(),
            kakao_client_secret: "sim-kakao-client-secret".into(),
            kakao_refresh_token: "sim-kakao-refresh-token".into(),
            kakao_report_interval_ms: 5_000,
            appsflyer_token: "sim-appsflyer-api-token-v2".into(),
        }
    }
}

/// Counters per platform, for tests and `/_sim/stats`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SimStats {
    pub requests: u64,
    pub throttled: u64,
    pub server_errors: u64,
    pub truncated: u64,
    pub slow: u64,
    pub report_runs: u64,
    pub rows_served: u64,
    pub token_refreshes: u64,
    /// The most data requests that arrived within one second (sliding window).
    pub peak_requests_per_second: u64,
}

/// One reported ad-day.
#[derive(Debug, Clone)]
pub struct Reported<'a> {
    pub account: &'a Account,
    pub ad: &'a Ad,
    pub date: NaiveDate,
    pub metrics: Metrics,
}

/// One made-up credential of a simulated platform: the config key it fills, the `SIM_…`
/// variable `tidemark sim serve` exports it as, and its value.
#[derive(Debug, Clone)]
pub struct SimCredential {
    pub platform: Platform,
    pub key: &'static str,
    pub var: &'static str,
    pub value: String,
}

/// The simulators' shared state.
pub struct World {
    pub config: SimConfig,
    meta: Truth,
    google: Truth,
    naver: Truth,
    kakao: Truth,
    appsflyer: Truth,
    ga4: Truth,
    now: RwLock<NaiveDate>,
    faults: Mutex<BTreeMap<Platform, Faults>>,
    drift: Mutex<BTreeMap<Platform, Drift>>,
    stats: Mutex<BTreeMap<Platform, SimStats>>,
    /// Arrival times of the last second's data requests, per platform.
    arrivals: Mutex<BTreeMap<Platform, std::collections::VecDeque<std::time::Instant>>>,
    pub(crate) meta_jobs: Mutex<HashMap<String, meta::ReportRun>>,
    pub(crate) naver_jobs: Mutex<BTreeMap<u64, naver::ReportJob>>,
    /// The last signatures Naver requests were accepted with (at most [`SIGNATURES_KEPT`]).
    naver_signatures: Mutex<std::collections::VecDeque<naver::SignedRequest>>,
    pub(crate) kakao_pacing: Mutex<BTreeMap<String, kakao::Pacing>>,
    /// Kakao's pace of report calls per ad account, in ms (from the config; tests move it).
    pub(crate) kakao_interval_ms: AtomicU64,
    /// GA4 tokens spent per property.
    ga4_tokens: Mutex<BTreeMap<String, u64>>,
    next_id: AtomicU64,
}

/// Accepted Naver signatures kept for inspection.
pub const SIGNATURES_KEPT: usize = 10_000;

impl World {
    pub fn new(config: SimConfig) -> Arc<Self> {
        let meta = Truth::with_shape(
            config.seed ^ 0x6d65_7461,
            config.accounts,
            IdStyle::Numeric {
                base: 1_000_000_001,
            },
            config.ads_per_group,
        );
        let google = Truth::with_shape(
            config.seed ^ 0x6761_6473,
            config.accounts,
            IdStyle::Numeric {
                base: 1_234_567_001,
            },
            config.ads_per_group,
        );
        let naver = Truth::with_shape(
            config.seed ^ 0x6e61_7665,
            config.accounts,
            IdStyle::Naver { base: 1_100_001 },
            config.ads_per_group,
        );
        let kakao = Truth::with_shape(
            config.seed ^ 0x6b61_6b61,
            config.accounts,
            IdStyle::Numeric { base: 300_001 },
            config.ads_per_group,
        );
        let appsflyer = Truth::with_shape(
            config.seed ^ 0x6170_7073,
            config.accounts,
            IdStyle::App {
                base: 1_500_000_001,
            },
            config.ads_per_group,
        );
        let ga4 = Truth::with_shape(
            config.seed ^ 0x6761_3461,
            config.accounts,
            IdStyle::Numeric { base: 400_000_001 },
            config.ads_per_group,
        );
        Arc::new(World {
            ga4_tokens: Mutex::default(),
            kakao_interval_ms: AtomicU64::new(config.kakao_report_interval_ms),
            now: RwLock::new(config.today),
            config,
            meta,
            google,
            naver,
            kakao,
            appsflyer,
            ga4,
            faults: Mutex::default(),
            drift: Mutex::default(),
            stats: Mutex::default(),
            arrivals: Mutex::default(),
            meta_jobs: Mutex::default(),
            naver_jobs: Mutex::default(),
            naver_signatures: Mutex::default(),
            kakao_pacing: Mutex::default(),
            next_id: AtomicU64::new(1),
        })
    }

    /// The account ids of a platform, in order.
    pub fn account_ids(&self, platform: Platform) -> Vec<String> {
        self.truth(platform)
            .accounts
            .iter()
            .map(|a| a.id.clone())
            .collect()
    }

    pub fn truth(&self, platform: Platform) -> &Truth {
        match platform {
            Platform::Meta => &self.meta,
            Platform::GoogleAds => &self.google,
            Platform::NaverSearchAd => &self.naver,
            Platform::KakaoMoment => &self.kakao,
            Platform::AppsFlyer => &self.appsflyer,
            Platform::Ga4 => &self.ga4,
        }
    }

    /// GA4: spend `tokens` of a property's quota; returns the total spent.
    pub(crate) fn count_ga4_tokens(&self, property: &str, tokens: u64) -> u64 {
        let mut all = self.ga4_tokens.lock().expect("tokens lock");
        let spent = all.entry(property.to_string()).or_default();
        *spent += tokens;
        *spent
    }

    /// Kakao: change the pace of report calls per ad account.
    pub fn set_kakao_report_interval(&self, interval: std::time::Duration) {
        self.kakao_interval_ms
            .store(interval.as_millis() as u64, Ordering::Relaxed);
    }

    /// Kakao: the most report calls one ad account made within one pacing interval.
    pub fn kakao_peak_report_calls(&self, account: &str) -> u64 {
        self.kakao_pacing
            .lock()
            .expect("pacing lock")
            .get(account)
            .map_or(0, |p| p.peak)
    }

    /// Every credential the simulators accept, per platform in config order.
    pub fn credentials(&self) -> Vec<SimCredential> {
        let c = &self.config;
        let credential = |platform, key, var, value: &String| SimCredential {
            platform,
            key,
            var,
            value: value.clone(),
        };
        vec![
            credential(
                Platform::Meta,
                "access_token",
                "SIM_META_TOKEN",
                &c.meta_token,
            ),
            credential(
                Platform::GoogleAds,
                "access_token",
                "SIM_GOOGLE_TOKEN",
                &c.google_token,
            ),
            credential(
                Platform::GoogleAds,
                "developer_token",
                "SIM_GOOGLE_DEVELOPER_TOKEN",
                &c.google_developer_token,
            ),
            credential(
                Platform::NaverSearchAd,
                "api_key",
                "SIM_NAVER_API_KEY",
                &c.naver_api_key,
            ),
            credential(
                Platform::NaverSearchAd,
                "secret_key",
                "SIM_NAVER_SECRET",
                &c.naver_secret,
            ),
            credential(
                Platform::KakaoMoment,
                "access_token",
                "SIM_KAKAO_TOKEN",
                &c.kakao_token,
            ),
            credential(
                Platform::AppsFlyer,
                "access_token",
                "SIM_APPSFLYER_TOKEN",
                &c.appsflyer_token,
            ),
            credential(
                Platform::Ga4,
                "access_token",
                "SIM_GA4_TOKEN",
                &c.google_token,
            ),
        ]
    }

    /// The value of a platform's credential `key` (for handing it over in memory).
    pub fn credential(&self, platform: Platform, key: &str) -> Option<String> {
        self.credentials()
            .into_iter()
            .find(|c| c.platform == platform && c.key == key)
            .map(|c| c.value)
    }

    /// The `[sources.*]` sections of a `tidemark.toml` pointing at these simulators, every
    /// credential read from its `SIM_…` variable.
    pub fn sources_toml(&self, base_url: &str, window_days: u64, poll_interval: &str) -> String {
        let credentials = self.credentials();
        let mut out = String::new();
        for platform in Platform::ALL {
            let ids = format!("{:?}", self.account_ids(platform)).replace(['[', ']'], "");
            out.push_str(&format!(
                "[sources.{platform}]\nbase_url = \"{base_url}\"\n"
            ));
            for c in credentials.iter().filter(|c| c.platform == platform) {
                out.push_str(&format!("{} = {{ env = \"{}\" }}\n", c.key, c.var));
            }
            out.push_str(&format!(
                "accounts = [{ids}]\nwindow_days = {window_days}\npoll_interval = \"{poll_interval}\"\n\n"
            ));
        }
        out
    }

    /// Remember a Naver request whose signature was accepted.
    pub(crate) fn record_naver_signature(&self, signed: naver::SignedRequest) {
        let mut kept = self.naver_signatures.lock().expect("signatures lock");
        if kept.len() == SIGNATURES_KEPT {
            kept.pop_front();
        }
        kept.push_back(signed);
    }

    /// The Naver requests accepted so far (the last [`SIGNATURES_KEPT`]), oldest first.
    pub fn naver_signatures(&self) -> Vec<naver::SignedRequest> {
        self.naver_signatures
            .lock()
            .expect("signatures lock")
            .iter()
            .cloned()
            .collect()
    }

    pub fn now(&self) -> NaiveDate {
        *self.now.read().expect("clock lock")
    }

    pub fn set_now(&self, now: NaiveDate) {
        *self.now.write().expect("clock lock") = now;
    }

    /// Replace a platform's fault plan.
    pub fn set_faults(&self, platform: Platform, faults: Faults) {
        self.faults
            .lock()
            .expect("faults lock")
            .insert(platform, faults);
    }

    /// Replace a platform's drift switches.
    pub fn set_drift(&self, platform: Platform, drift: Drift) {
        self.drift
            .lock()
            .expect("drift lock")
            .insert(platform, drift);
    }

    pub fn drift(&self, platform: Platform) -> Drift {
        self.drift
            .lock()
            .expect("drift lock")
            .get(&platform)
            .cloned()
            .unwrap_or_default()
    }

    pub fn stats(&self, platform: Platform) -> SimStats {
        self.stats
            .lock()
            .expect("stats lock")
            .get(&platform)
            .cloned()
            .unwrap_or_default()
    }

    pub(crate) fn count(&self, platform: Platform, f: impl FnOnce(&mut SimStats)) {
        f(self
            .stats
            .lock()
            .expect("stats lock")
            .entry(platform)
            .or_default());
    }

    /// Decide the fault for the next data request of `platform` on `account`.
    pub(crate) fn next_fault(&self, platform: Platform, account: Option<&str>) -> faults::Fault {
        self.count(platform, |s| s.requests += 1);
        let in_last_second = self.arrive(platform);
        self.count(platform, |s| {
            s.peak_requests_per_second = s.peak_requests_per_second.max(in_last_second)
        });
        let mut all = self.faults.lock().expect("faults lock");
        let plan = all.entry(platform).or_default();
        let over_limit = plan.rate_limit_per_second > 0
            && in_last_second > u64::from(plan.rate_limit_per_second);
        let fault = if over_limit {
            faults::Fault::Throttle
        } else {
            plan.take(account)
        };
        drop(all);
        self.count(platform, |s| match fault {
            faults::Fault::Throttle | faults::Fault::RetryAfter | faults::Fault::QuotaGone => {
                s.throttled += 1
            }
            faults::Fault::ServerError(_) => s.server_errors += 1,
            faults::Fault::Truncate => s.truncated += 1,
            faults::Fault::Slow(_) => s.slow += 1,
            faults::Fault::None => {}
        });
        fault
    }

    /// Count a data request's arrival; returns how many arrived within the last second.
    fn arrive(&self, platform: Platform) -> u64 {
        let now = std::time::Instant::now();
        let mut all = self.arrivals.lock().expect("arrivals lock");
        let recent = all.entry(platform).or_default();
        while recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= std::time::Duration::from_secs(1))
        {
            recent.pop_front();
        }
        recent.push_back(now);
        recent.len() as u64
    }

    pub(crate) fn take_job_failure(&self, platform: Platform) -> bool {
        let mut all = self.faults.lock().expect("faults lock");
        let plan = all.entry(platform).or_default();
        if plan.job_failures > 0 {
            plan.job_failures -= 1;
            true
        } else {
            false
        }
    }

    pub(crate) fn throttle_wait(&self, platform: Platform) -> Faults {
        self.faults
            .lock()
            .expect("faults lock")
            .get(&platform)
            .cloned()
            .unwrap_or_default()
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// What `platform` reports for `account` over `window` at `now`, by day then ad.
    pub fn reported(
        &self,
        platform: Platform,
        account_id: &str,
        window: Window,
        now: NaiveDate,
    ) -> Vec<Reported<'_>> {
        let truth = self.truth(platform);
        let Some((index, account)) = truth.account(account_id) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for date in window.days() {
            for ad in truth.ads.iter().filter(|ad| ad.account_index == index) {
                if let Some(metrics) = truth.reported(ad, date, now) {
                    out.push(Reported {
                        account,
                        ad,
                        date,
                        metrics,
                    });
                }
            }
        }
        out
    }
}

/// The simulators' routes over `world`.
pub fn router(world: Arc<World>) -> Router {
    Router::new()
        .route("/_sim/clock", get(get_clock).post(set_clock))
        .route("/_sim/faults", get(get_faults).post(set_faults))
        .route("/_sim/drift", axum::routing::post(set_drift))
        .route("/_sim/stats", get(get_stats))
        .route("/token", axum::routing::post(google_ads::token))
        .route("/oauth/token", axum::routing::post(kakao::token))
        .fallback(platform_request)
        .with_state(world)
}

async fn platform_request(
    State(world): State<Arc<World>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    if path.contains("/customers/") {
        google_ads::handle(&world, &method, &uri, &headers, &body).await
    } else if path.starts_with("/api/agg-data/") || path.starts_with("/api/raw-data/") {
        appsflyer::handle(&world, &uri, &headers).await
    } else if path.starts_with("/v1beta/properties/") {
        ga4::handle(&world, &uri, &headers, &body).await
    } else if path.starts_with("/openapi/") {
        kakao::handle(&world, &method, &uri, &headers).await
    } else if path.starts_with("/stat-reports") || path == "/report-download" {
        naver::handle(&world, &method, &uri, &headers, &body).await
    } else {
        meta::handle(&world, &method, &uri, &headers, &body).await
    }
}

#[derive(Deserialize, Serialize)]
struct Clock {
    now: NaiveDate,
}

async fn get_clock(State(world): State<Arc<World>>) -> Json<Clock> {
    Json(Clock { now: world.now() })
}

async fn set_clock(State(world): State<Arc<World>>, Json(clock): Json<Clock>) -> Json<Clock> {
    world.set_now(clock.now);
    Json(clock)
}

#[derive(Deserialize)]
struct ForPlatform<T> {
    platform: Platform,
    #[serde(flatten)]
    value: T,
}

async fn get_faults(State(world): State<Arc<World>>) -> Json<Value> {
    let all = world.faults.lock().expect("faults lock").clone();
    Json(json!(all
        .into_iter()
        .map(|(p, f)| (p.name().to_string(), f))
        .collect::<BTreeMap<_, _>>()))
}

async fn set_faults(
    State(world): State<Arc<World>>,
    Json(request): Json<ForPlatform<Faults>>,
) -> StatusCode {
    world.set_faults(request.platform, request.value);
    StatusCode::NO_CONTENT
}

async fn set_drift(
    State(world): State<Arc<World>>,
    Json(request): Json<ForPlatform<Drift>>,
) -> StatusCode {
    world.set_drift(request.platform, request.value);
    StatusCode::NO_CONTENT
}

async fn get_stats(State(world): State<Arc<World>>) -> Json<Value> {
    Json(json!(Platform::ALL
        .into_iter()
        .map(|p| (p.name().to_string(), json!(world.stats(p))))
        .collect::<BTreeMap<_, _>>()))
}

/// `response` with `Retry-After: 1` (the generic throttle every simulator can answer).
pub(crate) fn retry_after_one_second(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert("retry-after", axum::http::HeaderValue::from_static("1"));
    response
}

/// A JSON response with a status.
pub(crate) fn json_response(
    status: StatusCode,
    headers: Vec<(&'static str, String)>,
    body: &Value,
) -> Response {
    let mut response = (status, body.to_string()).into_response();
    let h = response.headers_mut();
    h.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    for (name, value) in headers {
        if let Ok(v) = axum::http::HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    response
}

/// A simulator serving on a loopback port until dropped.
pub struct RunningSim {
    pub addr: SocketAddr,
    pub world: Arc<World>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningSim {
    /// Base URL of both APIs (`http://127.0.0.1:PORT`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Start the simulators on `addr` (port 0 picks a free one).
pub async fn start(config: SimConfig, addr: SocketAddr) -> std::io::Result<RunningSim> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let world = World::new(config);
    let app = router(Arc::clone(&world));
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "simulator stopped");
        }
    });
    Ok(RunningSim { addr, world, task })
}

/// Start on a free loopback port.
pub async fn start_local(config: SimConfig) -> std::io::Result<RunningSim> {
    start(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
}
