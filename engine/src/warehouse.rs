//! A warehouse: a root URL holding Delta tables under `tables/`, marts under `marts/`,
//! raw payloads under `raw/` and engine state under `_tidemark/`. This module opens one,
//! names and lists its tables, and opens table handles at the latest or a past version.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use deltalake::{DeltaTable, DeltaTableBuilder};
use object_store::path::Path;
use url::Url;

use crate::error::{Error, Result};
use crate::replace::{table_layout, ReplaceSlices, SliceIndex};

type IndexHandle = Arc<tokio::sync::Mutex<SliceIndex>>;
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
}

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
        Ok(Warehouse {
            storage,
            indexes: Arc::default(),
            writable: Arc::default(),
        })
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
            let has_log = !store
                .list_with_delimiter(Some(&log))
                .await
                .map_err(|e| Error::store(&log, e))?
                .objects
                .is_empty();
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
