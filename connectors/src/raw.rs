//! Raw landing: every payload a platform returns is written to `raw/` (gzip) *before* it is
//! normalized, with a manifest (request, fetch time, SHA-256, size per page), so a load can be
//! replayed without calling the platform again, and a payload that cannot be loaded is kept
//! in `raw/quarantine/` with the reason instead of being lost.
//!
//! ```text
//! raw/runs/<run>/<source>/<account>/<since>_<until>/0000.json.gz      payload as returned (.tsv.gz, .csv.gz)
//! raw/runs/<run>/<source>/<account>/<since>_<until>/_complete.json    every page landed: the manifest
//! raw/quarantine/<run>/<source>/<account>/<since>_<until>/0000.json.gz + 0000.reason.json
//! ```
//! Each object is written once. The manifest is written once per unit, with its completion
//! marker (one object per page fewer than a manifest entry per page; files are what a busy
//! collector spends its time creating); a unit without `_complete.json` was cut short and is
//! never replayed. Runs landed with one `0000.json` manifest entry per page still read.

use std::io::{Read, Write};
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::error::{Error, Result};
use crate::window::Window;

/// The unit of fetching: one source's account over a window of days.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Unit {
    pub source: String,
    pub account: String,
    pub since: NaiveDate,
    pub until: NaiveDate,
}

impl Unit {
    pub fn new(source: &str, account: &str, window: Window) -> Self {
        Unit {
            source: source.to_string(),
            account: account.to_string(),
            since: window.since,
            until: window.until,
        }
    }

    pub fn window(&self) -> Window {
        Window {
            since: self.since,
            until: self.until,
        }
    }

    fn dir(&self) -> String {
        format!(
            "{}/{}/{}_{}",
            self.source, self.account, self.since, self.until
        )
    }

    /// The unit a landing directory (`source/account/since_until`) belongs to.
    fn from_dir(dir: &str) -> Option<Self> {
        let mut parts = dir.split('/');
        let (source, account, days) = (parts.next()?, parts.next()?, parts.next()?);
        let (since, until) = days.split_once('_')?;
        Some(Unit {
            source: source.into(),
            account: account.into(),
            since: since.parse().ok()?,
            until: until.parse().ok()?,
        })
    }
}

impl std::fmt::Display for Unit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} {}..{}",
            self.source, self.account, self.since, self.until
        )
    }
}

/// One manifest entry: what was asked, when, and where the bytes are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub run: String,
    pub unit: Unit,
    pub platform: String,
    pub page: u32,
    /// Method, path and parameters of the request (credentials are headers, never here).
    pub request: String,
    pub fetched_at: DateTime<Utc>,
    /// SHA-256 of the uncompressed payload.
    pub sha256: String,
    pub bytes: u64,
    /// Warehouse-relative path of the gzip payload.
    pub path: String,
}

/// A unit whose pages all landed, in page order.
#[derive(Debug, Clone)]
pub struct LandedUnit {
    pub unit: Unit,
    pub pages: Vec<ManifestEntry>,
}

/// What a run left in `raw/`.
#[derive(Debug, Clone, Default)]
pub struct RunContents {
    pub complete: Vec<LandedUnit>,
    /// Units with pages but no completion marker (the fetch was cut short).
    pub incomplete: Vec<Unit>,
}

/// The reason file kept next to a quarantined payload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuarantineRecord {
    pub run: String,
    pub unit: Unit,
    pub page: Option<u32>,
    pub reason: String,
    pub quarantined_at: DateTime<Utc>,
    /// Where the payload was landed first, if it was.
    pub raw_path: Option<String>,
}

/// Raw landing for one sync run.
#[derive(Clone)]
pub struct RawStore {
    store: Arc<dyn ObjectStore>,
    run: String,
}

impl std::fmt::Debug for RawStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawStore").field("run", &self.run).finish()
    }
}

/// A new run id: UTC time to the second plus a random suffix (sortable, unique enough for
/// runs started by hand or by a scheduler).
pub fn new_run_id() -> String {
    let suffix: u16 = rand::random();
    format!("{}-{suffix:04x}", Utc::now().format("%Y%m%dT%H%M%SZ"))
}

