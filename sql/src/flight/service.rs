//! The `FlightSqlService` implementation: each RPC authenticates the caller, then answers
//! from the catalog or plans the statement in a session limited to the caller's grants.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::{Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionCancelQueryRequest, ActionCancelQueryResult, ActionClosePreparedStatementRequest,
    ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult, Any,
    CommandGetCatalogs, CommandGetDbSchemas, CommandGetPrimaryKeys, CommandGetSqlInfo,
    CommandGetTableTypes, CommandGetTables, CommandGetXdbcTypeInfo, CommandPreparedStatementQuery,
    CommandStatementQuery, CommandStatementUpdate, DoPutPreparedStatementResult, ProstMessageExt,
    SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus, FlightData,
    FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage,
    SchemaAsIpc, Ticket,
};
use datafusion::prelude::DataFrame;
use datafusion::scalar::ScalarValue;
use engine::session::SessionOptions;
use engine::{Warehouse, WarehouseSession};
use futures::stream::{AbortHandle, Abortable};
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use super::auth::{AuthError, Authenticator, User};
use super::config::ServeConfig;
use super::limits::Limits;
use super::metadata;
use super::result_cache::{self, CachedResult, ResultCache};
use super::results::{self, make_portable, portable_schema};
use super::tickets::{Part, Source, TicketBody};
use crate::{plan_statement, Planned};

/// How long a prepared statement or a cached small result is kept without use.
const KEEP_FOR: Duration = Duration::from_secs(3600);
/// How long a statement planned for a FlightInfo waits for its DoGets. A ticket fetched later
/// (or by another server) is planned again from the statement it carries.
const KEEP_PLANS_FOR: Duration = Duration::from_secs(300);
/// Most tables whose split statistics are kept (the oldest versions go first).
const MAX_SPLIT_STATS: usize = 256;
/// Most endpoints a split result is offered as.
const MAX_PARTS: usize = 16;

/// Abort handles of the parts being streamed, by query id and a number per part.
type RunningQueries = HashMap<String, Vec<(u64, AbortHandle)>>;

/// Numbers the parts being streamed.
static NEXT_PART: AtomicU64 = AtomicU64::new(0);

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Counters `/metrics` reports.
#[derive(Debug, Default)]
pub struct FlightMetrics {
    pub queries: AtomicU64,
    pub failed_queries: AtomicU64,
    pub running_queries: AtomicU64,
    pub rows_sent: AtomicU64,
    pub failed_logins: AtomicU64,
    /// Statements answered from the result cache / run because it had no answer.
    pub result_cache_hits: AtomicU64,
    pub result_cache_misses: AtomicU64,
    /// Bytes the result cache holds.
    pub result_cache_bytes: AtomicU64,
}

struct Prepared {
    user: String,
    sql: String,
    parameters: Option<RecordBatch>,
    used: Instant,
}

struct Cached {
    user: String,
    batches: Vec<RecordBatch>,
    made: Instant,
}

/// A query planned when its FlightInfo was asked for, waiting for the DoGets of its parts:
/// each part runs this plan (restricted to the part) instead of planning the statement again.
struct PlannedQuery {
    user: String,
    frame: DataFrame,
    /// The session the plan was made in (its tables pinned at the versions planned against).
    session: Arc<WarehouseSession>,
    parts_left: usize,
    made: Instant,
}

/// What the split decision needs of one version of a table: its rows and its days.
struct SplitStats {
    rows: u64,
    days: Vec<chrono::NaiveDate>,
}

/// The Flight SQL service over one warehouse.
pub struct TidemarkFlightSql {
    warehouse: Warehouse,
    auth: Arc<Authenticator>,
    config: ServeConfig,
    limits: Limits,
    prepared: Mutex<HashMap<String, Prepared>>,
    cached: Mutex<HashMap<String, Cached>>,
    /// Planned queries by query id.
    planned: Mutex<HashMap<String, PlannedQuery>>,
    /// Split statistics per table version, computed from the file list once per version;
    /// `None` for a table without a `date` partition column.
    split_stats: Mutex<BTreeMap<engine::session::TableVersion, Option<Arc<SplitStats>>>>,
    results: Arc<ResultCache>,
    running: Arc<Mutex<RunningQueries>>,
    pub metrics: Arc<FlightMetrics>,
}

/// How a ticket's rows come: kept from an earlier run, or from a query (whose messages are
/// kept under `cache_key` when it has one).
enum Execution {
    Cached(CachedResult),
    Stream {
        schema: SchemaRef,
        batches: BoxStream<RecordBatch>,
        cache_key: Option<String>,
    },
}

