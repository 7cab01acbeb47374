//! Google Ads: `googleAds:searchStream` over REST with GAQL, ad-level daily rows.
//!
//! ```text
//! POST /{v}/customers/{customer_id}/googleAds:searchStream
//!      Authorization: Bearer …   developer-token: …   login-customer-id: … (manager)
//!      {"query": "SELECT segments.date, … FROM ad_group_ad WHERE segments.date BETWEEN …"}
//!   → [{"results": [...], "fieldMask": "…", "requestId": "…"}, …]
//! ```
//! Proto3 JSON: keys are lowerCamelCase, int64 values are strings, doubles are numbers, and
//! fields at their default (0) are left out. Money comes as `costMicros`. Quota errors are
//! HTTP 429 `RESOURCE_EXHAUSTED` with the wait in the body (`quotaErrorDetails.retryDelay`),
//! wrapped in an array for searchStream.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{NaiveDate, Utc};
use futures::future::BoxFuture;
use serde_json::Value;

use crate::config::{Platform, ResolvedSource};
use crate::error::Result;
use crate::normalize::{self, col, AdRow, Kind, Record, TableSpec};
use crate::oauth::Credential;
use crate::raw::Unit;
use crate::secret::Secret;
use crate::source::{Page, PageSink, Source, SourceBase};
use crate::throttle::{snippet, Fetched, Throttle, Verdict};
use crate::window::Window;

