//! A DataFusion session over a warehouse. Its catalog (`tidemark.public`) lists every table
//! and mart, and `tidemark.tidemark` holds tidemark's system tables (`tidemark.slices`, the
//! slice ledger); a table is opened at its latest version when a statement names it, so every
//! query reads one pinned snapshot per table and a long-lived session never goes stale. The
//! handle comes from the warehouse's kept snapshots, brought up to date from the commits
//! since it was last read ([`Warehouse::latest_table`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, MemoryCatalogProvider, SchemaProvider, TableProvider};
use datafusion::config::ConfigOptions;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};
use deltalake::DeltaTable;

use crate::distributed::QueryEngine;
use crate::error::Result;
use crate::ledger;
use crate::warehouse::{Namespace, Warehouse};

/// The catalog and schema every table is registered under.
pub const CATALOG: &str = "tidemark";
pub const SCHEMA: &str = "public";
/// The schema of system tables (`tidemark.slices` resolves here).
pub const SYSTEM_SCHEMA: &str = "tidemark";
/// How system tables are written in statements: `tidemark.slices`.
const SYSTEM_PREFIX: &str = "tidemark.";
/// The catalog holding tables pinned at a past version for time-travel queries.
pub const ASOF_CATALOG: &str = "asof";

/// Decides whether a session may read a name (a table or mart by its name, a system table as
/// `tidemark.<name>`).
pub type ReadFilter = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// What a session may read and use. The default reads everything, with no memory limit.
#[derive(Clone, Default)]
pub struct SessionOptions {
    /// Names outside it are not listed, not resolved and not opened at a past version.
    pub readable: Option<ReadFilter>,
    /// Bytes the session's queries may hold at once (sorts, joins, aggregates); past it a
    /// query fails with "Resources exhausted" instead of taking the process's memory.
    pub memory_limit: Option<usize>,
    /// Read every table and mart as it was at this instant (`tidemark sql --as-of`).
    pub as_of: Option<chrono::DateTime<chrono::Utc>>,
}

/// One version of a table or mart that a session opened.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TableVersion {
    /// As opened: `ad_performance`, or `tidemark.slices` for a system table.
    pub name: String,
    pub version: u64,
    /// When that version was committed (ms since the epoch): tells a table apart from one
    /// deleted and written again, whose versions start over.
    pub committed_ms: Option<i64>,
}

/// The table versions a session has opened.
type TablesRead = Arc<Mutex<BTreeSet<TableVersion>>>;

/// A query session over one warehouse.
pub struct WarehouseSession {
    ctx: SessionContext,
    schema: Arc<WarehouseSchema>,
    system: Arc<WarehouseSchema>,
    tables_read: TablesRead,
}

impl WarehouseSession {
    /// A session whose default catalog and schema hold the warehouse's tables and marts.
    pub async fn new(warehouse: Warehouse) -> Result<Self> {
        Self::with_options(warehouse, SessionOptions::default()).await
    }

    /// A session limited to what `options` allow.
    pub async fn with_options(warehouse: Warehouse, options: SessionOptions) -> Result<Self> {
        let config = SessionConfig::from(base_options().clone())
            .with_default_catalog_and_schema(CATALOG, SCHEMA)
            .with_information_schema(true);
        // Keep token positions so errors can point at the part of the statement at fault.
        let mut config = match warehouse.file_cache() {
            Some(cache) => config.with_extension(Arc::clone(cache)),
            None => config,
        };
        config.options_mut().sql_parser.collect_spans = true;
        let runtime = runtime_for(&warehouse, options.memory_limit)?;
        let ctx = new_context(config, runtime, warehouse.query_engine())?;
        crate::functions::register(&ctx);
        crate::runwise::register(&ctx);
        register_table_functions(&ctx, &warehouse, options.readable.clone());
        let tables_read = TablesRead::default();
        let schema_of = |namespaces: &'static [Namespace], prefix: &'static str| {
            Arc::new(WarehouseSchema {
                tables_read: tables_read.clone(),
                warehouse: warehouse.clone(),
                runtime: ctx.runtime_env(),
                namespaces,
                prefix,
                readable: options.readable.clone(),
                as_of: options.as_of,
                names: RwLock::new(BTreeMap::new()),
                listed_at: Mutex::new(None),
            })
        };
        let schema = schema_of(&Namespace::ALL, "");
        let system = schema_of(&[Namespace::System], SYSTEM_PREFIX);
        let catalog = MemoryCatalogProvider::new();
        catalog.register_schema(SCHEMA, schema.clone() as Arc<dyn SchemaProvider>)?;
        catalog.register_schema(SYSTEM_SCHEMA, system.clone() as Arc<dyn SchemaProvider>)?;
        ctx.register_catalog(CATALOG, Arc::new(catalog));
        let asof = MemoryCatalogProvider::new();
        asof.register_schema(
            "public",
            Arc::new(datafusion::catalog::MemorySchemaProvider::new()),
        )?;
        ctx.register_catalog(ASOF_CATALOG, Arc::new(asof));
        let session = WarehouseSession {
            ctx,
            schema,
            system,
            tables_read,
        };
        session.refresh().await?;
        Ok(session)
    }

