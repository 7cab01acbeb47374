//! Naver Search Ad: HMAC-signed requests and the stat-report job flow, one day per report.
//!
//! ```text
//! every request: X-Timestamp: <epoch ms>  X-API-KEY: <access license>  X-Customer: <customer id>
//!                X-Signature: base64(HMAC-SHA256(secret key, "{timestamp}.{METHOD}.{path}"))
//!   (path without the query; a report download is signed over the fixed "/report-download")
//!
//! POST /stat-reports {"reportTp": "AD", "statDt": "20261119"}   → {"reportJobId": 12, "status": "REGIST", …}
//! GET  /stat-reports/12     → status REGIST | RUNNING | WAITING | AGGREGATING → BUILT (downloadUrl) | NONE | ERROR
//! GET  {downloadUrl}        → header-less TSV, one row per (ad, keyword, media, device)
//! DELETE /stat-reports/12   (report jobs are a limited resource; cleaned up after download)
//! ```
//!
//! Sources: the signature scheme, the job statuses and the report types are from Naver's
//! own samples and docs (github.com/naver/searchad-apidoc: java-sample `Signatures.java`,
//! php-sample `restapi.php` and `stat_report_sample.php`, the "Stat Report Specification").
//! The TSV column order is Naver's spec; that the files have no header row and print dates as
//! `YYYYMMDD` is observed from public consumers. Error bodies `{"code": …, "title": …}` are an
//! assumption (Naver publishes the codes, not the envelope), as is the 429 with no wait hint.
//!
//! Two reports per day: `AD` (impressions, clicks, cost, rank, view count) and `AD_CONVERSION`
//! (conversion method, type, count and sales). Both land in `naver_search_ad_stats` with every
//! column as returned and a `report_type` column; `ad_performance` gets one row per (day, ad)
//! summed over keywords, media, devices and conversion types.
//!
//! **Cost and VAT.** The stat report's Cost is VAT-excluded (the `/stats` endpoint's
//! `salesAmt` includes VAT; consumers of the report multiply by 1.1 to reconcile with the
//! invoice). The column is named `cost_excl_vat` and `ad_performance.spend` is the same
//! VAT-excluded amount in KRW.
//!
//! **Drift Naver documented.** The `View count` column was appended to the performance
//! reports (13 → 14 columns; both load, older files with a null `view_count`); further
//! appended columns load as `column_15`, … text. `Conversion Type` switched from codes
//! (1–5) to names (`purchase`, `sign_up`, …) for data from 2024-07-03; both are kept as
//! returned in `conversion_type` and both count in `ad_performance.conversions`.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use chrono::{NaiveDate, Utc};
use futures::future::BoxFuture;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::config::{Platform, ResolvedSource};
use crate::error::{Error, Result};
use crate::normalize::{self, col, AdRow, Kind, Record, TableSpec};
use crate::raw::Unit;
use crate::secret::Secret;
use crate::source::{Page, PageSink, Source, SourceBase};
use crate::throttle::{snippet, Fetched, Throttle, Verdict};

/// The reports pulled for each day.
pub const REPORT_TYPES: [&str; 2] = ["AD", "AD_CONVERSION"];

/// Columns of an `AD` report, in file order (Naver's "Stat Report Specification").
pub const AD_COLUMNS: &[&str] = &[
    "date",
    "customer_id",
    "campaign_id",
    "ad_group_id",
    "keyword_id",
    "ad_id",
    "business_channel_id",
    "media_code",
    "pc_mobile_type",
    "impressions",
    "clicks",
    "cost_excl_vat",
    "ad_rank_sum",
    "view_count",
];

/// An `AD` file from before `View count` was appended has this many columns.
pub const AD_COLUMNS_BEFORE_VIEW_COUNT: usize = 13;

/// Columns of an `AD_CONVERSION` report, in file order.
pub const AD_CONVERSION_COLUMNS: &[&str] = &[
    "date",
    "customer_id",
    "campaign_id",
    "ad_group_id",
    "keyword_id",
    "ad_id",
    "business_channel_id",
    "media_code",
    "pc_mobile_type",
    "conversion_method",
    "conversion_type",
    "conversion_count",
    "conversion_sales",
];

