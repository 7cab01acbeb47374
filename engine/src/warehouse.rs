//! A warehouse: a root URL holding Delta tables under `tables/`, marts under `marts/`,
//! raw payloads under `raw/` and engine state under `_tidemark/`. This module opens one,
//! names and lists its tables, and opens table handles at the latest or a past version.
//!
//! Readers ask for [`Warehouse::latest_table`]: the process keeps each table it opened and
//! brings it up to date by reading only the commits made since (as the slice index does for
//! writers), instead of replaying the log from its last checkpoint on every statement. Query
//! sessions over one handle also share its query runtime (object stores and the Parquet
//! footer cache; see [`Warehouse::query_runtime`]).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use deltalake::{DeltaTable, DeltaTableBuilder};
use object_store::path::Path;
use object_store::ObjectStoreExt;
use url::Url;

use crate::distributed::QueryEngine;
use crate::error::{Error, Result};
use crate::file_cache::FileCache;
use crate::replace::{table_layout, ReplaceSlices, SliceIndex};

type IndexHandle = Arc<tokio::sync::Mutex<SliceIndex>>;

/// A table handle kept for readers, with what identifies the table it was opened on.
#[derive(Clone)]
struct KeptSnapshot {
    table: DeltaTable,
    /// The e-tag or modification time of its first commit file: a table dropped and written
    /// again under the same name starts a new log, and the kept handle must not be reused.
    first_commit: String,
}
use crate::storage::{Storage, StorageConfig};

/// Where a table lives in the warehouse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Namespace {
    /// Tables loaded by syncs (`tables/`).
    Tables,
    /// Marts built from SQL (`marts/`).
    Marts,
    /// tidemark's own bookkeeping tables (`_tidemark/tables/`), queried as `tidemark.<name>`.
    System,
}

impl Namespace {
    /// The directory below the warehouse root.
    pub fn dir(self) -> &'static str {
        match self {
            Namespace::Tables => "tables",
            Namespace::Marts => "marts",
            Namespace::System => "_tidemark/tables",
        }
    }

    /// The namespaces of user data, in lookup order (system tables are listed apart).
    pub const ALL: [Namespace; 2] = [Namespace::Tables, Namespace::Marts];
}

impl std::fmt::Display for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Namespace::Tables => "table",
            Namespace::Marts => "mart",
            Namespace::System => "system table",
        })
    }
}

/// An open warehouse. Clones share one cache of table handles.
#[derive(Clone)]
pub struct Warehouse {
    storage: Storage,
    /// Slice indexes of the tables this process writes, so that a replace reads only the
    /// commits made since the last one instead of replaying the whole log each time.
    indexes: Arc<tokio::sync::Mutex<HashMap<(Namespace, String), IndexHandle>>>,
    /// Set once the store has shown it enforces conditional writes (checked before the first write).
    writable: Arc<tokio::sync::OnceCell<()>>,
    /// Table handles kept for readers (see [`Warehouse::latest_table`]).
    snapshots: Arc<std::sync::Mutex<HashMap<(Namespace, String), KeptSnapshot>>>,
    /// What every query session over this handle shares: the object stores and the cache of
    /// Parquet footers, so a session made per statement (`tidemark serve`) does not read every
    /// scanned file's footer again. Sessions with a memory limit get a pool of their own.
    query_runtime: Arc<RuntimeEnv>,
    /// Where the queries of sessions and mart refreshes over this handle run.
    query_engine: QueryEngine,
    /// Data files of a remote warehouse kept for queries (none for a local one).
    file_cache: Option<Arc<FileCache>>,
    /// Past versions opened for time travel, oldest opened first (see [`Warehouse::table_at`]).
    versions: Arc<std::sync::Mutex<VecDeque<KeptVersion>>>,
}

/// A past version of a table, kept for the time-travel statements that follow.
struct KeptVersion {
    namespace: Namespace,
    name: String,
    version: u64,
    /// The log's first commit (as [`Warehouse::first_commit_mark`] reads it): a table
    /// dropped and written again is another table.
    first_commit: String,
    table: DeltaTable,
}

/// Past versions kept for time travel (a dashboard compares a few versions again and again).
const KEPT_VERSIONS: usize = 16;

impl std::fmt::Debug for Warehouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Warehouse")
            .field("storage", &self.storage)
            .finish()
    }
}

