//! The Meta Marketing API insights simulator.
//!
//! ```text
//! GET  /{v}/act_{id}/insights       synchronous, cursor-paged
//! POST /{v}/act_{id}/insights       → {"report_run_id"}   (params in the query or a form body)
//! GET  /{v}/{report_run_id}         → AdReportRun status
//! GET  /{v}/{report_run_id}/insights?limit=&after=
//! ```
//! Auth is `access_token` (query or form, as the official SDKs send it) or an
//! `Authorization: Bearer|OAuth` header. Every number is a string; rows with nothing to report
//! are left out; errors are Graph error objects; rate limits are HTTP 400 with codes and usage
//! headers, never 429 (except the generic `retry_after` fault). A version past its expiration
//! on the simulator's clock ([`crate::api_versions`]) gets Meta's deprecated-version error.

use std::collections::HashMap;
use std::time::Duration;

use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use chrono::NaiveDate;
use serde_json::{json, Value};

use super::faults::Fault;
use super::{json_response, World};
use crate::api_versions::{self, Verdict};
use crate::config::Platform;
use crate::normalize::format_micros;
use crate::window::Window;

/// Rows per page when the request does not say.
const DEFAULT_LIMIT: usize = 25;
const MAX_LIMIT: usize = 5000;

/// An async report run.
#[derive(Debug, Clone)]
pub struct ReportRun {
    account: String,
    window: Window,
    /// The simulated day the run was made on (its data is as of then).
    as_of: NaiveDate,
    fields: Vec<String>,
    limit: usize,
    polls: u32,
    fails: bool,
}

