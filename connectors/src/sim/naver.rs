//! The Naver Search Ad simulator: signed requests and the stat-report job flow.
//!
//! ```text
//! POST   /stat-reports {"reportTp": "AD"|"AD_CONVERSION", "statDt": "YYYYMMDD"}  → job (REGIST)
//! GET    /stat-reports            the customer's jobs (what `tidemark doctor` probes)
//! GET    /stat-reports/{id}       REGIST → RUNNING → BUILT (downloadUrl) | NONE | ERROR
//! DELETE /stat-reports/{id}
//! GET    /report-download?authtoken=…   header-less TSV, signed over "/report-download"
//! ```
//! Every request must carry `X-Timestamp` (epoch ms, within 5 minutes of the wall clock),
//! `X-API-KEY`, `X-Customer` and `X-Signature` = base64(HMAC-SHA256(secret,
//! "{timestamp}.{METHOD}.{path}")), recomputed here; each accepted signature is recorded so
//! tests can check it independently. A report is computed when its job is registered and
//! does not change afterwards (Naver asks users to re-create reports, old files are not
//! updated). Rows are per (ad, keyword, device), two keywords × PC/mobile per ad, summing
//! exactly to the ground truth; conversion rows split a day's conversions over direct and
//! indirect, purchase and sign-up. Rate limits are HTTP 429 with no hint of how long to wait
//! (as Naver documents). The error envelope `{"code", "title"}` is an assumption.

use std::time::Duration;

use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use serde_json::{json, Value};

use super::faults::Fault;
use super::truth::Metrics;
use super::{json_response, World};
use crate::config::Platform;
use crate::naver::signature;
use crate::normalize::format_micros;

/// The most a request's `X-Timestamp` may differ from the wall clock.
const MAX_SKEW_MS: i64 = 5 * 60 * 1000;

/// A registered report job.
#[derive(Debug, Clone)]
pub struct ReportJob {
    customer: String,
    report: String,
    day: NaiveDate,
    /// The simulated day the job was registered on (its data is as of then).
    as_of: NaiveDate,
    polls: u32,
    fails: bool,
    token: String,
}

/// A request whose signature the simulator accepted: what was signed and the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    pub timestamp: String,
    pub method: String,
    pub path: String,
    pub signature: String,
}

/// What Naver reports of an ad-day, in its own units: conversions are whole counts and
/// sales whole KRW (the truth's fractional conversions and revenue are floored).
pub fn conversions_and_sales(m: &Metrics) -> (i64, i64) {
    (m.conversions_centi / 100, m.revenue_micros / 1_000_000)
}

fn error(status: StatusCode, code: i64, title: &str) -> Response {
    json_response(status, vec![], &json!({"code": code, "title": title}))
}

/// `total` split over `weights` exactly (the last part takes the remainder).
fn split(total: i64, weights: &[u64]) -> Vec<i64> {
    let sum: u64 = weights.iter().sum();
    let mut parts: Vec<i64> = weights
        .iter()
        .map(|w| (i128::from(total) * i128::from(*w) / i128::from(sum.max(1))) as i64)
        .collect();
    let given: i64 = parts.iter().sum();
    if let Some(last) = parts.last_mut() {
        *last += total - given;
    }
    parts
}

/// The report's TSV for a job.
fn report_tsv(world: &World, job: &ReportJob) -> String {
    let truth = world.truth(Platform::NaverSearchAd);
    let drift = world.drift(Platform::NaverSearchAd);
    let Some((index, _)) = truth.account(&job.customer) else {
        return String::new();
    };
    let mut out = String::new();
    let malformed = drift.malformed_account.as_deref() == Some(job.customer.as_str());
    for ad in truth.ads.iter().filter(|ad| ad.account_index == index) {
        let Some(m) = truth.reported(ad, job.day, job.as_of) else {
            continue;
        };
        let digits = ad.ad_id.rsplit('-').next().unwrap_or_default();
        let prefix = |kw: usize, device: &str| {
            [
                job.day.format("%Y%m%d").to_string(),
                job.customer.clone(),
                ad.campaign_id.clone(),
                ad.ad_group_id.clone(),
                format!("nkw-a001-01-{digits}{kw:02}"),
                ad.ad_id.clone(),
                format!("bsn-a001-00-{}", job.customer),
                "27758".to_string(),
                device.to_string(),
            ]
            .join("\t")
        };
        let weights: Vec<u64> = (0..4)
            .map(|i| 1 + truth.noise(ad, job.day, i) % 9)
            .collect();
        let cells = [(1, "P"), (1, "M"), (2, "P"), (2, "M")];
        if job.report == "AD" {
            let impressions = split(m.impressions, &weights);
            let clicks = split(m.clicks, &weights);
            let cost = split(m.spend_micros, &weights);
            for (i, (kw, device)) in cells.iter().enumerate() {
                let shown = if malformed {
                    "n/a".to_string()
                } else {
                    impressions[i].to_string()
                };
                let mut row = vec![
                    prefix(*kw, device),
                    shown,
                    clicks[i].to_string(),
                    format_micros(i128::from(cost[i])),
                    // Sum of ad rank: rank 1–3 per impression.
                    (impressions[i] * (1 + (weights[i] % 3) as i64)).to_string(),
                ];
                if !drift.legacy_format {
                    row.push((clicks[i] / 2).to_string()); // View count
                }
                if drift.added_field {
                    row.push("N".into());
                }
                out.push_str(&row.join("\t"));
                out.push('\n');
            }
        } else {
            let (conversions, sales) = conversions_and_sales(&m);
            let counts = split(conversions, &weights);
            let amounts = split(sales, &weights);
            // (method, type as named since 2024-07-03, the code it had before)
            let kinds = [
                ("1", "purchase", "1"),
                ("2", "purchase", "1"),
                ("1", "sign_up", "2"),
                ("2", "sign_up", "2"),
            ];
            for (i, (kw, device)) in cells.iter().enumerate() {
                if counts[i] == 0 && amounts[i] == 0 {
                    continue;
                }
                let (method, name, code) = kinds[i];
                let row = [
                    prefix(*kw, device),
                    method.to_string(),
                    if drift.legacy_format { code } else { name }.to_string(),
                    counts[i].to_string(),
                    amounts[i].to_string(),
                ];
                out.push_str(&row.join("\t"));
                out.push('\n');
            }
        }
    }
    out
}

