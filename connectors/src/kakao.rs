//! Kakao Moment: creative-level daily reports over the Moment Open API (v4).
//!
//! ```text
//! every request: Authorization: Bearer <business token>   adAccountId: <ad account id>
//! GET /openapi/v4/campaigns                       → {"content": [{"id", "name", …}]}
//! GET /openapi/v4/adGroups?campaignId=C           → {"content": [{"id", "name", …}]}
//! GET /openapi/v4/creatives?adGroupId=G           → {"content": [{"id", "name", …}]}
//! GET /openapi/v4/creatives/report?creativeId=a,b,…&start=yyyyMMdd&end=yyyyMMdd
//!     &timeUnit=DAY&metricsGroup=BASIC,PIXEL_SDK_CONVERSION
//!   → {"code": 200, "message": "Success", "data": [{"start", "end",
//!        "dimensions": {"creative_id": "…"}, "metrics": {"imp", "click", "cost", …}}]}
//! ```
//!
//! Sources: the report endpoints, parameters, the 31-day range, today's exclusion, the
//! "one call per 5 seconds per ad account" limit (HTTP 429, code -813) and "a day's report may
//! change until 8:00 the next day" are Kakao's docs (developers.kakao.com/docs/latest/ko/
//! kakaomoment/report, error-code). The `data[]` row shape is from the docs; the `code` and
//! `message` envelope and metric keys such as `pixel_purchase_7d` are observed in public
//! collectors. The entity lists' `content` envelope, `pixel_purchase_price_7d` (the amount)
//! and `sdk_install_7d` are assumptions: remap them with `[sources.NAME.aliases]` if Kakao
//! spells them otherwise. At most 100 creative ids go in one report call (observed limit).
//!
//! Every page of a unit is landed: the entity lists first, then the report. The report rows
//! carry only the creative id; [`Source::unit_records`] reads the unit's lists to give each
//! row its ad group and campaign (ids and names), so a replay from `raw/` does the same.
//!
//! **Pacing.** Report calls of one ad account go through a throttle lane of one call per
//! `report_interval` (5 s, plus 200 ms for clock and network jitter), shared by every worker
//! of the credential (through Redis when workers run apart). A 429 `-813` still waits a full
//! interval before the call is tried again.
//!
//! **Attribution windows are in the metric names** (`pixel_purchase_7d`): conversions and
//! revenue are the 7-day-window fields, which keep counting for 7 days after the day.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{NaiveDate, Utc};
use futures::future::BoxFuture;
use serde_json::Value;

use crate::config::{Platform, ResolvedSource};
use crate::error::{Error, Result};
use crate::normalize::{self, col, AdRow, Kind, Record, TableSpec};
use crate::oauth::Credential;
use crate::raw::Unit;
use crate::source::{Page, PageSink, Source, SourceBase};
use crate::throttle::{snippet, Fetched, Lane, Throttle, Verdict};

/// Kakao's documented pace of report calls per ad account.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(5);
/// Added to the interval so that calls sent exactly one interval apart cannot arrive closer.
const JITTER_MARGIN: Duration = Duration::from_millis(200);
/// Creative ids per report call.
pub const CREATIVES_PER_CALL: usize = 100;
/// The metric groups asked for.
pub const METRICS_GROUPS: &str = "BASIC,PIXEL_SDK_CONVERSION";

/// The `kakao_moment_creative_daily` table.
pub static SPEC: TableSpec = TableSpec {
    table: "kakao_moment_creative_daily",
    columns: &[
        col("start", Kind::Date),
        col("end", Kind::Date),
        col("dimensions_creative_id", Kind::Text),
        col("creative_name", Kind::Text),
        col("ad_group_id", Kind::Text),
        col("ad_group_name", Kind::Text),
        col("campaign_id", Kind::Text),
        col("campaign_name", Kind::Text),
        col("metrics_imp", Kind::Int),
        col("metrics_click", Kind::Int),
        col("metrics_ctr", Kind::Float),
        // KRW, as reported (no micros).
        col("metrics_cost", Kind::Decimal),
        col("metrics_reach", Kind::Int),
        col("metrics_pixel_purchase_7d", Kind::Int),
        col("metrics_pixel_purchase_price_7d", Kind::Decimal),
        col("metrics_sdk_install_7d", Kind::Int),
    ],
    row_keys: &["start", "dimensions_creative_id"],
    expected: &["metrics_imp", "metrics_cost"],
    absent_is_zero: false,
};

