//! The warm cache of a remote warehouse's data files: whole Parquet files held in memory,
//! bounded in bytes, least recently used out first, shared by every session over one
//! [`Warehouse`](crate::Warehouse) handle (so by every statement of `tidemark serve` and
//! `tidemark run`).
//!
//! A file is cached under its identity in the Delta log: its path, its size and the
//! modification time its add action records. Delta writers never write twice to a path (each
//! data file gets a new UUID name), and a file that were written again under the same path
//! would come with a new add action, so a new size or time: a version that replaced a file
//! can never be answered from the old one's bytes. Footers are cached by DataFusion's
//! file-metadata cache, validated by the same size and time.
//!
//! The first read of a file fetches it whole (one GET, footer included) and the reads that
//! follow are served from memory: a warm dashboard reads no object twice. Files bigger than a quarter of the
//! bound are read through, uncached, so one huge file cannot flush the hot window.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::{
    CachedParquetFileReaderFactory, CachedParquetMetaData, ParquetFileReaderFactory,
};
use datafusion::execution::cache::cache_manager::{CachedFileMetadataEntry, FileMetadataCache};
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use futures::future::BoxFuture;
use futures::FutureExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::errors::ParquetError;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};

/// Which bytes a cached file holds: its path and the size and modification time (ms) its
/// Delta add action records.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileKey {
    pub path: Path,
    pub size: u64,
    pub modified_ms: i64,
}

impl FileKey {
    fn of(file: &PartitionedFile) -> Self {
        let meta = &file.object_meta;
        FileKey {
            path: meta.location.clone(),
            size: meta.size,
            modified_ms: meta.last_modified.timestamp_millis(),
        }
    }
}

/// Whole files in memory, at most `bound` bytes of them.
#[derive(Debug)]
pub struct FileCache {
    bound: u64,
    state: Mutex<State>,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    files: HashMap<FileKey, (Bytes, u64)>,
    /// Last use → file: the first entry is the least recently used.
    by_use: BTreeMap<u64, FileKey>,
    bytes: u64,
    clock: u64,
}

/// What the cache holds and did, for tests and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    pub files: usize,
    pub bytes: u64,
    pub bound: u64,
    pub hits: u64,
    pub misses: u64,
    /// Files dropped to make room.
    pub evictions: u64,
}

impl FileCache {
    /// A cache holding at most `bound` bytes.
    pub fn new(bound: u64) -> Arc<Self> {
        Arc::new(FileCache {
            bound,
            state: Mutex::default(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        })
    }

    pub fn stats(&self) -> CacheStats {
        let state = self.state.lock().expect("file cache lock");
        CacheStats {
            files: state.files.len(),
            bytes: state.bytes,
            bound: self.bound,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }

    fn get(&self, key: &FileKey) -> Option<Bytes> {
        let mut state = self.state.lock().expect("file cache lock");
        state.clock += 1;
        let now = state.clock;
        let (bytes, used) = state.files.get_mut(key)?;
        let (bytes, before) = (bytes.clone(), std::mem::replace(used, now));
        state.by_use.remove(&before);
        state.by_use.insert(now, key.clone());
        Some(bytes)
    }

    fn insert(&self, key: FileKey, bytes: Bytes) {
        let size = bytes.len() as u64;
        let mut state = self.state.lock().expect("file cache lock");
        if state.files.contains_key(&key) {
            return;
        }
        while state.bytes + size > self.bound {
            let Some((_, oldest)) = state.by_use.pop_first() else {
                break;
            };
            if let Some((evicted, _)) = state.files.remove(&oldest) {
                state.bytes -= evicted.len() as u64;
                self.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
        state.clock += 1;
        let now = state.clock;
        state.bytes += size;
        state.by_use.insert(now, key.clone());
        state.files.insert(key, (bytes, now));
    }

    /// The whole file, from memory or fetched now (and kept when it fits); `None` when it is
    /// too big to cache.
    async fn file(
        &self,
        store: &Arc<dyn ObjectStore>,
        key: &FileKey,
    ) -> object_store::Result<Option<Bytes>> {
        if key.size > self.bound / 4 {
            return Ok(None);
        }
        if let Some(bytes) = self.get(key) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Some(bytes));
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let bytes = store.get(&key.path).await?.bytes().await?;
        if bytes.len() as u64 != key.size {
            // Not the file the log names: never keep it, let the reader fail or read it.
            return Ok(None);
        }
        self.insert(key.clone(), bytes.clone());
        Ok(Some(bytes))
    }
}

/// Opens Parquet files through a [`FileCache`]: data bytes from the cache, footers from
/// DataFusion's metadata cache.
#[derive(Debug)]
pub struct CachingReaderFactory {
    store: Arc<dyn ObjectStore>,
    cache: Arc<FileCache>,
    footers: Arc<FileMetadataCache>,
    /// DataFusion's reader, for files too big to cache.
    reader_factory: CachedParquetFileReaderFactory,
}

impl CachingReaderFactory {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        cache: Arc<FileCache>,
        footers: Arc<FileMetadataCache>,
    ) -> Self {
        CachingReaderFactory {
            reader_factory: CachedParquetFileReaderFactory::new(
                Arc::clone(&store),
                Arc::clone(&footers),
            ),
            footers,
            store,
            cache,
        }
    }
}

impl ParquetFileReaderFactory for CachingReaderFactory {
    fn create_reader(
        &self,
        partition_index: usize,
        file: PartitionedFile,
        metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> datafusion::error::Result<Box<dyn AsyncFileReader + Send>> {
        let key = FileKey::of(&file);
        let meta = file.object_meta.clone();
        let inner = self.reader_factory.create_reader(
            partition_index,
            file,
            metadata_size_hint,
            metrics,
        )?;
        Ok(Box::new(CachedReader {
            inner,
            store: Arc::clone(&self.store),
            cache: Arc::clone(&self.cache),
            footers: Arc::clone(&self.footers),
            key,
            meta,
        }))
    }
}

struct CachedReader {
    /// Reads files too big to cache.
    inner: Box<dyn AsyncFileReader + Send>,
    store: Arc<dyn ObjectStore>,
    cache: Arc<FileCache>,
    footers: Arc<FileMetadataCache>,
    key: FileKey,
    meta: ObjectMeta,
}

impl CachedReader {
    /// The footer (with page index) from DataFusion's metadata cache, if it holds this file's.
    fn cached_footer(&self) -> Option<Arc<ParquetMetaData>> {
        let entry = self.footers.get(&self.meta.location)?;
        if !entry.is_valid_for(&self.meta) {
            return None;
        }
        let parquet = entry
            .file_metadata
            .as_any()
            .downcast_ref::<CachedParquetMetaData>()?;
        let metadata = Arc::clone(parquet.parquet_metadata());
        (metadata.column_index().is_some() && metadata.offset_index().is_some()).then_some(metadata)
    }
}

fn slice(file: &Bytes, range: Range<u64>) -> parquet::errors::Result<Bytes> {
    if range.end > file.len() as u64 || range.start > range.end {
        return Err(ParquetError::General(format!(
            "read of bytes {range:?} past the end of a {}-byte file",
            file.len()
        )));
    }
    Ok(file.slice(range.start as usize..range.end as usize))
}

impl AsyncFileReader for CachedReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            match self.cache.file(&self.store, &self.key).await {
                Ok(Some(file)) => slice(&file, range),
                Ok(None) => self.inner.get_bytes(range).await,
                Err(e) => Err(ParquetError::External(Box::new(e))),
            }
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            match self.cache.file(&self.store, &self.key).await {
                Ok(Some(file)) => ranges.into_iter().map(|r| slice(&file, r)).collect(),
                Ok(None) => self.inner.get_byte_ranges(ranges).await,
                Err(e) => Err(ParquetError::External(Box::new(e))),
            }
        }
        .boxed()
    }