/// Cut a TSV report inside a row, as a dropped connection would.
fn cut(tsv: &str) -> String {
    let half = tsv.len() / 2;
    let start = tsv[..half].rfind('\n').map_or(0, |i| i + 1);
    let line = tsv[start..].find('\n').unwrap_or(tsv.len() - start);
    tsv[..start + (line / 2).max(1).min(line)].to_string()
}

/// Check the signature headers; `Err` is Naver's refusal.
fn authenticate(
    world: &World,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Result<String, Box<Response>> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let (timestamp, key, customer, signed) = (
        header("x-timestamp"),
        header("x-api-key"),
        header("x-customer"),
        header("x-signature"),
    );
    let c = &world.config;
    if key != c.naver_api_key {
        return Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            1,
            "Invalid API key",
        )));
    }
    let skew = timestamp
        .parse::<i64>()
        .map(|t| (chrono::Utc::now().timestamp_millis() - t).abs());
    if !skew.is_ok_and(|s| s <= MAX_SKEW_MS) {
        return Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            2,
            "X-Timestamp is missing or too far from the server time",
        )));
    }
    let signed_path = if path == "/report-download" {
        "/report-download"
    } else {
        path
    };
    let expected = signature(&c.naver_secret, &timestamp, method.as_str(), signed_path);
    if signed != expected {
        return Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            3,
            "Invalid signature",
        )));
    }
    world.record_naver_signature(SignedRequest {
        timestamp,
        method: method.to_string(),
        path: signed_path.to_string(),
        signature: signed,
    });
    if world
        .truth(Platform::NaverSearchAd)
        .account(&customer)
        .is_none()
    {
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            1018,
            "No permission to access the customer",
        )));
    }
    Ok(customer)
}

fn job_json(id: u64, job: &ReportJob, status: &str, base: &str) -> Value {
    let mut body = json!({
        "reportJobId": id,
        "reportTp": job.report,
        "statDt": format!("{}T15:00:00Z", job.day - chrono::Days::new(1)),
        "status": status,
        "updateTm": chrono::Utc::now().to_rfc3339(),
        "loginId": "sim-login",
    });
    if status == "BUILT" {
        body["downloadUrl"] = json!(format!(
            "{base}/report-download?authtoken={}&fileVersion=v2",
            job.token
        ));
    }
    body
}

