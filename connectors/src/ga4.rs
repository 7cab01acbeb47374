//! GA4 Data API: `runReport` by day, session source / medium / campaign, offset-paged.
//!
//! ```text
//! POST /v1beta/properties/{property}:runReport    Authorization: Bearer …
//!   {"dateRanges": [{"startDate", "endDate"}],
//!    "dimensions": [date, sessionSource, sessionMedium, sessionCampaignName],
//!    "metrics": [sessions, totalUsers, keyEvents, purchaseRevenue],
//!    "limit": "10000", "offset": "0", "returnPropertyQuota": true, "keepEmptyRows": false}
//!   → {"dimensionHeaders", "metricHeaders", "rows": [{"dimensionValues", "metricValues"}],
//!      "rowCount", "metadata": {"currencyCode", "timeZone", "subjectToThresholding",
//!      "dataLossFromOtherRow"}, "propertyQuota": {"tokensPerHour": {"consumed", "remaining"}, …}}
//! ```
//!
//! Sources: the request and response shapes, string-typed values, `YYYYMMDD` dates in the
//! property's time zone, `limit`/`offset` paging against `rowCount`, `propertyQuota` and the
//! quota sizes are Google's v1beta reference (RunReportRequest, RunReportResponse,
//! PropertyQuota); "(other)" and "(not set)" are literal dimension values; exhaustion is HTTP
//! 429 RESOURCE_EXHAUSTED (the message text is an assumption). GA4 renamed "conversions" to
//! "key events" in 2024: `keyEvents` is asked for, and a property answering `conversions`
//! loads through the default alias `conversions → key_events`.
//!
//! **Not silently summed.** Each page's `subjectToThresholding` and `dataLossFromOtherRow`
//! land on its rows as `subject_to_thresholding` / `data_loss_from_other_row`, and an
//! `(other)` row stays a row of its own, so a mart can say which numbers GA4 thresholded or
//! folded. **Quota.** The `propertyQuota` of every answer is read: with less than 10% of the
//! hourly tokens left the credential pauses until the next hour instead of running into
//! RESOURCE_EXHAUSTED. Exhausted concurrent requests back off briefly; exhausted hourly
//! tokens wait for the next hour (beyond `max_wait` the unit fails, naming it); exhausted
//! daily tokens fail the unit at once, saying when they reset.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{NaiveDate, Timelike, Utc};
use futures::future::BoxFuture;
use serde_json::{json, Value};

use crate::config::{Platform, ResolvedSource};
use crate::error::{Error, Result};
use crate::normalize::{col, AdRow, Kind, Record, TableSpec};
use crate::oauth::Credential;
use crate::raw::Unit;
use crate::source::{Page, PageSink, Source, SourceBase};
use crate::throttle::{snippet, Fetched, Throttle, Verdict};

/// Dimensions asked for, in order.
pub const DIMENSIONS: &[&str] = &[
    "date",
    "sessionSource",
    "sessionMedium",
    "sessionCampaignName",
];
/// Metrics asked for, in order.
pub const METRICS: &[&str] = &["sessions", "totalUsers", "keyEvents", "purchaseRevenue"];
/// Rows per page (GA4 allows up to 250,000; 10,000 is its default).
pub const PAGE_ROWS: u64 = 10_000;
/// Share of the hourly tokens below which the credential pauses until the next hour.
const LOW_QUOTA: f64 = 0.10;

/// The `ga4_traffic_daily` table.
pub static SPEC: TableSpec = TableSpec {
    table: "ga4_traffic_daily",
    columns: &[
        col("date", Kind::Date),
        col("session_source", Kind::Text),
        col("session_medium", Kind::Text),
        col("session_campaign_name", Kind::Text),
        col("sessions", Kind::Int),
        col("total_users", Kind::Int),
        col("key_events", Kind::Float),
        // In the property's currency (`currency_code`).
        col("purchase_revenue", Kind::Decimal),
        col("currency_code", Kind::Text),
        col("time_zone", Kind::Text),
        col("subject_to_thresholding", Kind::Text),
        col("data_loss_from_other_row", Kind::Text),
    ],
    row_keys: &["date", "session_source"],
    expected: &["sessions", "key_events"],
    absent_is_zero: false,
};

/// A GA4 Data API client for one configured source (accounts are property ids).
pub struct Ga4Source {
    base: SourceBase,
    base_url: String,
    version: String,
    credential: Credential,
    page_rows: u64,
    aliases: BTreeMap<String, String>,
    http: reqwest::Client,
}

impl Ga4Source {
    pub fn new(
        source: &ResolvedSource,
        credential: Credential,
        throttle: Arc<Throttle>,
    ) -> Result<Self> {
        let mut aliases = source.config.aliases.clone();
        aliases
            .entry("conversions".into())
            .or_insert_with(|| "key_events".into());
        Ok(Ga4Source {
            base: SourceBase::new(source, throttle),
            base_url: source.base_url(),
            version: source.api_version(),
            credential,
            page_rows: source.config.page_size.unwrap_or(PAGE_ROWS).max(1),
            aliases,
            http: crate::http_client()?,
        })
    }

