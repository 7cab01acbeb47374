//! The GA4 Data API simulator: `runReport` with limit/offset paging and `propertyQuota`.
//!
//! ```text
//! POST /v1beta/properties/{property}:runReport   Authorization: Bearer …
//! ```
//! One row per (day, session source, medium, campaign): a campaign's sessions are its ads'
//! clicks, users 80% of them, key events its whole conversions and revenue its revenue, all
//! as strings; dates `YYYYMMDD`. Rows are ordered by date, paged by `limit`/`offset` with the
//! total in `rowCount`. Each answer carries `propertyQuota` (every request spends 10 tokens of
//! the property's hour). Throttling is HTTP 429 RESOURCE_EXHAUSTED: concurrent-request
//! exhaustion for `throttle` faults, the day's tokens for a spent quota. With `folded_rows`
//! drift, each day's smallest campaign is folded into an `(other)` row and the metadata says
//! so (`dataLossFromOtherRow`, `subjectToThresholding`). A property answering the 2024-renamed
//! metric as `conversions` is the `rename` drift.

use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use chrono::NaiveDate;
use serde_json::{json, Value};

use super::faults::Fault;
use super::{json_response, World};
use crate::config::Platform;
use crate::normalize::format_micros;

const GA4: Platform = Platform::Ga4;
/// Tokens one request spends, and the hourly budget (Standard property).
const TOKENS_PER_REQUEST: u64 = 10;
const TOKENS_PER_HOUR: u64 = 40_000;

/// Session source and medium of a campaign, by its place in the property.
pub fn source_medium(campaign_index: usize) -> (&'static str, &'static str) {
    [
        ("facebook", "paid_social"),
        ("google", "cpc"),
        ("naver", "cpc"),
        ("kakao", "display"),
    ][campaign_index % 4]
}

fn failure(status: StatusCode, grpc: &str, message: &str) -> Response {
    json_response(
        status,
        vec![],
        &json!({"error": {"code": status.as_u16(), "message": message, "status": grpc}}),
    )
}

/// One row of a report.
#[derive(Debug, Clone, PartialEq)]
pub struct Ga4Row {
    pub date: NaiveDate,
    pub source: String,
    pub medium: String,
    pub campaign: String,
    pub sessions: i64,
    pub users: i64,
    pub key_events: i64,
    pub revenue_micros: i64,
}

/// Every row a report over `since..=until` has, before paging.
pub fn report_rows(
    world: &World,
    account: usize,
    since: NaiveDate,
    until: NaiveDate,
    now: NaiveDate,
    folded: bool,
) -> Vec<Ga4Row> {
    let days = super::appsflyer::campaign_days_of(world, GA4, account, since, until, now);
    let mut rows = Vec::new();
    let mut by_day: std::collections::BTreeMap<NaiveDate, Vec<_>> = Default::default();
    for ((day, c, campaign), m) in days {
        let (source, medium) = source_medium(c);
        by_day.entry(day).or_default().push(Ga4Row {
            date: day,
            source: source.to_string(),
            medium: medium.to_string(),
            campaign,
            sessions: m.clicks,
            users: m.clicks * 8 / 10,
            key_events: m.conversions_centi / 100,
            revenue_micros: m.revenue_micros,
        });
    }
    for (_, mut day_rows) in by_day {
        if folded && day_rows.len() > 1 {
            // The smallest campaign of the day goes into "(other)".
            day_rows.sort_by_key(|r| std::cmp::Reverse(r.sessions));
            let mut small = day_rows.pop().expect("more than one row");
            small.source = "(other)".into();
            small.medium = "(other)".into();
            small.campaign = "(other)".into();
            day_rows.push(small);
        }
        rows.extend(day_rows);
    }
    rows
}

