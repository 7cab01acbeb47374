//! The `Source` trait: what every platform client provides, so that syncing, landing,
//! quarantine and replay are written once.
//!
//! A source plans the request units for a window of days (account × chunk of days), fetches
//! a unit's pages (paging and async report jobs are the source's business) handing each page
//! to a [`PageSink`] that lands it in `raw/` as it arrives, and turns a landed page back into
//! records and `ad_performance` rows. Normalizing from landed bytes only is what makes
//! `sync --replay` produce the same tables without the network.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use futures::future::BoxFuture;

use crate::config::{Platform, ResolvedSource};
use crate::error::{Error, Result};
use crate::normalize::{AdRow, Record, TableSpec};
use crate::oauth::Credential;
use crate::raw::{ManifestEntry, RawStore, Unit};
use crate::secret::Secret;
use crate::throttle::{Fetched, Lane, Throttle, Verdict};
use crate::window::Window;

/// One fetched page, as the platform returned it.
#[derive(Debug, Clone)]
pub struct Page {
    /// Method, path and parameters (never credentials).
    pub request: String,
    pub body: Bytes,
    pub fetched_at: DateTime<Utc>,
}

/// Where a source hands its pages: each is landed in `raw/` before the fetch goes on.
#[derive(Debug)]
pub struct PageSink {
    raw: RawStore,
    unit: Unit,
    platform: Platform,
    landed: Vec<(ManifestEntry, Bytes)>,
}

impl PageSink {
    pub fn new(raw: RawStore, unit: Unit, platform: Platform) -> Self {
        PageSink {
            raw,
            unit,
            platform,
            landed: Vec::new(),
        }
    }

    /// Land the next page.
    pub async fn land(&mut self, page: Page) -> Result<()> {
        let entry = self
            .raw
            .land_as(
                &self.unit,
                self.platform.name(),
                self.platform.payload_format(),
                self.landed.len() as u32,
                &page.request,
                &page.body,
                page.fetched_at,
            )
            .await?;
        self.landed.push((entry, page.body));
        Ok(())
    }

    /// Mark the unit complete and return its pages with their bytes.
    pub async fn finish(self) -> Result<Vec<(ManifestEntry, Bytes)>> {
        let manifest: Vec<ManifestEntry> = self.landed.iter().map(|(e, _)| e.clone()).collect();
        self.raw.complete(&self.unit, &manifest).await?;
        Ok(self.landed)
    }

    pub fn pages(&self) -> usize {
        self.landed.len()
    }
}

/// What every source has, whatever its platform.
#[derive(Debug)]
pub struct SourceBase {
    /// The source's name in config and in the `source` column.
    pub name: String,
    /// Accounts this source syncs (as the API spells them).
    pub accounts: Vec<String>,
    /// Days per request unit.
    pub chunk_days: u64,
    /// Days the platform keeps restating a past day (the sync window).
    pub window_days: u64,
    /// The throttle of this source's credential.
    pub throttle: Arc<Throttle>,
}

impl SourceBase {
    pub fn new(source: &ResolvedSource, throttle: Arc<Throttle>) -> Self {
        SourceBase {
            name: source.name.clone(),
            accounts: source.account_ids(),
            chunk_days: source.chunk_days(),
            window_days: source.window_days(),
            throttle,
        }
    }
}

impl SourceBase {
    /// Send a request authorized by `credential`'s access token (refreshed when needed)
    /// through this source's throttle, paced on `lane` if given. `build` makes the request
    /// with the token; an error names `what` and holds no secret: none of the credential's,
    /// none of `also` (e.g. a developer token) and not the access token.
    pub async fn send_authorized(
        &self,
        credential: &Credential,
        also: &[&Secret],
        what: &str,
        lane: Option<&Lane>,
        build: impl Fn(&Secret) -> reqwest::RequestBuilder,
        classify: impl Fn(&Fetched) -> Verdict,
    ) -> Result<Fetched> {
        let scrub = |text: &str, token: Option<&Secret>| {
            let mut secrets = credential.secrets();
            secrets.extend_from_slice(also);
            secrets.extend(token);
            secrets
                .into_iter()
                .fold(text.to_string(), |t, s| crate::scrub(&t, s))
        };
        let token = credential
            .access_token()
            .await
            .map_err(|reason| Error::Request {
                source_name: self.name.clone(),
                request: what.to_string(),
                attempts: 1,
                reason: scrub(&reason, None),
                last_body: None,
            })?;
        self.throttle
            .send_in_lane(what, lane, || build(&token), classify)
            .await
            .map_err(|gave_up| Error::Request {
                source_name: self.name.clone(),
                request: what.to_string(),
                attempts: gave_up.attempts,
                reason: scrub(&gave_up.reason, Some(&token)),
                last_body: gave_up.last_body,
            })
    }
}

