//! The AppsFlyer Pull API simulator: the aggregate `partners_by_date_report` as CSV.
//!
//! ```text
//! GET /api/agg-data/export/app/{app_id}/partners_by_date_report/v5?from=&to=&timezone=&currency=
//!     Authorization: Bearer <API token V2>     (legacy: ?api_token=)
//! ```
//! Raw data: `GET /api/raw-data/export/app/{app_id}/installs_report|in_app_events_report/v5`
//! with `maximum_rows`, one row per install or purchase, cut silently at `maximum_rows`; its
//! spent quota is HTTP 400 `Your API calls limit has been reached …`.
//!
//! Aggregate: one row per (day, media source, campaign), summing the ground truth of the campaign's ads;
//! one column triple per in-app event (`af_purchase`; drift adds
//! `af_complete_registration`). Errors are plain text as AppsFlyer sends them: 401 for a bad
//! token, 404 for an unknown app, 403 `Limit reached for …` when the daily quota is spent,
//! 429 when throttled.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;

use super::faults::Fault;
use super::truth::Metrics;
use super::World;
use crate::config::Platform;
use crate::normalize::format_micros;

const APPSFLYER: Platform = Platform::AppsFlyer;

/// The media source (pid) a campaign is attributed to, by its place in the account.
pub fn media_source(campaign_index: usize) -> &'static str {
    [
        "Facebook Ads",
        "googleadwords_int",
        "naver_int",
        "kakao_int",
    ][campaign_index % 4]
}

/// A raw report of the simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawReport {
    Installs,
    InAppEvents,
}

/// One raw row: an install, or an in-app purchase.
#[derive(Debug, Clone, PartialEq)]
pub struct RawRow {
    pub event_time: chrono::NaiveDateTime,
    pub campaign: String,
    pub appsflyer_id: String,
    /// Purchases only: the revenue in micros.
    pub revenue_micros: Option<i64>,
    fields: Vec<String>,
}

const RAW_HEADER: [&str; 18] = [
    "Attributed Touch Type",
    "Attributed Touch Time",
    "Install Time",
    "Event Time",
    "Event Name",
    "Event Value",
    "Event Revenue",
    "Event Revenue Currency",
    "Event Revenue USD",
    "Media Source",
    "Campaign",
    "Campaign ID",
    "Adset",
    "Ad",
    "AppsFlyer ID",
    "Advertising ID",
    "IDFA",
    "Platform",
];