/// A Kakao Moment client for one configured source.
pub struct KakaoSource {
    base: SourceBase,
    base_url: String,
    version: String,
    credential: Credential,
    report_interval: Duration,
    aliases: BTreeMap<String, String>,
    http: reqwest::Client,
}

impl KakaoSource {
    pub fn new(
        source: &ResolvedSource,
        credential: Credential,
        throttle: Arc<Throttle>,
    ) -> Result<Self> {
        Ok(KakaoSource {
            base: SourceBase::new(source, throttle),
            base_url: source.base_url(),
            version: source.api_version(),
            credential,
            report_interval: source.config.report_interval.unwrap_or(REPORT_INTERVAL),
            aliases: source.config.aliases.clone(),
            http: crate::http_client()?,
        })
    }

    /// GET `path_and_query` for `account`; report calls are paced on the account's lane.
    async fn get(&self, account: &str, path_and_query: &str, report: bool) -> Result<Bytes> {
        let what = format!("GET /openapi/{}/{path_and_query}", self.version);
        let url = format!(
            "{}/openapi/{}/{path_and_query}",
            self.base_url, self.version
        );
        let origin = self.credential.origin().to_string();
        let lane = Lane {
            name: format!("report/{account}"),
            interval: self.report_interval + JITTER_MARGIN,
        };
        let response = self
            .base
            .send_authorized(
                &self.credential,
                &[],
                &what,
                report.then_some(&lane),
                |token| {
                    self.http
                        .get(&url)
                        .bearer_auth(token.expose())
                        .header("adAccountId", account)
                },
                |r| verdict(r, &origin, lane.interval),
            )
            .await?;
        Ok(response.body)
    }

    /// GET and land a page; returns its body.
    async fn land(
        &self,
        unit: &Unit,
        path_and_query: &str,
        report: bool,
        sink: &mut PageSink,
    ) -> Result<Bytes> {
        let body = self.get(&unit.account, path_and_query, report).await?;
        sink.land(Page {
            request: format!("GET /openapi/{}/{path_and_query}", self.version),
            body: body.clone(),
            fetched_at: Utc::now(),
        })
        .await?;
        Ok(body)
    }

    fn ids(&self, what: &str, body: &Bytes) -> Result<Vec<String>> {
        let list: Value = serde_json::from_slice(body).map_err(|e| Error::Payload {
            platform: Platform::KakaoMoment.name().into(),
            path: what.to_string(),
            reason: e.to_string(),
        })?;
        Ok(entities(&list).into_iter().map(|(id, _)| id).collect())
    }

    async fn fetch_unit(&self, unit: &Unit, sink: &mut PageSink) -> Result<()> {
        let campaigns = self.land(unit, "campaigns", false, sink).await?;
        let mut creatives = Vec::new();
        for campaign in self.ids("campaigns", &campaigns)? {
            let path = format!("adGroups?campaignId={campaign}");
            let groups = self.land(unit, &path, false, sink).await?;
            for group in self.ids(&path, &groups)? {
                let path = format!("creatives?adGroupId={group}");
                let list = self.land(unit, &path, false, sink).await?;
                creatives.extend(self.ids(&path, &list)?);
            }
        }
        for batch in creatives.chunks(CREATIVES_PER_CALL) {
            let path = format!(
                "creatives/report?creativeId={}&start={}&end={}&timeUnit=DAY&metricsGroup={METRICS_GROUPS}",
                batch.join(","),
                unit.since.format("%Y%m%d"),
                unit.until.format("%Y%m%d"),
            );
            self.land(unit, &path, true, sink).await?;
        }
        Ok(())
    }
}

