//! The Kakao Moment simulator: entity lists and creative reports of the Moment Open API v4.
//!
//! ```text
//! GET /openapi/v4/campaigns | adGroups?campaignId= | creatives?adGroupId=   → {"content": [...]}
//! GET /openapi/v4/creatives/report?creativeId=a,b&start=yyyyMMdd&end=yyyyMMdd&timeUnit=DAY
//!     → {"code": 200, "message": "Success", "data": [{start, end, dimensions, metrics}]}
//! POST /oauth/token   grant_type=refresh_token (Kakao's token endpoint)
//! ```
//! Auth is `Authorization: Bearer <business token>` plus the `adAccountId` header. Reports
//! refuse a range over 31 days and leave today out; a report call for an ad account within
//! the pacing interval (5 s, as Kakao documents) of its previous one gets HTTP 429 with code
//! -813. Every report call's arrival is kept per account, so tests can read the most calls
//! one account ever made within one interval. Metric keys carry their attribution window
//! (`pixel_purchase_7d`); cost is KRW as a JSON number.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use chrono::NaiveDate;
use serde_json::{json, Map, Value};

use super::faults::Fault;
use super::truth::Metrics;
use super::{json_response, World};
use crate::config::Platform;

const KAKAO: Platform = Platform::KakaoMoment;

/// What Kakao reports of an ad-day: whole purchases, whole-KRW purchase amounts, installs.
pub fn purchases_and_amount(m: &Metrics) -> (i64, i64) {
    (m.conversions_centi / 100, m.revenue_micros / 1_000_000)
}

fn error(status: StatusCode, code: i64, message: &str) -> Response {
    json_response(
        status,
        vec![],
        &json!({"code": code, "msg": "KakaoMomentException", "extras": {"detailCode": 0, "detailMsg": message}}),
    )
}

/// Report calls per account: arrival times within the last interval, and the peak seen.
#[derive(Debug, Default)]
pub struct Pacing {
    recent: VecDeque<Instant>,
    last_accepted: Option<Instant>,
    pub peak: u64,
}