/// Every raw row of `account` over `since..=until` as reported at `now`, by event time: one
/// per install of each ad-day, or one per whole purchase with the ad-day's revenue split
/// exactly between them. Rows keep their ids as the day's numbers grow.
pub fn raw_rows(
    world: &World,
    account: usize,
    report: RawReport,
    since: NaiveDate,
    until: NaiveDate,
    now: NaiveDate,
) -> Vec<RawRow> {
    let truth = world.truth(APPSFLYER);
    let mut campaigns: Vec<&str> = Vec::new();
    let mut rows = Vec::new();
    for ad in truth.ads.iter().filter(|ad| ad.account_index == account) {
        if !campaigns.contains(&ad.campaign_id.as_str()) {
            campaigns.push(&ad.campaign_id);
        }
        let c = campaigns.len() - 1;
        let mut day = since;
        while day <= until {
            if let Some(m) = truth.reported(ad, day, now) {
                let count = match report {
                    RawReport::Installs => m.installs,
                    RawReport::InAppEvents => m.conversions_centi / 100,
                };
                let per = m.revenue_micros / count.max(1);
                for i in 0..count {
                    let noise = truth.noise(ad, day, 500 + i as u64);
                    let time = day.and_time(chrono::NaiveTime::MIN)
                        + chrono::Duration::seconds((noise % 86_400) as i64);
                    let install = time - chrono::Duration::seconds((noise % 7_200) as i64);
                    let id = format!(
                        "{:013}-{:019}",
                        noise % 10_000_000_000_000,
                        truth.noise(ad, day, 900 + i as u64) % 10_000_000_000_000_000_000
                    );
                    let revenue = (report == RawReport::InAppEvents).then(|| {
                        if i + 1 == count {
                            m.revenue_micros - per * (count - 1)
                        } else {
                            per
                        }
                    });
                    let (name, value, amount, currency) = match revenue {
                        None => (
                            "install".to_string(),
                            String::new(),
                            String::new(),
                            String::new(),
                        ),
                        Some(r) => (
                            "af_purchase".to_string(),
                            format!(
                                r#"{{"af_revenue":"{}","af_currency":"KRW","af_content_id":"sku-{}"}}"#,
                                format_micros(i128::from(r)),
                                i % 7
                            ),
                            format_micros(i128::from(r)),
                            "KRW".to_string(),
                        ),
                    };
                    let fields = vec![
                        "click".into(),
                        (install - chrono::Duration::seconds(600))
                            .format("%Y-%m-%d %H:%M:%S")
                            .to_string(),
                        install.format("%Y-%m-%d %H:%M:%S").to_string(),
                        if revenue.is_some() { time } else { install }
                            .format("%Y-%m-%d %H:%M:%S")
                            .to_string(),
                        name,
                        value,
                        amount.clone(),
                        currency,
                        amount,
                        media_source(c).to_string(),
                        ad.campaign_name.clone(),
                        ad.campaign_id.clone(),
                        ad.ad_group_name.clone(),
                        ad.ad_name.clone(),
                        id.clone(),
                        format!(
                            "{:08x}-0000-4000-8000-{:012x}",
                            noise >> 32,
                            noise & 0xffff_ffff_ffff
                        ),
                        String::new(),
                        "ios".into(),
                    ];
                    rows.push(RawRow {
                        event_time: if revenue.is_some() { time } else { install },
                        campaign: ad.campaign_name.clone(),
                        appsflyer_id: id,
                        revenue_micros: revenue,
                        fields,
                    });
                }
            }
            day = day + chrono::Days::new(1);
        }
    }
    rows.sort_by(|a, b| (a.event_time, &a.appsflyer_id).cmp(&(b.event_time, &b.appsflyer_id)));
    rows
}

/// A raw report's CSV: `maximum` rows at most, cut there silently as AppsFlyer does.
#[allow(clippy::too_many_arguments)]
fn raw_response(
    world: &World,
    account: usize,
    app: &str,
    report: RawReport,
    since: NaiveDate,
    until: NaiveDate,
    maximum: usize,
    fault: Fault,
) -> Response {
    let drift = world.drift(APPSFLYER);
    let malformed = drift.malformed_account.as_deref() == Some(app);
    let rows = raw_rows(world, account, report, since, until, world.now());
    let mut out = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<&str> = RAW_HEADER.to_vec();
    if drift.added_field {
        header.push("Is Retargeting");
    }
    let _ = out.write_record(&header);
    let served = rows.len().min(maximum);
    for row in rows.into_iter().take(maximum) {
        let mut fields = row.fields;
        if malformed {
            fields[3] = "n/a".into();
        }
        if drift.added_field {
            fields.push("false".into());
        }
        let _ = out.write_record(&fields);
    }
    world.count(APPSFLYER, |s| {
        s.rows_served += served as u64;
        s.report_runs += 1
    });
    let mut csv = String::from_utf8(out.into_inner().unwrap_or_default()).unwrap_or_default();
    if fault == Fault::Truncate && served > 1 {
        let body = csv.trim_end_matches('\n');
        let last = body.rfind('\n').map_or(0, |i| i + 1);
        csv = body[..last + (body.len() - last) / 2].to_string();
    }
    let mut r = text(StatusCode::OK, &csv);
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    r
}

/// The report's fixed header.
const HEADER: &str = "Date,Agency/PMD (af_prt),Media Source (pid),Campaign (c),Impressions,Clicks,CTR,Installs,Conversion Rate,Sessions,Loyal Users,Loyal Users/Installs,Total Revenue,Total Cost,ROI,ARPU,Average eCPI";