/// Answer one Naver Search Ad request.
pub async fn handle(
    world: &World,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let path = uri.path();
    let customer = match authenticate(world, method, path, headers) {
        Ok(c) => c,
        Err(refusal) => return *refusal,
    };
    let fault = world.next_fault(Platform::NaverSearchAd, Some(&customer));
    match fault {
        Fault::Throttle | Fault::QuotaGone => {
            return error(StatusCode::TOO_MANY_REQUESTS, 1016, "Too many requests")
        }
        Fault::RetryAfter => {
            return super::retry_after_one_second(error(
                StatusCode::TOO_MANY_REQUESTS,
                1016,
                "Too many requests",
            ));
        }
        Fault::ServerError(code) => {
            return error(
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                code.into(),
                "Internal server error",
            )
        }
        Fault::Slow(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
        Fault::Truncate | Fault::None => {}
    }
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let base = format!("http://{host}");
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let response = match (method.clone(), segments.as_slice()) {
        (Method::POST, ["stat-reports"]) => create(world, &customer, body, &base),
        (Method::GET, ["stat-reports"]) => {
            let jobs = world.naver_jobs.lock().expect("naver jobs lock");
            let mine: Vec<Value> = jobs
                .iter()
                .filter(|(_, j)| j.customer == customer)
                .map(|(id, j)| job_json(*id, j, "REGIST", &base))
                .collect();
            json_response(StatusCode::OK, vec![], &Value::Array(mine))
        }
        (Method::GET, ["stat-reports", id]) => poll(world, &customer, id, &base),
        (Method::DELETE, ["stat-reports", id]) => {
            let removed = id.parse::<u64>().ok().and_then(|id| {
                world
                    .naver_jobs
                    .lock()
                    .expect("naver jobs lock")
                    .remove(&id)
            });
            match removed {
                Some(_) => StatusCode::NO_CONTENT.into_response(),
                None => error(StatusCode::NOT_FOUND, 1001, "Report job not found"),
            }
        }
        (Method::GET, ["report-download"]) => {
            let token = uri
                .query()
                .and_then(|q| {
                    url::form_urlencoded::parse(q.as_bytes())
                        .find(|(k, _)| k == "authtoken")
                        .map(|(_, v)| v.into_owned())
                })
                .unwrap_or_default();
            let job = world
                .naver_jobs
                .lock()
                .expect("naver jobs lock")
                .values()
                .find(|j| j.token == token && j.customer == customer)
                .cloned();
            match job {
                None => error(StatusCode::NOT_FOUND, 1001, "Report file not found"),
                Some(job) => {
                    let tsv = report_tsv(world, &job);
                    world.count(Platform::NaverSearchAd, |s| {
                        s.rows_served += tsv.lines().count() as u64
                    });
                    let tsv = if fault == Fault::Truncate {
                        cut(&tsv)
                    } else {
                        tsv
                    };
                    let mut r = (StatusCode::OK, tsv).into_response();
                    r.headers_mut().insert(
                        axum::http::header::CONTENT_TYPE,
                        axum::http::HeaderValue::from_static(
                            "text/tab-separated-values; charset=UTF-8",
                        ),
                    );
                    return r;
                }
            }
        }
        _ => error(StatusCode::NOT_FOUND, 1001, "Resource not found"),
    };
    if fault == Fault::Truncate {
        return super::meta::truncate(response).await;
    }
    response
}

fn create(world: &World, customer: &str, body: &[u8], base: &str) -> Response {
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let report = request["reportTp"].as_str().unwrap_or_default().to_string();
    if !["AD", "AD_CONVERSION", "AD_DETAIL", "AD_CONVERSION_DETAIL"].contains(&report.as_str()) {
        return error(StatusCode::BAD_REQUEST, 11001, "Invalid reportTp");
    }
    let stat_dt = request["statDt"].as_str().unwrap_or_default();
    let Ok(day) = NaiveDate::parse_from_str(stat_dt, "%Y%m%d") else {
        return error(StatusCode::BAD_REQUEST, 11001, "Invalid statDt (YYYYMMDD)");
    };
    if day >= world.now() {
        return error(
            StatusCode::BAD_REQUEST,
            11001,
            "statDt must be before today",
        );
    }
    let id = world.next_id();
    let job = ReportJob {
        customer: customer.to_string(),
        report,
        day,
        as_of: world.now(),
        polls: 0,
        fails: world.take_job_failure(Platform::NaverSearchAd),
        token: format!("sim{id:08x}{:04x}", day.to_epoch_days()),
    };
    world.count(Platform::NaverSearchAd, |s| s.report_runs += 1);
    let answer = job_json(id, &job, "REGIST", base);
    world
        .naver_jobs
        .lock()
        .expect("naver jobs lock")
        .insert(id, job);
    json_response(StatusCode::OK, vec![], &answer)
}

fn poll(world: &World, customer: &str, id: &str, base: &str) -> Response {
    let mut jobs = world.naver_jobs.lock().expect("naver jobs lock");
    let Some((id, job)) = id
        .parse::<u64>()
        .ok()
        .and_then(|id| jobs.get_mut(&id).map(|j| (id, j)))
        .filter(|(_, j)| j.customer == customer)
    else {
        return error(StatusCode::NOT_FOUND, 1001, "Report job not found");
    };
    job.polls += 1;
    let status = if job.polls < world.config.naver_job_polls {
        if job.polls == 1 {
            "RUNNING"
        } else {
            "WAITING"
        }
    } else if job.fails {
        "ERROR"
    } else if report_tsv(world, job).is_empty() {
        "NONE"
    } else {
        "BUILT"
    };
    json_response(StatusCode::OK, vec![], &job_json(id, job, status, base))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_are_exact() {
        for total in [0, 1, 7, 12_345, 987_654_321] {
            let parts = split(total, &[3, 1, 9, 2]);
            assert_eq!(parts.iter().sum::<i64>(), total);
            assert!(parts.iter().all(|p| *p >= 0));
        }
        let tsv = "a\tb\tc\n".repeat(10);
        let c = cut(&tsv);
        assert!(c.len() < tsv.len() && !c.ends_with('\n'));
    }
}