fn auth_status(e: AuthError) -> Status {
    match e {
        AuthError::LockedOut(_) => Status::resource_exhausted(e.to_string()),
        _ => Status::unauthenticated(e.to_string()),
    }
}

/// A statement error as a gRPC status: the caller's mistakes are INVALID_ARGUMENT (with the
/// position rendered under the message), permissions PERMISSION_DENIED, memory
/// RESOURCE_EXHAUSTED.
fn statement_status(statement: &str, e: &crate::Error) -> Status {
    let text = e.render(statement);
    match e {
        crate::Error::Forbidden(_) => Status::permission_denied(text),
        crate::Error::Engine(inner) if matches!(**inner, engine::Error::NotReadable { .. }) => {
            Status::permission_denied(text)
        }
        _ if text.contains("Resources exhausted") => Status::resource_exhausted(format!(
            "the query needed more memory than its limit allows; narrow it (filters, fewer columns, smaller groups) or ask an admin to raise [serve] memory_limit. {text}"
        )),
        _ => Status::invalid_argument(text),
    }
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

impl TidemarkFlightSql {
    pub fn new(warehouse: Warehouse, auth: Arc<Authenticator>, config: ServeConfig) -> Self {
        let limits = Limits::new(
            config.max_concurrent_queries,
            config.max_queries_per_user,
            config.query_timeout,
        );
        let metrics = Arc::new(FlightMetrics::default());
        TidemarkFlightSql {
            warehouse,
            auth,
            results: Arc::new(ResultCache::new(config.result_cache.0, metrics.clone())),
            config,
            limits,
            prepared: Mutex::new(HashMap::new()),
            cached: Mutex::new(HashMap::new()),
            planned: Mutex::new(HashMap::new()),
            split_stats: Mutex::new(BTreeMap::new()),
            running: Arc::new(Mutex::new(HashMap::new())),
            metrics,
        }
    }

    /// The caller of `request`, from its authorization header.
    fn caller<T>(&self, request: &Request<T>) -> Result<User, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        self.auth.authenticate(header).map_err(|e| {
            if e == AuthError::BadCredentials {
                self.metrics.failed_logins.fetch_add(1, Ordering::Relaxed);
            }
            auth_status(e)
        })
    }

    /// A session that lists only what `user` may read, with the per-query memory limit.
    async fn session_for(&self, user: &User) -> Result<WarehouseSession, Status> {
        let grants = user.grants.clone();
        let options = SessionOptions {
            readable: Some(Arc::new(move |name: &str| grants.allows(name))),
            memory_limit: Some(self.config.memory_limit.0),
            as_of: None,
        };
        WarehouseSession::with_options(self.warehouse.clone(), options)
            .await
            .map_err(internal)
    }

    fn forget_stale(&self) {
        self.prepared
            .lock()
            .expect("prepared lock")
            .retain(|_, p| p.used.elapsed() < KEEP_FOR);
        self.cached
            .lock()
            .expect("cached lock")
            .retain(|_, c| c.made.elapsed() < KEEP_FOR);
        self.planned
            .lock()
            .expect("planned lock")
            .retain(|_, p| p.made.elapsed() < KEEP_PLANS_FOR);
    }

    /// The plan made for `query_id`'s FlightInfo, for one of its parts; forgotten once every
    /// part has taken it. `None` when there is none (expired, fetched again, or another server
    /// issued the ticket): the caller plans the statement again.
    fn take_planned(
        &self,
        query_id: &str,
        user: &User,
    ) -> Option<(DataFrame, Arc<WarehouseSession>)> {
        let mut planned = self.planned.lock().expect("planned lock");
        let entry = planned.get_mut(query_id)?;
        if entry.user != user.name {
            return None;
        }
        let taken = (entry.frame.clone(), entry.session.clone());
        entry.parts_left = entry.parts_left.saturating_sub(1);
        if entry.parts_left == 0 {
            planned.remove(query_id);
        }
        Some(taken)
    }

    /// The statement and bound parameters of a prepared handle owned by `user`.
    fn prepared_statement(
        &self,
        handle: &[u8],
        user: &User,
    ) -> Result<(String, Option<RecordBatch>), Status> {
        let handle = String::from_utf8_lossy(handle).into_owned();
        let mut prepared = self.prepared.lock().expect("prepared lock");
        let entry = prepared.get_mut(&handle).ok_or_else(|| {
            Status::not_found(
                "no such prepared statement (closed, or expired after an hour unused)",
            )
        })?;
        if entry.user != user.name {
            return Err(Status::permission_denied(
                "that prepared statement belongs to another user",
            ));
        }
        entry.used = Instant::now();
        Ok((entry.sql.clone(), entry.parameters.clone()))
    }

    /// Plan `sql` for `user`; parameters, when bound, fill `$1`, `$2`, ….
    async fn plan(
        &self,
        session: &WarehouseSession,
        user: &User,
        sql: &str,
        parameters: Option<&RecordBatch>,
    ) -> Result<Planned, Status> {
        let planned = plan_statement(session, sql, user.role)
            .await
            .map_err(|e| statement_status(sql, &e))?;
        match (planned, parameters) {
            (Planned::Query(frame), Some(params)) => {
                let values = parameter_values(params)?;
                let frame = frame
                    .with_param_values(values)
                    .map_err(|e| Status::invalid_argument(format!("binding parameters: {e}")))?;
                Ok(Planned::Query(frame))
            }
            (planned, _) => Ok(planned),
        }
    }

    /// The FlightInfo for a statement: its schema and one endpoint, or several when the
    /// result is big and can be split by day.
    async fn flight_info(
        &self,
        user: &User,
        source: Source,
        sql: &str,
        parameters: Option<&RecordBatch>,
        descriptor: FlightDescriptor,
    ) -> Result<FlightInfo, Status> {
        self.forget_stale();
        let session = Arc::new(self.session_for(user).await?);
        let planned = self.plan(&session, user, sql, parameters).await?;
        let query_id = uuid::Uuid::new_v4().to_string();
        let schema = portable_schema(&planned.schema());
        let (source, parts) = match planned {
            Planned::Rows(batches) => {
                let id = uuid::Uuid::new_v4().to_string();
                self.cached.lock().expect("cached lock").insert(
                    id.clone(),
                    Cached {
                        user: user.name.clone(),
                        batches,
                        made: Instant::now(),
                    },
                );
                (Source::Cached(id), vec![None])
            }
            Planned::Query(frame) => {
                let parts = self.parts_of(&frame, &session).await;
                self.planned.lock().expect("planned lock").insert(
                    query_id.clone(),
                    PlannedQuery {
                        user: user.name.clone(),
                        frame,
                        session,
                        parts_left: parts.len(),
                        made: Instant::now(),
                    },
                );
                (source, parts)
            }
        };
        let mut info = FlightInfo::new()
            .try_with_schema(&schema)
            .map_err(internal)?
            .with_descriptor(descriptor)
            .with_ordered(false);
        for part in parts {
            let body = TicketBody {
                query_id: query_id.clone(),
                user: user.name.clone(),
                source: source.clone(),
                part,
            };
            let ticket = TicketStatementQuery {
                statement_handle: body.encode().into(),
            };
            let ticket = Ticket::new(ticket.as_any().encode_to_vec());
            info = info.with_endpoint(FlightEndpoint::new().with_ticket(ticket));
        }
        Ok(info)
    }

    /// How to split a query's result: by its `date` column into groups of days when the
    /// day-partitioned table it reads holds more than `split_rows` rows, it has no ORDER BY
    /// or LIMIT on top, and its output has a `date` column; otherwise one part. The rows and
    /// days of each table version come from [`split_stats`](Self::split_stats), so a warm
    /// server decides without reading any file list.
    async fn parts_of(&self, frame: &DataFrame, session: &WarehouseSession) -> Vec<Option<Part>> {
        let plan = frame.logical_plan();
        let Ok(date) = frame.schema().field_with_unqualified_name("date") else {
            return vec![None];
        };
        if results::is_ordered_or_limited(plan) || date.data_type() != &DataType::Date32 {
            return vec![None];
        }
        let nullable = date.is_nullable();
        let read = session.tables_read();
        let mut largest: Option<Arc<SplitStats>> = None;
        for name in results::scanned_tables(plan) {
            let name = name.rsplit('.').next().unwrap_or(&name).to_string();
            let Some(version) = read.iter().find(|t| t.name == name) else {
                continue;
            };
            let Some(stats) = self.split_stats(version).await else {
                continue;
            };
            if largest.as_ref().is_none_or(|l| stats.rows > l.rows) {
                largest = Some(stats);
            }
        }
        let Some(stats) = largest else {
            return vec![None];
        };
        if stats.rows <= self.config.split_rows || stats.days.len() < 2 {
            return vec![None];
        }
        let wanted = stats.rows.div_ceil(self.config.split_rows.max(1)) as usize;
        results::day_parts("date", &stats.days, wanted.min(MAX_PARTS), nullable)
            .into_iter()
            .map(Some)
            .collect()
    }

    /// The rows and days of a table version that a plan read; `None` when the table has no
    /// `date` partition column (or cannot be read now). Computed from the file list once per
    /// version, then kept, the answer "no `date` partition" included.
    async fn split_stats(
        &self,
        version: &engine::session::TableVersion,
    ) -> Option<Arc<SplitStats>> {
        if let Some(stats) = self
            .split_stats
            .lock()
            .expect("split stats lock")
            .get(version)
        {
            return stats.clone();
        }
        let (columns, partitions) = engine::inspect::partitions(&self.warehouse, &version.name)
            .await
            .ok()?;
        let stats = columns.iter().position(|c| c == "date").map(|index| {
            let mut days: Vec<chrono::NaiveDate> = partitions
                .iter()
                .filter_map(|p| p.values.get(index).and_then(|(_, v)| v.parse().ok()))
                .collect();
            days.sort();
            days.dedup();
            Arc::new(SplitStats {
                rows: partitions.iter().map(|p| p.rows).sum(),
                days,
            })
        });
        let mut kept = self.split_stats.lock().expect("split stats lock");
        if kept.len() >= MAX_SPLIT_STATS {
            // Versions superseded by newer ones of the same table go first; else all.
            let newest: HashMap<&str, u64> = kept.keys().fold(HashMap::new(), |mut m, t| {
                let v = m.entry(t.name.as_str()).or_insert(t.version);
                *v = (*v).max(t.version);
                m
            });
            let stale: Vec<_> = kept
                .keys()
                .filter(|t| newest.get(t.name.as_str()) != Some(&t.version))
                .cloned()
                .collect();
            if stale.is_empty() {
                kept.clear();
            }
            for t in stale {
                kept.remove(&t);
            }
        }
        kept.insert(version.clone(), stats.clone());
        stats
    }

    /// Stream the rows of a ticket.
    async fn rows_of(
        &self,
        user: &User,
        body: TicketBody,
    ) -> Result<BoxStream<FlightData>, Status> {
        if body.user != user.name {
            return Err(Status::permission_denied(
                "this ticket was issued to another user",
            ));
        }
        let slot = self
            .limits
            .acquire(&user.name)
            .await
            .map_err(Status::resource_exhausted)?;
        let execution = match &body.source {
            Source::Cached(id) => {
                let cached = self.cached.lock().expect("cached lock").remove(id);
                let cached = cached.filter(|c| c.user == user.name).ok_or_else(|| {
                    Status::not_found("that result is gone (fetched already or expired)")
                })?;
                let schema = cached
                    .batches
                    .first()
                    .map_or_else(|| Arc::new(Schema::empty()), RecordBatch::schema);
                let schema = portable_schema(&schema);
                let stream = futures::stream::iter(cached.batches.into_iter().map(Ok));
                Execution::Stream {
                    schema,
                    batches: Box::pin(stream),
                    cache_key: None,
                }
            }
            Source::Statement(sql) => {
                self.execute(user, &body.query_id, sql, None, body.part.as_ref())
                    .await?
            }
            Source::Prepared(handle) => {
                let (sql, parameters) = self.prepared_statement(handle.as_bytes(), user)?;
                self.execute(
                    user,
                    &body.query_id,
                    &sql,
                    parameters.as_ref(),
                    body.part.as_ref(),
                )
                .await?
            }
        };
        let metrics = self.metrics.clone();
        let (schema, batches, cache_key) = match execution {
            Execution::Cached(hit) => {
                metrics.queries.fetch_add(1, Ordering::Relaxed);
                metrics.rows_sent.fetch_add(hit.rows, Ordering::Relaxed);
                drop(slot);
                let messages = hit.messages;
                let stream = futures::stream::iter(
                    (0..messages.len()).map(move |i| Ok(messages[i].clone())),
                );
                return Ok(Box::pin(stream));
            }
            Execution::Stream {
                schema,
                batches,
                cache_key,
            } => (schema, batches, cache_key),
        };
        let (abort, registration) = AbortHandle::new_pair();
        let part = NEXT_PART.fetch_add(1, Ordering::Relaxed);
        self.running
            .lock()
            .expect("running lock")
            .entry(body.query_id.clone())
            .or_default()
            .push((part, abort.clone()));
        metrics.queries.fetch_add(1, Ordering::Relaxed);
        metrics.running_queries.fetch_add(1, Ordering::Relaxed);
        let deadline = tokio::time::Instant::now() + self.limits.timeout;
        let timeout = self.limits.timeout;
        let portable = schema.clone();
        let counted = metrics.clone();
        let batches = Abortable::new(batches, registration)
            .map(move |batch| {
                let batch = batch?;
                counted
                    .rows_sent
                    .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
                make_portable(&batch, &portable).map_err(internal)
            })
            .take_until(tokio::time::sleep_until(deadline))
            .chain(futures::stream::once(async move {
                if abort.is_aborted() {
                    Err(Status::cancelled("the query was cancelled"))
                } else if tokio::time::Instant::now() >= deadline {
                    Err(Status::deadline_exceeded(format!(
                        "the query ran longer than its limit of {} s ([serve] query_timeout)",
                        timeout.as_secs()
                    )))
                } else {
                    Ok(RecordBatch::new_empty(Arc::new(Schema::empty())))
                }
            }))
            .filter(|b| {
                futures::future::ready(!matches!(b, Ok(batch) if batch.num_columns() == 0))
            });
        let guard = RunningGuard {
            slot: Some(slot),
            metrics: metrics.clone(),
            running: self.running.clone(),
            query_id: body.query_id.clone(),
            part,
        };
        let flight = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(batches.map_err(|status| FlightError::Tonic(Box::new(status))))
            .map(move |data| {
                let _keep = &guard;
                data.map_err(|e| match e {
                    FlightError::Tonic(status) => *status,
                    other => internal(other),
                })
            })
            .inspect_err({
                let metrics = metrics.clone();
                move |_| {
                    metrics.failed_queries.fetch_add(1, Ordering::Relaxed);
                }
            });
        let flight = encoded_ahead(Box::pin(flight));
        Ok(match cache_key {
            Some(key) => Box::pin(result_cache::recorded(flight, self.results.clone(), key)),
            None => flight,
        })
    }

    /// Start a query restricted to `part`: the plan made for its FlightInfo, or when that is
    /// gone, the statement planned again.
    async fn execute(
        &self,
        user: &User,
        query_id: &str,
        sql: &str,
        parameters: Option<&RecordBatch>,
        part: Option<&Part>,
    ) -> Result<Execution, Status> {
        let (session, planned) = match self.take_planned(query_id, user) {
            Some((frame, session)) => (session, Planned::Query(frame)),
            None => {
                let session = Arc::new(self.session_for(user).await?);
                let planned = self.plan(&session, user, sql, parameters).await?;
                (session, planned)
            }
        };
        match planned {
            Planned::Rows(batches) => {
                let schema = batches
                    .first()
                    .map_or_else(|| Arc::new(Schema::empty()), RecordBatch::schema);
                Ok(Execution::Stream {
                    schema: portable_schema(&schema),
                    batches: Box::pin(futures::stream::iter(batches.into_iter().map(Ok))),
                    cache_key: None,
                })
            }
            Planned::Query(frame) => {
                let frame = match part {
                    Some(part) => results::restrict(frame, part).map_err(internal)?,
                    None => frame,
                };
                let cache_key = self.cache_key(&frame, &session, sql, parameters, part);
                if let Some(hit) = cache_key.as_deref().and_then(|k| self.results.get(k)) {
                    return Ok(Execution::Cached(hit));
                }
                let schema = portable_schema(frame.schema().as_arrow());
                let stream = frame
                    .execute_stream()
                    .await
                    .map_err(|e| statement_status(sql, &crate::Error::from(e)))?;
                let statement = sql.to_string();
                let stream =
                    stream.map_err(move |e| statement_status(&statement, &crate::Error::from(e)));
                // The session must outlive the stream (its runtime holds the memory pool).
                let stream =
                    futures::stream::unfold((stream, session), |(mut s, session)| async move {
                        s.next().await.map(|item| (item, (s, session)))
                    });
                Ok(Execution::Stream {
                    schema,
                    batches: Box::pin(stream),
                    cache_key,
                })
            }
        }
    }

    /// The result cache's key for a planned query, when it can be cached.
    fn cache_key(
        &self,
        frame: &DataFrame,
        session: &WarehouseSession,
        sql: &str,
        parameters: Option<&RecordBatch>,
        part: Option<&Part>,
    ) -> Option<String> {
        if !self.results.is_enabled() {
            return None;
        }
        let parameters = format!("{parameters:?}");
        let part = format!("{part:?}");
        result_cache::key_of(
            frame.logical_plan(),
            &session.tables_read(),
            &[sql, &parameters, &part],
        )
    }

    fn cancel(&self, query_id: &str) -> bool {
        match self.running.lock().expect("running lock").remove(query_id) {
            Some(parts) => {
                for (_, handle) in parts {
                    handle.abort();
                }
                true
            }
            None => false,
        }
    }
}