    /// The underlying DataFusion context.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// The warehouse this session reads.
    pub fn warehouse(&self) -> &Warehouse {
        &self.schema.warehouse
    }

    /// Re-list the warehouse's tables (new tables appear, dropped ones disappear).
    pub async fn refresh(&self) -> Result<()> {
        self.schema.refresh().await?;
        self.system.refresh().await
    }

    /// Every table and mart version this session has opened, by name (a system table as
    /// `tidemark.<name>`): for a session that planned one statement, exactly the data its
    /// result depends on. Memory tables (`information_schema`, table functions) are not listed.
    pub fn tables_read(&self) -> BTreeSet<TableVersion> {
        self.tables_read.lock().expect("tables read lock").clone()
    }

    /// Every name a statement can read, as it would be written, with where it lives: tables
    /// and marts by their own name, system tables as `tidemark.<name>`. As of the last
    /// [`refresh`](Self::refresh) (each statement refreshes).
    pub fn names(&self) -> Vec<(String, Namespace)> {
        let public = self.schema.names.read().expect("table list lock").clone();
        let system = self.system.names.read().expect("table list lock").clone();
        public
            .into_iter()
            .chain(
                system
                    .into_iter()
                    .map(|(name, ns)| (format!("{SYSTEM_PREFIX}{name}"), ns)),
            )
            .collect()
    }

    /// Whether this session may read `name` (as written in a statement).
    pub fn may_read(&self, name: &str) -> bool {
        self.schema.readable.as_ref().is_none_or(|f| f(name))
    }

    /// [`may_read`](Self::may_read) as an error naming the table.
    pub fn check_readable(&self, name: &str) -> Result<()> {
        if self.may_read(name) {
            Ok(())
        } else {
            Err(crate::Error::NotReadable {
                name: name.to_string(),
            })
        }
    }

    /// A table or mart as it was at `version`.
    pub async fn table_at_version(
        &self,
        name: &str,
        version: u64,
    ) -> Result<Arc<dyn TableProvider>> {
        self.check_readable(name)?;
        let namespace = self.schema.warehouse.locate(name).await?;
        let latest = self.schema.warehouse.latest_table(namespace, name).await?;
        let newest = latest.version().unwrap_or(0);
        if version > newest {
            return Err(crate::Error::NoSuchVersion {
                name: name.to_string(),
                asked: version.to_string(),
                newest,
            });
        }
        crate::maintenance::check_readable_version(
            &self.schema.warehouse,
            namespace,
            name,
            version,
        )
        .await?;
        let table = self
            .schema
            .warehouse
            .table_at(namespace, name, version)
            .await
            .map_err(|e| match e {
                crate::Error::Delta { .. } => crate::Error::NoSuchVersion {
                    name: name.to_string(),
                    asked: format!(
                        "{version} (its log or files are gone: vacuumed or checkpointed away)"
                    ),
                    newest,
                },
                other => other,
            })?;
        self.schema.provider(name, &table)
    }

