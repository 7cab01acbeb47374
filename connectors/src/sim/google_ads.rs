//! The Google Ads API simulator: `googleAds:searchStream` over REST.
//!
//! ```text
//! POST /{v}/customers/{customer_id}/googleAds:searchStream   {"query": "<GAQL>"}
//!      Authorization: Bearer …   developer-token: …   [login-customer-id: …]
//! ```
//! Answers as the REST API does: a JSON array of stream batches (10,000 rows each) with
//! `results`, `fieldMask` and `requestId`; lowerCamelCase keys, int64 as strings, doubles as
//! numbers, zero values left out, `resourceName` on every resource. Errors are the array-wrapped
//! `{"error": {code, message, status, details: [GoogleAdsFailure]}}`; quota errors are 429
//! `RESOURCE_EXHAUSTED` with `retryDelay` in the body. A version past its sunset on the
//! simulator's clock ([`crate::api_versions`]) is a 404, as the retired paths are.
//!
//! GAQL support is what reporting clients send: `SELECT <fields> FROM ad_group_ad WHERE
//! segments.date BETWEEN 'a' AND 'b'` (or `DURING LAST_N_DAYS`, `>=`/`<=` bounds), other
//! conditions and `ORDER BY`/`LIMIT` being accepted and ignored.

use std::time::Duration;

use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use chrono::NaiveDate;
use serde_json::{json, Map, Value};

use super::faults::Fault;
use super::{json_response, World};
use crate::api_versions::{self, Verdict};
use crate::config::Platform;
use crate::window::Window;

/// Rows per stream batch.
const BATCH_ROWS: usize = 10_000;

/// The fields the simulator can select, as GAQL names them.
pub const SELECTABLE: &[&str] = &[
    "segments.date",
    "customer.id",
    "customer.descriptive_name",
    "customer.currency_code",
    "customer.time_zone",
    "campaign.id",
    "campaign.name",
    "ad_group.id",
    "ad_group.name",
    "ad_group_ad.ad.id",
    "ad_group_ad.ad.name",
    "metrics.impressions",
    "metrics.clicks",
    "metrics.cost_micros",
    "metrics.conversions",
    "metrics.conversions_value",
];

fn failure(status: StatusCode, grpc: &str, message: &str, errors: Vec<Value>) -> Response {
    let mut error = json!({"code": status.as_u16(), "message": message, "status": grpc});
    if !errors.is_empty() {
        error["details"] = json!([{
            "@type": format!(
                "type.googleapis.com/google.ads.googleads.{}.errors.GoogleAdsFailure",
                api_versions::default_version(Platform::GoogleAds)
            ),
            "errors": errors,
            "requestId": "SimRequestId"
        }]);
    }
    json_response(status, vec![], &json!([{ "error": error }]))
}

fn invalid(kind: &str, code: &str, message: &str) -> Response {
    failure(
        StatusCode::BAD_REQUEST,
        "INVALID_ARGUMENT",
        "Request contains an invalid argument.",
        vec![json!({"errorCode": {kind: code}, "message": message})],
    )
}

