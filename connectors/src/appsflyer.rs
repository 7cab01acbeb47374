//! AppsFlyer Pull API: the aggregate daily report by media source and campaign, and the raw
//! installs and in-app events reports, as CSV. A source pulls one report (`report` in its
//! section).
//!
//! ```text
//! GET /api/agg-data/export/app/{app_id}/partners_by_date_report/v5
//!     ?from=YYYY-MM-DD&to=YYYY-MM-DD&timezone=preferred&currency=preferred
//!     Authorization: Bearer <API token V2>   Accept: text/csv
//!   → Date,Agency/PMD (af_prt),Media Source (pid),Campaign (c),Impressions,Clicks,CTR,Installs,
//!     Conversion Rate,Sessions,Loyal Users,Loyal Users/Installs,Total Revenue,Total Cost,ROI,
//!     ARPU,Average eCPI,<event> (Unique users),<event> (Event counter),<event> (Sales in USD),…
//! GET /api/raw-data/export/app/{app_id}/installs_report|in_app_events_report/v5
//!     ?from=…&to=…&timezone=preferred&maximum_rows=1000000
//!   → Attributed Touch Type,Attributed Touch Time,Install Time,Event Time,Event Name,
//!     Event Value,Event Revenue,Event Revenue Currency,Event Revenue USD,Media Source,
//!     Campaign,Campaign ID,Adset,Ad,AppsFlyer ID,Advertising ID,IDFA,Platform,…
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
//!
//! **Raw reports** land one row per install or event in `appsflyer_raw_events`, sliced by the
//! day of `Event Time` (an install's event time is its install time). A call returns at most
//! `maximum_rows` rows and AppsFlyer cuts the file there without saying so (as observed by
//! Airbyte); a range whose answer reaches the cap is fetched again one day per call, and a
//! single day that still reaches it fails, naming `page_size`. Raw rows hold device ids
//! (AppsFlyer ID, IDFA, advertising id) as AppsFlyer returns them: treat the table as
//! personal data.

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

/// The report a source pulls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// `partners_by_date_report`: by day, media source and campaign.
    Aggregate,
    /// `installs_report`: one row per attributed install.
    Installs,
    /// `in_app_events_report`: one row per in-app event of attributed users.
    InAppEvents,
}

impl Report {
    /// The names `report` takes in config, as AppsFlyer spells them in paths.
    pub const NAMES: [&'static str; 3] = [
        "partners_by_date_report",
        "installs_report",
        "in_app_events_report",
    ];

    pub fn parse(name: Option<&str>) -> Option<Self> {
        match name.unwrap_or(Self::NAMES[0]) {
            "partners_by_date_report" => Some(Report::Aggregate),
            "installs_report" => Some(Report::Installs),
            "in_app_events_report" => Some(Report::InAppEvents),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Report::Aggregate => Self::NAMES[0],
            Report::Installs => Self::NAMES[1],
            Report::InAppEvents => Self::NAMES[2],
        }
    }

    fn path_kind(self) -> &'static str {
        match self {
            Report::Aggregate => "agg-data",
            _ => "raw-data",
        }
    }

    fn spec(self) -> &'static TableSpec {
        match self {
            Report::Aggregate => &SPEC,
            _ => &RAW_SPEC,
        }
    }
}

/// `maximum_rows` of a raw call when `page_size` is not set (what public connectors send).
pub const MAXIMUM_ROWS: u64 = 1_000_000;

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