    /// A table or mart as it was at instant `at` (the last version committed by then).
    pub async fn table_at_time(
        &self,
        name: &str,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Arc<dyn TableProvider>> {
        self.check_readable(name)?;
        let namespace = self.schema.warehouse.locate(name).await?;
        let table = open_at_time(&self.schema.warehouse, namespace, name, at).await?;
        self.schema.provider(name, &table)
    }

    /// Register a pinned table in the `asof` catalog (for a time-travel statement), replacing
    /// one registered under that name by an earlier statement.
    pub fn register_pinned(
        &self,
        registered_as: &str,
        provider: Arc<dyn TableProvider>,
    ) -> Result<()> {
        let schema = self
            .ctx
            .catalog(ASOF_CATALOG)
            .and_then(|c| c.schema("public"))
            .expect("the asof catalog is registered at start");
        schema.deregister_table(registered_as)?;
        schema.register_table(registered_as.to_string(), provider)?;
        Ok(())
    }

    /// Re-list the tables when `sql` needs the whole list and it may be out of date: it reads
    /// `information_schema`, or the list is older than [`LISTING_TTL`]. A statement that
    /// names a table finds it without a listing (see [`WarehouseSchema::table`]), which on S3
    /// saves a LIST per namespace and a HEAD per table on every statement.
    async fn refresh_for(&self, sql: &str) -> Result<()> {
        let stale = self
            .schema
            .listed_at
            .lock()
            .expect("listing time lock")
            .is_none_or(|at| at.elapsed() > LISTING_TTL);
        if stale || sql.to_ascii_lowercase().contains("information_schema") {
            self.refresh().await?;
        }
        Ok(())
    }

    /// Plan a SQL statement against the current table list.
    pub async fn sql(&self, sql: &str) -> Result<DataFrame> {
        self.refresh_for(sql).await?;
        Ok(self.ctx.sql(sql).await?)
    }

    /// Plan a statement that may only read: DDL (`CREATE EXTERNAL TABLE` would read the
    /// server's files), DML (`COPY … TO` would write them) and `SET` are refused.
    pub async fn read_only_sql(&self, sql: &str) -> Result<DataFrame> {
        self.refresh_for(sql).await?;
        let options = datafusion::execution::context::SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        Ok(self.ctx.sql_with_options(sql, options).await?)
    }
}

/// A context whose queries run on `engine`: here, or planned here and run on a Ballista
/// cluster (every table pinned at the version planned on).
pub fn new_context(
    config: SessionConfig,
    runtime: Arc<RuntimeEnv>,
    engine: &QueryEngine,
) -> Result<SessionContext> {
    Ok(match engine {
        QueryEngine::Local => SessionContext::new_with_config_rt(config, runtime),
        QueryEngine::Ballista { host, port } => SessionContext::new_with_state(
            crate::distributed::client_state(config, runtime, host, *port)?,
        ),
    })
}

/// How long a session trusts its table list for statements that need all of it
/// (`information_schema`); statements that name tables find new ones without it.
pub const LISTING_TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// tidemark's own DataFusion settings, each as (option, value, why). An environment variable
/// named after the option (`DATAFUSION_EXECUTION_PARQUET_BLOOM_FILTER_ON_READ=true`) wins.
pub(crate) const TIDEMARK_OPTIONS: &[(&str, &str, &str)] = &[(
    "datafusion.execution.parquet.bloom_filter_on_read",
    "false",
    "a slice file holds one account and a compacted file every account of its day, so an \
     account's bloom filter never prunes what the min/max statistics keep: EXPLAIN ANALYZE of \
     the benchmark's 30-day account window showed 120 of 120 row groups matched, for an extra \
     read and probe per row group",
)];

/// The DataFusion options every session starts from: DataFusion's defaults, tidemark's
/// [`TIDEMARK_OPTIONS`], then any `DATAFUSION_*` environment variable (e.g.
/// `DATAFUSION_EXECUTION_TARGET_PARTITIONS=4`). Read once per process.
fn base_options() -> &'static ConfigOptions {
    static OPTIONS: OnceLock<ConfigOptions> = OnceLock::new();
    OPTIONS.get_or_init(|| {
        let mut options = ConfigOptions::from_env().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "a DATAFUSION_* environment variable is not valid; using the defaults");
            ConfigOptions::default()
        });
        for (key, value, _why) in TIDEMARK_OPTIONS {
            let env = key.to_uppercase().replace('.', "_");
            if std::env::var_os(&env).is_none() {
                options
                    .set(key, value)
                    .expect("tidemark's DataFusion options are valid");
            }
        }
        options
    })
}