/// The `naver_search_ad_stats` table: both reports' columns, `report_type` telling them apart.
pub static SPEC: TableSpec = TableSpec {
    table: "naver_search_ad_stats",
    columns: &[
        col("report_type", Kind::Text),
        col("date", Kind::Date),
        col("customer_id", Kind::Text),
        col("campaign_id", Kind::Text),
        col("ad_group_id", Kind::Text),
        col("keyword_id", Kind::Text),
        col("ad_id", Kind::Text),
        col("business_channel_id", Kind::Text),
        col("media_code", Kind::Text),
        col("pc_mobile_type", Kind::Text),
        col("impressions", Kind::Int),
        col("clicks", Kind::Int),
        // KRW, VAT excluded (see the module doc).
        col("cost_excl_vat", Kind::Decimal),
        col("ad_rank_sum", Kind::Int),
        col("view_count", Kind::Int),
        // 1 direct, 2 indirect.
        col("conversion_method", Kind::Text),
        // A code (1–5) before 2024-07-03, a name (`purchase`, …) since.
        col("conversion_type", Kind::Text),
        col("conversion_count", Kind::Int),
        col("conversion_sales", Kind::Decimal),
    ],
    row_keys: &["date", "ad_id"],
    // Columns are positional: a rename cannot happen, so nothing to watch for.
    expected: &[],
    absent_is_zero: false,
};

/// Status polls before a report job is given up.
const MAX_POLLS: u32 = 120;
/// Times a report that ends in `ERROR` is requested again.
const JOB_RESUBMITS: u32 = 2;

