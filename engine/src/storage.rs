//! Where a warehouse lives: parsing its URL (a local directory or `s3://bucket/prefix`),
//! the storage options handed to deltalake and object_store, and the start-up checks
//! (reachable; on S3, conditional writes really enforced).
//!
//! `s3://` tables are opened through deltalake with handlers registered here, backed by
//! object_store's own S3 client (the same one [`Storage::store`] uses). deltalake's `s3`
//! feature would bring the AWS SDK (deltalake-aws) for its DynamoDB locking, which
//! conditional writes (`If-None-Match: *`) replace; dropping it took 39 crates out of the
//! build. Credentials therefore come from what object_store reads: `AWS_*` variables, web
//! identity (EKS), ECS container credentials or EC2 instance metadata (not `~/.aws` profiles).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Once};
use std::time::Duration;

use deltalake::logstore::{
    default_logstore, logstore_factories, object_store_factories, LogStore, LogStoreFactory,
    ObjectStoreFactory, ObjectStoreRef, StorageConfig as DeltaStorageConfig,
};
use deltalake::{DeltaResult, DeltaTableError};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, RetryConfig};
use url::Url;

use crate::error::{Error, Result};

/// Environment variables copied into the S3 storage options when present.
/// The secrets among them are only passed on, never logged or displayed.
const S3_ENV_KEYS: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", "aws_access_key_id"),
    ("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key"),
    ("AWS_SESSION_TOKEN", "aws_session_token"),
    ("AWS_REGION", "aws_region"),
    ("AWS_DEFAULT_REGION", "aws_region"),
    ("AWS_ENDPOINT_URL", "aws_endpoint"),
    ("AWS_ALLOW_HTTP", "allow_http"),
];

/// How hard the object store client tries before a request fails (`[storage]` in
/// tidemark.toml). The defaults follow the AWS SDKs' standard retry mode (3 retries with
/// jittered exponential backoff, which rides out a burst of `503 SlowDown`) within a budget
/// that makes an unreachable endpoint fail in seconds: object_store's own default (10 retries
/// over up to 3 minutes) makes it look like a hang.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryBudget {
    /// Retries of one failed request (5xx, throttling, connection errors, timeouts).
    pub max_retries: usize,
    /// No retry starts after this much time since the first attempt.
    pub retry_timeout: Duration,
    /// One attempt's limit, from sending to the last byte of the answer.
    pub request_timeout: Duration,
    /// Limit for opening a connection.
    pub connect_timeout: Duration,
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            max_retries: 3,
            retry_timeout: Duration::from_secs(15),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Options for reaching a warehouse, beyond what its URL says.
#[derive(Debug, Clone, Default)]
pub struct StorageConfig {
    /// Endpoint of an S3-compatible server (e.g. `http://127.0.0.1:9000`); overrides `AWS_ENDPOINT_URL`.
    pub s3_endpoint: Option<String>,
    /// Extra object_store / deltalake options (lower-case keys such as `aws_region`).
    pub options: HashMap<String, String>,
    /// Retries and timeouts of object store requests.
    pub retry: RetryBudget,
    /// Bytes of data files a remote (S3) warehouse keeps in memory for queries
    /// ([`crate::file_cache`]); `None`: [`DEFAULT_CACHE_BYTES`], 0: no cache. Local
    /// warehouses have none (the operating system caches their files).
    pub cache_bytes: Option<u64>,
}

/// The warm cache of a remote warehouse unless configured: 512 MiB.
pub const DEFAULT_CACHE_BYTES: u64 = 512 << 20;

/// Options for opening a table at `url` (anywhere, not only under one warehouse's root) with
/// `config`: S3 credentials and timeouts for `s3://`, none for a local path. Registers the
/// `s3://` handlers first. Used where only a URL travels, such as a plan pinned on a Ballista
/// scheduler.
pub fn table_options(url: &Url, config: &StorageConfig) -> HashMap<String, String> {
    REGISTER_S3.call_once(register_s3_handlers);
    match url.scheme() {
        "s3" | "s3a" => s3_options(config),
        _ => HashMap::new(),
    }
}