    /// The footer from the metadata cache, else parsed from the cached file (no request of
    /// its own: a cold file costs one GET in all) and put in the metadata cache.
    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            if let Some(metadata) = self.cached_footer() {
                return Ok(metadata);
            }
            let file = match self.cache.file(&self.store, &self.key).await {
                Ok(Some(file)) => file,
                Ok(None) => return self.inner.get_metadata(options).await,
                Err(e) => return Err(ParquetError::External(Box::new(e))),
            };
            let metadata = Arc::new(
                ParquetMetaDataReader::new()
                    .with_page_index_policy(PageIndexPolicy::Optional)
                    .parse_and_finish(&file)?,
            );
            self.footers.put(
                &self.meta.location,
                CachedFileMetadataEntry::new(
                    self.meta.clone(),
                    Arc::new(CachedParquetMetaData::new(Arc::clone(&metadata))),
                ),
            );
            Ok(metadata)
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, size: u64, modified_ms: i64) -> FileKey {
        FileKey {
            path: Path::from(name),
            size,
            modified_ms,
        }
    }

    #[test]
    fn least_recently_used_goes_first_and_the_bound_holds() {
        let cache = FileCache::new(100);
        cache.insert(key("a", 40, 1), Bytes::from(vec![1; 40]));
        cache.insert(key("b", 40, 1), Bytes::from(vec![2; 40]));
        assert!(cache.get(&key("a", 40, 1)).is_some()); // b is now the oldest
        cache.insert(key("c", 40, 1), Bytes::from(vec![3; 40]));
        assert!(cache.get(&key("b", 40, 1)).is_none());
        assert!(cache.get(&key("a", 40, 1)).is_some());
        assert!(cache.get(&key("c", 40, 1)).is_some());
        assert_eq!(cache.stats().bytes, 80);
        assert!(cache.stats().bytes <= cache.stats().bound);
    }

    #[test]
    fn a_file_written_again_under_its_path_is_another_file() {
        let cache = FileCache::new(100);
        cache.insert(key("a", 4, 1), Bytes::from_static(b"old!"));
        assert!(
            cache.get(&key("a", 4, 2)).is_none(),
            "new modification time"
        );
        assert!(cache.get(&key("a", 5, 1)).is_none(), "new size");
        assert_eq!(
            cache.get(&key("a", 4, 1)).unwrap(),
            Bytes::from_static(b"old!")
        );
    }

    #[tokio::test]
    async fn files_are_fetched_once_and_big_ones_not_kept() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        store
            .put(&Path::from("f"), Bytes::from(vec![7u8; 10]).into())
            .await
            .unwrap();
        store
            .put(&Path::from("big"), Bytes::from(vec![7u8; 30]).into())
            .await
            .unwrap();
        let cache = FileCache::new(100);
        let small = key("f", 10, 0);
        assert!(cache.file(&store, &small).await.unwrap().is_some());
        assert!(cache.file(&store, &small).await.unwrap().is_some());
        assert_eq!((cache.stats().misses, cache.stats().hits), (1, 1));
        assert!(cache
            .file(&store, &key("big", 30, 0))
            .await
            .unwrap()
            .is_none());
        // A log that names another size than the object has is never cached.
        assert!(cache
            .file(&store, &key("f", 11, 0))
            .await
            .unwrap()
            .is_none());
        assert_eq!(cache.stats().files, 1);
    }
}