fn error(
    status: StatusCode,
    code: i64,
    subcode: Option<i64>,
    message: &str,
    headers: Vec<(&'static str, String)>,
) -> Response {
    let mut body = json!({"error": {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AsimFbTrace"}});
    if let Some(sub) = subcode {
        body["error"]["error_subcode"] = json!(sub);
    }
    json_response(status, headers, &body)
}

fn usage_headers(
    world: &World,
    account: Option<&str>,
    at_limit: bool,
    regain_minutes: u32,
) -> Vec<(&'static str, String)> {
    let pct = if at_limit {
        100
    } else {
        world.stats(Platform::Meta).requests % 50
    };
    let account = account.unwrap_or("0");
    vec![
        ("x-app-usage", json!({"call_count": pct, "total_time": pct / 2, "total_cputime": pct / 2}).to_string()),
        (
            "x-ad-account-usage",
            json!({"acc_id_util_pct": pct, "reset_time_duration": 0, "ads_api_access_tier": "standard_access"}).to_string(),
        ),
        (
            "x-business-use-case-usage",
            json!({ account: [{"type": "ads_insights", "call_count": pct, "total_cputime": pct / 2, "total_time": pct / 2,
                "estimated_time_to_regain_access": if at_limit { regain_minutes } else { 0 },
                "ads_api_access_tier": "standard_access"}] })
            .to_string(),
        ),
    ]
}

/// Request parameters from the query string and, for POST, a form body.
fn params(uri: &Uri, body: &[u8]) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = HashMap::new();
    let mut add = |text: &str| {
        for (k, v) in url::form_urlencoded::parse(text.as_bytes()) {
            out.insert(k.into_owned(), v.into_owned());
        }
    };
    if let Some(q) = uri.query() {
        add(q);
    }
    if let Ok(text) = std::str::from_utf8(body) {
        if !text.trim_start().starts_with('{') {
            add(text);
        }
    }
    out
}

fn token(params: &HashMap<String, String>, headers: &HeaderMap) -> Option<String> {
    if let Some(t) = params.get("access_token") {
        return Some(t.clone());
    }
    let auth = headers.get("authorization")?.to_str().ok()?;
    auth.strip_prefix("Bearer ")
        .or_else(|| auth.strip_prefix("OAuth "))
        .map(|t| t.trim().to_string())
}

/// Answer one Meta API request.
pub async fn handle(
    world: &World,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let segments: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    // Versions past their Marketing API expiration answer Meta's deprecated-version error
    // (code 2635) on the simulator's clock; a path that is no version at all is unknown.
    let version = segments.first().copied().unwrap_or_default();
    match api_versions::check(Platform::Meta, version, world.now()) {
        Verdict::Live | Verdict::SunsetSoon { .. } => {}
        Verdict::Sunset { .. } => return error(StatusCode::BAD_REQUEST, 2635, None, "(#2635) You are calling a deprecated version of the Ads API. Please update to the latest version.", vec![]),
        Verdict::Unknown => return error(StatusCode::BAD_REQUEST, 2500, None, "Unknown path components", vec![]),
    }
    let params = params(uri, body);
    match token(&params, headers) {
        None => {
            return error(
                StatusCode::BAD_REQUEST,
                104,
                None,
                "An access token is required to request this resource.",
                vec![],
            )
        }
        Some(t) if t != world.config.meta_token => {
            return error(
                StatusCode::BAD_REQUEST,
                190,
                None,
                "Invalid OAuth access token - Cannot parse access token",
                vec![],
            )
        }
        Some(_) => {}
    }
    let account = segments.get(1).and_then(|s| s.strip_prefix("act_"));
    let job_account = segments.get(1).and_then(|id| {
        world
            .meta_jobs
            .lock()
            .expect("jobs lock")
            .get(*id)
            .map(|j| j.account.clone())
    });
    let fault_account = account.map(str::to_string).or(job_account);
    let faults = world.throttle_wait(Platform::Meta);
    let fault = world.next_fault(Platform::Meta, fault_account.as_deref());
    match fault {
        Fault::Throttle => {
            let n = world.stats(Platform::Meta).throttled;
            let (code, sub, message) = [
                (80000, 2446079, "(#80000) There have been too many calls from this ad-account. Wait a bit and try again. For more info, please refer to https://developers.facebook.com/docs/graph-api/overview/rate-limiting#ads-management."),
                (17, 2446079, "(#17) User request limit reached"),
                (613, 1487742, "(#613) Calls to this api have exceeded the rate limit."),
                (4, 1504022, "(#4) Application request limit reached"),
                (80004, 2446079, "(#80004) There have been too many calls to this ad-account. Wait a bit and try again."),
            ][(n as usize) % 5];
            return error(
                StatusCode::BAD_REQUEST,
                code,
                Some(sub),
                message,
                usage_headers(world, fault_account.as_deref(), true, faults.regain_minutes),
            );
        }
        Fault::RetryAfter | Fault::QuotaGone => {
            return super::retry_after_one_second(error(
                StatusCode::TOO_MANY_REQUESTS,
                4,
                None,
                "(#4) Application request limit reached",
                vec![],
            ));
        }
        Fault::ServerError(status) => {
            return error(
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                2,
                None,
                "An unexpected error has occurred. Please retry your request later.",
                vec![],
            )
        }
        Fault::Slow(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
        Fault::Truncate | Fault::None => {}
    }
    let usage = usage_headers(world, fault_account.as_deref(), false, 0);
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_string();
    let response = match (method, segments.as_slice()) {
        (&Method::GET, [version, object, "insights"]) if object.starts_with("act_") => {
            match new_run(world, &object[4..], &params) {
                Ok(run) => page(
                    world,
                    &run,
                    &params,
                    &format!("http://{host}/{version}/{object}/insights"),
                    usage,
                ),
                Err(r) => *r,
            }
        }
        (&Method::POST, [_, object, "insights"]) if object.starts_with("act_") => {
            match new_run(world, &object[4..], &params) {
                Ok(mut run) => {
                    run.fails = world.take_job_failure(Platform::Meta);
                    let id = format!("60230{:010}", world.next_id());
                    world.count(Platform::Meta, |s| s.report_runs += 1);
                    world
                        .meta_jobs
                        .lock()
                        .expect("jobs lock")
                        .insert(id.clone(), run);
                    json_response(StatusCode::OK, usage, &json!({"report_run_id": id}))
                }
                Err(r) => *r,
            }
        }
        (&Method::GET, [_, id]) => {
            let mut jobs = world.meta_jobs.lock().expect("jobs lock");
            match jobs.get_mut(*id) {
                None => unknown_object(id),
                Some(run) => {
                    run.polls += 1;
                    let done = run.polls > world.config.meta_job_polls;
                    let (status, percent) = match (done, run.fails) {
                        (true, true) => ("Job Failed", 0),
                        (true, false) => ("Job Completed", 100),
                        (false, _) if run.polls == 1 => ("Job Not Started", 0),
                        (false, _) => (
                            "Job Running",
                            100 * run.polls / (world.config.meta_job_polls + 1),
                        ),
                    };
                    let mut body = json!({
                        "id": id, "account_id": run.account, "async_status": status,
                        "async_percent_completion": percent, "date_start": run.window.since.to_string(),
                        "date_stop": run.window.until.to_string(), "is_running": !done, "time_ref": 1_700_000_000,
                    });
                    if status == "Job Failed" {
                        body["error_code"] = json!(-2);
                        body["error_subcode"] = json!(2490547);
                        body["error_message"] = json!("Report Failed");
                    }
                    json_response(StatusCode::OK, usage, &body)
                }
            }
        }
        (&Method::GET, [version, id, "insights"]) => {
            let run = world.meta_jobs.lock().expect("jobs lock").get(*id).cloned();
            match run {
                None => unknown_object(id),
                Some(run) if run.polls <= world.config.meta_job_polls || run.fails => error(
                    StatusCode::BAD_REQUEST,
                    100,
                    None,
                    "(#100) The report run is not completed yet",
                    usage,
                ),
                Some(mut run) => {
                    if let Some(limit) = params.get("limit").and_then(|l| l.parse().ok()) {
                        run.limit = usize::min(limit, MAX_LIMIT);
                    }
                    page(
                        world,
                        &run,
                        &params,
                        &format!("http://{host}/{version}/{id}/insights"),
                        usage,
                    )
                }
            }
        }
        _ => error(
            StatusCode::BAD_REQUEST,
            2500,
            None,
            "Unknown path components",
            vec![],
        ),
    };
    if fault == Fault::Truncate {
        return truncate(response).await;
    }
    response
}

/// A response with its body cut in half (the connection "dropped" mid-body).
pub(crate) async fn truncate(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let cut = bytes.slice(..bytes.len() / 2);
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(cut))
}

fn unknown_object(id: &str) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        100,
        Some(33),
        &format!("Unsupported get request. Object with ID '{id}' does not exist, cannot be loaded due to missing permissions, or does not support this operation."),
        vec![],
    )
}

/// Validate insights parameters and snapshot the request.
fn new_run(
    world: &World,
    account: &str,
    params: &HashMap<String, String>,
) -> Result<ReportRun, Box<Response>> {
    let truth = world.truth(Platform::Meta);
    if truth.account(account).is_none() {
        return Err(Box::new(unknown_object(&format!("act_{account}"))));
    }
    let bad = |m: &str| -> Box<Response> {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            100,
            None,
            &format!("(#100) {m}"),
            vec![],
        ))
    };
    if params.get("level").is_some_and(|l| l != "ad") {
        return Err(bad("the simulator serves level=ad only"));
    }
    if params.get("time_increment").is_some_and(|t| t != "1") {
        return Err(bad("the simulator serves time_increment=1 only"));
    }
    let now = world.now();
    let window = match params.get("time_range") {
        Some(text) => {
            let range: Value = serde_json::from_str(text)
                .map_err(|_| bad("param time_range must be a JSON object"))?;
            let day = |k: &str| range[k].as_str().and_then(|s| s.parse::<NaiveDate>().ok());
            match (day("since"), day("until")) {
                (Some(since), Some(until)) if since <= until => Window { since, until },
                _ => {
                    return Err(bad(
                        "param time_range must have since <= until as YYYY-MM-DD",
                    ))
                }
            }
        }
        None => Window::trailing_days(now, 30),
    };
    if (now - window.since).num_days() > 37 * 31 {
        return Err(bad("time_range is older than 37 months"));
    }
    // `fields` comes comma-separated (REST examples) or as a JSON array (the SDKs' POSTs).
    let fields = params
        .get("fields")
        .map(|f| {
            let f = match serde_json::from_str::<Vec<String>>(f) {
                Ok(list) => list.join(","),
                Err(_) => f.clone(),
            };
            f.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_else(|| vec!["impressions".to_string(), "spend".to_string()]);
    let limit = params
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(DEFAULT_LIMIT)
        .clamp(1, MAX_LIMIT);
    Ok(ReportRun {
        account: account.to_string(),
        window,
        as_of: now,
        fields,
        limit,
        polls: 0,
        fails: false,
    })
}

/// One page of a run's rows.
fn page(
    world: &World,
    run: &ReportRun,
    params: &HashMap<String, String>,
    base: &str,
    usage: Vec<(&'static str, String)>,
) -> Response {
    let rows = world.reported(Platform::Meta, &run.account, run.window, run.as_of);
    let offset = params
        .get("after")
        .and_then(|c| c.strip_prefix("QVFI"))
        .and_then(|hex| usize::from_str_radix(hex, 16).ok())
        .unwrap_or(0);
    let drift = world.drift(Platform::Meta);
    let end = (offset + run.limit).min(rows.len());
    let data: Vec<Value> = rows[offset.min(rows.len())..end]
        .iter()
        .map(|r| {
            let mut row = render(r, &run.fields);
            if drift.added_field {
                row["quality_ranking"] = json!("AVERAGE");
            }
            if drift.malformed_account.as_deref() == Some(run.account.as_str()) {
                row["impressions"] = json!("n/a");
            }
            drift.reshape(row)
        })
        .collect();
    world.count(Platform::Meta, |s| s.rows_served += data.len() as u64);
    let mut body = json!({"data": data});
    if !rows.is_empty() {
        let cursor = |o: usize| format!("QVFI{o:08x}");
        body["paging"] = json!({"cursors": {"before": cursor(offset), "after": cursor(end)}});
        if end < rows.len() {
            body["paging"]["next"] =
                json!(format!("{base}?limit={}&after={}", run.limit, cursor(end)));
        }
    }
    json_response(StatusCode::OK, usage, &body)
}

/// One insights row with the requested fields, as Meta sends it: every value a string.
fn render(r: &super::Reported<'_>, fields: &[String]) -> Value {
    let m = &r.metrics;
    let mut row = serde_json::Map::new();
    let conversions = format_micros(i128::from(m.conversions_centi) * 10_000);
    for field in fields {
        let value = match field.as_str() {
            "account_id" => json!(r.account.id),
            "account_name" => json!(r.account.name),
            "account_currency" => json!(r.account.currency),
            "campaign_id" => json!(r.ad.campaign_id),
            "campaign_name" => json!(r.ad.campaign_name),
            "adset_id" => json!(r.ad.ad_group_id),
            "adset_name" => json!(r.ad.ad_group_name),
            "ad_id" => json!(r.ad.ad_id),
            "ad_name" => json!(r.ad.ad_name),
            "impressions" => json!(m.impressions.to_string()),
            "clicks" => json!(m.clicks.to_string()),
            "spend" => json!(format_micros(i128::from(m.spend_micros))),
            "actions" => {
                let mut actions =
                    vec![json!({"action_type": "link_click", "value": m.clicks.to_string()})];
                if m.installs > 0 {
                    actions.push(json!({"action_type": "mobile_app_install", "value": m.installs.to_string()}));
                }
                if m.conversions_centi > 0 {
                    actions.push(json!({"action_type": "purchase", "value": conversions}));
                    actions.push(json!({"action_type": "omni_purchase", "value": conversions}));
                }
                json!(actions)
            }
            "action_values" => {
                if m.revenue_micros > 0 {
                    let v = format_micros(i128::from(m.revenue_micros));
                    json!([{"action_type": "purchase", "value": v}, {"action_type": "omni_purchase", "value": v}])
                } else {
                    continue;
                }
            }
            _ => continue,
        };
        row.insert(field.clone(), value);
    }
    row.insert("date_start".into(), json!(r.date.to_string()));
    row.insert("date_stop".into(), json!(r.date.to_string()));
    Value::Object(row)
}