fn text(status: StatusCode, body: &str) -> Response {
    (status, body.to_string()).into_response()
}

/// AppsFlyer's campaigns' summed metrics per day.
pub fn campaign_days(
    world: &World,
    account: usize,
    since: NaiveDate,
    until: NaiveDate,
    now: NaiveDate,
) -> BTreeMap<(NaiveDate, usize, String), Metrics> {
    campaign_days_of(world, APPSFLYER, account, since, until, now)
}

/// A platform's campaigns' summed metrics per day: (day, campaign index in the account,
/// campaign name) → the sum over the campaign's ads (for platforms that report by campaign).
pub fn campaign_days_of(
    world: &World,
    platform: Platform,
    account: usize,
    since: NaiveDate,
    until: NaiveDate,
    now: NaiveDate,
) -> BTreeMap<(NaiveDate, usize, String), Metrics> {
    let truth = world.truth(platform);
    let mut campaigns: Vec<&str> = Vec::new();
    let mut out: BTreeMap<(NaiveDate, usize, String), Metrics> = BTreeMap::new();
    for ad in truth.ads.iter().filter(|ad| ad.account_index == account) {
        if !campaigns.contains(&ad.campaign_id.as_str()) {
            campaigns.push(&ad.campaign_id);
        }
        let c = campaigns.len() - 1;
        let mut day = since;
        while day <= until {
            if let Some(m) = truth.reported(ad, day, now) {
                let sum = out
                    .entry((day, c, ad.campaign_name.clone()))
                    .or_insert(Metrics {
                        impressions: 0,
                        clicks: 0,
                        spend_micros: 0,
                        installs: 0,
                        conversions_centi: 0,
                        revenue_micros: 0,
                    });
                sum.impressions += m.impressions;
                sum.clicks += m.clicks;
                sum.spend_micros += m.spend_micros;
                sum.installs += m.installs;
                sum.conversions_centi += m.conversions_centi;
                sum.revenue_micros += m.revenue_micros;
            }
            day = day + chrono::Days::new(1);
        }
    }
    out
}

fn ratio(a: i64, b: i64, scale: f64) -> String {
    if b == 0 {
        "N/A".into()
    } else {
        format!("{:.2}", a as f64 * scale / b as f64)
    }
}

