//! AppsFlyer Pull API: the aggregate daily report by media source and campaign, as CSV.
//!
//! ```text
//! GET /api/agg-data/export/app/{app_id}/partners_by_date_report/v5
//!     ?from=YYYY-MM-DD&to=YYYY-MM-DD&timezone=preferred&currency=preferred
//!     Authorization: Bearer <API token V2>   Accept: text/csv
//!   → Date,Agency/PMD (af_prt),Media Source (pid),Campaign (c),Impressions,Clicks,CTR,Installs,
//!     Conversion Rate,Sessions,Loyal Users,Loyal Users/Installs,Total Revenue,Total Cost,ROI,
//!     ARPU,Average eCPI,<event> (Unique users),<event> (Event counter),<event> (Sales in USD),…
//! ```
//!
//! Sources: paths, parameters and the header row are from AppsFlyer's Pull API docs and the
//! Airbyte connector that reads them (`fields/mapper.py`, the three columns per in-app event);
//! the quotas and their answers (aggregate: HTTP 403 `Limit reached for …`; raw data: HTTP
//! 400 `Your API calls limit has been reached …`, both reset at 00:00 UTC; plain-text
//! bodies) are from AppsFlyer's support article on Pull API limits as handled by Airbyte.
//! That `N/A`, `NULL` and empty cells mean "no value" follows Airbyte's transform.
//!
//! The report has one triple of columns per in-app event the app has, so its column set
//! changes whenever the app adds an event: every column is kept as returned (event columns
//! as text named like `af_purchase_event_counter`). Aggregate reports are lifetime-value
//! data (a past install date keeps gaining revenue), so the window re-pulls 30 days.
//! AppsFlyer rows are per (day, media source, campaign), not ad-level spend: they stay in
//! `appsflyer_partners_daily` and reach spend through the `attributed_performance` mart.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{NaiveDate, Utc};
use futures::future::BoxFuture;
use serde_json::Value;

use crate::config::{Platform, ResolvedSource};
use crate::error::{Error, Result};
use crate::normalize::{col, AdRow, Kind, Record, TableSpec};
use crate::raw::Unit;
use crate::secret::Secret;
use crate::source::{Page, PageSink, Source, SourceBase};
use crate::throttle::{snippet, Fetched, Throttle, Verdict};

/// The aggregate report pulled.
pub const REPORT: &str = "partners_by_date_report";

/// The `appsflyer_partners_daily` table: the report's fixed columns (event columns are added
/// as text as they appear).
pub static SPEC: TableSpec = TableSpec {
    table: "appsflyer_partners_daily",
    columns: &[
        col("date", Kind::Date),
        col("agency_pmd_af_prt", Kind::Text),
        col("media_source_pid", Kind::Text),
        col("campaign_c", Kind::Text),
        col("impressions", Kind::Int),
        col("clicks", Kind::Int),
        col("ctr", Kind::Float),
        col("installs", Kind::Int),
        col("conversion_rate", Kind::Float),
        col("sessions", Kind::Int),
        col("loyal_users", Kind::Int),
        col("loyal_users_installs", Kind::Float),
        // In the app's currency (`currency=preferred`).
        col("total_revenue", Kind::Decimal),
        col("total_cost", Kind::Decimal),
        col("roi", Kind::Float),
        col("arpu", Kind::Float),
        col("average_ecpi", Kind::Float),
    ],
    row_keys: &["date", "media_source_pid"],
    expected: &["installs", "total_revenue"],
    absent_is_zero: false,
};

/// A report header as a column name: `Media Source (pid)` → `media_source_pid`.
pub fn column_name(header: &str) -> String {
    let mut out = String::with_capacity(header.len());
    for c in header.trim().chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').to_string()
}

/// An AppsFlyer client for one configured source (accounts are app ids).
pub struct AppsFlyerSource {
    base: SourceBase,
    base_url: String,
    version: String,
    token: Secret,
    token_origin: String,
    http: reqwest::Client,
}

impl AppsFlyerSource {
    pub fn new(
        source: &ResolvedSource,
        token: Secret,
        token_origin: String,
        throttle: Arc<Throttle>,
    ) -> Result<Self> {
        Ok(AppsFlyerSource {
            base: SourceBase::new(source, throttle),
            base_url: source.base_url(),
            version: source.api_version(),
            token,
            token_origin,
            http: crate::http_client()?,
        })
    }

    async fn report(
        &self,
        app: &str,
        since: NaiveDate,
        until: NaiveDate,
    ) -> Result<(String, Bytes)> {
        let path = format!(
            "/api/agg-data/export/app/{app}/{REPORT}/{}?from={since}&to={until}&timezone=preferred&currency=preferred",
            self.version
        );
        let what = format!("GET {path}");
        let url = format!("{}{path}", self.base_url);
        let response = self
            .base
            .throttle
            .send(
                &what,
                || {
                    self.http
                        .get(&url)
                        .bearer_auth(self.token.expose())
                        .header("Accept", "text/csv")
                },
                |r| verdict(r, &self.token_origin, Utc::now()),
            )
            .await
            .map_err(|gave_up| Error::Request {
                source_name: self.base.name.clone(),
                request: what.clone(),
                attempts: gave_up.attempts,
                reason: crate::scrub(&gave_up.reason, &self.token),
                last_body: gave_up.last_body,
            })?;
        Ok((what, response.body))
    }
}