/// An object store for the bucket of an `s3://` URL, with `config`'s credentials and
/// timeouts; `None` for other schemes.
pub fn s3_store(url: &Url, config: &StorageConfig) -> Result<Option<Arc<dyn ObjectStore>>> {
    if !matches!(url.scheme(), "s3" | "s3a") {
        return Ok(None);
    }
    let bucket = url.host_str().unwrap_or_default();
    let store = s3_client(bucket, &s3_options(config)).map_err(|e| Error::InvalidWarehouseUrl {
        url: url.to_string(),
        reason: e.to_string(),
    })?;
    Ok(Some(Arc::new(store)))
}

/// A parsed warehouse location.
#[derive(Debug, Clone)]
pub enum Location {
    /// A directory on the local file system (created if missing).
    Local(PathBuf),
    /// A bucket and key prefix on S3 or an S3-compatible server.
    S3 { bucket: String, prefix: String },
}

/// A warehouse location resolved into everything needed to talk to it.
#[derive(Clone)]
pub struct Storage {
    location: Location,
    /// Root URL, always ending in '/'.
    root: Url,
    /// Options passed to deltalake when opening tables.
    options: HashMap<String, String>,
    /// A store rooted at the warehouse root, for listing and engine state.
    store: Arc<dyn ObjectStore>,
    retry: RetryBudget,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Options may hold credentials: show only their keys.
        let keys: Vec<&String> = self.options.keys().collect();
        f.debug_struct("Storage")
            .field("root", &self.root.as_str())
            .field("option_keys", &keys)
            .finish()
    }
}

static REGISTER_S3: Once = Once::new();

impl Storage {
    /// Resolve a warehouse URL. Local directories are created when missing.
    pub fn resolve(url: &str, config: &StorageConfig) -> Result<Self> {
        REGISTER_S3.call_once(register_s3_handlers);
        let location = parse_location(url)?;
        match &location {
            Location::Local(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| Error::Unreachable {
                    url: url.to_string(),
                    reason: format!("cannot create directory {}: {e}", dir.display()),
                })?;
                let dir = dir.canonicalize().map_err(|e| Error::Unreachable {
                    url: url.to_string(),
                    reason: e.to_string(),
                })?;
                let root =
                    Url::from_directory_path(&dir).map_err(|_| Error::InvalidWarehouseUrl {
                        url: url.to_string(),
                        reason: "not an absolute path".into(),
                    })?;
                let store =
                    LocalFileSystem::new_with_prefix(&dir).map_err(|e| Error::Unreachable {
                        url: url.to_string(),
                        reason: e.to_string(),
                    })?;
                Ok(Storage {
                    location: Location::Local(dir),
                    root,
                    options: HashMap::new(),
                    store: Arc::new(store),
                    retry: config.retry,
                })
            }
            Location::S3 { bucket, prefix } => {
                let options = s3_options(config);
                // An S3-compatible server has no instance metadata service to fall back on;
                // without keys the client would go looking for one.
                if options.contains_key("aws_endpoint")
                    && !options.contains_key("aws_access_key_id")
                {
                    return Err(Error::MissingCredentials {
                        url: url.to_string(),
                    });
                }
                let s3 = s3_client(bucket, &options).map_err(|e| Error::InvalidWarehouseUrl {
                    url: url.to_string(),
                    reason: e.to_string(),
                })?;
                let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
                    Arc::new(s3)
                } else {
                    Arc::new(PrefixStore::new(s3, Path::from(prefix.as_str())))
                };
                let root_text = if prefix.is_empty() {
                    format!("s3://{bucket}/")
                } else {
                    format!("s3://{bucket}/{prefix}/")
                };
                let root = Url::parse(&root_text).map_err(|e| Error::InvalidWarehouseUrl {
                    url: url.to_string(),
                    reason: e.to_string(),
                })?;
                Ok(Storage {
                    location: location.clone(),
                    root,
                    options,
                    store,
                    retry: config.retry,
                })
            }
        }
    }

    /// The warehouse root URL (ends in '/').
    pub fn root(&self) -> &Url {
        &self.root
    }

    /// The parsed location.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Options for deltalake table builders.
    pub fn delta_options(&self) -> HashMap<String, String> {
        self.options.clone()
    }

    /// A store rooted at the warehouse root.
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        Arc::clone(&self.store)
    }

    /// URL of a directory below the root, ending in '/'.
    pub fn url_of(&self, relative_dir: &str) -> Url {
        self.root
            .join(&format!("{}/", relative_dir.trim_matches('/')))
            .expect("relative warehouse paths are valid URL segments")
    }

    /// Check the warehouse answers; a listing is the cheapest request every store serves.
    pub async fn check_reachable(&self) -> Result<()> {
        let probe = self.store.list_with_delimiter(None);
        let limit = self.retry.retry_timeout + self.retry.request_timeout;
        match tokio::time::timeout(limit, probe).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(Error::Unreachable {
                url: self.root.to_string(),
                reason: first_line(&e.to_string()),
            }),
            Err(_) => Err(Error::Unreachable {
                url: self.root.to_string(),
                reason: "timed out".into(),
            }),
        }
    }

    /// On S3, prove the server enforces `If-None-Match: *` before trusting it with commits:
    /// a server that ignores the header makes every concurrent commit a silent lost write.
    pub async fn check_conditional_put(&self) -> Result<()> {
        if matches!(self.location, Location::Local(_)) {
            return Ok(()); // local files use an atomic hard link for create
        }
        let path = Path::from(format!(
            "_tidemark/checks/conditional-put-{}",
            uuid::Uuid::new_v4()
        ));
        let create = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self.store.put_opts(&path, "1".into(), create.clone()).await {
            // The probe's name is new, so "already exists" means the store answered the
            // first write with an error after storing it and the retry met it.
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(Error::store(&path, e)),
        }
        let second = self.store.put_opts(&path, "2".into(), create).await;
        let _ = self.store.delete(&path).await;
        match second {
            Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(Error::store(&path, e)),
            Ok(_) => Err(Error::UnsafeObjectStore {
                url: self.root.to_string(),
            }),
        }
    }
}