/// (id, name) of each entity in a list answer's `content`.
fn entities(list: &Value) -> Vec<(String, Option<String>)> {
    list["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let id = match &e["id"] {
                Value::Number(n) => n.to_string(),
                Value::String(s) => s.clone(),
                _ => return None,
            };
            Some((id, e["name"].as_str().map(str::to_string)))
        })
        .collect()
}

/// The value of `key=` in a landed request's query.
fn query_value<'a>(request: &'a str, key: &str) -> Option<&'a str> {
    let query = request.split_once('?')?.1;
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
}

/// Kakao's reading of a response.
fn verdict(response: &Fetched, token_origin: &str, interval: Duration) -> Verdict {
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
    let code = body
        .as_ref()
        .and_then(|b| b["code"].as_i64())
        .unwrap_or_default();
    let message = body
        .as_ref()
        .and_then(|b| {
            b["extras"]["detailMsg"]
                .as_str()
                .or(b["msg"].as_str())
                .or(b["message"].as_str())
        })
        .map(str::to_string)
        .unwrap_or_else(|| snippet(&response.body));
    let described = format!("HTTP {} (code {code}): {message}", response.status);
    match (response.status, code) {
        // -813 with 429: a report call within 5 s of the last one for the account; Kakao
        // sends no Retry-After, so a full interval is waited.
        (429, _) => Verdict::Throttled {
            wait: crate::throttle::retry_after(&response.headers).or(Some(interval)),
            reason: described,
        },
        // -10: the app's API quota (Kakao's generic limit error).
        (_, -10) => Verdict::Throttled {
            wait: Some(interval),
            reason: described,
        },
        (401, _) => Verdict::Fatal {
            reason: format!("{described}; the business token (from {token_origin}) is invalid or expired: renew it, or configure [oauth] with the REST API key and a refresh token"),
        },
        (403, _) => Verdict::Fatal {
            reason: format!("{described}; the token's member cannot see this ad account: check accounts (ad account ids) and the Moment API permission of the app"),
        },
        (408 | 500..=599, _) => Verdict::Transient { reason: described },
        _ => Verdict::Fatal { reason: described },
    }
}