/// Run ids are used in paths: letters, digits, `-`, `_`, `.` and `T`/`Z` only.
pub fn validate_run_id(run: &str) -> Result<()> {
    if !run.is_empty()
        && run.len() <= 64
        && run
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !run.starts_with('.')
    {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "run id {run:?} is not valid: use letters, digits, '-', '_' and '.'"
        )))
    }
}

fn raw_error(path: &str, e: impl std::fmt::Display) -> Error {
    Error::Raw {
        path: path.to_string(),
        reason: engine::describe_storage_failure(&e.to_string()),
    }
}

fn gzip(body: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder
        .write_all(body)
        .expect("writing to memory cannot fail");
    encoder.finish().expect("writing to memory cannot fail")
}

fn gunzip(path: &str, data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .map_err(|e| raw_error(path, format!("not a readable gzip file: {e}")))?;
    Ok(out)
}

impl RawStore {
    /// Landing for run `run` in the warehouse's store.
    pub fn new(store: Arc<dyn ObjectStore>, run: &str) -> Result<Self> {
        validate_run_id(run)?;
        Ok(RawStore {
            store,
            run: run.to_string(),
        })
    }

    pub fn run(&self) -> &str {
        &self.run
    }

    async fn put(&self, path: &str, data: Vec<u8>) -> Result<()> {
        self.store
            .put(&Path::from(path), PutPayload::from(data))
            .await
            .map_err(|e| raw_error(path, e))?;
        Ok(())
    }

    async fn get(&self, path: &str) -> Result<Bytes> {
        let result = self
            .store
            .get(&Path::from(path))
            .await
            .map_err(|e| raw_error(path, e))?;
        result.bytes().await.map_err(|e| raw_error(path, e))
    }

    fn unit_dir(&self, unit: &Unit) -> String {
        format!("raw/runs/{}/{}", self.run, unit.dir())
    }

    /// Land one page's gzip payload; its manifest entry is kept by the caller and written
    /// with the unit's completion marker (one object per unit, not one per page).
    pub async fn land(
        &self,
        unit: &Unit,
        platform: &str,
        page: u32,
        request: &str,
        body: &[u8],
        fetched_at: DateTime<Utc>,
    ) -> Result<ManifestEntry> {
        self.land_as(unit, platform, "json", page, request, body, fetched_at)
            .await
    }

    /// [`RawStore::land`] for a payload in `format` (the file extension: `json`, `tsv`, `csv`).
    #[allow(clippy::too_many_arguments)]
    pub async fn land_as(
        &self,
        unit: &Unit,
        platform: &str,
        format: &str,
        page: u32,
        request: &str,
        body: &[u8],
        fetched_at: DateTime<Utc>,
    ) -> Result<ManifestEntry> {
        let path = format!("{}/{page:04}.{format}.gz", self.unit_dir(unit));
        self.put(&path, gzip(body)).await?;
        Ok(ManifestEntry {
            run: self.run.clone(),
            unit: unit.clone(),
            platform: platform.to_string(),
            page,
            request: request.to_string(),
            fetched_at,
            sha256: hex::encode(sha2::Sha256::digest(body)),
            bytes: body.len() as u64,
            path,
        })
    }

    /// Mark a unit complete: `_complete.json` holds the manifest of its pages, in order.
    pub async fn complete(&self, unit: &Unit, pages: &[ManifestEntry]) -> Result<()> {
        let path = format!("{}/_complete.json", self.unit_dir(unit));
        let marker = Completion {
            unit: unit.clone(),
            pages: pages.len() as u32,
            completed_at: Utc::now(),
            manifest: pages.to_vec(),
        };
        self.put(
            &path,
            serde_json::to_vec_pretty(&marker).expect("serializes"),
        )
        .await
    }

    /// The manifest of a completed unit directory: from its `_complete.json`, or (runs landed
    /// before the manifest moved there) from one `NNNN.json` entry per page.
    async fn manifest(&self, dir: &str, files: &[String]) -> Result<Vec<ManifestEntry>> {
        let marker_path = format!("{dir}/_complete.json");
        let data = self.get(&marker_path).await?;
        let marker: Completion = serde_json::from_slice(&data)
            .map_err(|e| raw_error(&marker_path, format!("not a completion marker: {e}")))?;
        let mut entries = marker.manifest;
        if entries.is_empty() && marker.pages > 0 {
            for name in files
                .iter()
                .filter(|n| n.ends_with(".json") && !n.starts_with('_'))
            {
                let path = format!("{dir}/{name}");
                let data = self.get(&path).await?;
                entries.push(
                    serde_json::from_slice(&data)
                        .map_err(|e| raw_error(&path, format!("not a manifest entry: {e}")))?,
                );
            }
        }
        entries.sort_by_key(|e| e.page);
        let contiguous = entries.len() as u32 == marker.pages
            && entries.iter().enumerate().all(|(i, e)| e.page == i as u32);
        if !contiguous {
            return Err(raw_error(
                &marker_path,
                format!("lists {} of its {} pages", entries.len(), marker.pages),
            ));
        }
        Ok(entries)
    }