/// An S3 client for one bucket from lower-case options (`aws_region`, `aws_endpoint`, keys…,
/// and the retry budget as `max_retries` and `retry_timeout` in milliseconds). Variables the options lack (web identity, container
/// credentials) are read from the environment, as object_store does.
fn s3_client(
    bucket: &str,
    options: &HashMap<String, String>,
) -> std::result::Result<AmazonS3, object_store::Error> {
    let defaults = RetryBudget::default();
    let millis = |key: &str| {
        options
            .get(key)
            .and_then(|v| v.strip_suffix("ms")?.parse().ok())
            .map(Duration::from_millis)
    };
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_retry(RetryConfig {
            max_retries: options
                .get("max_retries")
                .and_then(|v| v.parse().ok())
                .unwrap_or(defaults.max_retries),
            retry_timeout: millis("retry_timeout").unwrap_or(defaults.retry_timeout),
            ..Default::default()
        });
    for (key, value) in options {
        if let Ok(key) = key.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
            builder = builder.with_config(key, value);
        }
    }
    if let Some(allow) = options.get("allow_http") {
        builder = builder.with_allow_http(allow == "true");
    }
    builder.build()
}

/// deltalake's `s3://` (and `s3a://`) handlers: object_store's S3 client, and deltalake's
/// default log store, which commits with put-if-absent.
struct S3Handlers;

impl ObjectStoreFactory for S3Handlers {
    fn parse_url_opts(
        &self,
        url: &Url,
        config: &DeltaStorageConfig,
    ) -> DeltaResult<(ObjectStoreRef, Path)> {
        let invalid = || DeltaTableError::InvalidTableLocation(url.to_string());
        let bucket = url.host_str().ok_or_else(invalid)?;
        let store = s3_client(bucket, &config.raw)?;
        let (_, path) = object_store::ObjectStoreScheme::parse(url).map_err(|_| invalid())?;
        Ok((Arc::new(store), path))
    }
}

impl LogStoreFactory for S3Handlers {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &DeltaStorageConfig,
    ) -> DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