impl Source for KakaoSource {
    fn base(&self) -> &SourceBase {
        &self.base
    }
    fn platform(&self) -> Platform {
        Platform::KakaoMoment
    }
    fn spec(&self) -> &'static TableSpec {
        &SPEC
    }
    fn date_key(&self) -> &'static str {
        "start"
    }

    /// `GET /openapi/v4/campaigns` for the account: authenticated, cheap, no report quota.
    fn probe<'a>(&'a self, account: &'a str, _day: NaiveDate) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { self.get(account, "campaigns", false).await.map(drop) })
    }

    fn fetch<'a>(&'a self, unit: &'a Unit, sink: &'a mut PageSink) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.fetch_unit(unit, sink))
    }

    /// The report rows of a page (entity lists have none).
    fn records(&self, request: &str, body: &[u8]) -> Result<Vec<Record>, String> {
        if !request.contains("/report?") {
            return Ok(Vec::new());
        }
        let report: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
        let data = report
            .as_object()
            .and_then(|o| {
                o.iter()
                    .find(|(k, _)| normalize::normalize_key(k) == "data")
                    .map(|(_, v)| v)
            })
            .ok_or("no data array in the report")?;
        let rows = data.as_array().ok_or("data is not an array")?;
        Ok(rows
            .iter()
            .map(|row| normalize::flatten(row, &self.aliases))
            .collect())
    }

    /// Report rows named by the unit's entity lists: creative → ad group (from the
    /// `creatives?adGroupId=` pages) → campaign (from the `adGroups?campaignId=` pages).
    fn unit_records(&self, pages: &[(&str, &[u8])]) -> Vec<Result<Vec<Record>, String>> {
        let mut names: BTreeMap<String, Option<String>> = BTreeMap::new();
        let mut parent: BTreeMap<String, String> = BTreeMap::new();
        for (request, body) in pages {
            let Ok(list) = serde_json::from_slice::<Value>(body) else {
                continue;
            };
            let under = query_value(request, "adGroupId").or(query_value(request, "campaignId"));
            for (id, name) in entities(&list) {
                if let Some(under) = under {
                    parent.insert(id.clone(), under.to_string());
                }
                names.insert(id, name);
            }
        }
        let name = |id: &str| names.get(id).cloned().flatten().map(Value::String);
        pages
            .iter()
            .map(|(request, body)| {
                let mut records = self.records(request, body)?;
                for r in &mut records {
                    let Some(creative) = normalize::text(r, "dimensions_creative_id") else {
                        continue;
                    };
                    let group = parent.get(&creative).cloned();
                    let campaign = group.as_ref().and_then(|g| parent.get(g)).cloned();
                    let mut put = |key: &str, value: Option<Value>| {
                        if let Some(v) = value {
                            r.entry(key.to_string()).or_insert(v);
                        }
                    };
                    put("creative_name", name(&creative));
                    put("ad_group_name", group.as_deref().and_then(name));
                    put("campaign_name", campaign.as_deref().and_then(name));
                    put("ad_group_id", group.map(Value::String));
                    put("campaign_id", campaign.map(Value::String));
                }
                Ok(records)
            })
            .collect()
    }

    fn ad_row(&self, account: &str, r: &Record) -> Result<AdRow, String> {
        Ok(AdRow {
            account_id: account.to_string(),
            date: normalize::date(r, "start")?,
            account_name: None,
            campaign_id: normalize::text(r, "campaign_id"),
            campaign_name: normalize::text(r, "campaign_name"),
            ad_group_id: normalize::text(r, "ad_group_id"),
            ad_group_name: normalize::text(r, "ad_group_name"),
            ad_id: normalize::text(r, "dimensions_creative_id"),
            ad_name: normalize::text(r, "creative_name"),
            // Kakao Moment bills in KRW.
            currency: Some("KRW".into()),
            impressions: Some(normalize::int(r, "metrics_imp")?.unwrap_or(0)),
            clicks: Some(normalize::int(r, "metrics_click")?.unwrap_or(0)),
            spend: Some(normalize::decimal(r, "metrics_cost")?.unwrap_or(0)),
            conversions: Some(normalize::int(r, "metrics_pixel_purchase_7d")?.unwrap_or(0) as f64),
            installs: normalize::int(r, "metrics_sdk_install_7d")?,
            revenue: Some(normalize::decimal(r, "metrics_pixel_purchase_price_7d")?.unwrap_or(0)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::throttle::fetched;

    #[test]
    fn the_pacing_error_waits_a_full_interval() {
        let body = r#"{"code":-813,"msg":"KakaoMomentException","extras":{"detailCode":21006,"detailMsg":"report api call limit exceeded"}}"#;
        let interval = Duration::from_millis(5200);
        assert_eq!(
            verdict(&fetched(429, body), "env K", interval),
            Verdict::Throttled {
                wait: Some(interval),
                reason: "HTTP 429 (code -813): report api call limit exceeded".into()
            }
        );
        assert!(matches!(
            verdict(&fetched(401, r#"{"code":-401,"msg":"this access token does not exist"}"#), "env K", interval),
            Verdict::Fatal { reason } if reason.contains("env K")
        ));
        assert!(matches!(
            verdict(&fetched(200, r#"{"data":["#), "", interval),
            Verdict::Transient { .. }
        ));
        assert_eq!(
            query_value("GET /openapi/v4/creatives?adGroupId=77", "adGroupId"),
            Some("77")
        );
    }
}