/// AppsFlyer's reading of a response; `now` places the next 00:00 UTC quota reset.
fn verdict(response: &Fetched, token_origin: &str, now: chrono::DateTime<Utc>) -> Verdict {
    let text = String::from_utf8_lossy(&response.body);
    if (200..300).contains(&response.status) {
        return match csv_is_whole(&response.body) {
            true => Verdict::Ok,
            false => Verdict::Transient {
                reason: format!(
                    "HTTP {} report ends in a cut-off row ({} bytes)",
                    response.status,
                    response.body.len()
                ),
            },
        };
    }
    let described = format!("HTTP {}: {}", response.status, snippet(&response.body));
    let quota_spent = (response.status == 403 && text.trim_start().starts_with("Limit reached"))
        || (response.status == 400 && text.contains("calls limit has been reached"));
    if quota_spent {
        let midnight = (now.date_naive() + chrono::Days::new(1))
            .and_time(chrono::NaiveTime::MIN)
            .and_utc();
        return Verdict::Throttled {
            wait: Some((midnight - now).to_std().unwrap_or_default()),
            reason: format!(
                "{described}; the app's daily Pull API quota is spent and resets at 00:00 UTC"
            ),
        };
    }
    match response.status {
        429 => Verdict::Throttled {
            wait: crate::throttle::retry_after(&response.headers),
            reason: described,
        },
        401 => Verdict::Fatal {
            reason: format!("{described}; the API token (from {token_origin}) is refused: use an API token V2 from the AppsFlyer dashboard (Security center → API tokens)"),
        },
        404 => Verdict::Fatal {
            reason: format!("{described}; AppsFlyer does not know this app id for the token's account: check accounts (e.g. id1234567890 or com.example.app)"),
        },
        408 | 500..=599 => Verdict::Transient { reason: described },
        _ => Verdict::Fatal { reason: described },
    }
}

/// Whether a CSV report arrived whole: a header, and every row as wide as it.
fn csv_is_whole(body: &[u8]) -> bool {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(body);
    let Ok(width) = reader.headers().map(|h| h.len()) else {
        return false;
    };
    width > 1 && reader.records().all(|r| r.is_ok_and(|r| r.len() == width))
}

impl Source for AppsFlyerSource {
    fn base(&self) -> &SourceBase {
        &self.base
    }
    fn platform(&self) -> Platform {
        Platform::AppsFlyer
    }
    fn spec(&self) -> &'static TableSpec {
        &SPEC
    }
    fn date_key(&self) -> &'static str {
        "date"
    }

    /// One day of the report: authenticated, and a real answer for the app id. (It costs
    /// one call of the app's per-minute budget for ranges of 2 days or less.)
    fn probe<'a>(&'a self, account: &'a str, day: NaiveDate) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { self.report(account, day, day).await.map(drop) })
    }

    fn fetch<'a>(&'a self, unit: &'a Unit, sink: &'a mut PageSink) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let (request, body) = self.report(&unit.account, unit.since, unit.until).await?;
            sink.land(Page {
                request,
                body,
                fetched_at: Utc::now(),
            })
            .await
        })
    }

    fn records(&self, _request: &str, body: &[u8]) -> Result<Vec<Record>, String> {
        let mut reader = csv::ReaderBuilder::new().from_reader(body);
        let headers: Vec<String> = reader
            .headers()
            .map_err(|e| format!("no CSV header row: {e}"))?
            .iter()
            .map(column_name)
            .collect();
        let mut records = Vec::new();
        for (i, row) in reader.records().enumerate() {
            let row = row.map_err(|e| format!("CSV row {}: {e}", i + 1))?;
            let mut record = Record::new();
            for (name, value) in headers.iter().zip(row.iter()) {
                let value = value.trim();
                // Airbyte's reading of AppsFlyer: these mean "no value".
                if value.is_empty() || value == "N/A" || value == "NULL" {
                    continue;
                }
                record.insert(name.clone(), Value::String(value.to_string()));
            }
            records.push(record);
        }
        Ok(records)
    }

    fn ad_row(&self, _account: &str, _record: &Record) -> Result<AdRow, String> {
        Err("AppsFlyer rows are not ad-level spend rows".into())
    }

    /// None: AppsFlyer does not feed `ad_performance` (see [`Platform::feeds_ad_performance`]).
    fn ad_rows(&self, _account: &str, _records: &[Record]) -> Result<Vec<AdRow>, (usize, String)> {
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetched(status: u16, body: &str) -> Fetched {
        Fetched {
            status,
            headers: Default::default(),
            body: Bytes::from(body.to_string()),
        }
    }

    #[test]
    fn headers_become_column_names() {
        assert_eq!(column_name("Media Source (pid)"), "media_source_pid");
        assert_eq!(column_name("Loyal Users/Installs"), "loyal_users_installs");
        assert_eq!(
            column_name("af_purchase (Sales in USD)"),
            "af_purchase_sales_in_usd"
        );
    }

    #[test]
    fn a_spent_quota_waits_for_midnight_utc() {
        let now = "2026-11-20T18:00:00Z".parse().unwrap();
        match verdict(
            &fetched(403, "Limit reached for partners_by_date_report"),
            "env T",
            now,
        ) {
            Verdict::Throttled { wait, reason } => {
                assert_eq!(wait, Some(std::time::Duration::from_secs(6 * 3600)));
                assert!(reason.contains("00:00 UTC"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            verdict(
                &fetched(
                    400,
                    "Your API calls limit has been reached for report type installs_report"
                ),
                "",
                now
            ),
            Verdict::Throttled { wait: Some(_), .. }
        ));
        assert!(matches!(
            verdict(&fetched(401, "Unauthorized"), "env T", now),
            Verdict::Fatal { reason } if reason.contains("env T")
        ));
        assert!(matches!(
            verdict(
                &fetched(200, "Date,Installs\n2026-11-01,3\n2026-11-02"),
                "",
                now
            ),
            Verdict::Transient { .. }
        ));
        assert!(matches!(
            verdict(&fetched(200, "Date,Installs\n2026-11-01,3\n"), "", now),
            Verdict::Ok
        ));
    }
}