/// Answer one Kakao Moment request.
pub async fn handle(world: &World, method: &Method, uri: &Uri, headers: &HeaderMap) -> Response {
    let path = uri.path();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let ["openapi", version, rest @ ..] = segments.as_slice() else {
        return error(StatusCode::NOT_FOUND, -1, "no such API");
    };
    if *version != "v4" {
        return error(
            StatusCode::NOT_FOUND,
            -1,
            &format!("API version {version} is not served"),
        );
    }
    if method != Method::GET {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            -2,
            "reports and lists are GET",
        );
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let bearer = header("authorization").and_then(|a| a.strip_prefix("Bearer "));
    if bearer != Some(world.config.kakao_token.as_str()) {
        return error(
            StatusCode::UNAUTHORIZED,
            -401,
            "this access token does not exist",
        );
    }
    let truth = world.truth(KAKAO);
    let account = header("adAccountId").unwrap_or_default().to_string();
    let Some((index, _)) = truth.account(&account) else {
        return error(
            StatusCode::FORBIDDEN,
            -403,
            "the member has no permission on the ad account",
        );
    };
    let report = rest == ["creatives", "report"];
    if report {
        if let Some(refusal) = pace(world, &account) {
            return refusal;
        }
    }
    let fault = world.next_fault(KAKAO, Some(&account));
    match fault {
        Fault::Throttle | Fault::QuotaGone => {
            return error(
                StatusCode::TOO_MANY_REQUESTS,
                -813,
                "report api call limit exceeded",
            )
        }
        Fault::RetryAfter => {
            return super::retry_after_one_second(error(
                StatusCode::TOO_MANY_REQUESTS,
                -813,
                "too many requests",
            ));
        }
        Fault::ServerError(code) => {
            return error(
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                -1,
                "internal error",
            )
        }
        Fault::Slow(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
        Fault::Truncate | Fault::None => {}
    }
    let query: Vec<(String, String)> = uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let param = |k: &str| -> Option<String> {
        query
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let ads = truth.ads.iter().filter(|ad| ad.account_index == index);
    let list = |items: Vec<(String, String)>| {
        let mut seen = std::collections::BTreeSet::new();
        let content: Vec<Value> = items
            .into_iter()
            .filter(|(id, _)| seen.insert(id.clone()))
            .map(|(id, name)| json!({"id": id.parse::<u64>().unwrap_or_default(), "name": name, "config": "ON"}))
            .collect();
        json!({"content": content, "totalElements": seen.len(), "totalPages": 1, "number": 0})
    };
    let response = match rest {
        ["campaigns"] => json_response(
            StatusCode::OK,
            vec![],
            &list(
                ads.map(|a| (a.campaign_id.clone(), a.campaign_name.clone()))
                    .collect(),
            ),
        ),
        ["adGroups"] => {
            let campaign = param("campaignId").unwrap_or_default();
            let campaign = campaign.as_str();
            json_response(
                StatusCode::OK,
                vec![],
                &list(
                    ads.filter(|a| a.campaign_id.as_str() == campaign)
                        .map(|a| (a.ad_group_id.clone(), a.ad_group_name.clone()))
                        .collect(),
                ),
            )
        }
        ["creatives"] => {
            let group = param("adGroupId").unwrap_or_default();
            let group = group.as_str();
            json_response(
                StatusCode::OK,
                vec![],
                &list(
                    ads.filter(|a| a.ad_group_id.as_str() == group)
                        .map(|a| (a.ad_id.clone(), a.ad_name.clone()))
                        .collect(),
                ),
            )
        }
        ["creatives", "report"] => report_response(world, index, &account, &param),
        _ => error(StatusCode::NOT_FOUND, -1, "no such resource"),
    };
    if fault == Fault::Truncate {
        return super::meta::truncate(response).await;
    }
    response
}

/// Refuse a report call within the interval of the account's previous accepted one.
fn pace(world: &World, account: &str) -> Option<Response> {
    let interval = Duration::from_millis(
        world
            .kakao_interval_ms
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    let now = Instant::now();
    let mut all = world.kakao_pacing.lock().expect("pacing lock");
    let pacing = all.entry(account.to_string()).or_default();
    while pacing
        .recent
        .front()
        .is_some_and(|t| now.duration_since(*t) >= interval)
    {
        pacing.recent.pop_front();
    }
    pacing.recent.push_back(now);
    pacing.peak = pacing.peak.max(pacing.recent.len() as u64);
    let too_soon = pacing
        .last_accepted
        .is_some_and(|last| now.duration_since(last) < interval);
    if too_soon {
        drop(all);
        world.count(KAKAO, |s| {
            s.requests += 1;
            s.throttled += 1
        });
        return Some(error(
            StatusCode::TOO_MANY_REQUESTS,
            -813,
            "a report call within 5 seconds of the last one is not allowed",
        ));
    }
    pacing.last_accepted = Some(now);
    None
}

fn report_response(
    world: &World,
    index: usize,
    account: &str,
    param: &dyn Fn(&str) -> Option<String>,
) -> Response {
    let day = |k: &str| param(k).and_then(|v| NaiveDate::parse_from_str(&v, "%Y%m%d").ok());
    let (Some(start), Some(end)) = (day("start"), day("end")) else {
        return error(
            StatusCode::BAD_REQUEST,
            -2,
            "start and end (yyyyMMdd) are required",
        );
    };
    if end < start || (end - start).num_days() + 1 > 31 {
        return error(
            StatusCode::BAD_REQUEST,
            -2,
            "the period must be within 31 days",
        );
    }
    let now = world.now();
    // Today is left out of start/end reports.
    let end = end.min(now - chrono::Days::new(1));
    let truth = world.truth(KAKAO);
    let drift = world.drift(KAKAO);
    let wanted = param("creativeId").unwrap_or_default();
    let wanted: Vec<&str> = wanted.split(',').collect();
    let malformed = drift.malformed_account.as_deref() == Some(account);
    let mut data = Vec::new();
    for ad in truth
        .ads
        .iter()
        .filter(|ad| ad.account_index == index && wanted.contains(&ad.ad_id.as_str()))
    {
        let mut d = start;
        while d <= end {
            if let Some(m) = truth.reported(ad, d, now) {
                let (purchases, amount) = purchases_and_amount(&m);
                let mut metrics = Map::new();
                metrics.insert(
                    "imp".into(),
                    if malformed {
                        json!("n/a")
                    } else {
                        json!(m.impressions)
                    },
                );
                metrics.insert("click".into(), json!(m.clicks));
                metrics.insert(
                    "ctr".into(),
                    json!(
                        (m.clicks as f64 * 10_000.0 / m.impressions.max(1) as f64).round() / 100.0
                    ),
                );
                metrics.insert("cost".into(), json!(m.spend_micros as f64 / 1e6));
                metrics.insert("reach".into(), json!(m.impressions * 7 / 10));
                metrics.insert("pixel_purchase_7d".into(), json!(purchases));
                metrics.insert("pixel_purchase_price_7d".into(), json!(amount));
                metrics.insert("sdk_install_7d".into(), json!(m.installs));
                if drift.added_field {
                    metrics.insert("video_play_100p".into(), json!(m.clicks / 3));
                }
                let row = json!({
                    "start": d.to_string(),
                    "end": d.to_string(),
                    "dimensions": {"creative_id": ad.ad_id},
                    "metrics": Value::Object(metrics),
                });
                data.push(drift.reshape(row));
            }
            d = d + chrono::Days::new(1);
        }
    }
    world.count(KAKAO, |s| {
        s.rows_served += data.len() as u64;
        s.report_runs += 1
    });
    json_response(
        StatusCode::OK,
        vec![],
        &json!({"code": 200, "message": "Success", "data": data}),
    )
}

/// Kakao's token endpoint, refresh-token grant: `client_id` is the app's REST API key.
pub async fn token(
    axum::extract::State(world): axum::extract::State<std::sync::Arc<World>>,
    body: axum::body::Bytes,
) -> Response {
    let form: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(&body).into_owned().collect();
    let c = &world.config;
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    let refuse = |status: StatusCode, error: &str, description: &str, code: &str| {
        json_response(
            status,
            vec![],
            &json!({"error": error, "error_description": description, "error_code": code}),
        )
    };
    if field("grant_type") != "refresh_token" {
        return refuse(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type must be refresh_token",
            "KOE010",
        );
    }
    if field("client_id") != c.kakao_client_id
        || form
            .get("client_secret")
            .is_some_and(|s| *s != c.kakao_client_secret)
    {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Bad client credentials",
            "KOE010",
        );
    }
    if field("refresh_token") != c.kakao_refresh_token {
        return refuse(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "refresh token not found",
            "KOE322",
        );
    }
    world.count(KAKAO, |s| s.token_refreshes += 1);
    json_response(
        StatusCode::OK,
        vec![],
        &json!({"access_token": c.kakao_token, "token_type": "bearer", "expires_in": 21599}),
    )
}