/// `base64(HMAC-SHA256(secret, "{timestamp}.{METHOD}.{path}"))`, Naver's request signature.
pub fn signature(secret: &str, timestamp: &str, method: &str, path: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any size");
    mac.update(format!("{timestamp}.{method}.{path}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The path a request is signed over: the URL's path without its query, except downloads,
/// which are signed over `/report-download` wherever the URL points.
pub fn signed_path(url: &str) -> String {
    let path = url::Url::parse(url)
        .map(|u| u.path().to_string())
        .unwrap_or_else(|_| url.split('?').next().unwrap_or(url).to_string());
    if path.ends_with("/report-download") {
        "/report-download".to_string()
    } else {
        path
    }
}

/// How a report job ended.
enum JobEnd {
    /// Built: download from this URL.
    Built(String),
    /// Nothing to report for the day.
    NoData,
    /// Failed on Naver's side (`ERROR`) or never finished.
    Failed(String),
}

/// A Naver Search Ad client for one configured source.
pub struct NaverSource {
    base: SourceBase,
    base_url: String,
    api_key: Secret,
    secret_key: Secret,
    poll_interval: std::time::Duration,
    http: reqwest::Client,
}

impl NaverSource {
    pub fn new(
        source: &ResolvedSource,
        api_key: Secret,
        secret_key: Secret,
        throttle: Arc<Throttle>,
    ) -> Result<Self> {
        Ok(NaverSource {
            base: SourceBase::new(source, throttle),
            base_url: source.base_url(),
            api_key,
            secret_key,
            poll_interval: source.poll_interval(),
            http: crate::http_client()?,
        })
    }

    fn scrub(&self, text: &str) -> String {
        crate::scrub(&crate::scrub(text, &self.api_key), &self.secret_key)
    }

    /// A request with Naver's auth headers, signed now (each attempt signs afresh).
    fn signed(
        &self,
        method: reqwest::Method,
        url: &str,
        customer: &str,
    ) -> reqwest::RequestBuilder {
        let timestamp = Utc::now().timestamp_millis().to_string();
        let sign = signature(
            self.secret_key.expose(),
            &timestamp,
            method.as_str(),
            &signed_path(url),
        );
        self.http
            .request(method, url)
            .header("X-Timestamp", timestamp)
            .header("X-API-KEY", self.api_key.expose())
            .header("X-Customer", customer)
            .header("X-Signature", sign)
    }

    /// Send a signed request through the throttle until Naver's answer is usable.
    async fn call(
        &self,
        what: &str,
        method: reqwest::Method,
        url: &str,
        customer: &str,
        json: Option<&Value>,
        download: bool,
    ) -> Result<Fetched> {
        self.base
            .throttle
            .send(
                what,
                || {
                    let request = self.signed(method.clone(), url, customer);
                    match json {
                        Some(body) => request.json(body),
                        None => request,
                    }
                },
                |r| verdict(r, download),
            )
            .await
            .map_err(|gave_up| Error::Request {
                source_name: self.base.name.clone(),
                request: what.to_string(),
                attempts: gave_up.attempts,
                reason: self.scrub(&gave_up.reason),
                last_body: gave_up.last_body,
            })
    }

    fn json(&self, what: &str, body: &Bytes) -> Result<Value> {
        serde_json::from_slice(body).map_err(|e| Error::Payload {
            platform: Platform::NaverSearchAd.name().into(),
            path: what.to_string(),
            reason: e.to_string(),
        })
    }

    /// Register a report job; returns its id.
    async fn create(&self, customer: &str, report: &str, day: NaiveDate) -> Result<String> {
        let what = format!(
            "POST /stat-reports reportTp={report} statDt={}",
            day.format("%Y%m%d")
        );
        let url = format!("{}/stat-reports", self.base_url);
        let body =
            serde_json::json!({"reportTp": report, "statDt": day.format("%Y%m%d").to_string()});
        let response = self
            .call(
                &what,
                reqwest::Method::POST,
                &url,
                customer,
                Some(&body),
                false,
            )
            .await?;
        let job = self.json(&what, &response.body)?;
        match &job["reportJobId"] {
            Value::Number(n) => Ok(n.to_string()),
            Value::String(s) if !s.is_empty() => Ok(s.clone()),
            _ => Err(Error::Payload {
                platform: Platform::NaverSearchAd.name().into(),
                path: what,
                reason: format!("no reportJobId in {}", snippet(&response.body)),
            }),
        }
    }

    /// Poll a job until Naver has built it, found nothing, or failed.
    async fn wait_for(&self, customer: &str, job: &str) -> Result<JobEnd> {
        let what = format!("GET /stat-reports/{job}");
        let url = format!("{}/stat-reports/{job}", self.base_url);
        let mut last = String::new();
        for _ in 0..MAX_POLLS {
            let response = self
                .call(&what, reqwest::Method::GET, &url, customer, None, false)
                .await?;
            let status = self.json(&what, &response.body)?;
            last = status["status"].as_str().unwrap_or_default().to_string();
            match last.as_str() {
                "BUILT" => {
                    let Some(download) = status["downloadUrl"].as_str() else {
                        return Ok(JobEnd::Failed(format!(
                            "job {job} is BUILT without a downloadUrl"
                        )));
                    };
                    return Ok(JobEnd::Built(download.to_string()));
                }
                "NONE" => return Ok(JobEnd::NoData),
                "ERROR" => return Ok(JobEnd::Failed(format!("job {job} ended in ERROR"))),
                // REGIST, RUNNING, WAITING; AGGREGATING: the day's stats are not final yet.
                _ => tokio::time::sleep(self.poll_interval).await,
            }
        }
        Ok(JobEnd::Failed(format!(
            "job {job} is still {last} after {MAX_POLLS} polls{}",
            if last == "AGGREGATING" {
                " (Naver has not finished aggregating the day; the next sync picks it up)"
            } else {
                ""
            }
        )))
    }

    /// Remove a finished job; a failure only costs a job slot, so it is logged, not raised.
    async fn delete(&self, customer: &str, job: &str) {
        let what = format!("DELETE /stat-reports/{job}");
        let url = format!("{}/stat-reports/{job}", self.base_url);
        if let Err(e) = self
            .call(&what, reqwest::Method::DELETE, &url, customer, None, false)
            .await
        {
            tracing::warn!(source = %self.base.name, job, error = %e, "could not delete a finished report job");
        }
    }

    /// One report of one day, landed as one page (empty when Naver has no data).
    async fn fetch_report(
        &self,
        unit: &Unit,
        report: &str,
        day: NaiveDate,
        sink: &mut PageSink,
    ) -> Result<()> {
        let stat_dt = day.format("%Y%m%d");
        let mut failures = Vec::new();
        for _ in 0..=JOB_RESUBMITS {
            let job = self.create(&unit.account, report, day).await?;
            let end = self.wait_for(&unit.account, &job).await?;
            let landed = match end {
                JobEnd::Built(download) => {
                    let url = if download.starts_with("http") {
                        download
                    } else {
                        format!("{}{download}", self.base_url)
                    };
                    // The download URL carries a token in its query: never landed or logged.
                    let what = format!(
                        "GET /report-download reportTp={report} statDt={stat_dt} job={job}"
                    );
                    let response = self
                        .call(&what, reqwest::Method::GET, &url, &unit.account, None, true)
                        .await?;
                    Some((what, response.body))
                }
                JobEnd::NoData => Some((
                    format!(
                        "POST /stat-reports reportTp={report} statDt={stat_dt} job={job}: NONE"
                    ),
                    Bytes::new(),
                )),
                JobEnd::Failed(reason) => {
                    failures.push(reason);
                    None
                }
            };
            self.delete(&unit.account, &job).await;
            if let Some((request, body)) = landed {
                return sink
                    .land(Page {
                        request,
                        body,
                        fetched_at: Utc::now(),
                    })
                    .await;
            }
            tracing::warn!(source = %self.base.name, unit = %unit, report, failure = failures.last().map(String::as_str).unwrap_or_default(), "report job failed; requesting it again");
        }
        Err(Error::Request {
            source_name: self.base.name.clone(),
            request: format!("{report} report of {day} for customer {}", unit.account),
            attempts: JOB_RESUBMITS + 1,
            reason: failures.join("; "),
            last_body: None,
        })
    }

    async fn fetch_unit(&self, unit: &Unit, sink: &mut PageSink) -> Result<()> {
        let window = crate::Window {
            since: unit.since,
            until: unit.until,
        };
        for day in window.days() {
            for report in REPORT_TYPES {
                self.fetch_report(unit, report, day, sink).await?;
            }
        }
        Ok(())
    }
}

/// Naver's reading of a response. `download`: the body is a TSV report, else JSON.
fn verdict(response: &Fetched, download: bool) -> Verdict {
    if (200..300).contains(&response.status) {
        if download {
            return match tsv_is_whole(&response.body) {
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
        if response.status == 204 || response.body.is_empty() {
            return Verdict::Ok;
        }
        return match serde_json::from_slice::<Value>(&response.body) {
            Ok(_) => Verdict::Ok,
            Err(_) => Verdict::Transient {
                reason: format!(
                    "HTTP {} body is not complete JSON ({} bytes)",
                    response.status,
                    response.body.len()
                ),
            },
        };
    }
    let body: Option<Value> = serde_json::from_slice(&response.body).ok();
    let code = body
        .as_ref()
        .map(|b| b["code"].to_string())
        .unwrap_or_default();
    let title = body
        .as_ref()
        .and_then(|b| b["title"].as_str().or(b["message"].as_str()))
        .map(str::to_string)
        .unwrap_or_else(|| snippet(&response.body));
    let described = format!("HTTP {} (code {code}): {title}", response.status);
    match (response.status, code.as_str()) {
        // 429 carries no hint of how long to wait; 1016 is "Too many connections".
        (429, _) | (_, "1016") => Verdict::Throttled {
            wait: crate::throttle::retry_after(&response.headers),
            reason: described,
        },
        (401, _) => Verdict::Fatal {
            reason: format!("{described}; Naver refused the signature: check api_key and secret_key (searchad.naver.com → Tools → API manager; the secret key is the one issued with that license) and that this machine's clock is right (X-Timestamp is checked against Naver's)"),
        },
        (403, _) | (_, "1018") => Verdict::Fatal {
            reason: format!("{described}; this API license cannot act for the customer: check the customer id in accounts (the advertiser must be managed by the license's account)"),
        },
        (408 | 500..=599, _) => Verdict::Transient { reason: described },
        _ => Verdict::Fatal { reason: described },
    }
}

/// Whether a TSV report arrived whole: every row has as many columns as the first.
fn tsv_is_whole(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let Some(first) = lines.next() else {
        return true;
    };
    let width = first.split('\t').count();
    width
        >= AD_CONVERSION_COLUMNS
            .len()
            .min(AD_COLUMNS_BEFORE_VIEW_COUNT)
        && lines.all(|l| l.split('\t').count() == width)
}

/// The report type a landed page holds, from its manifest request (`reportTp=AD …`).
pub fn report_type(request: &str) -> Option<&str> {
    request
        .split_whitespace()
        .find_map(|w| w.strip_prefix("reportTp="))
        .map(|t| t.trim_end_matches(':'))
}

/// The records of a header-less TSV report of type `report`.
pub fn parse_report(report: &str, body: &[u8]) -> Result<Vec<Record>, String> {
    let (columns, least) = match report {
        "AD" => (AD_COLUMNS, AD_COLUMNS_BEFORE_VIEW_COUNT),
        "AD_CONVERSION" => (AD_CONVERSION_COLUMNS, AD_CONVERSION_COLUMNS.len()),
        other => return Err(format!("report type {other:?} is not one tidemark reads")),
    };
    let text = std::str::from_utf8(body).map_err(|e| format!("not UTF-8 text: {e}"))?;
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.len() < least {
            return Err(format!(
                "{report} line {} has {} columns; Naver's spec has {least}{}",
                i + 1,
                fields.len(),
                if least < columns.len() {
                    format!(" or {}", columns.len())
                } else {
                    String::new()
                }
            ));
        }
        let mut record = Record::new();
        record.insert("report_type".into(), Value::String(report.to_string()));
        for (n, field) in fields.iter().enumerate() {
            let name = columns
                .get(n)
                .map(|c| c.to_string())
                .unwrap_or_else(|| format!("column_{}", n + 1));
            record.insert(name, Value::String(field.trim().to_string()));
        }
        records.push(record);
    }
    Ok(records)
}

impl Source for NaverSource {
    fn base(&self) -> &SourceBase {
        &self.base
    }
    fn platform(&self) -> Platform {
        Platform::NaverSearchAd
    }
    fn spec(&self) -> &'static TableSpec {
        &SPEC
    }
    fn date_key(&self) -> &'static str {
        "date"
    }

    /// `GET /stat-reports` (the customer's job list): signed, cheap, touches no report.
    fn probe<'a>(&'a self, account: &'a str, _day: NaiveDate) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let url = format!("{}/stat-reports", self.base_url);
            self.call(
                "GET /stat-reports",
                reqwest::Method::GET,
                &url,
                account,
                None,
                false,
            )
            .await
            .map(drop)
        })
    }

    fn fetch<'a>(&'a self, unit: &'a Unit, sink: &'a mut PageSink) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.fetch_unit(unit, sink))
    }

    fn records(&self, request: &str, body: &[u8]) -> Result<Vec<Record>, String> {
        let report = report_type(request).ok_or_else(|| {
            format!("the landed request {request:?} does not name its report type (reportTp=…)")
        })?;
        parse_report(report, body)
    }

    fn ad_row(&self, account: &str, record: &Record) -> Result<AdRow, String> {
        let conversion = normalize::text(record, "report_type").as_deref() == Some("AD_CONVERSION");
        let count = |key| normalize::int(record, key).map(|v| v.unwrap_or(0));
        let money = |key| normalize::decimal(record, key).map(|v| v.unwrap_or(0));
        Ok(AdRow {
            account_id: account.to_string(),
            date: normalize::date(record, "date")?,
            account_name: None,
            campaign_id: normalize::text(record, "campaign_id"),
            campaign_name: None,
            ad_group_id: normalize::text(record, "ad_group_id"),
            ad_group_name: None,
            ad_id: normalize::text(record, "ad_id"),
            ad_name: None,
            // Naver Search Ad bills in KRW only.
            currency: Some("KRW".into()),
            impressions: Some(if conversion { 0 } else { count("impressions")? }),
            clicks: Some(if conversion { 0 } else { count("clicks")? }),
            spend: Some(if conversion {
                0
            } else {
                money("cost_excl_vat")?
            }),
            conversions: Some(if conversion {
                count("conversion_count")? as f64
            } else {
                0.0
            }),
            installs: None,
            revenue: Some(if conversion {
                money("conversion_sales")?
            } else {
                0
            }),
        })
    }

    /// One row per (day, ad): the sums over keywords, media, devices and conversion rows.
    fn ad_rows(&self, account: &str, records: &[Record]) -> Result<Vec<AdRow>, (usize, String)> {
        let mut by_ad: BTreeMap<(Option<NaiveDate>, Option<String>), AdRow> = BTreeMap::new();
        for (i, record) in records.iter().enumerate() {
            let row = self.ad_row(account, record).map_err(|e| (i, e))?;
            let key = (row.date, row.ad_id.clone());
            match by_ad.get_mut(&key) {
                None => {
                    by_ad.insert(key, row);
                }
                Some(sum) => {
                    let add =
                        |a: Option<i64>, b: Option<i64>| Some(a.unwrap_or(0) + b.unwrap_or(0));
                    let add_money =
                        |a: Option<i128>, b: Option<i128>| Some(a.unwrap_or(0) + b.unwrap_or(0));
                    sum.impressions = add(sum.impressions, row.impressions);
                    sum.clicks = add(sum.clicks, row.clicks);
                    sum.spend = add_money(sum.spend, row.spend);
                    sum.revenue = add_money(sum.revenue, row.revenue);
                    sum.conversions =
                        Some(sum.conversions.unwrap_or(0.0) + row.conversions.unwrap_or(0.0));
                    sum.campaign_id = sum.campaign_id.take().or(row.campaign_id);
                    sum.ad_group_id = sum.ad_group_id.take().or(row.ad_group_id);
                }
            }
        }
        Ok(by_ad.into_values().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::throttle::fetched;

    #[test]
    fn downloads_are_signed_over_the_fixed_path_and_queries_are_not_signed() {
        assert_eq!(
            signed_path("https://api.searchad.naver.com/report-download?authtoken=abc"),
            "/report-download"
        );
        assert_eq!(
            signed_path("http://127.0.0.1:9/stat-reports/12?x=1"),
            "/stat-reports/12"
        );
        // Computed independently: Python's hmac.new(b"Jefe", b"1700000000000.GET./report-download",
        // hashlib.sha256), base64 encoded.
        assert_eq!(
            signature("Jefe", "1700000000000", "GET", "/report-download"),
            "PTiuJyYB41M0Lt04xUAI8uwOb5rQdtYYxJUDAxhHIOg="
        );
    }

    #[test]
    fn both_report_shapes_parse_and_a_cut_row_is_refused() {
        let old = "20261119\t1\tcmp-1\tgrp-1\tnkw-1\tnad-1\tbc-1\t27758\tP\t100\t3\t1200.5\t250\n";
        let new = "20261119\t1\tcmp-1\tgrp-1\t-\tnad-1\tbc-1\t27758\tM\t100\t3\t1200\t250\t7\n";
        let r = parse_report("AD", old.as_bytes()).unwrap();
        assert!(!r[0].contains_key("view_count"));
        let r = parse_report("AD", new.as_bytes()).unwrap();
        assert_eq!(r[0]["view_count"], Value::String("7".into()));
        assert_eq!(r[0]["keyword_id"], Value::String("-".into()));
        let extra = new.replace("\t7\n", "\t7\tY\n");
        assert_eq!(
            parse_report("AD", extra.as_bytes()).unwrap()[0]["column_15"],
            Value::String("Y".into())
        );
        let err = parse_report("AD", b"20261119\t1\tcmp-1\n").unwrap_err();
        assert!(err.contains("3 columns"), "{err}");
        assert!(tsv_is_whole(new.as_bytes()));
        assert!(!tsv_is_whole(format!("{new}20261119\t1\tcmp").as_bytes()));
        assert_eq!(
            report_type("GET /report-download reportTp=AD_CONVERSION statDt=1"),
            Some("AD_CONVERSION")
        );
    }

    #[test]
    fn throttling_and_refusals_read_as_naver_means_them() {
        assert!(matches!(
            verdict(&fetched(429, ""), false),
            Verdict::Throttled { wait: None, .. }
        ));
        assert!(matches!(
            verdict(
                &fetched(400, r#"{"code":1016,"title":"Too many connections"}"#),
                false
            ),
            Verdict::Throttled { .. }
        ));
        assert!(matches!(
            verdict(&fetched(401, r#"{"code":401,"title":"Signature is invalid"}"#), false),
            Verdict::Fatal { reason } if reason.contains("secret_key")
        ));
        assert!(matches!(
            verdict(&fetched(503, ""), false),
            Verdict::Transient { .. }
        ));
        assert!(matches!(
            verdict(&fetched(200, "{\"st"), false),
            Verdict::Transient { .. }
        ));
    }
}