impl Warehouse {
    /// Open (or, for a local directory, create) the warehouse at `url` and check that it answers.
    pub async fn open(url: &str, config: &StorageConfig) -> Result<Self> {
        let storage = Storage::resolve(url, config)?;
        storage.check_reachable().await?;
        tracing::debug!(warehouse = %storage.root(), "opened warehouse");
        let cache_bytes = config
            .cache_bytes
            .unwrap_or(crate::storage::DEFAULT_CACHE_BYTES);
        let remote = !matches!(storage.location(), crate::storage::Location::Local(_));
        let file_cache = (remote && cache_bytes > 0).then(|| FileCache::new(cache_bytes));
        Ok(Warehouse {
            storage,
            indexes: Arc::default(),
            writable: Arc::default(),
            snapshots: Arc::default(),
            query_runtime: RuntimeEnvBuilder::new().build_arc()?,
            query_engine: QueryEngine::Local,
            file_cache,
            versions: Arc::default(),
        })
    }

    /// The warm cache of this warehouse's data files, shared by every session over this
    /// handle; `None` for a local warehouse or with `cache_bytes = 0`.
    pub fn file_cache(&self) -> Option<&Arc<FileCache>> {
        self.file_cache.as_ref()
    }

    /// This handle with its queries run on `engine` (writes stay in this process).
    pub fn with_query_engine(mut self, engine: QueryEngine) -> Self {
        self.query_engine = engine;
        self
    }

    /// Where the queries of sessions and mart refreshes over this handle run.
    pub fn query_engine(&self) -> &QueryEngine {
        &self.query_engine
    }

    /// The runtime every query session over this handle shares (object stores, Parquet
    /// footer cache, spill files), with an unbounded memory pool.
    pub fn query_runtime(&self) -> &Arc<RuntimeEnv> {
        &self.query_runtime
    }

    /// The root URL.
    pub fn url(&self) -> &Url {
        self.storage.root()
    }

    /// The storage the warehouse lives on.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The URL of a table (which need not exist yet).
    pub fn table_url(&self, namespace: Namespace, name: &str) -> Result<Url> {
        validate_table_name(name)?;
        Ok(self.storage.url_of(&format!("{}/{name}", namespace.dir())))
    }

