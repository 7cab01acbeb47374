//! Finished results kept as the Flight messages they were sent as, so a dashboard that asks
//! the same question again is answered without scanning, casting or encoding anything.
//!
//! A result is keyed by the statement, its bound parameters, the endpoint's part and the exact
//! version of every table and mart it read. A sync or mart refresh commits a new version, so
//! the next run of the statement plans against it, gets a different key and misses: a cached
//! result is never stale. Statements are cached only when that key says everything: every
//! table they scan is a versioned Delta table (not `information_schema` or a table function),
//! and they call no function whose value can change between runs (`now()`, `random()`).
//! Access is checked before the cache is consulted: a caller must plan the statement under
//! their own grants to reach a key.
//!
//! The cache holds at most `[serve] result_cache` bytes; a result larger than a quarter of
//! that is streamed but not kept. The least recently used results are dropped first. Results
//! being recorded while they stream hold at most as much again between them: past that, a
//! recording is given up (the result still streams, it is just not kept).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arrow_flight::FlightData;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use engine::session::TableVersion;
use futures::{Stream, StreamExt};
use tonic::Status;

use super::FlightMetrics;

/// The messages of one finished result, as sent.
#[derive(Clone)]
pub struct CachedResult {
    pub messages: Arc<[FlightData]>,
    pub rows: u64,
}

struct Entry {
    result: CachedResult,
    bytes: usize,
    last_used: u64,
}

#[derive(Default)]
struct Entries {
    by_key: HashMap<String, Entry>,
    bytes: usize,
    clock: u64,
}

/// A bounded, least-recently-used store of finished results. It counts its hits, misses and
/// size in the service's metrics.
pub struct ResultCache {
    capacity: usize,
    entries: Mutex<Entries>,
    /// Bytes held by recordings in progress.
    recording: AtomicUsize,
    metrics: Arc<FlightMetrics>,
}

/// Rows in a message (a record batch's IPC header says; other messages have none).
fn rows_in(message: &FlightData) -> u64 {
    arrow::ipc::root_as_message(&message.data_header)
        .ok()
        .and_then(|m| m.header_as_record_batch())
        .map_or(0, |batch| batch.length().max(0) as u64)
}

/// Bytes a message takes in the cache (its header and body; the rest is small).
fn message_bytes(message: &FlightData) -> usize {
    message.data_header.len() + message.data_body.len() + message.app_metadata.len() + 64
}

impl ResultCache {
    /// A cache of at most `capacity` bytes; 0 turns it off.
    pub fn new(capacity: usize, metrics: Arc<FlightMetrics>) -> Self {
        ResultCache {
            capacity,
            entries: Mutex::new(Entries::default()),
            recording: AtomicUsize::new(0),
            metrics,
        }
    }

    /// The largest result kept.
    pub fn max_entry(&self) -> usize {
        self.capacity / 4
    }

    pub fn is_enabled(&self) -> bool {
        self.capacity > 0
    }

