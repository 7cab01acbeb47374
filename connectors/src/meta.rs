//! Meta Marketing API insights: ad-level daily rows through async report runs.
//!
//! ```text
//! POST /{v}/act_{id}/insights  level=ad, time_increment=1, time_range, fields, limit
//!                               → {"report_run_id": "…"}
//! GET  /{v}/{report_run_id}     → async_status "Job Not Started" … "Job Completed" | "Job Failed"
//! GET  /{v}/{report_run_id}/insights?limit=…&after=…   cursor pages of {"data", "paging"}
//! ```
//! Every number arrives as a string; `actions`/`action_values` are arrays of
//! `{action_type, value}` folded into installs, conversions and revenue (first configured
//! type present wins, since Meta's types overlap). Rate limiting comes as HTTP 400 with error
//! codes 4, 17, 32, 613, 80000–80014 and JSON usage headers, not as 429.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{NaiveDate, Utc};
use futures::future::BoxFuture;
use serde_json::Value;

use crate::config::{ActionTypes, Platform, ResolvedSource};
use crate::error::{Error, Result};
use crate::normalize::{self, col, AdRow, Kind, Record, TableSpec};
use crate::raw::Unit;
use crate::secret::Secret;
use crate::source::{Page, PageSink, Source, SourceBase};
use crate::throttle::{snippet, Fetched, Throttle, Verdict};

/// Fields requested from the insights edge.
pub const FIELDS: &[&str] = &[
    "account_id",
    "account_name",
    "account_currency",
    "campaign_id",
    "campaign_name",
    "adset_id",
    "adset_name",
    "ad_id",
    "ad_name",
    "impressions",
    "clicks",
    "spend",
    "actions",
    "action_values",
];

/// The `meta_insights` table.
pub static SPEC: TableSpec = TableSpec {
    table: "meta_insights",
    columns: &[
        col("account_id", Kind::Text),
        col("account_name", Kind::Text),
        col("account_currency", Kind::Text),
        col("campaign_id", Kind::Text),
        col("campaign_name", Kind::Text),
        col("adset_id", Kind::Text),
        col("adset_name", Kind::Text),
        col("ad_id", Kind::Text),
        col("ad_name", Kind::Text),
        col("date_start", Kind::Date),
        col("date_stop", Kind::Date),
        col("impressions", Kind::Int),
        col("clicks", Kind::Int),
        col("spend", Kind::Decimal),
        col("actions", Kind::Json),
        col("action_values", Kind::Json),
    ],
    row_keys: &["date_start", "ad_id"],
    expected: &["impressions", "spend"],
    absent_is_zero: false,
};

/// Renames Meta has made that every install should understand (older API names).
const BUILTIN_ALIASES: &[(&str, &str)] =
    &[("adgroup_id", "adset_id"), ("adgroup_name", "adset_name")];

/// Rows per page asked of the insights edge.
const PAGE_LIMIT: u32 = 500;
/// Times a report run that ends "Job Failed" or "Job Skipped" is submitted again.
const JOB_RESUBMITS: u32 = 3;
/// Polls of one report run before it is abandoned.
const MAX_POLLS: u32 = 720;

/// Usage (percent of any quota in the usage headers) at which requests pause.
const NEAR_LIMIT_PERCENT: f64 = 95.0;
/// How long they pause when Meta gives no time.
const NEAR_LIMIT_PAUSE: Duration = Duration::from_secs(5);

/// Error codes Meta uses for rate limiting (HTTP 400): app, user, page, ad account and
/// business-use-case limits. Code 2 is a temporary service error.
fn is_rate_limit_code(code: i64) -> bool {
    matches!(code, 4 | 17 | 32 | 613 | 80000..=80014)
}

/// The `time_range` parameter: `{"since":"YYYY-MM-DD","until":"YYYY-MM-DD"}`.
fn time_range(since: NaiveDate, until: NaiveDate) -> String {
    serde_json::json!({"since": since.to_string(), "until": until.to_string()}).to_string()
}

/// A Meta insights client for one configured source.
pub struct MetaSource {
    base: SourceBase,
    base_url: String,
    version: String,
    token: Secret,
    token_origin: String,
    poll_interval: Duration,
    aliases: BTreeMap<String, String>,
    actions: ActionTypes,
    http: reqwest::Client,
}