    /// Keep a payload that cannot be loaded, with the reason. Returns the reason file's path.
    pub async fn quarantine(
        &self,
        unit: &Unit,
        page: Option<u32>,
        body: Option<&[u8]>,
        raw_path: Option<String>,
        reason: &str,
    ) -> Result<String> {
        let dir = format!("raw/quarantine/{}/{}", self.run, unit.dir());
        let stem = page.map_or("unit".to_string(), |p| format!("{p:04}"));
        // The landed page's format (`0003.tsv.gz` → `tsv`); JSON when it never landed.
        let format = raw_path
            .as_deref()
            .and_then(|p| p.rsplit('/').next())
            .and_then(|name| name.strip_suffix(".gz"))
            .and_then(|name| name.split_once('.'))
            .map_or("json", |(_, format)| format)
            .to_string();
        if let Some(body) = body {
            self.put(&format!("{dir}/{stem}.{format}.gz"), gzip(body))
                .await?;
        }
        let record = QuarantineRecord {
            run: self.run.clone(),
            unit: unit.clone(),
            page,
            reason: reason.to_string(),
            quarantined_at: Utc::now(),
            raw_path,
        };
        let path = format!("{dir}/{stem}.reason.json");
        self.put(
            &path,
            serde_json::to_vec_pretty(&record).expect("serializes"),
        )
        .await?;
        Ok(path)
    }

    /// Read a landed payload back, checking its checksum.
    pub async fn read(&self, entry: &ManifestEntry) -> Result<Vec<u8>> {
        let data = self.get(&entry.path).await?;
        let body = gunzip(&entry.path, &data)?;
        let sum = hex::encode(sha2::Sha256::digest(&body));
        if sum != entry.sha256 {
            return Err(raw_error(
                &entry.path,
                format!(
                    "checksum {sum} does not match the manifest's {}",
                    entry.sha256
                ),
            ));
        }
        Ok(body)
    }

    /// The pages of `unit` with their bytes, if every page landed (checksums verified).
    pub async fn landed(&self, unit: &Unit) -> Result<Option<Vec<(ManifestEntry, Bytes)>>> {
        use futures::TryStreamExt;
        let dir = self.unit_dir(unit);
        let files: Vec<String> = self
            .store
            .list(Some(&Path::from(dir.as_str())))
            .map_ok(|o| o.location.filename().unwrap_or_default().to_string())
            .try_collect()
            .await
            .map_err(|e| raw_error(&dir, e))?;
        if !files.iter().any(|f| f == "_complete.json") {
            return Ok(None);
        }
        let mut pages = Vec::new();
        for entry in self.manifest(&dir, &files).await? {
            let body = Bytes::from(self.read(&entry).await?);
            pages.push((entry, body));
        }
        Ok(Some(pages))
    }

    /// Everything run `self.run` landed, by unit.
    pub async fn contents(&self) -> Result<RunContents> {
        use futures::TryStreamExt;
        let prefix = format!("raw/runs/{}/", self.run);
        let objects: Vec<_> = self
            .store
            .list(Some(&Path::from(prefix.as_str())))
            .try_collect()
            .await
            .map_err(|e| raw_error(&prefix, e))?;
        if objects.is_empty() {
            return Err(Error::Config(format!(
                "run {} has nothing in raw/ (see raw/runs/ for the runs this warehouse has)",
                self.run
            )));
        }
        let mut files: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for object in objects {
            let path = object.location.to_string();
            if let Some((dir, file)) = path.rsplit_once('/') {
                files
                    .entry(dir.to_string())
                    .or_default()
                    .push(file.to_string());
            }
        }
        let mut contents = RunContents::default();
        for (dir, names) in files {
            if names.iter().any(|n| n == "_complete.json") {
                let pages = self.manifest(&dir, &names).await?;
                let unit = match pages.first() {
                    Some(page) => page.unit.clone(),
                    None => continue, // a unit with no pages has nothing to replay
                };
                contents.complete.push(LandedUnit { unit, pages });
            } else if let Some(unit) = Unit::from_dir(dir.trim_start_matches(&prefix)) {
                contents.incomplete.push(unit);
            }
        }
        Ok(contents)
    }
}