/// A platform client.
pub trait Source: Send + Sync {
    fn base(&self) -> &SourceBase;
    fn platform(&self) -> Platform;
    /// The per-source table and what its payloads must carry.
    fn spec(&self) -> &'static TableSpec;
    /// The key of the per-source table's day column.
    fn date_key(&self) -> &'static str;

    fn name(&self) -> &str {
        &self.base().name
    }
    fn accounts(&self) -> &[String] {
        &self.base().accounts
    }
    fn chunk_days(&self) -> u64 {
        self.base().chunk_days
    }
    fn throttle(&self) -> &Arc<Throttle> {
        &self.base().throttle
    }
    fn window_days(&self) -> u64 {
        self.base().window_days
    }
    /// When `day` settles: the start of the first day on which a sync's trailing window no
    /// longer covers it, so the platform no longer restates it.
    fn settles_at(&self, day: NaiveDate) -> DateTime<Utc> {
        (day + chrono::Days::new(self.window_days() + 1))
            .and_time(chrono::NaiveTime::MIN)
            .and_utc()
    }

    /// The request units covering `window`: every account × chunk of days.
    fn plan(&self, window: Window) -> Vec<Unit> {
        self.accounts()
            .iter()
            .flat_map(|account| {
                window
                    .chunks(self.chunk_days())
                    .into_iter()
                    .map(move |chunk| Unit::new(self.name(), account, chunk))
            })
            .collect()
    }

    /// One cheap authenticated request for `account` about `day` (what `tidemark doctor`
    /// checks): `Ok` when the platform answers, else its own error with the fix.
    fn probe<'a>(&'a self, account: &'a str, day: NaiveDate) -> BoxFuture<'a, Result<()>>;

    /// Fetch every page of `unit` into `sink`.
    fn fetch<'a>(&'a self, unit: &'a Unit, sink: &'a mut PageSink) -> BoxFuture<'a, Result<()>>;

    /// The records of one landed page. `request` is what the page's manifest says was asked
    /// (a platform whose payloads do not say what they are, like Naver's header-less TSV
    /// reports, reads the report type from it).
    fn records(&self, request: &str, body: &[u8]) -> Result<Vec<Record>, String>;

    /// The records of every landed page of a unit, in page order (one result per page). By
    /// default each page on its own; a platform whose report rows are named by the unit's
    /// other pages (Kakao: the entity lists that place each creative in its ad group and
    /// campaign) reads them together here.
    fn unit_records(&self, pages: &[(&str, &[u8])]) -> Vec<Result<Vec<Record>, String>> {
        pages
            .iter()
            .map(|(request, body)| self.records(request, body))
            .collect()
    }

    /// The `ad_performance` row of one record.
    fn ad_row(&self, account: &str, record: &Record) -> Result<AdRow, String>;

    /// The `ad_performance` rows of a unit's records: one per record by default. A platform
    /// whose records are finer than an ad-day (Naver: per keyword, media and device, with
    /// conversions in a second report) sums them to one row per (day, ad) here. An error
    /// names the index of the record that could not be read.
    fn ad_rows(&self, account: &str, records: &[Record]) -> Result<Vec<AdRow>, (usize, String)> {
        records
            .iter()
            .enumerate()
            .map(|(i, r)| self.ad_row(account, r).map_err(|e| (i, e)))
            .collect()
    }
}