/// Answer one AppsFlyer request.
pub async fn handle(world: &World, uri: &Uri, headers: &HeaderMap) -> Response {
    let segments: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let ["api", kind @ ("agg-data" | "raw-data"), "export", "app", app, report, version] =
        segments.as_slice()
    else {
        return text(StatusCode::NOT_FOUND, "Not found");
    };
    let query: BTreeMap<String, String> = uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.strip_prefix("Bearer "))
        .or(query.get("api_token").map(String::as_str));
    if bearer != Some(world.config.appsflyer_token.as_str()) {
        return text(
            StatusCode::UNAUTHORIZED,
            "Unauthorized: the API token is not valid",
        );
    }
    let raw = match (*kind, *report) {
        ("agg-data", "partners_by_date_report") => None,
        ("raw-data", "installs_report") => Some(RawReport::Installs),
        ("raw-data", "in_app_events_report") => Some(RawReport::InAppEvents),
        _ => return text(StatusCode::NOT_FOUND, "Not found"),
    };
    if *version != "v5" {
        return text(StatusCode::NOT_FOUND, "Not found");
    }
    let truth = world.truth(APPSFLYER);
    let Some((index, _)) = truth.account(app) else {
        return text(StatusCode::NOT_FOUND, &format!("App {app} not found"));
    };
    let fault = world.next_fault(APPSFLYER, Some(app));
    match fault {
        // Aggregate: 403 "Limit reached for …"; raw data: 400 "Your API calls limit …".
        Fault::QuotaGone if raw.is_some() => {
            return text(
                StatusCode::BAD_REQUEST,
                &format!("Your API calls limit has been reached for report type {report}"),
            )
        }
        Fault::QuotaGone => {
            return text(
                StatusCode::FORBIDDEN,
                &format!("Limit reached for {report}"),
            )
        }
        Fault::Throttle => return text(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests"),
        Fault::RetryAfter => {
            return super::retry_after_one_second(text(
                StatusCode::TOO_MANY_REQUESTS,
                "Too Many Requests",
            ));
        }
        Fault::ServerError(code) => {
            return text(
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                "Internal Server Error",
            )
        }
        Fault::Slow(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
        Fault::Truncate | Fault::None => {}
    }
    let day = |k: &str| {
        query
            .get(k)
            .and_then(|v| NaiveDate::parse_from_str(v, "%Y-%m-%d").ok())
    };
    let (Some(since), Some(until)) = (day("from"), day("to")) else {
        return text(
            StatusCode::BAD_REQUEST,
            "from and to (yyyy-mm-dd) are required",
        );
    };
    if let Some(raw) = raw {
        let maximum = query
            .get("maximum_rows")
            .and_then(|m| m.parse::<usize>().ok())
            .unwrap_or(200_000);
        return raw_response(world, index, app, raw, since, until, maximum, fault);
    }
    let drift = world.drift(APPSFLYER);
    let events: &[&str] = if drift.added_field {
        &["af_purchase", "af_complete_registration"]
    } else {
        &["af_purchase"]
    };
    let mut csv = HEADER.to_string();
    for event in events {
        csv.push_str(&format!(
            ",{event} (Unique users),{event} (Event counter),{event} (Sales in USD)"
        ));
    }
    csv.push('\n');
    let malformed = drift.malformed_account.as_deref() == Some(*app);
    let rows = campaign_days(world, index, since, until, world.now());
    for ((date, c, campaign), m) in &rows {
        let installs = if malformed {
            "n/a".to_string()
        } else {
            m.installs.to_string()
        };
        let purchases = m.conversions_centi / 100;
        let mut row = vec![
            date.to_string(),
            String::new(),
            media_source(*c).to_string(),
            campaign.clone(),
            m.impressions.to_string(),
            m.clicks.to_string(),
            ratio(m.clicks, m.impressions, 100.0),
            installs,
            ratio(m.installs, m.clicks, 100.0),
            (m.clicks * 2).to_string(),
            (m.installs / 3).to_string(),
            ratio(m.installs / 3, m.installs, 1.0),
            format_micros(i128::from(m.revenue_micros)),
            format_micros(i128::from(m.spend_micros)),
            ratio(m.revenue_micros - m.spend_micros, m.spend_micros, 1.0),
            ratio(m.revenue_micros / 1_000_000, m.installs, 1.0),
            ratio(m.spend_micros / 1_000_000, m.installs, 1.0),
        ];
        for event in events {
            let count = if *event == "af_purchase" {
                purchases
            } else {
                m.installs / 2
            };
            let sales = if *event == "af_purchase" {
                format_micros(i128::from(m.revenue_micros))
            } else {
                "0".into()
            };
            row.extend([(count * 9 / 10).to_string(), count.to_string(), sales]);
        }
        let row: Vec<String> = row
            .into_iter()
            .map(|v| {
                if v.contains(',') {
                    format!("\"{v}\"")
                } else {
                    v
                }
            })
            .collect();
        csv.push_str(&row.join(","));
        csv.push('\n');
    }
    world.count(APPSFLYER, |s| {
        s.rows_served += rows.len() as u64;
        s.report_runs += 1
    });
    let csv = if fault == Fault::Truncate && rows.len() > 1 {
        // Cut in the middle of the last row, as a dropped connection would.
        let body = csv.trim_end_matches('\n');
        let last = body.rfind('\n').map_or(0, |i| i + 1);
        body[..last + (body.len() - last) / 2].to_string()
    } else {
        csv
    };
    let mut r = text(StatusCode::OK, &csv);
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    r
}