fn camel(snake: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// A parsed GAQL query.
#[derive(Debug, PartialEq)]
pub struct Query {
    pub fields: Vec<String>,
    pub resource: String,
    pub window: Option<Window>,
}

/// Parse the GAQL the simulator understands; errors are Google's query error codes.
pub fn parse_gaql(text: &str, today: NaiveDate) -> Result<Query, (&'static str, String)> {
    let upper = text.to_ascii_uppercase();
    let select = upper
        .find("SELECT")
        .ok_or(("UNEXPECTED_END_OF_QUERY", "no SELECT".to_string()))?;
    let from = upper
        .find(" FROM ")
        .ok_or(("EXPECTED_FROM", "no FROM".to_string()))?;
    let fields: Vec<String> = text[select + 6..from]
        .split(',')
        .map(|f| f.trim().to_string())
        .filter(|f| !f.is_empty())
        .collect();
    let rest: Vec<&str> = text[from + 6..].split_whitespace().collect();
    let resource = rest.first().map(|r| r.to_string()).unwrap_or_default();
    let tokens: Vec<String> = rest
        .iter()
        .skip(1)
        .map(|t| t.trim_matches(|c| c == '\'' || c == '"').to_string())
        .collect();
    let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok();
    let (mut since, mut until) = (None, None);
    let mut i = 0;
    while i < tokens.len() {
        if tokens[i].eq_ignore_ascii_case("segments.date") && i + 2 < tokens.len() {
            let op = tokens[i + 1].to_ascii_uppercase();
            let arg = &tokens[i + 2];
            match op.as_str() {
                "BETWEEN" if i + 4 < tokens.len() => {
                    since = day(arg);
                    until = day(&tokens[i + 4]);
                }
                "DURING" => {
                    let days = match arg.to_ascii_uppercase().as_str() {
                        "YESTERDAY" => 1,
                        "LAST_7_DAYS" => 7,
                        "LAST_14_DAYS" => 14,
                        "LAST_30_DAYS" => 30,
                        other => {
                            return Err((
                                "INVALID_DATE_RANGE",
                                format!("{other} is not supported by the simulator"),
                            ))
                        }
                    };
                    let w = Window::trailing_days(today, days);
                    since = Some(w.since);
                    until = Some(w.until);
                }
                ">=" => since = day(arg),
                "<=" => until = day(arg),
                "=" => {
                    since = day(arg);
                    until = day(arg);
                }
                _ => {}
            }
        }
        i += 1;
    }
    for f in &fields {
        if !SELECTABLE.contains(&f.as_str()) {
            return Err((
                "UNRECOGNIZED_FIELD",
                format!("Unrecognized field in the query: '{f}'."),
            ));
        }
    }
    let window = match (since, until) {
        (Some(s), Some(u)) if s <= u => Some(Window { since: s, until: u }),
        (None, None) => None,
        _ => {
            return Err((
                "INVALID_DATE_RANGE",
                "the date range is incomplete or reversed".to_string(),
            ))
        }
    };
    Ok(Query {
        fields,
        resource,
        window,
    })
}

/// Answer one Google Ads API request.
pub async fn handle(
    world: &World,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let segments: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let [version, "customers", customer, "googleAds:searchStream"] = segments.as_slice() else {
        return failure(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "The requested URL was not found on this server.",
            vec![],
        );
    };
    if method != Method::POST {
        return failure(
            StatusCode::METHOD_NOT_ALLOWED,
            "INVALID_ARGUMENT",
            "searchStream takes POST",
            vec![],
        );
    }
    // A retired version is gone from Google's front end: REST answers 404 NOT_FOUND for the
    // method (as reported for v17–v19 after their sunsets), on the simulator's clock.
    match api_versions::check(Platform::GoogleAds, version, world.now()) {
        Verdict::Live | Verdict::SunsetSoon { .. } => {}
        Verdict::Sunset { .. } | Verdict::Unknown => {
            return failure(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                &format!("Method not found: /{version}/customers/{customer}/googleAds:searchStream is not served (API version {version} is not available)."),
                vec![],
            )
        }
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let bearer = header("authorization").and_then(|a| a.strip_prefix("Bearer "));
    if bearer != Some(world.config.google_token.as_str()) {
        return failure(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
            vec![json!({"errorCode": {"authenticationError": "OAUTH_TOKEN_INVALID"}, "message": "Oauth token is invalid."})],
        );
    }
    if header("developer-token") != Some(world.config.google_developer_token.as_str()) {
        return failure(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "The developer token is not valid.",
            vec![
                json!({"errorCode": {"authenticationError": "DEVELOPER_TOKEN_INVALID"}, "message": "The developer token is not valid."}),
            ],
        );
    }
    if let Some(manager) = header("login-customer-id") {
        if manager.len() != 10 || !manager.chars().all(|c| c.is_ascii_digit()) {
            return invalid(
                "requestError",
                "INVALID_CUSTOMER_ID",
                "login-customer-id must be 10 digits without dashes.",
            );
        }
    }
    let truth = world.truth(Platform::GoogleAds);
    let Some((_, account)) = truth.account(customer) else {
        return failure(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "The caller does not have permission",
            vec![
                json!({"errorCode": {"authorizationError": "USER_PERMISSION_DENIED"}, "message": "User doesn't have permission to access customer."}),
            ],
        );
    };
    let faults = world.throttle_wait(Platform::GoogleAds);
    let fault = world.next_fault(Platform::GoogleAds, Some(customer));
    let quota = |delay: String, code: &str| {
        failure(
            StatusCode::TOO_MANY_REQUESTS,
            "RESOURCE_EXHAUSTED",
            "Resource has been exhausted (e.g. check quota).",
            vec![
                json!({"errorCode": {"quotaError": code}, "message": format!("Too many requests. Retry in {delay}."),
                "details": {"quotaErrorDetails": {"rateScope": "DEVELOPER", "rateName": "Number of operations for basic access", "retryDelay": delay}}}),
            ],
        )
    };
    match fault {
        Fault::Throttle => {
            let ms = faults.retry_delay_ms.max(1);
            return quota(
                format!("{}s", ms as f64 / 1000.0),
                "RESOURCE_TEMPORARILY_EXHAUSTED",
            );
        }
        Fault::QuotaGone => return quota("86400s".into(), "RESOURCE_EXHAUSTED"),
        Fault::RetryAfter => {
            return super::retry_after_one_second(failure(
                StatusCode::TOO_MANY_REQUESTS,
                "RESOURCE_EXHAUSTED",
                "Too many requests.",
                vec![],
            ));
        }
        Fault::ServerError(503) => {
            return failure(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "The service is currently unavailable.",
                vec![],
            )
        }
        Fault::ServerError(_) => {
            return failure(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                "Internal error encountered.",
                vec![],
            )
        }
        Fault::Slow(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
        Fault::Truncate | Fault::None => {}
    }
    let request: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return invalid(
                "requestError",
                "INVALID_INPUT",
                &format!("Invalid JSON payload received. {e}"),
            )
        }
    };
    if request.get("pageSize").is_some() {
        return invalid(
            "requestError",
            "PAGE_SIZE_NOT_SUPPORTED",
            "Setting the page size is not supported.",
        );
    }
    let Some(text) = request["query"].as_str() else {
        return invalid(
            "queryError",
            "UNEXPECTED_END_OF_QUERY",
            "The query is empty.",
        );
    };
    let query = match parse_gaql(text, world.now()) {
        Ok(q) => q,
        Err((code, message)) => return invalid("queryError", code, &message),
    };
    if query.resource != "ad_group_ad" {
        return invalid(
            "queryError",
            "INVALID_RESOURCE",
            &format!(
                "The simulator serves FROM ad_group_ad, not {}.",
                query.resource
            ),
        );
    }
    let Some(window) = query.window else {
        return invalid(
            "queryError",
            "EXPECTED_FILTERS_ON_DATE_RANGE",
            "A finite date range is required when segments.date is selected.",
        );
    };
    let drift = world.drift(Platform::GoogleAds);
    let rows = world.reported(Platform::GoogleAds, &account.id, window, world.now());
    let results: Vec<Value> = rows
        .iter()
        .map(|r| {
            let mut row = render(r, &query.fields);
            if drift.added_field {
                row["metrics"]["videoViews"] = json!("0");
                row["metrics"]["averageCpm"] = json!(12.5);
            }
            if drift.malformed_account.as_deref() == Some(account.id.as_str()) {
                row["metrics"]["impressions"] = json!("n/a");
            }
            drift.reshape(row)
        })
        .collect();
    world.count(Platform::GoogleAds, |s| {
        s.rows_served += results.len() as u64
    });
    let mask = query
        .fields
        .iter()
        .map(|f| f.split('.').map(camel).collect::<Vec<_>>().join("."))
        .collect::<Vec<_>>()
        .join(",");
    let chunks: Vec<&[Value]> = if results.is_empty() {
        vec![&[][..]]
    } else {
        results.chunks(BATCH_ROWS).collect()
    };
    let last = chunks.len() - 1;
    let batches: Vec<Value> = chunks
        .into_iter()
        .enumerate()
        .map(|(i, chunk)| {
            let mut batch = json!({"results": chunk, "fieldMask": mask, "requestId": format!("Sim{:012}", world.next_id())});
            if chunk.is_empty() {
                batch.as_object_mut().map(|o| o.remove("results"));
            }
            if i == last {
                batch["queryResourceConsumption"] = json!((results.len() + 1).to_string());
            }
            batch
        })
        .collect();
    let response = json_response(StatusCode::OK, vec![], &Value::Array(batches));
    if fault == Fault::Truncate {
        return super::meta::truncate(response).await;
    }
    response
}

/// Google's OAuth 2.0 token endpoint, refresh-token grant only: a form with `grant_type`,
/// `client_id`, `client_secret` and `refresh_token` gets an hour-long access token.
pub async fn token(
    axum::extract::State(world): axum::extract::State<std::sync::Arc<World>>,
    body: axum::body::Bytes,
) -> Response {
    let form: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(&body).into_owned().collect();
    let c = &world.config;
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    let refuse = |status: StatusCode, error: &str, description: &str| {
        json_response(
            status,
            vec![],
            &json!({"error": error, "error_description": description}),
        )
    };
    if field("grant_type") != "refresh_token" {
        return refuse(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Invalid grant_type: ",
        );
    }
    if field("client_id") != c.google_client_id || field("client_secret") != c.google_client_secret
    {
        return refuse(StatusCode::UNAUTHORIZED, "invalid_client", "Unauthorized");
    }
    if field("refresh_token") != c.google_refresh_token {
        return refuse(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Token has been expired or revoked.",
        );
    }
    world.count(Platform::GoogleAds, |s| s.token_refreshes += 1);
    json_response(
        StatusCode::OK,
        vec![],
        &json!({"access_token": c.google_token, "expires_in": 3599,
                "scope": "https://www.googleapis.com/auth/adwords", "token_type": "Bearer"}),
    )
}

/// Put `value` at the camelCase path of a GAQL field, skipping zero (proto3 defaults).
fn put(row: &mut Map<String, Value>, field: &str, value: Value) {
    let zero = matches!(&value, Value::String(s) if s == "0") || value.as_f64() == Some(0.0);
    if zero {
        return;
    }
    let parts: Vec<String> = field.split('.').map(camel).collect();
    let mut node = row;
    for part in &parts[..parts.len() - 1] {
        node = node
            .entry(part.clone())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("resource nodes are objects");
    }
    node.insert(parts[parts.len() - 1].clone(), value);
}

fn render(r: &super::Reported<'_>, fields: &[String]) -> Value {
    let m = &r.metrics;
    let cid = &r.account.id;
    let mut row = Map::new();
    for field in fields {
        let value = match field.as_str() {
            "segments.date" => json!(r.date.to_string()),
            "customer.id" => json!(cid),
            "customer.descriptive_name" => json!(r.account.name),
            "customer.currency_code" => json!(r.account.currency),
            "customer.time_zone" => json!(if r.account.currency == "KRW" {
                "Asia/Seoul"
            } else {
                "America/New_York"
            }),
            "campaign.id" => json!(r.ad.campaign_id),
            "campaign.name" => json!(r.ad.campaign_name),
            "ad_group.id" => json!(r.ad.ad_group_id),
            "ad_group.name" => json!(r.ad.ad_group_name),
            "ad_group_ad.ad.id" => json!(r.ad.ad_id),
            "ad_group_ad.ad.name" => json!(r.ad.ad_name),
            "metrics.impressions" => json!(m.impressions.to_string()),
            "metrics.clicks" => json!(m.clicks.to_string()),
            "metrics.cost_micros" => json!(m.spend_micros.to_string()),
            "metrics.conversions" => json!(m.conversions_centi as f64 / 100.0),
            "metrics.conversions_value" => json!(m.revenue_micros as f64 / 1e6),
            _ => continue,
        };
        put(&mut row, field, value);
        let resource = field.split('.').next().unwrap_or_default();
        let name = match resource {
            "customer" => format!("customers/{cid}"),
            "campaign" => format!("customers/{cid}/campaigns/{}", r.ad.campaign_id),
            "ad_group" => format!("customers/{cid}/adGroups/{}", r.ad.ad_group_id),
            "ad_group_ad" => format!(
                "customers/{cid}/adGroupAds/{}~{}",
                r.ad.ad_group_id, r.ad.ad_id
            ),
            _ => continue,
        };
        put(&mut row, &format!("{resource}.resource_name"), json!(name));
    }
    Value::Object(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaql_date_ranges() {
        let today: NaiveDate = "2026-11-20".parse().unwrap();
        let q = parse_gaql(
            "SELECT segments.date, metrics.cost_micros FROM ad_group_ad WHERE segments.date BETWEEN '2026-11-01' AND '2026-11-07' ORDER BY segments.date",
            today,
        )
        .unwrap();
        assert_eq!(q.fields, vec!["segments.date", "metrics.cost_micros"]);
        assert_eq!(q.resource, "ad_group_ad");
        assert_eq!(q.window.unwrap().len(), 7);
        let q = parse_gaql(
            "select metrics.clicks from ad_group_ad where segments.date during LAST_7_DAYS",
            today,
        )
        .unwrap();
        assert_eq!(q.window.unwrap().until.to_string(), "2026-11-19");
        assert_eq!(
            parse_gaql("SELECT metrics.bogus FROM ad_group_ad", today)
                .unwrap_err()
                .0,
            "UNRECOGNIZED_FIELD"
        );
        assert!(parse_gaql("SELECT metrics.clicks FROM ad_group_ad", today)
            .unwrap()
            .window
            .is_none());
    }
}