/// The GAQL fields selected, in order.
pub const FIELDS: &[&str] = &[
    "segments.date",
    "customer.id",
    "customer.descriptive_name",
    "customer.currency_code",
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

/// The `google_ads_ad_daily` table.
pub static SPEC: TableSpec = TableSpec {
    table: "google_ads_ad_daily",
    columns: &[
        col("segments_date", Kind::Date),
        col("customer_id", Kind::Text),
        col("customer_descriptive_name", Kind::Text),
        col("customer_currency_code", Kind::Text),
        col("campaign_id", Kind::Text),
        col("campaign_name", Kind::Text),
        col("ad_group_id", Kind::Text),
        col("ad_group_name", Kind::Text),
        col("ad_group_ad_ad_id", Kind::Text),
        col("ad_group_ad_ad_name", Kind::Text),
        col("metrics_impressions", Kind::Int),
        col("metrics_clicks", Kind::Int),
        col("metrics_cost_micros", Kind::Int),
        col("metrics_conversions", Kind::Float),
        col("metrics_conversions_value", Kind::Float),
    ],
    row_keys: &["segments_date", "ad_group_ad_ad_id"],
    expected: &["metrics_impressions", "metrics_cost_micros"],
    absent_is_zero: true,
};

/// The GAQL query for a unit.
pub fn query(unit: &Unit) -> String {
    format!(
        "SELECT {} FROM ad_group_ad WHERE segments.date BETWEEN '{}' AND '{}'",
        FIELDS.join(", "),
        unit.since,
        unit.until
    )
}

/// A Google Ads client for one configured source.
pub struct GoogleAdsSource {
    base: SourceBase,
    base_url: String,
    version: String,
    credential: Credential,
    developer_token: Secret,
    login_customer_id: Option<String>,
    aliases: BTreeMap<String, String>,
    http: reqwest::Client,
}

impl GoogleAdsSource {
    pub fn new(
        source: &ResolvedSource,
        credential: Credential,
        developer_token: Secret,
        throttle: Arc<Throttle>,
    ) -> Result<Self> {
        Ok(GoogleAdsSource {
            base: SourceBase::new(source, throttle),
            base_url: source.base_url(),
            version: source.api_version(),
            credential,
            developer_token,
            login_customer_id: source
                .config
                .login_customer_id
                .as_deref()
                .map(|id| crate::config::normalize_account_id(Platform::GoogleAds, id)),
            aliases: source.config.aliases.clone(),
            http: crate::http_client()?,
        })
    }

    /// One searchStream call for the unit: the request's description and the answer.
    async fn search(&self, unit: &Unit) -> Result<(String, Bytes)> {
        let path = format!(
            "/{}/customers/{}/googleAds:searchStream",
            self.version, unit.account
        );
        let url = format!("{}{path}", self.base_url);
        let gaql = query(unit);
        let what = format!("POST {path} query={gaql:?}");
        let body = serde_json::json!({ "query": gaql });
        let origin = self.credential.origin().to_string();
        let response = self
            .base
            .send_authorized(
                &self.credential,
                &[&self.developer_token],
                &what,
                None,
                |token| {
                    let mut request = self
                        .http
                        .post(&url)
                        .bearer_auth(token.expose())
                        .header("developer-token", self.developer_token.expose())
                        .json(&body);
                    if let Some(manager) = &self.login_customer_id {
                        request = request.header("login-customer-id", manager);
                    }
                    request
                },
                |r| verdict(r, &origin),
            )
            .await?;
        Ok((what, response.body))
    }

    async fn fetch_unit(&self, unit: &Unit, sink: &mut PageSink) -> Result<()> {
        let (request, body) = self.search(unit).await?;
        sink.land(Page {
            request,
            body,
            fetched_at: Utc::now(),
        })
        .await
    }
}

/// Google's reading of a response.
fn verdict(response: &Fetched, token_origin: &str) -> Verdict {
    let body: Option<Value> = serde_json::from_slice(&response.body).ok();
    if (200..300).contains(&response.status) {
        return match body {
            Some(Value::Array(_)) => Verdict::Ok,
            _ => Verdict::Transient {
                reason: format!(
                    "HTTP {} body is not a complete JSON array ({} bytes)",
                    response.status,
                    response.body.len()
                ),
            },
        };
    }
    // searchStream wraps the error object in an array.
    let error = match &body {
        Some(Value::Array(items)) => items.first().map(|i| &i["error"]),
        Some(v) => Some(&v["error"]),
        None => None,
    };
    let status = error.and_then(|e| e["status"].as_str()).unwrap_or_default();
    let failures: Vec<Value> = error
        .and_then(|e| e["details"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|d| d["errors"].as_array())
        .flatten()
        .cloned()
        .collect();
    let message = failures
        .first()
        .and_then(|f| f["message"].as_str())
        .or_else(|| error.and_then(|e| e["message"].as_str()))
        .map(str::to_string)
        .unwrap_or_else(|| snippet(&response.body));
    let error_code = failures
        .first()
        .map(|f| f["errorCode"].to_string())
        .unwrap_or_default();
    let described = format!("HTTP {} {status} {error_code}: {message}", response.status);
    let retry_delay = failures
        .iter()
        .find_map(|f| f["details"]["quotaErrorDetails"]["retryDelay"].as_str())
        .and_then(parse_proto_duration);
    let quota = status == "RESOURCE_EXHAUSTED" || error_code.contains("quotaError");
    if response.status == 429 || quota {
        return Verdict::Throttled {
            wait: retry_delay.or_else(|| crate::throttle::retry_after(&response.headers)),
            reason: described,
        };
    }
    match response.status {
        401 if error_code.contains("DEVELOPER_TOKEN") => Verdict::Fatal {
            reason: format!("{described}; the developer token is refused: check developer_token (the API Center token of the manager account; a test-account token cannot read production accounts)"),
        },
        401 => Verdict::Fatal {
            reason: format!("{described}; the access token (from {token_origin}) is invalid or expired: renew it"),
        },
        403 if error_code.contains("USER_PERMISSION_DENIED") => Verdict::Fatal {
            reason: format!("{described}; the OAuth user cannot reach this account through login_customer_id: set login_customer_id to the manager (MCC) account that links it, or grant the user access"),
        },
        408 | 500..=599 => Verdict::Transient { reason: described },
        // Google's front end answers 404 for the paths of a retired API version.
        404 => Verdict::Fatal {
            reason: format!("{described}; Google Ads answers 404 for an API version it no longer serves: check the source's api_version (`tidemark doctor` lists the live ones)"),
        },
        _ => Verdict::Fatal { reason: described },
    }
}

/// A protobuf JSON duration ("60s", "0.250s").
pub fn parse_proto_duration(text: &str) -> Option<Duration> {
    let seconds: f64 = text.trim().strip_suffix('s')?.parse().ok()?;
    (seconds >= 0.0 && seconds.is_finite()).then(|| Duration::from_secs_f64(seconds))
}

impl Source for GoogleAdsSource {
    fn base(&self) -> &SourceBase {
        &self.base
    }
    fn platform(&self) -> Platform {
        Platform::GoogleAds
    }
    fn spec(&self) -> &'static TableSpec {
        &SPEC
    }
    fn date_key(&self) -> &'static str {
        "segments_date"
    }

    fn probe<'a>(&'a self, account: &'a str, day: NaiveDate) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let unit = Unit::new(
                self.name(),
                account,
                Window {
                    since: day,
                    until: day,
                },
            );
            self.search(&unit).await.map(drop)
        })
    }

    fn fetch<'a>(&'a self, unit: &'a Unit, sink: &'a mut PageSink) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.fetch_unit(unit, sink))
    }

    fn records(&self, _request: &str, body: &[u8]) -> Result<Vec<Record>, String> {
        let batches: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
        let batches = batches
            .as_array()
            .ok_or("not a JSON array of stream batches")?;
        let mut records = Vec::new();
        for batch in batches {
            let Some(results) = batch
                .as_object()
                .and_then(|o| {
                    o.iter()
                        .find(|(k, _)| normalize::normalize_key(k) == "results")
                })
                .map(|(_, v)| v)
            else {
                continue; // a summary or consumption-only batch
            };
            let results = results.as_array().ok_or("results is not an array")?;
            records.extend(results.iter().map(|r| normalize::flatten(r, &self.aliases)));
        }
        Ok(records)
    }

    fn ad_row(&self, account: &str, r: &Record) -> Result<AdRow, String> {
        let zero = |v: Option<i64>| Some(v.unwrap_or(0));
        let cost = normalize::int(r, "metrics_cost_micros")?.unwrap_or(0);
        let conversions = normalize::float(r, "metrics_conversions")?.unwrap_or(0.0);
        let value = normalize::decimal(r, "metrics_conversions_value")?.unwrap_or(0);
        Ok(AdRow {
            account_id: account.to_string(),
            date: normalize::date(r, "segments_date")?,
            account_name: normalize::text(r, "customer_descriptive_name"),
            campaign_id: normalize::text(r, "campaign_id"),
            campaign_name: normalize::text(r, "campaign_name"),
            ad_group_id: normalize::text(r, "ad_group_id"),
            ad_group_name: normalize::text(r, "ad_group_name"),
            ad_id: normalize::text(r, "ad_group_ad_ad_id"),
            ad_name: normalize::text(r, "ad_group_ad_ad_name"),
            currency: normalize::text(r, "customer_currency_code"),
            impressions: zero(normalize::int(r, "metrics_impressions")?),
            clicks: zero(normalize::int(r, "metrics_clicks")?),
            spend: Some(i128::from(cost)),
            conversions: Some(conversions),
            // Google Ads reports app installs as conversions of an install action, not as
            // their own metric; a per-action query would be needed to split them out.
            installs: None,
            revenue: Some(value),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::throttle::fetched;

    #[test]
    fn quota_errors_carry_their_delay_in_the_body() {
        let body = r#"[{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED",
          "details":[{"@type":"type.googleapis.com/google.ads.googleads.v26.errors.GoogleAdsFailure",
            "errors":[{"errorCode":{"quotaError":"RESOURCE_TEMPORARILY_EXHAUSTED"},"message":"Too many requests. Retry in 2 seconds.",
              "details":{"quotaErrorDetails":{"rateScope":"DEVELOPER","rateName":"Requests per developer per minute","retryDelay":"2s"}}}],
            "requestId":"r"}]}}]"#;
        match verdict(&fetched(429, body), "env X") {
            Verdict::Throttled { wait, reason } => {
                assert_eq!(wait, Some(Duration::from_secs(2)));
                assert!(
                    reason.contains("RESOURCE_TEMPORARILY_EXHAUSTED"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
        let unauthenticated = r#"{"error":{"code":401,"message":"Request is missing required authentication credential.","status":"UNAUTHENTICATED"}}"#;
        assert!(
            matches!(verdict(&fetched(401, unauthenticated), "env X"), Verdict::Fatal { reason } if reason.contains("env X"))
        );
        assert!(matches!(
            verdict(&fetched(503, "{}"), ""),
            Verdict::Transient { .. }
        ));
        assert!(matches!(
            verdict(&fetched(200, "[{\"results\":["), ""),
            Verdict::Transient { .. }
        ));
        assert_eq!(
            parse_proto_duration("0.250s"),
            Some(Duration::from_millis(250))
        );
        assert_eq!(parse_proto_duration("soon"), None);
    }
}