/// Holds a running query's slot and counts it as running until the stream is dropped.
struct RunningGuard {
    slot: Option<super::limits::Slot>,
    metrics: Arc<FlightMetrics>,
    running: Arc<Mutex<RunningQueries>>,
    query_id: String,
    part: u64,
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.slot.take();
        self.metrics.running_queries.fetch_sub(1, Ordering::Relaxed);
        let mut running = self.running.lock().expect("running lock");
        if let Some(parts) = running.get_mut(&self.query_id) {
            parts.retain(|(part, _)| *part != self.part);
            if parts.is_empty() {
                running.remove(&self.query_id);
            }
        }
    }
}

/// Parameter values from the one-row batch a client bound.
fn parameter_values(batch: &RecordBatch) -> Result<Vec<ScalarValue>, Status> {
    if batch.num_rows() != 1 {
        return Err(Status::invalid_argument(format!(
            "bind one row of parameters, not {}",
            batch.num_rows()
        )));
    }
    batch
        .columns()
        .iter()
        .map(|c| ScalarValue::try_from_array(c, 0).map_err(internal))
        .collect()
}

/// How many encoded messages the query may run ahead of the response.
const ENCODED_AHEAD: usize = 2;

/// Drive `flight` (the query, the cast to portable types and the IPC encoding) on a task of
/// its own, a few messages ahead of the response, so encoding one batch and sending the one
/// before it can run on different cores instead of taking turns on one task. (On the 2-core
/// bench machine, where the scan and the client already keep both cores busy, this gained
/// about 5%.) When the client hangs up the channel closes, the task stops and drops the query.
fn encoded_ahead(mut flight: BoxStream<FlightData>) -> BoxStream<FlightData> {
    use futures::SinkExt;
    let (mut sender, receiver) = futures::channel::mpsc::channel(ENCODED_AHEAD);
    tokio::spawn(async move {
        while let Some(message) = flight.next().await {
            if sender.send(message).await.is_err() {
                break;
            }
        }
    });
    Box::pin(receiver)
}