    /// One page of the report for `unit` from `offset`.
    async fn page(&self, unit: &Unit, offset: u64) -> Result<(String, Bytes)> {
        let path = format!("/{}/properties/{}:runReport", self.version, unit.account);
        let what = format!("POST {path} {}..{} offset={offset}", unit.since, unit.until);
        let url = format!("{}{path}", self.base_url);
        let body = json!({
            "dateRanges": [{"startDate": unit.since.to_string(), "endDate": unit.until.to_string()}],
            "dimensions": DIMENSIONS.iter().map(|d| json!({"name": d})).collect::<Vec<_>>(),
            "metrics": METRICS.iter().map(|m| json!({"name": m})).collect::<Vec<_>>(),
            "limit": self.page_rows.to_string(),
            "offset": offset.to_string(),
            "keepEmptyRows": false,
            "returnPropertyQuota": true,
            "orderBys": [{"dimension": {"dimensionName": "date"}}],
        });
        let origin = self.credential.origin().to_string();
        let response = self
            .base
            .send_authorized(
                &self.credential,
                &[],
                &what,
                None,
                |token| self.http.post(&url).bearer_auth(token.expose()).json(&body),
                |r| verdict(r, &origin),
            )
            .await?;
        Ok((what, response.body))
    }

    async fn fetch_unit(&self, unit: &Unit, sink: &mut PageSink) -> Result<()> {
        let mut offset = 0;
        loop {
            let (request, body) = self.page(unit, offset).await?;
            let answer: Value = serde_json::from_slice(&body).map_err(|e| Error::Payload {
                platform: Platform::Ga4.name().into(),
                path: request.clone(),
                reason: e.to_string(),
            })?;
            self.heed_quota(&answer["propertyQuota"]);
            let rows = answer["rows"].as_array().map_or(0, Vec::len) as u64;
            let total = answer["rowCount"]
                .as_u64()
                .or_else(|| answer["rowCount"].as_str().and_then(|s| s.parse().ok()))
                .unwrap_or(0);
            sink.land(Page {
                request,
                body,
                fetched_at: Utc::now(),
            })
            .await?;
            offset += rows;
            if rows == 0 || offset >= total {
                return Ok(());
            }
        }
    }

    /// Pause the credential until the next hour when the hourly tokens run low.
    fn heed_quota(&self, quota: &Value) {
        let hourly = &quota["tokensPerHour"];
        let (Some(consumed), Some(remaining)) =
            (hourly["consumed"].as_f64(), hourly["remaining"].as_f64())
        else {
            return;
        };
        if consumed + remaining > 0.0 && remaining / (consumed + remaining) < LOW_QUOTA {
            self.base.throttle.pause(
                until_next_hour(Utc::now()),
                &format!("GA4 property tokens per hour nearly spent ({remaining} left)"),
            );
        }
    }
}

/// From `now` to the top of the next hour (when GA4's hourly token buckets refill).
fn until_next_hour(now: chrono::DateTime<Utc>) -> Duration {
    let seconds = 3600 - (now.minute() * 60 + now.second()) as u64;
    Duration::from_secs(seconds.max(1))
}