    /// Take `bytes` of the recording budget; false (nothing taken) when it is spent.
    fn reserve(&self, bytes: usize) -> bool {
        self.recording
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held + bytes <= self.capacity).then_some(held + bytes)
            })
            .is_ok()
    }

    fn release(&self, bytes: usize) {
        self.recording.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.entries.lock().expect("result cache lock").bytes
    }

    pub fn get(&self, key: &str) -> Option<CachedResult> {
        let mut entries = self.entries.lock().expect("result cache lock");
        entries.clock += 1;
        let now = entries.clock;
        let Some(entry) = entries.by_key.get_mut(key) else {
            self.metrics
                .result_cache_misses
                .fetch_add(1, Ordering::Relaxed);
            return None;
        };
        entry.last_used = now;
        self.metrics
            .result_cache_hits
            .fetch_add(1, Ordering::Relaxed);
        Some(entry.result.clone())
    }

    /// Keep a finished result, dropping the least recently used ones to make room.
    pub fn insert(&self, key: String, result: CachedResult) {
        let bytes: usize = result.messages.iter().map(message_bytes).sum();
        if bytes > self.max_entry() {
            return;
        }
        let mut entries = self.entries.lock().expect("result cache lock");
        if let Some(old) = entries.by_key.remove(&key) {
            entries.bytes -= old.bytes;
        }
        while entries.bytes + bytes > self.capacity {
            let Some(oldest) = entries
                .by_key
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(dropped) = entries.by_key.remove(&oldest) {
                entries.bytes -= dropped.bytes;
            }
        }
        entries.clock += 1;
        let last_used = entries.clock;
        entries.bytes += bytes;
        self.metrics
            .result_cache_bytes
            .store(entries.bytes as u64, Ordering::Relaxed);
        entries.by_key.insert(
            key,
            Entry {
                result,
                bytes,
                last_used,
            },
        );
    }
}