fn single_batch_stream(batch: RecordBatch) -> BoxStream<FlightData> {
    let schema = batch.schema();
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(futures::stream::once(async move { Ok(batch) }))
        .map_err(internal);
    Box::pin(stream)
}

fn info_for<M: ProstMessageExt>(
    command: M,
    schema: &Schema,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let ticket = Ticket::new(command.as_any().encode_to_vec());
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(internal)?
        .with_endpoint(FlightEndpoint::new().with_ticket(ticket))
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

/// The schema of GetPrimaryKeys results (Flight SQL spec).
fn primary_keys_schema() -> Schema {
    Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ])
}

#[tonic::async_trait]
impl FlightSqlService for TidemarkFlightSql {
    type FlightService = TidemarkFlightSql;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<BoxStream<HandshakeResponse>>, Status> {
        let user = self.caller(&request)?;
        let token = self.auth.issue(&user);
        let response = HandshakeResponse {
            protocol_version: 0,
            payload: token.clone().into(),
        };
        let mut response: Response<BoxStream<HandshakeResponse>> =
            Response::new(Box::pin(futures::stream::iter([Ok(response)])));
        let header = MetadataValue::try_from(format!("Bearer {token}")).map_err(internal)?;
        response.metadata_mut().insert("authorization", header);
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let user = self.caller(&request)?;
        let info = self
            .flight_info(
                &user,
                Source::Statement(query.query.clone()),
                &query.query,
                None,
                request.into_inner(),
            )
            .await?;
        Ok(Response::new(info))
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let user = self.caller(&request)?;
        let (sql, parameters) = self.prepared_statement(&query.prepared_statement_handle, &user)?;
        let handle = String::from_utf8_lossy(&query.prepared_statement_handle).into_owned();
        let info = self
            .flight_info(
                &user,
                Source::Prepared(handle),
                &sql,
                parameters.as_ref(),
                request.into_inner(),
            )
            .await?;
        Ok(Response::new(info))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<BoxStream<FlightData>>, Status> {
        let user = self.caller(&request)?;
        let body =
            TicketBody::decode(&ticket.statement_handle).map_err(Status::invalid_argument)?;
        Ok(Response::new(self.rows_of(&user, body).await?))
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<BoxStream<FlightData>>, Status> {
        let user = self.caller(&request)?;
        let body = TicketBody {
            query_id: uuid::Uuid::new_v4().to_string(),
            user: user.name.clone(),
            source: Source::Prepared(
                String::from_utf8_lossy(&query.prepared_statement_handle).into_owned(),
            ),
            part: None,
        };
        Ok(Response::new(self.rows_of(&user, body).await?))
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(&request)?;
        let schema = query.into_builder().schema();
        info_for(query, &schema, request.into_inner())
    }

    async fn do_get_catalogs(
        &self,
        _query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<BoxStream<FlightData>>, Status> {
        self.caller(&request)?;
        Ok(Response::new(single_batch_stream(
            metadata::catalogs().map_err(internal)?,
        )))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(&request)?;
        let schema = query.clone().into_builder().schema();
        info_for(query, &schema, request.into_inner())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<BoxStream<FlightData>>, Status> {
        self.caller(&request)?;
        Ok(Response::new(single_batch_stream(
            metadata::db_schemas(query).map_err(internal)?,
        )))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(&request)?;
        let schema = query.clone().into_builder().schema();
        info_for(query, &schema, request.into_inner())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<BoxStream<FlightData>>, Status> {
        let user = self.caller(&request)?;
        let session = self.session_for(&user).await?;
        let batch = metadata::tables(&session, query).await.map_err(internal)?;
        Ok(Response::new(single_batch_stream(batch)))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(&request)?;
        let schema = query.into_builder().schema();
        info_for(query, &schema, request.into_inner())
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<BoxStream<FlightData>>, Status> {
        self.caller(&request)?;
        let mut builder = query.into_builder();
        for table_type in metadata::TABLE_TYPES {
            builder.append(table_type);
        }
        Ok(Response::new(single_batch_stream(
            builder.build().map_err(internal)?,
        )))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(&request)?;
        let schema = query.clone().into_builder(metadata::sql_info()).schema();
        info_for(query, &schema, request.into_inner())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<BoxStream<FlightData>>, Status> {
        self.caller(&request)?;
        let batch = query
            .into_builder(metadata::sql_info())
            .build()
            .map_err(internal)?;
        Ok(Response::new(single_batch_stream(batch)))
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(&request)?;
        info_for(query, &primary_keys_schema(), request.into_inner())
    }

    /// A mart's `unique_key` is its primary key; tables have none.
    async fn do_get_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<Ticket>,
    ) -> Result<Response<BoxStream<FlightData>>, Status> {
        let user = self.caller(&request)?;
        let definitions = engine::marts::stored_definitions(&self.warehouse)
            .await
            .map_err(internal)?;
        let mut rows: Vec<(String, String, i32)> = Vec::new();
        if let Some(mart) = definitions.iter().find(|m| m.name == query.table) {
            if user.grants.allows(&mart.name) {
                for (i, column) in mart.header.unique_key.iter().enumerate() {
                    rows.push((mart.name.clone(), column.clone(), i as i32 + 1));
                }
            }
        }
        let n = rows.len();
        let batch = RecordBatch::try_new(
            Arc::new(primary_keys_schema()),
            vec![
                Arc::new(StringArray::from(vec![engine::session::CATALOG; n])),
                Arc::new(StringArray::from(vec![engine::session::SCHEMA; n])),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| r.0.as_str()),
                )),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| r.1.as_str()),
                )),
                Arc::new(StringArray::from(vec![None::<&str>; n])),
                Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.2))),
            ],
        )
        .map_err(internal)?;
        Ok(Response::new(single_batch_stream(batch)))
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(&request)?;
        let schema = query.into_builder(metadata::xdbc_types()).schema();
        info_for(query, &schema, request.into_inner())
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<Ticket>,
    ) -> Result<Response<BoxStream<FlightData>>, Status> {
        self.caller(&request)?;
        let batch = query
            .into_builder(metadata::xdbc_types())
            .build()
            .map_err(internal)?;
        Ok(Response::new(single_batch_stream(batch)))
    }

    async fn do_put_statement_update(
        &self,
        command: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let user = self.caller(&request)?;
        let _slot = self
            .limits
            .acquire(&user.name)
            .await
            .map_err(Status::resource_exhausted)?;
        let session = self.session_for(&user).await?;
        let planned = self.plan(&session, &user, &command.query, None).await?;
        let batches = tokio::time::timeout(self.limits.timeout, planned.collect())
            .await
            .map_err(|_| {
                Status::deadline_exceeded("the statement ran longer than [serve] query_timeout")
            })?
            .map_err(|e| statement_status(&command.query, &e))?;
        Ok(batches.iter().map(RecordBatch::num_rows).sum::<usize>() as i64)
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let user = self.caller(&request)?;
        let handle = String::from_utf8_lossy(&query.prepared_statement_handle).into_owned();
        // Check ownership before reading the parameters.
        self.prepared_statement(handle.as_bytes(), &user)?;
        let stream = request
            .into_inner()
            .map_err(|status| FlightError::Tonic(Box::new(status)));
        let batches: Vec<RecordBatch> =
            arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(stream)
                .try_collect()
                .await
                .map_err(|e| {
                    Status::invalid_argument(format!("cannot read the bound parameters: {e}"))
                })?;
        let parameters = match batches.as_slice() {
            [] => None,
            [one] => Some(one.clone()),
            many => {
                Some(arrow::compute::concat_batches(&many[0].schema(), many).map_err(internal)?)
            }
        };
        if let Some(entry) = self
            .prepared
            .lock()
            .expect("prepared lock")
            .get_mut(&handle)
        {
            entry.parameters = parameters;
            entry.used = Instant::now();
        }
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(handle.into_bytes().into()),
        })
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let user = self.caller(&request)?;
        self.forget_stale();
        let session = self.session_for(&user).await?;
        // Plan once for the result and parameter schemas; tidemark statements (which run
        // when planned) are prepared without running, their schema comes at execution.
        let (dataset_schema, parameter_schema) = match crate::extensions::parse(&query.query) {
            Ok(Some(_)) => (Schema::empty(), Schema::empty()),
            _ => match self.plan(&session, &user, &query.query, None).await? {
                Planned::Query(frame) => {
                    let parameters = frame
                        .logical_plan()
                        .get_parameter_types()
                        .map_err(|e| Status::invalid_argument(e.to_string()))?;
                    let mut names: Vec<_> = parameters.into_iter().collect();
                    names.sort_by_key(|(name, _)| {
                        name.trim_start_matches('$')
                            .parse::<usize>()
                            .unwrap_or(usize::MAX)
                    });
                    let fields: Vec<Field> = names
                        .into_iter()
                        .map(|(name, t)| Field::new(name, t.unwrap_or(DataType::Utf8), true))
                        .collect();
                    (
                        portable_schema(frame.schema().as_arrow()).as_ref().clone(),
                        Schema::new(fields),
                    )
                }
                Planned::Rows(_) => (Schema::empty(), Schema::empty()),
            },
        };
        let handle = uuid::Uuid::new_v4().to_string();
        self.prepared.lock().expect("prepared lock").insert(
            handle.clone(),
            Prepared {
                user: user.name.clone(),
                sql: query.query.clone(),
                parameters: None,
                used: Instant::now(),
            },
        );
        let ipc = |schema: &Schema| -> Result<bytes::Bytes, Status> {
            let message: IpcMessage = SchemaAsIpc::new(schema, &Default::default())
                .try_into()
                .map_err(internal)?;
            Ok(message.0)
        };
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.into_bytes().into(),
            dataset_schema: ipc(&dataset_schema)?,
            parameter_schema: ipc(&parameter_schema)?,
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        let user = self.caller(&request)?;
        let handle = String::from_utf8_lossy(&query.prepared_statement_handle).into_owned();
        let mut prepared = self.prepared.lock().expect("prepared lock");
        if prepared.get(&handle).is_some_and(|p| p.user == user.name) {
            prepared.remove(&handle);
        }
        Ok(())
    }

    async fn do_action_cancel_query(
        &self,
        query: ActionCancelQueryRequest,
        request: Request<Action>,
    ) -> Result<ActionCancelQueryResult, Status> {
        self.caller(&request)?;
        let info =
            FlightInfo::decode(query.info).map_err(|e| Status::invalid_argument(e.to_string()))?;
        // CancelResult (not exported by arrow-flight): 1 = cancelled, 3 = not cancellable.
        let result = if self.cancel_info(&info) { 1 } else { 3 };
        Ok(ActionCancelQueryResult { result })
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        self.caller(&request)?;
        let action = request.into_inner();
        if action.r#type != "CancelFlightInfo" {
            return Err(Status::unimplemented(format!(
                "action {} is not supported",
                action.r#type
            )));
        }
        let cancel = CancelFlightInfoRequest::decode(action.body)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let info = cancel
            .info
            .ok_or_else(|| Status::invalid_argument("CancelFlightInfo without a FlightInfo"))?;
        let status = if self.cancel_info(&info) {
            CancelStatus::Cancelled
        } else {
            CancelStatus::NotCancellable
        };
        let result = CancelFlightInfoResult::new(status);
        let body = result.encode_to_vec();
        Ok(Response::new(Box::pin(futures::stream::iter([Ok(
            arrow_flight::Result { body: body.into() },
        )]))))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

impl TidemarkFlightSql {
    /// Abort the queries behind a FlightInfo's tickets; whether any was running.
    fn cancel_info(&self, info: &FlightInfo) -> bool {
        let mut cancelled = false;
        for endpoint in &info.endpoint {
            let Some(ticket) = &endpoint.ticket else {
                continue;
            };
            let Ok(any) = Any::decode(ticket.ticket.clone()) else {
                continue;
            };
            let Ok(Some(statement)) = any.unpack::<TicketStatementQuery>() else {
                continue;
            };
            if let Ok(body) = TicketBody::decode(&statement.statement_handle) {
                cancelled |= self.cancel(&body.query_id);
            }
        }
        cancelled
    }
}