/// The `appsflyer_raw_events` table: raw installs and in-app events (more columns are kept as
/// text as they appear).
pub static RAW_SPEC: TableSpec = TableSpec {
    table: "appsflyer_raw_events",
    columns: &[
        col("attributed_touch_type", Kind::Text),
        col("attributed_touch_time", Kind::Text),
        col("install_time", Kind::Text),
        // `YYYY-MM-DD HH:MM:SS` in the report's time zone; its day is the slice's day.
        col("event_time", Kind::Text),
        col("event_name", Kind::Text),
        col("event_value", Kind::Text),
        col("event_revenue", Kind::Decimal),
        col("event_revenue_currency", Kind::Text),
        col("event_revenue_usd", Kind::Decimal),
        col("media_source", Kind::Text),
        col("campaign", Kind::Text),
        col("campaign_id", Kind::Text),
        col("adset", Kind::Text),
        col("ad", Kind::Text),
        col("appsflyer_id", Kind::Text),
        col("advertising_id", Kind::Text),
        col("idfa", Kind::Text),
        col("platform", Kind::Text),
    ],
    row_keys: &["event_time", "appsflyer_id"],
    expected: &["event_name", "media_source"],
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
    report: Report,
    maximum_rows: u64,
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
        let report = Report::parse(source.config.report.as_deref()).ok_or_else(|| {
            Error::Config(format!(
                "[sources.{}]: report must be one of {}",
                source.name,
                Report::NAMES.join(", ")
            ))
        })?;
        Ok(AppsFlyerSource {
            base: SourceBase::new(source, throttle),
            base_url: source.base_url(),
            version: source.api_version(),
            report,
            maximum_rows: source.config.page_size.unwrap_or(MAXIMUM_ROWS).max(1),
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
        let mut path = format!(
            "/api/{}/export/app/{app}/{}/{}?from={since}&to={until}&timezone=preferred",
            self.report.path_kind(),
            self.report.name(),
            self.version
        );
        match self.report {
            Report::Aggregate => path.push_str("&currency=preferred"),
            _ => path.push_str(&format!("&maximum_rows={}", self.maximum_rows)),
        }
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

impl AppsFlyerSource {
    /// Whether a raw answer holds `maximum_rows` rows (and so may have been cut).
    fn reaches_cap(&self, body: &[u8]) -> bool {
        if self.report == Report::Aggregate {
            return false;
        }
        let rows = csv::Reader::from_reader(body).records().count() as u64;
        rows >= self.maximum_rows
    }
}

impl Source for AppsFlyerSource {
    fn base(&self) -> &SourceBase {
        &self.base
    }
    fn platform(&self) -> Platform {
        Platform::AppsFlyer
    }
    fn spec(&self) -> &'static TableSpec {
        self.report.spec()
    }
    fn date_key(&self) -> &'static str {
        match self.report {
            Report::Aggregate => "date",
            _ => "event_time",
        }
    }

    /// One day of the report: authenticated, and a real answer for the app id. (It costs
    /// one call of the app's per-minute budget for ranges of 2 days or less.)
    fn probe<'a>(&'a self, account: &'a str, day: NaiveDate) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { self.report(account, day, day).await.map(drop) })
    }

    /// One call for the unit; a raw answer that reaches `maximum_rows` (cut by AppsFlyer) is
    /// dropped and the unit fetched again one day per call.
    fn fetch<'a>(&'a self, unit: &'a Unit, sink: &'a mut PageSink) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let whole = self.report(&unit.account, unit.since, unit.until).await?;
            let pages = if self.reaches_cap(&whole.1) && unit.since < unit.until {
                tracing::info!(source = %self.base.name, unit = %unit, maximum_rows = self.maximum_rows, "the answer reached maximum_rows; fetching day by day");
                let mut days = Vec::new();
                for day in unit.window().days() {
                    days.push(self.report(&unit.account, day, day).await?);
                }
                days
            } else {
                vec![whole]
            };
            for (request, body) in pages {
                if self.reaches_cap(&body) {
                    return Err(Error::Request {
                        source_name: self.base.name.clone(),
                        request,
                        attempts: 1,
                        reason: format!(
                            "one day of the report reached maximum_rows ({}), so AppsFlyer cut it: raise page_size in [sources.{}]",
                            self.maximum_rows, self.base.name
                        ),
                        last_body: None,
                    });
                }
                sink.land(Page {
                    request,
                    body,
                    fetched_at: Utc::now(),
                })
                .await?;
            }
            Ok(())
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

    use crate::throttle::fetched;

    #[test]
    fn headers_become_column_names() {
        assert_eq!(column_name("Event Revenue USD"), "event_revenue_usd");
        assert_eq!(column_name("AppsFlyer ID"), "appsflyer_id");
        assert_eq!(Report::parse(None), Some(Report::Aggregate));
        assert_eq!(
            Report::parse(Some("installs_report")),
            Some(Report::Installs)
        );
        assert_eq!(Report::parse(Some("geo_report")), None);
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