impl MetaSource {
    pub fn new(source: &ResolvedSource, token: Secret, throttle: Arc<Throttle>) -> Result<Self> {
        let mut aliases: BTreeMap<String, String> = BUILTIN_ALIASES
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        aliases.extend(source.config.aliases.clone());
        Ok(MetaSource {
            base: SourceBase::new(source, throttle),
            base_url: source.base_url(),
            version: source.api_version(),
            token,
            token_origin: source
                .config
                .access_token
                .as_ref()
                .map_or_else(String::new, |t| t.describe()),
            poll_interval: source.poll_interval(),
            aliases,
            actions: source.config.actions.clone(),
            http: crate::http_client()?,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{}/{path}", self.base_url, self.version)
    }

    /// Send with throttling and Meta's reading of the answer.
    async fn call(
        &self,
        what: &str,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Fetched> {
        let throttle = Arc::clone(&self.base.throttle);
        self.base
            .throttle
            .send(what, build, |r| verdict(r, &throttle, &self.token_origin))
            .await
            .map_err(|gave_up| Error::Request {
                source_name: self.base.name.clone(),
                request: what.to_string(),
                attempts: gave_up.attempts,
                reason: crate::scrub(&gave_up.reason, &self.token),
                last_body: gave_up.last_body,
            })
    }

    fn json(&self, what: &str, body: &Bytes) -> Result<Value> {
        serde_json::from_slice(body).map_err(|e| Error::Payload {
            platform: "meta".into(),
            path: what.to_string(),
            reason: e.to_string(),
        })
    }

    /// Start a report run for the unit and wait until it completes; returns its id.
    async fn run_report(&self, unit: &Unit) -> Result<String> {
        let path = format!("act_{}/insights", unit.account);
        let time_range = time_range(unit.since, unit.until);
        let params: Vec<(&str, String)> = vec![
            ("level", "ad".into()),
            ("time_increment", "1".into()),
            ("time_range", time_range),
            ("fields", FIELDS.join(",")),
            (
                "action_attribution_windows",
                r#"["7d_click","1d_view"]"#.into(),
            ),
            ("limit", PAGE_LIMIT.to_string()),
        ];
        let mut failures = Vec::new();
        for _ in 0..=JOB_RESUBMITS {
            let what = format!("POST /{}/{path}", self.version);
            let url = self.url(&path);
            let response = self
                .call(&what, || {
                    self.http
                        .post(&url)
                        .bearer_auth(self.token.expose())
                        .form(&params)
                })
                .await?;
            let body = self.json(&what, &response.body)?;
            let run_id = match &body["report_run_id"] {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => {
                    return Err(Error::Payload {
                        platform: "meta".into(),
                        path: what,
                        reason: format!("no report_run_id in {}", snippet(&response.body)),
                    })
                }
            };
            match self.wait_for(&run_id).await? {
                None => return Ok(run_id),
                Some(failure) => {
                    tracing::warn!(source = %self.base.name, unit = %unit, run_id, failure, "report run failed; submitting again");
                    failures.push(failure);
                }
            }
        }
        Err(Error::Request {
            source_name: self.base.name.clone(),
            request: format!("report run for {unit}"),
            attempts: JOB_RESUBMITS + 1,
            reason: failures.join("; "),
            last_body: None,
        })
    }

    /// Poll a report run: `None` when completed, `Some(reason)` when it failed.
    async fn wait_for(&self, run_id: &str) -> Result<Option<String>> {
        let what = format!("GET /{}/{run_id}", self.version);
        let url = self.url(run_id);
        for _ in 0..MAX_POLLS {
            let response = self
                .call(&what, || {
                    self.http.get(&url).bearer_auth(self.token.expose())
                })
                .await?;
            let status = self.json(&what, &response.body)?;
            let state = status["async_status"].as_str().unwrap_or_default();
            let percent = status["async_percent_completion"].as_i64().unwrap_or(0);
            match state {
                "Job Completed" if percent >= 100 => return Ok(None),
                "Job Failed" | "Job Skipped" => {
                    return Ok(Some(format!(
                        "{state} (error_code {}: {})",
                        status["error_code"],
                        status["error_message"].as_str().unwrap_or("no message")
                    )))
                }
                _ => tokio::time::sleep(self.poll_interval).await,
            }
        }
        Ok(Some(format!("still running after {MAX_POLLS} polls")))
    }

    async fn fetch_unit(&self, unit: &Unit, sink: &mut PageSink) -> Result<()> {
        let run_id = self.run_report(unit).await?;
        let url = self.url(&format!("{run_id}/insights"));
        let mut after: Option<String> = None;
        loop {
            let mut query = vec![("limit", PAGE_LIMIT.to_string())];
            if let Some(cursor) = &after {
                query.push(("after", cursor.clone()));
            }
            let what = format!(
                "GET /{}/{run_id}/insights?{}",
                self.version,
                query
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("&")
            );
            let response = self
                .call(&what, || {
                    self.http
                        .get(&url)
                        .bearer_auth(self.token.expose())
                        .query(&query)
                })
                .await?;
            let fetched_at = Utc::now();
            let page = self.json(&what, &response.body)?;
            let next = page["paging"]["next"].is_string();
            let cursor = page["paging"]["cursors"]["after"]
                .as_str()
                .map(str::to_string);
            sink.land(Page {
                request: what,
                body: response.body,
                fetched_at,
            })
            .await?;
            match (next, cursor) {
                (true, Some(cursor)) => after = Some(cursor),
                _ => return Ok(()),
            }
        }
    }
}

/// Meta's reading of a response.
fn verdict(response: &Fetched, throttle: &Throttle, token_origin: &str) -> Verdict {
    // Slow down before Meta starts refusing: a successful answer whose usage headers are
    // nearly at 100% pauses this credential's requests briefly.
    if (200..300).contains(&response.status)
        && max_usage_percent(&response.headers).is_some_and(|usage| usage >= NEAR_LIMIT_PERCENT)
    {
        throttle.pause(
            regain_wait(&response.headers).unwrap_or(NEAR_LIMIT_PAUSE),
            "Meta usage headers near 100%",
        );
    }
    let body: Option<Value> = serde_json::from_slice(&response.body).ok();
    if (200..300).contains(&response.status) {
        return match body {
            Some(_) => Verdict::Ok,
            None => Verdict::Transient {
                reason: format!(
                    "HTTP {} body is not complete JSON ({} bytes)",
                    response.status,
                    response.body.len()
                ),
            },
        };
    }
    let error = body.as_ref().map(|b| &b["error"]);
    let code = error.and_then(|e| e["code"].as_i64()).unwrap_or(0);
    let subcode = error.and_then(|e| e["error_subcode"].as_i64()).unwrap_or(0);
    let message = error
        .and_then(|e| e["message"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| snippet(&response.body));
    let described = format!(
        "HTTP {} Meta error {code}/{subcode}: {message}",
        response.status
    );
    if is_rate_limit_code(code) {
        return Verdict::Throttled {
            wait: regain_wait(&response.headers)
                .or_else(|| crate::throttle::retry_after(&response.headers)),
            reason: described,
        };
    }
    match (response.status, code) {
        (_, 190) | (401, _) => Verdict::Fatal {
            reason: format!("{described}; the access token (from {token_origin}) is invalid or expired: renew it"),
        },
        (_, 100) if subcode == 1487534 => Verdict::Fatal {
            reason: format!("{described}; ask for less data per request: lower chunk_days"),
        },
        (_, 1 | 2) | (500..=599, _) => Verdict::Transient { reason: described },
        _ => Verdict::Fatal { reason: described },
    }
}

/// The highest utilisation (percent) any of Meta's usage headers reports.
fn max_usage_percent(headers: &reqwest::header::HeaderMap) -> Option<f64> {
    let mut max: Option<f64> = None;
    let mut see = |v: Option<f64>| {
        if let Some(v) = v {
            max = Some(max.map_or(v, |m: f64| m.max(v)));
        }
    };
    let json = |name: &str| -> Option<Value> {
        serde_json::from_str(headers.get(name)?.to_str().ok()?).ok()
    };
    if let Some(app) = json("x-app-usage") {
        for key in ["call_count", "total_time", "total_cputime"] {
            see(app[key].as_f64());
        }
    }
    if let Some(account) = json("x-ad-account-usage") {
        see(account["acc_id_util_pct"].as_f64());
    }
    if let Some(Value::Object(buc)) = json("x-business-use-case-usage") {
        for entries in buc.values() {
            for entry in entries.as_array().into_iter().flatten() {
                for key in ["call_count", "total_time", "total_cputime"] {
                    see(entry[key].as_f64());
                }
            }
        }
    }
    max
}

/// How long Meta says to wait: `estimated_time_to_regain_access` (minutes) in
/// `X-Business-Use-Case-Usage`, else `reset_time_duration` (seconds) in `X-Ad-Account-Usage`
/// when the account is at its limit.
pub fn regain_wait(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let json = |name: &str| -> Option<Value> {
        serde_json::from_str(headers.get(name)?.to_str().ok()?).ok()
    };
    let minutes = json("x-business-use-case-usage").and_then(|buc| {
        buc.as_object()?
            .values()
            .flat_map(|v| v.as_array().cloned().unwrap_or_default())
            .filter_map(|e| e["estimated_time_to_regain_access"].as_f64())
            .reduce(f64::max)
    });
    if let Some(m) = minutes.filter(|m| *m > 0.0) {
        return Some(Duration::from_secs_f64(m * 60.0));
    }
    let account = json("x-ad-account-usage")?;
    let pct = account["acc_id_util_pct"].as_f64()?;
    let reset = account["reset_time_duration"].as_f64()?;
    (pct >= 100.0 && reset > 0.0).then(|| Duration::from_secs_f64(reset))
}

/// The value of the first configured action type present in an `actions` array.
fn action_value(record: &Record, key: &str, types: &[String]) -> Option<String> {
    let entries = record.get(key)?.as_array()?;
    let by_type: BTreeMap<String, String> = entries
        .iter()
        .filter_map(|entry| {
            let entry = normalize::flatten(entry, &BTreeMap::new());
            Some((
                normalize::text(&entry, "action_type")?,
                normalize::text(&entry, "value")?,
            ))
        })
        .collect();
    types.iter().find_map(|t| by_type.get(t).cloned())
}

impl Source for MetaSource {
    fn base(&self) -> &SourceBase {
        &self.base
    }
    fn platform(&self) -> Platform {
        Platform::Meta
    }
    fn spec(&self) -> &'static TableSpec {
        &SPEC
    }
    fn date_key(&self) -> &'static str {
        "date_start"
    }

    /// The synchronous insights edge for one day, one row: one small request.
    fn probe<'a>(&'a self, account: &'a str, day: NaiveDate) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let path = format!("act_{account}/insights");
            let what = format!("GET /{}/{path}", self.version);
            let url = self.url(&path);
            let time_range = time_range(day, day);
            let params = [
                ("level", "ad".to_string()),
                ("fields", "impressions".to_string()),
                ("time_range", time_range),
                ("limit", "1".to_string()),
            ];
            let response = self
                .call(&what, || {
                    self.http
                        .get(&url)
                        .bearer_auth(self.token.expose())
                        .query(&params)
                })
                .await?;
            self.json(&what, &response.body).map(drop)
        })
    }

    fn fetch<'a>(&'a self, unit: &'a Unit, sink: &'a mut PageSink) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.fetch_unit(unit, sink))
    }

    fn records(&self, _request: &str, body: &[u8]) -> Result<Vec<Record>, String> {
        let page: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
        let data = page
            .as_object()
            .and_then(|o| {
                o.iter()
                    .find(|(k, _)| normalize::normalize_key(k) == "data")
            })
            .and_then(|(_, v)| v.as_array())
            .ok_or("no data array in the page")?;
        Ok(data
            .iter()
            .map(|row| normalize::flatten(row, &self.aliases))
            .collect())
    }

    fn ad_row(&self, account: &str, r: &Record) -> Result<AdRow, String> {
        let number = |key: &str, types: &[String]| -> Result<Option<f64>, String> {
            action_value(r, key, types)
                .map(|t| {
                    t.parse::<f64>()
                        .map_err(|_| format!("{key} value {t:?} is not a number"))
                })
                .transpose()
        };
        // Meta leaves out actions that did not happen: absent means zero.
        let installs =
            Some(number("actions", &self.actions.installs)?.map_or(0, |f| f.round() as i64));
        let conversions = Some(number("actions", &self.actions.conversions)?.unwrap_or(0.0));
        let revenue = match action_value(r, "action_values", &self.actions.revenue) {
            None => Some(0),
            Some(t) => Some(
                normalize::parse_scaled(&t, engine::model::MONEY_SCALE as u32)
                    .ok_or_else(|| format!("action_values value {t:?} is not a decimal"))?,
            ),
        };
        Ok(AdRow {
            account_id: account.to_string(),
            date: normalize::date(r, "date_start")?,
            account_name: normalize::text(r, "account_name"),
            campaign_id: normalize::text(r, "campaign_id"),
            campaign_name: normalize::text(r, "campaign_name"),
            ad_group_id: normalize::text(r, "adset_id"),
            ad_group_name: normalize::text(r, "adset_name"),
            ad_id: normalize::text(r, "ad_id"),
            ad_name: normalize::text(r, "ad_name"),
            currency: normalize::text(r, "account_currency"),
            impressions: normalize::int(r, "impressions")?,
            clicks: normalize::int(r, "clicks")?,
            spend: normalize::decimal(r, "spend")?,
            conversions,
            installs,
            revenue,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    fn fetched(status: u16, headers: &[(&'static str, &str)], body: &str) -> Fetched {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        Fetched {
            status,
            headers: map,
            body: Bytes::from(body.to_string()),
        }
    }

    #[test]
    fn rate_limits_arrive_as_http_400_with_codes_and_usage_headers() {
        let throttle = Throttle::new("t", Default::default());
        let r = fetched(
            400,
            &[(
                "x-business-use-case-usage",
                r#"{"123":[{"type":"ads_insights","call_count":100,"total_cputime":20,"total_time":20,"estimated_time_to_regain_access":2}]}"#,
            )],
            r#"{"error":{"message":"(#80000) There have been too many calls from this ad-account.","type":"OAuthException","code":80000,"error_subcode":2446079,"fbtrace_id":"x"}}"#,
        );
        assert_eq!(
            verdict(&r, &throttle, "env X"),
            Verdict::Throttled {
                wait: Some(Duration::from_secs(120)),
                reason: "HTTP 400 Meta error 80000/2446079: (#80000) There have been too many calls from this ad-account.".into()
            }
        );
        for code in [4, 17, 613, 80004] {
            let body = format!(r#"{{"error":{{"message":"m","code":{code}}}}}"#);
            assert!(matches!(
                verdict(&fetched(400, &[], &body), &throttle, "env X"),
                Verdict::Throttled { wait: None, .. }
            ));
        }
        let expired = fetched(
            400,
            &[],
            r#"{"error":{"message":"Error validating access token","code":190}}"#,
        );
        assert!(
            matches!(verdict(&expired, &throttle, "env X"), Verdict::Fatal { reason } if reason.contains("env X"))
        );
        assert!(matches!(
            verdict(&fetched(200, &[], r#"{"data":[{"a""#), &throttle, ""),
            Verdict::Transient { .. }
        ));
    }

    #[tokio::test]
    async fn usage_near_the_limit_pauses_before_meta_refuses() {
        let throttle = Throttle::new("t", Default::default());
        let calm = fetched(
            200,
            &[(
                "x-app-usage",
                r#"{"call_count":40,"total_time":10,"total_cputime":10}"#,
            )],
            "{}",
        );
        assert_eq!(verdict(&calm, &throttle, ""), Verdict::Ok);
        assert!(!throttle.is_paused());
        let hot = fetched(
            200,
            &[(
                "x-app-usage",
                r#"{"call_count":96,"total_time":10,"total_cputime":10}"#,
            )],
            "{}",
        );
        assert_eq!(verdict(&hot, &throttle, ""), Verdict::Ok);
        assert!(throttle.is_paused());
    }

    #[test]
    fn account_usage_at_the_limit_gives_its_reset_time() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-ad-account-usage",
            HeaderValue::from_static(r#"{"acc_id_util_pct":100,"reset_time_duration":45}"#),
        );
        assert_eq!(regain_wait(&h), Some(Duration::from_secs(45)));
        assert_eq!(max_usage_percent(&h), Some(100.0));
    }

    #[test]
    fn overlapping_action_types_are_not_double_counted() {
        let r = normalize::flatten(
            &serde_json::json!({"actions": [
                {"action_type": "purchase", "value": "3"},
                {"action_type": "omni_purchase", "value": "3"},
                {"ACTION_TYPE": "mobile_app_install", "Value": "7"}
            ]}),
            &BTreeMap::new(),
        );
        let types = ActionTypes::default();
        assert_eq!(
            action_value(&r, "actions", &types.conversions),
            Some("3".into())
        );
        assert_eq!(
            action_value(&r, "actions", &types.installs),
            Some("7".into())
        );
    }
}