/// Answer one GA4 Data API request.
pub async fn handle(world: &World, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Response {
    let path = uri.path();
    let Some(rest) = path.strip_prefix("/v1beta/properties/") else {
        return failure(StatusCode::NOT_FOUND, "NOT_FOUND", "Method not found.");
    };
    let Some(property) = rest.strip_suffix(":runReport") else {
        return failure(StatusCode::NOT_FOUND, "NOT_FOUND", "Method not found.");
    };
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.strip_prefix("Bearer "));
    if bearer != Some(world.config.google_token.as_str()) {
        return failure(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token.",
        );
    }
    let truth = world.truth(GA4);
    let Some((index, _)) = truth.account(property) else {
        return failure(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            &format!("User does not have sufficient permissions for this property ({property})."),
        );
    };
    let fault = world.next_fault(GA4, Some(property));
    match fault {
        Fault::Throttle | Fault::RetryAfter => {
            let mut r = failure(
                StatusCode::TOO_MANY_REQUESTS,
                "RESOURCE_EXHAUSTED",
                "Exhausted concurrent requests quota for this property.",
            );
            if fault == Fault::RetryAfter {
                r = super::retry_after_one_second(r);
            }
            return r;
        }
        Fault::QuotaGone => {
            return failure(
                StatusCode::TOO_MANY_REQUESTS,
                "RESOURCE_EXHAUSTED",
                "Exhausted property tokens per day for this property.",
            )
        }
        Fault::ServerError(code) => {
            return failure(
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                if code == 503 {
                    "UNAVAILABLE"
                } else {
                    "INTERNAL"
                },
                "Internal error encountered.",
            )
        }
        Fault::Slow(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
        Fault::Truncate | Fault::None => {}
    }
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let range = &request["dateRanges"][0];
    let day = |k: &str| {
        range[k]
            .as_str()
            .and_then(|v| NaiveDate::parse_from_str(v, "%Y-%m-%d").ok())
    };
    let (Some(since), Some(until)) = (day("startDate"), day("endDate")) else {
        return failure(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "dateRanges[0] needs startDate and endDate (YYYY-MM-DD).",
        );
    };
    let number = |v: &Value, default: u64| {
        v.as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .unwrap_or(default)
    };
    let limit = number(&request["limit"], 10_000).clamp(1, 250_000) as usize;
    let offset = number(&request["offset"], 0) as usize;
    let drift = world.drift(GA4);
    let rows = report_rows(world, index, since, until, world.now(), drift.folded_rows);
    let total = rows.len();
    let key_events = match &drift.rename {
        Some(r) if r.from == "keyEvents" => r.to.clone(),
        _ => "keyEvents".to_string(),
    };
    let malformed = drift.malformed_account.as_deref() == Some(property);
    let page: Vec<Value> = rows
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|r| {
            json!({
                "dimensionValues": [
                    {"value": r.date.format("%Y%m%d").to_string()},
                    {"value": r.source}, {"value": r.medium}, {"value": r.campaign}
                ],
                "metricValues": [
                    {"value": if malformed { "n/a".to_string() } else { r.sessions.to_string() }},
                    {"value": r.users.to_string()},
                    {"value": r.key_events.to_string()},
                    {"value": format_micros(i128::from(r.revenue_micros))}
                ]
            })
        })
        .collect();
    let consumed = world.count_ga4_tokens(property, TOKENS_PER_REQUEST);
    world.count(GA4, |s| s.rows_served += page.len() as u64);
    let mut metadata = json!({"currencyCode": "KRW", "timeZone": "Asia/Seoul"});
    if drift.folded_rows {
        metadata["dataLossFromOtherRow"] = json!(true);
        metadata["subjectToThresholding"] = json!(true);
    }
    let mut answer = json!({
        "dimensionHeaders": [{"name": "date"}, {"name": "sessionSource"}, {"name": "sessionMedium"}, {"name": "sessionCampaignName"}],
        "metricHeaders": [
            {"name": "sessions", "type": "TYPE_INTEGER"}, {"name": "totalUsers", "type": "TYPE_INTEGER"},
            {"name": key_events, "type": "TYPE_FLOAT"}, {"name": "purchaseRevenue", "type": "TYPE_CURRENCY"}
        ],
        "rowCount": total,
        "metadata": metadata,
        "kind": "analyticsData#runReport",
    });
    if !page.is_empty() {
        answer["rows"] = Value::Array(page);
    }
    if request["returnPropertyQuota"].as_bool() == Some(true) {
        answer["propertyQuota"] = json!({
            "tokensPerDay": {"consumed": TOKENS_PER_REQUEST, "remaining": 200_000u64.saturating_sub(consumed)},
            "tokensPerHour": {"consumed": TOKENS_PER_REQUEST, "remaining": TOKENS_PER_HOUR.saturating_sub(consumed)},
            "concurrentRequests": {"consumed": 0, "remaining": 10},
            "serverErrorsPerProjectPerHour": {"consumed": 0, "remaining": 10},
            "potentiallyThresholdedRequestsPerHour": {"consumed": 0, "remaining": 120},
            "tokensPerProjectPerHour": {"consumed": TOKENS_PER_REQUEST, "remaining": 14_000u64.saturating_sub(consumed)}
        });
    }
    let response = json_response(StatusCode::OK, vec![], &answer);
    if fault == Fault::Truncate {
        return super::meta::truncate(response).await;
    }
    response
}