    /// Every table in a namespace that has a Delta log, sorted by name.
    pub async fn list(&self, namespace: Namespace) -> Result<Vec<String>> {
        let store = self.storage.store();
        let dir = Path::from(namespace.dir());
        let listing = store
            .list_with_delimiter(Some(&dir))
            .await
            .map_err(|e| Error::store(&dir, e))?;
        let mut names = Vec::new();
        for prefix in listing.common_prefixes {
            let Some(name) = prefix.filename().map(str::to_string) else {
                continue;
            };
            let log = prefix.clone().join("_delta_log");
            // A log starts at version 0 and keeps it until log cleanup, which leaves a
            // `_last_checkpoint`: two HEADs answer for nearly every table, where listing the
            // log reads every commit's name (one per sync batch, thousands on a busy table).
            let mut has_log = false;
            for marker in ["00000000000000000000.json", "_last_checkpoint"] {
                if store.head(&log.clone().join(marker)).await.is_ok() {
                    has_log = true;
                    break;
                }
            }
            if !has_log {
                has_log = !store
                    .list_with_delimiter(Some(&log))
                    .await
                    .map_err(|e| Error::store(&log, e))?
                    .objects
                    .is_empty();
            }
            if has_log && validate_table_name(&name).is_ok() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// Every table and mart, keyed by name.
    pub async fn list_all(&self) -> Result<BTreeMap<String, Namespace>> {
        let mut all = BTreeMap::new();
        for ns in Namespace::ALL {
            for name in self.list(ns).await? {
                all.entry(name).or_insert(ns);
            }
        }
        Ok(all)
    }

    /// Whether a table exists (has a Delta log).
    pub async fn exists(&self, namespace: Namespace, name: &str) -> Result<bool> {
        let table = self.unloaded_table(namespace, name)?;
        table
            .verify_deltatable_existence()
            .await
            .map_err(|e| Error::delta(name, e))
    }

    /// Where a table or mart called `name` lives (tables first), or `None`.
    pub async fn namespace_of(&self, name: &str) -> Result<Option<Namespace>> {
        for namespace in Namespace::ALL {
            if self.exists(namespace, name).await? {
                return Ok(Some(namespace));
            }
        }
        Ok(None)
    }

    /// Like [`Warehouse::namespace_of`], but a missing name is an error naming the warehouse.
    pub async fn locate(&self, name: &str) -> Result<Namespace> {
        self.namespace_of(name)
            .await?
            .ok_or_else(|| Error::TableNotFound {
                name: name.to_string(),
                warehouse: self.url().to_string(),
            })
    }

    /// A table handle that has not read the log yet.
    pub(crate) fn unloaded_table(&self, namespace: Namespace, name: &str) -> Result<DeltaTable> {
        let url = self.table_url(namespace, name)?;
        DeltaTableBuilder::from_url(url)
            .and_then(|b| b.with_storage_options(self.storage.delta_options()).build())
            .map_err(|e| Error::delta(name, e))
    }

    /// A table at its latest version, for reading: a handle this process opened before is
    /// brought up to date from the commits made since (never older than the newest commit
    /// when the call began); otherwise, or when the table was dropped and written again, it is
    /// opened afresh.
    pub async fn latest_table(&self, namespace: Namespace, name: &str) -> Result<DeltaTable> {
        let key = (namespace, name.to_string());
        let kept = self
            .snapshots
            .lock()
            .expect("snapshots lock")
            .get(&key)
            .cloned();
        let first_commit = self.first_commit_mark(namespace, name).await;
        if let (Some(mut kept), Some(mark)) = (kept, first_commit.as_ref()) {
            if &kept.first_commit == mark {
                match kept.table.update_incremental(None).await {
                    Ok(()) => {
                        self.keep(key, &kept.table, mark);
                        return Ok(kept.table);
                    }
                    Err(e) => {
                        tracing::debug!(table = name, error = %e, "a kept snapshot could not be brought up to date; reopening")
                    }
                }
            }
        }
        let table = self.open_table(namespace, name).await?;
        if let Some(mark) = first_commit {
            self.keep(key, &table, &mark);
        }
        Ok(table)
    }

    /// A table at a past `version`, for reading: a version this handle opened before (of the
    /// same log) is not read again, since a version never changes.
    pub async fn table_at(
        &self,
        namespace: Namespace,
        name: &str,
        version: u64,
    ) -> Result<DeltaTable> {
        let mark = self.first_commit_mark(namespace, name).await;
        if let Some(mark) = &mark {
            let kept = self.versions.lock().expect("versions lock");
            if let Some(k) = kept.iter().find(|k| {
                k.namespace == namespace
                    && k.name == name
                    && k.version == version
                    && &k.first_commit == mark
            }) {
                return Ok(k.table.clone());
            }
        }
        let table = self.open_table_at(namespace, name, Some(version)).await?;
        if let Some(first_commit) = mark {
            let mut kept = self.versions.lock().expect("versions lock");
            if kept.len() == KEPT_VERSIONS {
                kept.pop_front();
            }
            kept.push_back(KeptVersion {
                namespace,
                name: name.to_string(),
                version,
                first_commit,
                table: table.clone(),
            });
        }
        Ok(table)
    }

    /// Keep `table` unless a newer handle of it is kept already.
    fn keep(&self, key: (Namespace, String), table: &DeltaTable, mark: &str) {
        let mut kept = self.snapshots.lock().expect("snapshots lock");
        let newer = kept
            .get(&key)
            .is_some_and(|k| k.first_commit == mark && k.table.version() > table.version());
        if !newer {
            kept.insert(
                key,
                KeptSnapshot {
                    table: table.clone(),
                    first_commit: mark.to_string(),
                },
            );
        }
    }

    /// What identifies a table's log: its first commit file's e-tag (or modification time).
    /// `None` when that file is gone (log cleanup) or unreadable: the handle is not kept.
    async fn first_commit_mark(&self, namespace: Namespace, name: &str) -> Option<String> {
        let path = Path::from(format!(
            "{}/{name}/_delta_log/00000000000000000000.json",
            namespace.dir()
        ));
        let meta = self.storage.store().head(&path).await.ok()?;
        Some(meta.e_tag.unwrap_or_else(|| {
            meta.last_modified
                .timestamp_nanos_opt()
                .unwrap_or(0)
                .to_string()
        }))
    }

    /// Open a table at its latest version.
    pub async fn open_table(&self, namespace: Namespace, name: &str) -> Result<DeltaTable> {
        self.open_table_at(namespace, name, None).await
    }

    /// Open a table at a given version, or the latest.
    pub async fn open_table_at(
        &self,
        namespace: Namespace,
        name: &str,
        version: Option<u64>,
    ) -> Result<DeltaTable> {
        if !self.exists(namespace, name).await? {
            return Err(Error::TableNotFound {
                name: name.to_string(),
                warehouse: self.url().to_string(),
            });
        }
        let url = self.table_url(namespace, name)?;
        let mut builder = DeltaTableBuilder::from_url(url)
            .map_err(|e| Error::delta(name, e))?
            .with_storage_options(self.storage.delta_options());
        if let Some(v) = version {
            builder = builder.with_version(v);
        }
        builder.load().await.map_err(|e| Error::delta(name, e))
    }

    /// Before the first write: prove the store refuses a second create of one key, since
    /// every concurrent-commit guarantee rests on it (a no-op for local directories).
    pub(crate) async fn check_writable(&self) -> Result<()> {
        self.writable
            .get_or_try_init(|| self.storage.check_conditional_put())
            .await
            .map(|_| ())
    }

    /// The slice index of a table, shared by every replace this process makes; `None` if the
    /// table does not exist. Built on first use from a full snapshot.
    pub(crate) async fn slice_index(
        &self,
        namespace: Namespace,
        name: &str,
    ) -> Result<Option<Arc<tokio::sync::Mutex<SliceIndex>>>> {
        let key = (namespace, name.to_string());
        if let Some(index) = self.indexes.lock().await.get(&key) {
            return Ok(Some(Arc::clone(index)));
        }
        if !self.exists(namespace, name).await? {
            return Ok(None);
        }
        let index = Arc::new(tokio::sync::Mutex::new(
            self.rebuild_index(namespace, name).await?,
        ));
        let mut indexes = self.indexes.lock().await;
        Ok(Some(Arc::clone(indexes.entry(key).or_insert(index))))
    }

    /// Build a table's slice index from its latest snapshot.
    pub(crate) async fn rebuild_index(
        &self,
        namespace: Namespace,
        name: &str,
    ) -> Result<SliceIndex> {
        let table = self.open_table(namespace, name).await?;
        let layout = table_layout(name, &table)?;
        SliceIndex::build(name, table, layout)
    }

    /// Drop a cached index (after another writer changed the table's metadata).
    pub(crate) async fn forget_index(&self, namespace: Namespace, name: &str) {
        self.indexes
            .lock()
            .await
            .remove(&(namespace, name.to_string()));
    }

    /// Start a replace of slices in a table of the `tables/` namespace.
    pub fn replace_slices(&self, table: &str) -> ReplaceSlices {
        ReplaceSlices::new(self.clone(), Namespace::Tables, table)
    }

    /// Start a replace of slices in a mart.
    pub fn replace_mart_slices(&self, mart: &str) -> ReplaceSlices {
        ReplaceSlices::new(self.clone(), Namespace::Marts, mart)
    }

    /// Start a replace of slices in one of tidemark's system tables.
    pub fn replace_system_slices(&self, table: &str) -> ReplaceSlices {
        ReplaceSlices::new(self.clone(), Namespace::System, table)
    }
}

/// Table names become path segments and SQL identifiers: keep them plain.
pub fn validate_table_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 128;
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidTableName {
            name: name.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_plain_identifiers() {
        assert!(validate_table_name("ad_performance").is_ok());
        assert!(validate_table_name("meta_insights2").is_ok());
        for bad in ["", "Ad", "1x", "a/b", "a-b", "../x"] {
            assert!(validate_table_name(bad).is_err(), "{bad}");
        }
    }
}

/// The warehouse a computed table (`restatements(…)`, `maturity(…)`) reads when scanned: the
/// handle it was made with, or, when it was decoded from a plan (a Ballista scheduler), one
/// opened from its URL with `storage` on the first scan.
#[derive(Debug)]
pub struct ScanWarehouse {
    url: String,
    handle: tokio::sync::OnceCell<Warehouse>,
    storage: StorageConfig,
}

impl ScanWarehouse {
    /// `warehouse` itself.
    pub fn of(warehouse: &Warehouse) -> Self {
        ScanWarehouse {
            url: warehouse.url().to_string(),
            handle: tokio::sync::OnceCell::new_with(Some(warehouse.clone())),
            storage: StorageConfig::default(),
        }
    }

    /// The warehouse at `url`, opened with `storage` when first needed.
    pub fn remote(url: String, storage: StorageConfig) -> Self {
        ScanWarehouse {
            url,
            handle: tokio::sync::OnceCell::new(),
            storage,
        }
    }

    /// The URL: what a plan sent elsewhere carries.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The warehouse, opened now if it was not yet.
    pub async fn get(&self) -> datafusion::error::Result<&Warehouse> {
        self.handle
            .get_or_try_init(|| async {
                Warehouse::open(&self.url, &self.storage)
                    .await
                    .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))
            })
            .await
    }
}
