//! Object stores for processes that meet warehouses through plans, not through a
//! [`Warehouse`](crate::Warehouse) handle: a Ballista scheduler and its executors. A store is
//! made on first use from the URL a plan names (`file://`, `s3://bucket`) and the process's
//! storage settings, then shared by every session and task of the process, as is the cache
//! of Parquet footers.

use std::sync::Arc;

use datafusion::error::{DataFusionError, Result};
use datafusion::execution::cache::cache_manager::{CacheManagerConfig, FileMetadataCache};
use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use object_store::ObjectStore;
use url::Url;

use crate::storage::StorageConfig;

/// The stores of one process, made on demand.
#[derive(Debug)]
pub struct WarehouseStores {
    storage: StorageConfig,
    known: DefaultObjectStoreRegistry,
    /// Parquet footers, shared by every runtime made here.
    footers: std::sync::OnceLock<Arc<FileMetadataCache>>,
}

impl WarehouseStores {
    /// Stores opened with `storage`'s credentials, timeouts and retry budget.
    pub fn new(storage: StorageConfig) -> Arc<Self> {
        Arc::new(WarehouseStores {
            storage,
            known: DefaultObjectStoreRegistry::new(),
            footers: std::sync::OnceLock::new(),
        })
    }

    /// The storage settings stores are opened with.
    pub fn storage(&self) -> &StorageConfig {
        &self.storage
    }

    /// A runtime over these stores and the shared footer cache, spilling under `work_dir`
    /// when given.
    pub fn runtime(
        self: &Arc<Self>,
        work_dir: Option<&std::path::Path>,
    ) -> Result<Arc<RuntimeEnv>> {
        let mut builder = RuntimeEnvBuilder::new()
            .with_object_store_registry(Arc::clone(self) as Arc<dyn ObjectStoreRegistry>);
        if let Some(footers) = self.footers.get() {
            builder = builder.with_cache_manager(
                CacheManagerConfig::default().with_file_metadata_cache(Some(Arc::clone(footers))),
            );
        }
        if let Some(dir) = work_dir {
            builder = builder.with_temp_file_path(dir);
        }
        let runtime = builder.build_arc()?;
        let _ = self
            .footers
            .set(runtime.cache_manager.get_file_metadata_cache());
        Ok(runtime)
    }
}

impl ObjectStoreRegistry for WarehouseStores {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.known.register_store(url, store)
    }

    fn deregister_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        self.known.deregister_store(url)
    }

    fn get_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        if let Ok(store) = self.known.get_store(url) {
            return Ok(store);
        }
        let store = crate::storage::s3_store(url, &self.storage)
            .map_err(|e| DataFusionError::External(Box::new(e)))?
            .ok_or_else(|| {
                DataFusionError::Configuration(format!(
                    "no object store for {url}: tidemark reads local paths and s3:// URLs"
                ))
            })?;
        let base = Url::parse(&url[..url::Position::BeforePath])
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        self.known.register_store(&base, Arc::clone(&store));
        Ok(store)
    }
}