fn register_s3_handlers() {
    let handlers = Arc::new(S3Handlers);
    for scheme in ["s3://", "s3a://"] {
        let url = Url::parse(scheme).expect("a scheme alone is a valid URL");
        object_store_factories().insert(url.clone(), handlers.clone());
        logstore_factories().insert(url, handlers.clone());
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or(text).to_string()
}

fn s3_options(config: &StorageConfig) -> HashMap<String, String> {
    let mut options = HashMap::new();
    for (env, key) in S3_ENV_KEYS {
        if let Ok(value) = std::env::var(env) {
            if !value.is_empty() {
                options.entry(key.to_string()).or_insert(value);
            }
        }
    }
    if let Some(endpoint) = &config.s3_endpoint {
        options.insert("aws_endpoint".into(), endpoint.clone());
    }
    if let Some(endpoint) = options.get("aws_endpoint") {
        if endpoint.starts_with("http://") && is_loopback_endpoint(endpoint) {
            options
                .entry("allow_http".into())
                .or_insert_with(|| "true".into());
        }
    }
    options
        .entry("aws_region".into())
        .or_insert_with(|| "us-east-1".into());
    // Where deltalake renames a temporary commit into place (rather than writing it with
    // put-if-absent), S3 needs the conditional multipart copy; deltalake-aws set the same.
    options
        .entry("copy_if_not_exists".into())
        .or_insert_with(|| "multipart".into());
    // The budget travels as options so deltalake's handlers (see `S3Handlers`) build their
    // clients with it too; `timeout` and `connect_timeout` are object_store's own keys.
    let budget = &config.retry;
    options.insert("max_retries".into(), budget.max_retries.to_string());
    for (key, value) in [
        ("retry_timeout", budget.retry_timeout),
        ("timeout", budget.request_timeout),
        ("connect_timeout", budget.connect_timeout),
    ] {
        options.insert(key.into(), format!("{}ms", value.as_millis()));
    }
    for (key, value) in &config.options {
        options.insert(key.clone(), value.clone());
    }
    options
}

fn is_loopback_endpoint(endpoint: &str) -> bool {
    Url::parse(endpoint)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .is_some_and(|h| h == "localhost" || h.starts_with("127.") || h == "[::1]")
}

/// Parse a warehouse URL into a location.
pub fn parse_location(url: &str) -> Result<Location> {
    let invalid = |reason: &str| Error::InvalidWarehouseUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    if url.trim().is_empty() {
        return Err(invalid("it is empty"));
    }
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.len() < 3 {
            return Err(invalid("the bucket name must have at least 3 characters"));
        }
        return Ok(Location::S3 {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
        });
    }
    if let Some(path) = url.strip_prefix("file://") {
        return Ok(Location::Local(PathBuf::from(path)));
    }
    if let Some((scheme, _)) = url.split_once("://") {
        return Err(invalid(&format!(
            "the scheme '{scheme}' is not supported (only local paths, file:// and s3://)"
        )));
    }
    let path = PathBuf::from(url);
    let absolute = if path.is_absolute() {
        path
    } else {
        std::env::current_dir()
            .map_err(|e| invalid(&e.to_string()))?
            .join(path)
    };
    Ok(Location::Local(absolute))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_s3_with_and_without_prefix() {
        match parse_location("s3://bucket/a/b/").unwrap() {
            Location::S3 { bucket, prefix } => {
                assert_eq!(bucket, "bucket");
                assert_eq!(prefix, "a/b");
            }
            other => panic!("{other:?}"),
        }
        match parse_location("s3://bucket").unwrap() {
            Location::S3 { prefix, .. } => assert_eq!(prefix, ""),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejects_unknown_schemes_and_short_buckets() {
        let err = parse_location("gs://bucket/x").unwrap_err().to_string();
        assert!(err.contains("'gs' is not supported"), "{err}");
        let err = parse_location("s3://b").unwrap_err().to_string();
        assert!(err.contains("at least 3"), "{err}");
    }

    #[test]
    fn loopback_http_endpoints_are_allowed_without_flag() {
        assert!(is_loopback_endpoint("http://127.0.0.1:9000"));
        assert!(is_loopback_endpoint("http://localhost:9000"));
        assert!(!is_loopback_endpoint("http://10.1.2.3:9000"));
    }
}