/// Google's reading of a Data API response.
fn verdict(response: &Fetched, token_origin: &str) -> Verdict {
    let body: Option<Value> = serde_json::from_slice(&response.body).ok();
    if (200..300).contains(&response.status) {
        return match body {
            Some(Value::Object(_)) => Verdict::Ok,
            _ => Verdict::Transient {
                reason: format!(
                    "HTTP {} body is not complete JSON ({} bytes)",
                    response.status,
                    response.body.len()
                ),
            },
        };
    }
    let error = body.as_ref().map(|b| &b["error"]);
    let status = error
        .and_then(|e| e["status"].as_str())
        .unwrap_or_default()
        .to_string();
    let message = error
        .and_then(|e| e["message"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| snippet(&response.body));
    let described = format!("HTTP {} {status}: {message}", response.status);
    match response.status {
        // Too many requests at once: a short backoff.
        429 if message.contains("concurrent") => Verdict::Throttled {
            wait: crate::throttle::retry_after(&response.headers),
            reason: described,
        },
        // The day's tokens: nothing to wait for within a sync.
        429 if message.contains("per day") => Verdict::Fatal {
            reason: format!("{described}; the property's daily tokens are spent (GA4 resets them at midnight Pacific time); the next sync after that picks these days up"),
        },
        // The hour's tokens: buckets refill on the hour.
        429 => Verdict::Throttled {
            wait: crate::throttle::retry_after(&response.headers)
                .or(Some(until_next_hour(Utc::now()))),
            reason: format!("{described}; the property's hourly tokens are spent (they refill on the hour)"),
        },
        401 => Verdict::Fatal {
            reason: format!("{described}; the access token (from {token_origin}) is invalid or expired: renew it or configure [oauth]"),
        },
        403 => Verdict::Fatal {
            reason: format!("{described}; the OAuth user has no access to this property (or the Analytics Data API is not enabled for the project): grant Viewer on the property"),
        },
        408 | 500..=599 => Verdict::Transient { reason: described },
        _ => Verdict::Fatal { reason: described },
    }
}

/// The rows of a `runReport` answer as records, named by its headers, with the page's
/// metadata flags on every row.
pub fn report_records(
    answer: &Value,
    aliases: &BTreeMap<String, String>,
) -> Result<Vec<Record>, String> {
    let names = |key: &str| -> Vec<String> {
        answer[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(|h| crate::normalize::normalize_key(h["name"].as_str().unwrap_or_default()))
            .map(|n| aliases.get(&n).cloned().unwrap_or(n))
            .collect()
    };
    let (dimensions, metrics) = (names("dimensionHeaders"), names("metricHeaders"));
    if dimensions.is_empty() {
        return Err("no dimensionHeaders in the report".into());
    }
    let metadata = &answer["metadata"];
    let mut shared = Record::new();
    for (key, field) in [
        ("currency_code", "currencyCode"),
        ("time_zone", "timeZone"),
        ("subject_to_thresholding", "subjectToThresholding"),
        ("data_loss_from_other_row", "dataLossFromOtherRow"),
    ] {
        match &metadata[field] {
            Value::Null => {}
            Value::String(s) => {
                shared.insert(key.into(), Value::String(s.clone()));
            }
            other => {
                shared.insert(key.into(), Value::String(other.to_string()));
            }
        }
    }
    let mut records = Vec::new();
    for (i, row) in answer["rows"].as_array().into_iter().flatten().enumerate() {
        let mut record = shared.clone();
        for (names, values) in [
            (&dimensions, &row["dimensionValues"]),
            (&metrics, &row["metricValues"]),
        ] {
            let values = values.as_array().ok_or(format!("row {i} has no values"))?;
            if values.len() != names.len() {
                return Err(format!(
                    "row {i} has {} values for {} headers",
                    values.len(),
                    names.len()
                ));
            }
            for (name, value) in names.iter().zip(values) {
                record.insert(name.clone(), value["value"].clone());
            }
        }
        records.push(record);
    }
    Ok(records)
}

impl Source for Ga4Source {
    fn base(&self) -> &SourceBase {
        &self.base
    }
    fn platform(&self) -> Platform {
        Platform::Ga4
    }
    fn spec(&self) -> &'static TableSpec {
        &SPEC
    }
    fn date_key(&self) -> &'static str {
        "date"
    }

    fn probe<'a>(&'a self, account: &'a str, day: NaiveDate) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let unit = Unit::new(
                self.name(),
                account,
                crate::Window {
                    since: day,
                    until: day,
                },
            );
            self.page(&unit, 0).await.map(drop)
        })
    }

    fn fetch<'a>(&'a self, unit: &'a Unit, sink: &'a mut PageSink) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.fetch_unit(unit, sink))
    }

    fn records(&self, _request: &str, body: &[u8]) -> Result<Vec<Record>, String> {
        let answer: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
        report_records(&answer, &self.aliases)
    }

    fn ad_row(&self, _account: &str, _record: &Record) -> Result<AdRow, String> {
        Err("GA4 rows are sessions by campaign, not ad-level spend rows".into())
    }

    /// None: GA4 does not feed `ad_performance` (see [`Platform::feeds_ad_performance`]).
    fn ad_rows(&self, _account: &str, _records: &[Record]) -> Result<Vec<AdRow>, (usize, String)> {
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_named_by_headers_and_carry_the_page_flags() {
        let answer = json!({
            "dimensionHeaders": [{"name": "date"}, {"name": "sessionCampaignName"}],
            "metricHeaders": [{"name": "sessions", "type": "TYPE_INTEGER"}, {"name": "conversions", "type": "TYPE_FLOAT"}],
            "rows": [
                {"dimensionValues": [{"value": "20261101"}, {"value": "(other)"}], "metricValues": [{"value": "12"}, {"value": "1.5"}]}
            ],
            "rowCount": 1,
            "metadata": {"currencyCode": "KRW", "timeZone": "Asia/Seoul", "subjectToThresholding": true, "dataLossFromOtherRow": true}
        });
        let aliases = BTreeMap::from([("conversions".to_string(), "key_events".to_string())]);
        let records = report_records(&answer, &aliases).unwrap();
        let r = &records[0];
        assert_eq!(r["session_campaign_name"], json!("(other)"));
        assert_eq!(r["key_events"], json!("1.5"));
        assert_eq!(r["subject_to_thresholding"], json!("true"));
        assert_eq!(r["data_loss_from_other_row"], json!("true"));
        assert_eq!(r["currency_code"], json!("KRW"));
        let next = until_next_hour("2026-11-20T10:59:30Z".parse().unwrap());
        assert_eq!(next, Duration::from_secs(30));
    }
}