/// `_complete.json`: the unit, its page count, and the manifest of its pages.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Completion {
    unit: Unit,
    pages: u32,
    completed_at: DateTime<Utc>,
    /// Empty in runs landed before the manifest moved here (one `NNNN.json` per page).
    #[serde(default)]
    manifest: Vec<ManifestEntry>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit() -> Unit {
        Unit::new(
            "meta",
            "1001",
            Window::new("2026-11-01".parse().unwrap(), "2026-11-07".parse().unwrap()).unwrap(),
        )
    }

    #[tokio::test]
    async fn landed_pages_come_back_in_order_and_intact() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let raw = RawStore::new(Arc::clone(&store), "r1").unwrap();
        let u = unit();
        let mut manifest = Vec::new();
        for page in [1u32, 0] {
            let entry = raw
                .land(
                    &u,
                    "meta",
                    page,
                    "GET /x",
                    format!("page {page}").as_bytes(),
                    Utc::now(),
                )
                .await
                .unwrap();
            manifest.push(entry);
        }
        let cut = Unit::new("meta", "1002", u.window());
        raw.land(&cut, "meta", 0, "GET /y", b"p", Utc::now())
            .await
            .unwrap();
        raw.complete(&u, &manifest).await.unwrap();
        let contents = raw.contents().await.unwrap();
        assert_eq!(contents.complete.len(), 1);
        assert_eq!(contents.incomplete, vec![cut.clone()]);
        let pages = &contents.complete[0].pages;
        assert_eq!(pages.iter().map(|p| p.page).collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(raw.read(&pages[1]).await.unwrap(), b"page 1");
        let landed = raw.landed(&u).await.unwrap().unwrap();
        assert_eq!(landed.len(), 2);
        assert_eq!(&landed[0].1[..], b"page 0");
        assert!(raw.landed(&cut).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn runs_landed_with_one_manifest_file_per_page_still_read() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let raw = RawStore::new(Arc::clone(&store), "old").unwrap();
        let u = unit();
        let entry = raw
            .land(&u, "meta", 0, "GET /x", b"page 0", Utc::now())
            .await
            .unwrap();
        let dir = raw.unit_dir(&u);
        let put = |path: String, body: Vec<u8>| {
            let store = Arc::clone(&store);
            async move {
                store
                    .put(&Path::from(path), PutPayload::from(body))
                    .await
                    .unwrap()
            }
        };
        put(
            format!("{dir}/0000.json"),
            serde_json::to_vec(&entry).unwrap(),
        )
        .await;
        let marker = serde_json::json!({"unit": u, "pages": 1, "completed_at": Utc::now()});
        put(
            format!("{dir}/_complete.json"),
            serde_json::to_vec(&marker).unwrap(),
        )
        .await;
        let landed = raw.landed(&u).await.unwrap().unwrap();
        assert_eq!(&landed[0].1[..], b"page 0");
        assert_eq!(raw.contents().await.unwrap().complete.len(), 1);
    }

    #[tokio::test]
    async fn a_corrupted_payload_is_detected() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let raw = RawStore::new(Arc::clone(&store), "r1").unwrap();
        let entry = raw
            .land(&unit(), "meta", 0, "GET /x", b"original", Utc::now())
            .await
            .unwrap();
        store
            .put(
                &Path::from(entry.path.as_str()),
                PutPayload::from(gzip(b"changed")),
            )
            .await
            .unwrap();
        let e = raw.read(&entry).await.unwrap_err().to_string();
        assert!(e.contains("checksum"), "{e}");
    }

    #[test]
    fn run_ids_are_path_safe() {
        assert!(validate_run_id(&new_run_id()).is_ok());
        assert!(validate_run_id("../etc").is_err());
        assert!(validate_run_id("a/b").is_err());
    }
}