/// tidemark's table functions over `warehouse`: `restatements(…)`, `maturity(…)` and
/// `projected(…)`, each refusing tables `readable` does not allow.
pub fn register_table_functions(
    ctx: &SessionContext,
    warehouse: &Warehouse,
    readable: Option<ReadFilter>,
) {
    ctx.register_udtf(
        "restatements",
        Arc::new(crate::audit::RestatementsFunction {
            warehouse: warehouse.clone(),
            readable: readable.clone(),
        }),
    );
    for kind in [
        crate::maturity::function::Kind::Curve,
        crate::maturity::function::Kind::Projected,
    ] {
        ctx.register_udtf(
            kind.name(),
            Arc::new(crate::maturity::function::MaturityFunction {
                kind,
                warehouse: warehouse.clone(),
                readable: readable.clone(),
            }),
        );
    }
}

/// The runtime of a session: the warehouse's shared one, or with a memory limit, one of its
/// own pool that still shares the object stores, the Parquet footer cache and spill files.
fn runtime_for(warehouse: &Warehouse, memory_limit: Option<usize>) -> Result<Arc<RuntimeEnv>> {
    let shared = warehouse.query_runtime();
    let Some(bytes) = memory_limit else {
        return Ok(shared.clone());
    };
    let caches = CacheManagerConfig::default()
        .with_file_metadata_cache(Some(shared.cache_manager.get_file_metadata_cache()));
    let mut builder = RuntimeEnvBuilder::new()
        .with_memory_limit(bytes, 1.0)
        .with_object_store_registry(shared.object_store_registry.clone())
        .with_cache_manager(caches);
    builder.disk_manager = Some(shared.disk_manager.clone());
    Ok(builder.build_arc()?)
}

/// A schema provider over some namespaces: tables by name, opened at their latest version on lookup.
struct WarehouseSchema {
    warehouse: Warehouse,
    runtime: Arc<RuntimeEnv>,
    namespaces: &'static [Namespace],
    /// How this schema's names are written in statements ("" or "tidemark.").
    prefix: &'static str,
    readable: Option<ReadFilter>,
    as_of: Option<chrono::DateTime<chrono::Utc>>,
    names: RwLock<BTreeMap<String, Namespace>>,
    /// When `names` was last listed.
    listed_at: Mutex<Option<std::time::Instant>>,
    /// Shared with the session: what lookups opened.
    tables_read: TablesRead,
}

impl std::fmt::Debug for WarehouseSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarehouseSchema")
            .field("warehouse", &self.warehouse.url().as_str())
            .finish()
    }
}

impl WarehouseSchema {
    /// Re-list the tables of this schema's namespaces (the first namespace wins a name).
    async fn refresh(&self) -> Result<()> {
        let mut names = BTreeMap::new();
        for &namespace in self.namespaces {
            if namespace == Namespace::System {
                // The system tables are fixed (their lookup copes with one not written yet),
                // so statements do not pay a listing of `_tidemark/tables/` each time.
                names.insert(ledger::SLICES.to_string(), Namespace::System);
                continue;
            }
            for name in self.warehouse.list(namespace).await? {
                names.entry(name).or_insert(namespace);
            }
        }
        if let Some(readable) = &self.readable {
            names.retain(|name, _| readable(&format!("{}{name}", self.prefix)));
        }
        *self.names.write().expect("table list lock") = names;
        *self.listed_at.lock().expect("listing time lock") = Some(std::time::Instant::now());
        Ok(())
    }

    /// Where `name` lives among this schema's namespaces when it was not listed (made since
    /// the last listing), remembered for the next lookups; `None` when it is not there or may
    /// not be read.
    async fn find_unlisted(&self, name: &str) -> Result<Option<Namespace>> {
        if crate::warehouse::validate_table_name(name).is_err()
            || self
                .readable
                .as_ref()
                .is_some_and(|readable| !readable(&format!("{}{name}", self.prefix)))
        {
            return Ok(None);
        }
        for &namespace in self.namespaces {
            if namespace != Namespace::System && self.warehouse.exists(namespace, name).await? {
                self.names
                    .write()
                    .expect("table list lock")
                    .insert(name.to_string(), namespace);
                return Ok(Some(namespace));
            }
        }
        Ok(None)
    }

    /// The provider of an opened table, its store registered and its version recorded under
    /// `name` in what the session read.
    fn provider(&self, name: &str, table: &DeltaTable) -> Result<Arc<dyn TableProvider>> {
        self.register_store(table)?;
        record_read(&self.tables_read, name, table);
        table_provider(table)
    }

