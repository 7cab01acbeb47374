//! Syncing the simulated platform: fetch every account's report for a window (following
//! cursors), normalize the rows into `ad_performance` batches (numeric strings parsed, micros
//! to decimals), and replace all (source, account, day) slices of the window in one commit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{
    ArrayRef, Date32Array, Decimal128Array, Float64Array, Int64Array, RecordBatch, StringArray,
};
use arrow::datatypes::Date32Type;
use chrono::NaiveDate;
use engine::model::{ad_performance_schema, AD_PERFORMANCE, MONEY_PRECISION, MONEY_SCALE};
use engine::{ReplaceReport, SliceKey, Warehouse};
use serde::Deserialize;
use serde_json::Value;

use super::truth::Account;
use super::SOURCE;
use crate::error::{Error, Result};
use crate::normalize::parse_scaled;
pub use crate::window::Window;

/// Days re-pulled by every sync: the platform restates this many past days.
pub const WINDOW_DAYS: u64 = 30;

/// The adsim platform's restatement window as of `today`: the [`WINDOW_DAYS`] days before it.
pub fn trailing_window(today: NaiveDate) -> Window {
    Window::trailing_days(today, WINDOW_DAYS)
}

/// An HTTP client for the simulated platform. The token is never printed.
#[derive(Clone)]
pub struct AdsimClient {
    http: reqwest::Client,
    base_url: String,
    token: String,
}

impl std::fmt::Debug for AdsimClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdsimClient")
            .field("base_url", &self.base_url)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// One fetched account report.
#[derive(Debug)]
pub struct AccountReport {
    pub account: Account,
    pub rows: Vec<Value>,
    pub requests: usize,
}

#[derive(Debug, Deserialize)]
struct Page {
    account: Account,
    data: Vec<Value>,
    #[serde(default)]
    paging: Paging,
}

#[derive(Debug, Default, Deserialize)]
struct Paging {
    next_cursor: Option<String>,
}

/// What one sync did.
#[derive(Debug, Clone)]
pub struct SyncReport {
    pub window: Window,
    pub accounts: usize,
    pub requests: usize,
    pub rows: usize,
    pub fetch_time: Duration,
    pub commit: ReplaceReport,
}

const PAGE_SIZE: usize = 500;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl AdsimClient {
    pub fn new(base_url: impl Into<String>, token: impl Into<String>) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| Error::Transport {
                platform: SOURCE.into(),
                path: String::new(),
                reason: e.to_string(),
            })?;
        Ok(AdsimClient {
            http,
            base_url: base_url.into().trim_end_matches('/').to_string(),
            token: token.into(),
        })
    }

    async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value> {
        let url = format!("{}{path}", self.base_url);
        let response = self
            .http
            .get(&url)
            .bearer_auth(&self.token)
            .query(query)
            .send()
            .await
            .map_err(|e| Error::Transport {
                platform: SOURCE.into(),
                path: path.into(),
                reason: e.without_url().to_string(),
            })?;
        let status = response.status();
        let body = response.text().await.map_err(|e| Error::Transport {
            platform: SOURCE.into(),
            path: path.into(),
            reason: e.without_url().to_string(),
        })?;
        if !status.is_success() {
            let message = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
                .unwrap_or_else(|| body.chars().take(200).collect());
            return Err(Error::Status {
                platform: SOURCE.into(),
                path: path.into(),
                status: status.as_u16(),
                message,
            });
        }
        serde_json::from_str(&body).map_err(|e| Error::Payload {
            platform: SOURCE.into(),
            path: path.into(),
            reason: e.to_string(),
        })
    }

    /// The accounts the token can read.
    pub async fn accounts(&self) -> Result<Vec<Account>> {
        let path = "/v1/accounts";
        let body = self.get(path, &[]).await?;
        serde_json::from_value(body["data"].clone()).map_err(|e| Error::Payload {
            platform: SOURCE.into(),
            path: path.into(),
            reason: e.to_string(),
        })
    }

    /// Every row of one account's report for the window, following cursors.
    pub async fn report(&self, account_id: &str, window: Window) -> Result<AccountReport> {
        let path = format!("/v1/accounts/{account_id}/report");
        let mut cursor: Option<String> = None;
        let mut rows = Vec::new();
        let mut requests = 0;
        loop {
            let mut query = vec![
                ("since", window.since.to_string()),
                ("until", window.until.to_string()),
                ("page_size", PAGE_SIZE.to_string()),
            ];
            if let Some(c) = &cursor {
                query.push(("cursor", c.clone()));
            }
            let body = self.get(&path, &query).await?;
            requests += 1;
            let page: Page = serde_json::from_value(body).map_err(|e| Error::Payload {
                platform: SOURCE.into(),
                path: path.clone(),
                reason: e.to_string(),
            })?;
            rows.extend(page.data);
            match page.paging.next_cursor {
                Some(next) => cursor = Some(next),
                None => {
                    return Ok(AccountReport {
                        account: page.account,
                        rows,
                        requests,
                    })
                }
            }
        }
    }
}