/// The key of a result, or `None` when the plan's result cannot be told by it: it scans
/// something that is not a versioned table (`information_schema`, a table function) or calls
/// a function that is not immutable.
///
/// `tables_read` is what the session opened while planning; `parts` are
/// the statement, its parameters and the endpoint's part, each written out in full.
pub fn key_of(
    plan: &LogicalPlan,
    tables_read: &BTreeSet<TableVersion>,
    parts: &[&str],
) -> Option<String> {
    if !is_repeatable(plan) {
        return None;
    }
    let names: BTreeSet<&str> = tables_read.iter().map(|t| t.name.as_str()).collect();
    let mut every_scan_versioned = true;
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            if !names.contains(scanned_name(&scan.table_name).as_str()) {
                every_scan_versioned = false;
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    if !every_scan_versioned {
        return None;
    }
    let mut key = String::new();
    for part in parts {
        key.push_str(&part.len().to_string());
        key.push(':');
        key.push_str(part);
    }
    for table in tables_read {
        key.push_str(&format!(
            "|{}@{}:{:?}",
            table.name, table.version, table.committed_ms
        ));
    }
    Some(key)
}

/// The name a scanned table was opened under: `ad_performance` for `ad_performance`,
/// `tidemark.public.ad_performance` and the pinned `asof.public."ad_performance@v3"`;
/// `tidemark.slices` for the system table. `information_schema.*` names nothing opened.
fn scanned_name(table: &datafusion::common::TableReference) -> String {
    let bare = table.table();
    let bare = bare.split('@').next().unwrap_or(bare);
    match (table.catalog(), table.schema()) {
        (_, Some(engine::session::SYSTEM_SCHEMA)) => format!("tidemark.{bare}"),
        (None | Some("tidemark") | Some("asof"), None | Some("public")) => bare.to_string(),
        _ => String::new(),
    }
}

/// Whether running the plan again on the same data gives the same rows: no function in it
/// is volatile (`random()`) or stable only within one statement (`now()`, `current_date`).
fn is_repeatable(plan: &LogicalPlan) -> bool {
    let mut repeatable = true;
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                if let Expr::ScalarFunction(f) = e {
                    if f.func.signature().volatility != Volatility::Immutable {
                        repeatable = false;
                        return Ok(TreeNodeRecursion::Stop);
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    repeatable
}

/// `messages` as they are sent, kept in `cache` under `key` when the stream ends cleanly.
pub fn recorded<S>(
    messages: S,
    cache: Arc<ResultCache>,
    key: String,
) -> impl Stream<Item = Result<FlightData, Status>> + Send + 'static
where
    S: Stream<Item = Result<FlightData, Status>> + Send + Unpin + 'static,
{
    let recorder = Recorder::new(cache, key);
    futures::stream::unfold(
        (messages, recorder),
        |(mut messages, mut recorder)| async move {
            match messages.next().await {
                Some(item) => {
                    recorder.observe(&item);
                    Some((item, (messages, recorder)))
                }
                None => {
                    recorder.finish();
                    None
                }
            }
        },
    )
}

/// Collects the messages of a result as they are sent and keeps them in the cache when the
/// stream ends cleanly and the result was small enough; an error, a cancel or a client that
/// hangs up keeps nothing.
struct Recorder {
    cache: Arc<ResultCache>,
    key: String,
    messages: Vec<FlightData>,
    bytes: usize,
    rows: u64,
    keep: bool,
}

impl Recorder {
    fn new(cache: Arc<ResultCache>, key: String) -> Self {
        Recorder {
            cache,
            key,
            messages: Vec::new(),
            bytes: 0,
            rows: 0,
            keep: true,
        }
    }

    fn observe(&mut self, item: &Result<FlightData, Status>) {
        if !self.keep {
            return;
        }
        match item {
            Ok(message) => {
                let bytes = message_bytes(message);
                if self.bytes + bytes > self.cache.max_entry() || !self.cache.reserve(bytes) {
                    self.give_up();
                } else {
                    self.bytes += bytes;
                    self.rows += rows_in(message);
                    self.messages.push(message.clone());
                }
            }
            Err(_) => self.give_up(),
        }
    }

    /// Drop what was recorded and record no more.
    fn give_up(&mut self) {
        self.keep = false;
        self.messages = Vec::new();
        self.cache.release(std::mem::take(&mut self.bytes));
    }

    /// The stream ended: keep the result if it is whole.
    fn finish(&mut self) {
        if !self.keep {
            return;
        }
        self.keep = false;
        self.cache.release(std::mem::take(&mut self.bytes));
        let messages: Arc<[FlightData]> = std::mem::take(&mut self.messages).into();
        self.cache.insert(
            std::mem::take(&mut self.key),
            CachedResult {
                messages,
                rows: self.rows,
            },
        );
    }
}

impl Drop for Recorder {
    /// A stream dropped before its end (the client hung up) gives its budget back.
    fn drop(&mut self) {
        self.cache.release(std::mem::take(&mut self.bytes));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn message(bytes: usize) -> FlightData {
        FlightData {
            data_body: Bytes::from(vec![0u8; bytes]),
            ..Default::default()
        }
    }

    /// The Flight messages of one batch of `rows` rows (schema, then the batch).
    fn batch_messages(rows: i64) -> Vec<FlightData> {
        let batch = arrow::array::RecordBatch::try_from_iter([(
            "n",
            Arc::new(arrow::array::Int64Array::from_iter_values(0..rows)) as _,
        )])
        .unwrap();
        arrow_flight::utils::batches_to_flight_data(&batch.schema(), vec![batch]).unwrap()
    }

    fn result(bytes: usize) -> CachedResult {
        CachedResult {
            messages: vec![message(bytes)].into(),
            rows: 1,
        }
    }

    #[test]
    fn least_recently_used_results_make_room() {
        // Each result takes 664 bytes (with overhead): four fit in 3,000, five do not.
        let cache = ResultCache::new(3_000, Default::default());
        for key in ["a", "b", "c", "d"] {
            cache.insert(key.into(), result(600));
        }
        assert!(cache.get("a").is_some()); // a is now newer than b
        cache.insert("e".into(), result(600));
        assert!(cache.get("b").is_none(), "b was the least recently used");
        for key in ["a", "c", "d", "e"] {
            assert!(cache.get(key).is_some(), "{key} was kept");
        }
        assert!(cache.bytes() <= 3_000);
    }

    #[test]
    fn results_over_a_quarter_of_the_cache_are_not_kept() {
        let cache = ResultCache::new(4_000, Default::default());
        cache.insert("big".into(), result(1_100));
        assert!(cache.get("big").is_none());
        assert_eq!(cache.bytes(), 0);
    }

    async fn plan(sql: &str) -> LogicalPlan {
        let ctx = datafusion::prelude::SessionContext::new_with_config(
            datafusion::prelude::SessionConfig::new().with_information_schema(true),
        );
        let batch = arrow::array::RecordBatch::try_from_iter([(
            "n",
            Arc::new(arrow::array::Int64Array::from(vec![1, 2])) as _,
        )])
        .unwrap();
        ctx.register_batch("t", batch).unwrap();
        ctx.sql(sql).await.unwrap().logical_plan().clone()
    }

    fn read(version: u64) -> BTreeSet<TableVersion> {
        BTreeSet::from([TableVersion {
            name: "t".into(),
            version,
            committed_ms: Some(1_000),
        }])
    }

    #[tokio::test]
    async fn keys_name_the_versions_read_and_refuse_what_they_cannot_tell() {
        let sum = plan("SELECT sum(n) FROM t WHERE n > 1").await;
        let key = key_of(&sum, &read(3), &["q"]).expect("cacheable");
        assert_ne!(Some(key.clone()), key_of(&sum, &read(4), &["q"]));
        assert_ne!(Some(key.clone()), key_of(&sum, &read(3), &["q", "part 2"]));
        assert_eq!(Some(key), key_of(&sum, &read(3), &["q"]));
        // A scan of something the session did not open at a version.
        assert_eq!(key_of(&sum, &BTreeSet::new(), &["q"]), None);
        let listing = plan("SELECT count(*) FROM information_schema.tables").await;
        assert_eq!(key_of(&listing, &read(3), &["q"]), None);
        // Functions whose value changes between runs, also inside a subquery.
        for sql in [
            "SELECT n, now() FROM t",
            "SELECT n FROM t WHERE random() < 0.5",
            "SELECT n FROM t WHERE n IN (SELECT n FROM t WHERE n < random())",
        ] {
            assert_eq!(key_of(&plan(sql).await, &read(3), &["q"]), None, "{sql}");
        }
    }

    #[test]
    fn a_failed_or_oversized_stream_keeps_nothing() {
        let cache = Arc::new(ResultCache::new(4_000, Default::default()));
        let mut failed = Recorder::new(cache.clone(), "failed".into());
        failed.observe(&Ok(message(10)));
        failed.observe(&Err(Status::cancelled("cancelled")));
        failed.finish();
        let mut big = Recorder::new(cache.clone(), "big".into());
        for _ in 0..3 {
            big.observe(&Ok(message(500)));
        }
        big.finish();
        let mut whole = Recorder::new(cache.clone(), "whole".into());
        for message in batch_messages(3) {
            whole.observe(&Ok(message));
        }
        whole.finish();
        assert!(cache.get("failed").is_none());
        assert!(cache.get("big").is_none());
        assert_eq!(cache.get("whole").map(|r| r.rows), Some(3));
        assert_eq!(
            cache.recording.load(Ordering::Acquire),
            0,
            "budget given back"
        );
    }

    #[test]
    fn recordings_in_progress_share_a_budget_of_the_cache_size() {
        let cache = Arc::new(ResultCache::new(4_000, Default::default()));
        // Six streams of 900 (964 with overhead) recorded at once: four fit the budget.
        let mut recorders: Vec<Recorder> = (0..6)
            .map(|i| Recorder::new(cache.clone(), format!("r{i}")))
            .collect();
        for r in &mut recorders {
            r.observe(&Ok(message(900)));
        }
        assert_eq!(recorders.iter().filter(|r| r.keep).count(), 4);
        assert!(cache.recording.load(Ordering::Acquire) <= 4_000);
        // A client hangs up mid-stream: its share comes back.
        recorders.remove(0);
        assert_eq!(cache.recording.load(Ordering::Acquire), 3 * 964);
        for mut r in recorders {
            r.finish();
        }
        assert_eq!(cache.recording.load(Ordering::Acquire), 0);
    }
}