    /// Make the table's object store known to the runtime (once per bucket or file system).
    fn register_store(&self, table: &DeltaTable) -> DfResult<()> {
        let log_store = table.log_store();
        let root = log_store.root_url();
        let url = ObjectStoreUrl::parse(&root[..url::Position::BeforePath])?;
        if self.runtime.object_store(&url).is_err() {
            self.runtime
                .register_object_store(url.as_ref(), log_store.root_object_store(None));
        }
        Ok(())
    }
}

#[async_trait]
impl SchemaProvider for WarehouseSchema {
    fn table_names(&self) -> Vec<String> {
        self.names
            .read()
            .expect("table list lock")
            .keys()
            .cloned()
            .collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let listed = self
            .names
            .read()
            .expect("table list lock")
            .get(name)
            .copied();
        let namespace = match listed {
            Some(namespace) => namespace,
            None => match self
                .find_unlisted(name)
                .await
                .map_err(DataFusionError::from)?
            {
                Some(namespace) => namespace,
                None => return Ok(None),
            },
        };
        let is_ledger = namespace == Namespace::System && name == ledger::SLICES;
        if is_ledger
            && !self
                .warehouse
                .exists(namespace, name)
                .await
                .map_err(DataFusionError::from)?
        {
            return Ok(Some(ledger::empty_view()?));
        }
        let table = match self.as_of {
            Some(at) => open_at_time(&self.warehouse, namespace, name, at).await,
            None => self.warehouse.latest_table(namespace, name).await,
        };
        let table = match table {
            Ok(table) => table,
            // Dropped since it was listed.
            Err(crate::Error::TableNotFound { .. }) => {
                self.names.write().expect("table list lock").remove(name);
                return Ok(None);
            }
            Err(e) => return Err(DataFusionError::from(e)),
        };
        let provider = self
            .provider(&format!("{}{name}", self.prefix), &table)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        if is_ledger {
            return Ok(Some(ledger::view(provider)?));
        }
        Ok(Some(provider))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.names
            .read()
            .expect("table list lock")
            .contains_key(name)
    }
}

/// The DataFusion provider of a loaded table or mart at the version it was opened at (see
/// [`crate::scan`]).
pub fn table_provider(table: &DeltaTable) -> Result<Arc<dyn TableProvider>> {
    Ok(crate::scan::provider(table)?)
}

fn record_read(tables_read: &TablesRead, name: &str, table: &DeltaTable) {
    let version = table.version().unwrap_or(0);
    let committed_ms = table
        .snapshot()
        .ok()
        .and_then(|s| s.version_timestamp(version as _));
    tables_read
        .lock()
        .expect("tables read lock")
        .insert(TableVersion {
            name: name.to_string(),
            version,
            committed_ms,
        });
}

/// A table or mart as it was at instant `at`: the last version committed by then. An instant
/// before its first commit, or a version a vacuum took files from, is an error naming it.
pub async fn open_at_time(
    warehouse: &Warehouse,
    namespace: Namespace,
    name: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<DeltaTable> {
    let mut table = warehouse.open_table(namespace, name).await?;
    let newest = table.version().unwrap_or(0);
    table
        .load_with_datetime(at)
        .await
        .map_err(|_| crate::Error::NoSuchVersion {
            name: name.to_string(),
            asked: format!("as of {at} (before its first commit, or its log was cleaned up)"),
            newest,
        })?;
    // deltalake falls back to the first version for an instant before it.
    let loaded = table.version().unwrap_or(0);
    let committed_ms = table
        .snapshot()
        .ok()
        .and_then(|s| s.version_timestamp(loaded as _));
    if committed_ms.is_some_and(|ms| ms > at.timestamp_millis()) {
        return Err(crate::Error::NoSuchVersion {
            name: name.to_string(),
            asked: format!("as of {at} (that is before its first commit)"),
            newest,
        });
    }
    crate::maintenance::check_readable_version(warehouse, namespace, name, loaded as u64).await?;
    Ok(table)
}

/// Register one version of a table in a plain context under `alias` (for comparing versions).
pub async fn register_version(
    ctx: &SessionContext,
    warehouse: &Warehouse,
    namespace: Namespace,
    name: &str,
    version: u64,
    alias: &str,
) -> Result<()> {
    let table = warehouse
        .open_table_at(namespace, name, Some(version))
        .await?;
    table
        .update_datafusion_session(&ctx.state())
        .map_err(|e| crate::Error::delta(name, e))?;
    let provider = table_provider(&table).map_err(|e| DataFusionError::External(Box::new(e)))?;
    ctx.register_table(alias, provider)?;
    Ok(())
}