/// Parse a number that may arrive as a JSON number or a string.
fn number_text(row: &Value, key: &str) -> Option<String> {
    match &row[key] {
        Value::String(s) => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Normalize one account's rows into an `ad_performance` batch.
pub fn normalize(report: &AccountReport, path: &str) -> Result<RecordBatch> {
    let bad = |reason: String| Error::Payload {
        platform: SOURCE.into(),
        path: path.to_string(),
        reason,
    };
    let n = report.rows.len();
    let text = |key: &str| -> Vec<Option<String>> {
        report
            .rows
            .iter()
            .map(|r| r[key].as_str().map(str::to_string))
            .collect()
    };
    let int = |key: &str| -> Result<Vec<Option<i64>>> {
        report
            .rows
            .iter()
            .enumerate()
            .map(|(i, r)| match number_text(r, key) {
                None => Ok(None),
                Some(t) => t
                    .parse::<i64>()
                    .map(Some)
                    .map_err(|_| bad(format!("row {i}: {key} = {t:?} is not an integer"))),
            })
            .collect()
    };
    let scale = MONEY_SCALE as u32;
    let money = |key: &str, micros: bool| -> Result<Vec<Option<i128>>> {
        report
            .rows
            .iter()
            .enumerate()
            .map(|(i, r)| match number_text(r, key) {
                None => Ok(None),
                Some(t) => {
                    let parsed = if micros {
                        t.parse::<i128>().ok()
                    } else {
                        parse_scaled(&t, scale)
                    };
                    parsed
                        .map(Some)
                        .ok_or_else(|| bad(format!("row {i}: {key} = {t:?} is not a decimal")))
                }
            })
            .collect()
    };
    let dates: Vec<i32> = report
        .rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            r["date"]
                .as_str()
                .and_then(|s| s.parse::<NaiveDate>().ok())
                .map(Date32Type::from_naive_date)
                .ok_or_else(|| bad(format!("row {i}: date is missing or not YYYY-MM-DD")))
        })
        .collect::<Result<_>>()?;
    let conversions: Vec<Option<f64>> = report
        .rows
        .iter()
        .enumerate()
        .map(|(i, r)| match number_text(r, "conversions") {
            None => Ok(None),
            Some(t) => t
                .parse::<f64>()
                .map(Some)
                .map_err(|_| bad(format!("row {i}: conversions = {t:?} is not a number"))),
        })
        .collect::<Result<_>>()?;
    let account = &report.account;
    let constant = |v: &str| -> ArrayRef { Arc::new(StringArray::from(vec![v; n])) };
    let strings = |key: &str| -> ArrayRef { Arc::new(StringArray::from(text(key))) };
    let decimal = |values: Vec<Option<i128>>| -> Result<ArrayRef> {
        Ok(Arc::new(
            Decimal128Array::from(values)
                .with_precision_and_scale(MONEY_PRECISION, MONEY_SCALE)
                .map_err(|e| bad(e.to_string()))?,
        ))
    };
    let columns: Vec<ArrayRef> = vec![
        constant(SOURCE),
        constant(&account.id),
        Arc::new(Date32Array::from(dates)),
        constant(&account.name),
        strings("campaign_id"),
        strings("campaign_name"),
        strings("ad_group_id"),
        strings("ad_group_name"),
        strings("ad_id"),
        strings("ad_name"),
        constant(&account.currency),
        Arc::new(Int64Array::from(int("impressions")?)),
        Arc::new(Int64Array::from(int("clicks")?)),
        decimal(money("spend_micros", true)?)?,
        Arc::new(Float64Array::from(conversions)),
        Arc::new(Int64Array::from(int("installs")?)),
        decimal(money("revenue", false)?)?,
    ];
    RecordBatch::try_new(ad_performance_schema(), columns).map_err(|e| bad(e.to_string()))
}

/// Sync every account for `window` and replace all its slices in one commit.
pub async fn sync(
    warehouse: &Warehouse,
    client: &AdsimClient,
    window: Window,
) -> Result<SyncReport> {
    let started = Instant::now();
    let accounts = client.accounts().await?;
    let mut requests = 1;
    let mut batches = Vec::new();
    let mut slices = Vec::new();
    for account in &accounts {
        let report = client.report(&account.id, window).await?;
        requests += report.requests;
        let batch = normalize(&report, &format!("/v1/accounts/{}/report", account.id))?;
        tracing::info!(source = SOURCE, account = %account.id, rows = batch.num_rows(), requests = report.requests, "fetched account");
        batches.push(batch);
        // Every day of the window is replaced, including days that now have no rows.
        slices.extend(window.days().map(|d| SliceKey::new(SOURCE, &account.id, d)));
    }
    let fetch_time = started.elapsed();
    let rows = batches.iter().map(RecordBatch::num_rows).sum();
    let commit = warehouse
        .replace_slices(AD_PERFORMANCE)
        .with_slices(slices)
        .with_rows(batches)
        .await?;
    Ok(SyncReport {
        window,
        accounts: accounts.len(),
        requests,
        rows,
        fetch_time,
        commit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_is_thirty_days_before_today() {
        let w = trailing_window("2026-11-20".parse().unwrap());
        assert_eq!(w.since.to_string(), "2026-10-21");
        assert_eq!(w.until.to_string(), "2026-11-19");
        assert_eq!(w.days().count(), 30);
    }
}
