//! The distributed job queue on Redis Streams: `tidemark sync --queue redis://…` adds a run's
//! jobs to a stream; `tidemark worker` processes read them through one consumer group, ack a
//! job only after its commit (or its quarantine/failure is journaled), keep a job they are
//! working on claimed with a heartbeat, and take over jobs whose consumer went silent for
//! longer than the lease (XAUTOCLAIM) — the job of a dead worker is redone, and the replace
//! contract makes redoing it harmless.
//!
//! One stream per warehouse (`tidemark:<hash of the warehouse URL>:jobs`), so several
//! warehouses can share a Redis server. The Redis URL may carry a password; it is never
//! logged (only host and port are).

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::Value;

use crate::error::{Error, Result};
use crate::raw::Unit;

/// The consumer group every worker joins.
const GROUP: &str = "tidemark-workers";

/// A job read from the queue.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The stream entry id (for ack and heartbeat).
    pub id: String,
    pub run: String,
    pub unit: Unit,
}

/// A connection to the queue of one warehouse.
#[derive(Clone)]
pub struct RedisQueue {
    con: MultiplexedConnection,
    stream: String,
    /// `host:port`, for messages.
    server: String,
}

fn queue_error(server: &str, e: impl std::fmt::Display) -> Error {
    Error::Transport {
        platform: "redis".into(),
        path: server.to_string(),
        reason: e.to_string(),
    }
}

/// Host and port of a Redis URL, without credentials.
pub fn describe_url(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .map(|u| {
            format!(
                "redis://{}:{}",
                u.host_str().unwrap_or("?"),
                u.port().unwrap_or(6379)
            )
        })
        .unwrap_or_else(|| "an unparseable redis URL".into())
}

/// A connection to the Redis server at `url` within `limit`, with the server's `host:port`
/// (no credentials) for messages.
async fn open(url: &str, limit: Duration) -> Result<(String, MultiplexedConnection)> {
    let server = describe_url(url);
    let client = redis::Client::open(url).map_err(|e| {
        Error::Config(format!(
            "--queue {server}: not a redis:// URL ({:?})",
            e.kind()
        ))
    })?;
    let con = tokio::time::timeout(limit, client.get_multiplexed_async_connection())
        .await
        .map_err(|_| queue_error(&server, format!("no answer within {} s", limit.as_secs())))?
        .map_err(|e| queue_error(&server, e))?;
    Ok((server, con))
}

/// Whether the Redis server at `url` answers a PING within 5 s (what `tidemark doctor`
/// checks; nothing is created). Returns the server's `host:port`.
pub async fn ping(url: &str) -> Result<String> {
    let limit = Duration::from_secs(5);
    let (server, mut con) = open(url, limit).await?;
    let answer: String = tokio::time::timeout(limit, redis::cmd("PING").query_async(&mut con))
        .await
        .map_err(|_| queue_error(&server, "no answer to PING within 5 s"))?
        .map_err(|e| queue_error(&server, e))?;
    if answer != "PONG" {
        return Err(queue_error(&server, format!("PING answered {answer:?}")));
    }
    Ok(server)
}

impl RedisQueue {
    /// Connect and make sure the stream and the consumer group exist.
    pub async fn connect(url: &str, warehouse_url: &str) -> Result<Self> {
        let (server, mut con) = open(url, Duration::from_secs(10)).await?;
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        warehouse_url.trim_end_matches('/').hash(&mut hasher);
        let stream = format!("tidemark:{:016x}:jobs", hasher.finish());
        let created: redis::RedisResult<Value> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&stream)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut con)
            .await;
        if let Err(e) = created {
            if e.code() != Some("BUSYGROUP") {
                return Err(queue_error(&server, e));
            }
        }
        Ok(RedisQueue {
            con,
            stream,
            server,
        })
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    /// Throttle state (pauses and pace) shared through this Redis server.
    pub fn throttle_state(&self) -> RedisThrottleState {
        RedisThrottleState {
            con: self.con.clone(),
        }
    }

    /// Add a job of `run`.
    pub async fn enqueue(&self, run: &str, unit: &Unit) -> Result<()> {
        let mut con = self.con.clone();
        let _: String = redis::cmd("XADD")
            .arg(&self.stream)
            .arg("*")
            .arg("run")
            .arg(run)
            .arg("unit")
            .arg(serde_json::to_string(unit).expect("units serialize"))
            .query_async(&mut con)
            .await
            .map_err(|e| queue_error(&self.server, e))?;
        Ok(())
    }

    fn parse_entry(&self, entry: &Value) -> Option<Delivery> {
        let Value::Array(parts) = entry else {
            return None;
        };
        let id = match parts.first()? {
            Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            Value::SimpleString(s) => s.clone(),
            _ => return None,
        };
        let Value::Array(fields) = parts.get(1)? else {
            return None;
        };
        let text = |v: &Value| match v {
            Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
            Value::SimpleString(s) => Some(s.clone()),
            _ => None,
        };
        let mut run = None;
        let mut unit = None;
        for pair in fields.chunks(2) {
            match (
                pair.first().and_then(text).as_deref(),
                pair.get(1).and_then(text),
            ) {
                (Some("run"), Some(v)) => run = Some(v),
                (Some("unit"), Some(v)) => unit = serde_json::from_str(&v).ok(),
                _ => {}
            }
        }
        Some(Delivery {
            id,
            run: run?,
            unit: unit?,
        })
    }

    /// The next new job for `consumer`, waiting up to `block`.
    pub async fn next(&self, consumer: &str, block: Duration) -> Result<Option<Delivery>> {
        let mut con = self.con.clone();
        let reply: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(block.as_millis() as u64)
            .arg("STREAMS")
            .arg(&self.stream)
            .arg(">")
            .query_async(&mut con)
            .await
            .map_err(|e| queue_error(&self.server, e))?;
        // [[stream, [[id, [k, v, …]]]]] (RESP2) or a map (RESP3); nil when nothing came.
        let streams = match reply {
            Value::Array(s) => s,
            Value::Map(m) => m
                .into_iter()
                .map(|(k, v)| Value::Array(vec![k, v]))
                .collect(),
            _ => return Ok(None),
        };
        for stream in streams {
            if let Value::Array(parts) = stream {
                if let Some(Value::Array(entries)) = parts.get(1) {
                    if let Some(d) = entries.first().and_then(|e| self.parse_entry(e)) {
                        return Ok(Some(d));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Take over one job whose consumer has been silent for `min_idle` (a dead worker's).
    pub async fn reclaim(&self, consumer: &str, min_idle: Duration) -> Result<Option<Delivery>> {
        let mut con = self.con.clone();
        let reply: Value = redis::cmd("XAUTOCLAIM")
            .arg(&self.stream)
            .arg(GROUP)
            .arg(consumer)
            .arg(min_idle.as_millis() as u64)
            .arg("0-0")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut con)
            .await
            .map_err(|e| queue_error(&self.server, e))?;
        // [next-start, [[id, fields]…], [deleted ids]]
        let Value::Array(parts) = reply else {
            return Ok(None);
        };
        let Some(Value::Array(entries)) = parts.get(1) else {
            return Ok(None);
        };
        Ok(entries.first().and_then(|e| self.parse_entry(e)))
    }

    /// Keep a job claimed (resets its idle time so no one takes it over while it runs).
    pub async fn heartbeat(&self, consumer: &str, id: &str) -> Result<()> {
        let mut con = self.con.clone();
        let _: Value = redis::cmd("XCLAIM")
            .arg(&self.stream)
            .arg(GROUP)
            .arg(consumer)
            .arg(0)
            .arg(id)
            .arg("JUSTID")
            .query_async(&mut con)
            .await
            .map_err(|e| queue_error(&self.server, e))?;
        Ok(())
    }

    /// How many times the job was delivered (read, or taken over from a silent worker).
    pub async fn deliveries(&self, id: &str) -> Result<u64> {
        let mut con = self.con.clone();
        let reply: Value = redis::cmd("XPENDING")
            .arg(&self.stream)
            .arg(GROUP)
            .arg(id)
            .arg(id)
            .arg(1)
            .query_async(&mut con)
            .await
            .map_err(|e| queue_error(&self.server, e))?;
        // [[id, consumer, idle ms, deliveries]]
        Ok(match reply {
            Value::Array(rows) => match rows.first() {
                Some(Value::Array(row)) => match row.get(3) {
                    Some(Value::Int(n)) => *n as u64,
                    _ => 0,
                },
                _ => 0,
            },
            _ => 0,
        })
    }

    /// Give up on a job that keeps coming back: copy it to the dead-letter stream
    /// (`…:jobs:dead`, with why) and acknowledge it so no worker takes it again.
    pub async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<()> {
        let mut con = self.con.clone();
        let unit = serde_json::to_string(&delivery.unit).expect("units serialize");
        let _: String = redis::cmd("XADD")
            .arg(format!("{}:dead", self.stream))
            .arg("*")
            .arg("run")
            .arg(&delivery.run)
            .arg("unit")
            .arg(unit)
            .arg("reason")
            .arg(reason)
            .query_async(&mut con)
            .await
            .map_err(|e| queue_error(&self.server, e))?;
        self.ack(&delivery.id).await
    }

    /// Jobs on the dead-letter stream.
    pub async fn dead_letters(&self) -> Result<u64> {
        let mut con = self.con.clone();
        redis::cmd("XLEN")
            .arg(format!("{}:dead", self.stream))
            .query_async(&mut con)
            .await
            .map_err(|e| queue_error(&self.server, e))
    }

    /// The job is done (committed or journaled as unloaded).
    pub async fn ack(&self, id: &str) -> Result<()> {
        let mut con = self.con.clone();
        let _: i64 = redis::cmd("XACK")
            .arg(&self.stream)
            .arg(GROUP)
            .arg(id)
            .query_async(&mut con)
            .await
            .map_err(|e| queue_error(&self.server, e))?;
        Ok(())
    }

    /// Jobs read but not acknowledged (in progress or abandoned).
    pub async fn pending(&self) -> Result<u64> {
        let mut con = self.con.clone();
        let reply: Value = redis::cmd("XPENDING")
            .arg(&self.stream)
            .arg(GROUP)
            .query_async(&mut con)
            .await
            .map_err(|e| queue_error(&self.server, e))?;
        Ok(match reply {
            Value::Array(parts) => match parts.first() {
                Some(Value::Int(n)) => *n as u64,
                _ => 0,
            },
            _ => 0,
        })
    }
}

/// Throttle state shared through Redis. `tidemark:throttle:<platform>/<credential
/// fingerprint>` holds the Unix time in milliseconds until which requests wait, and expires
/// with it; `tidemark:pace:<…>` holds the next free request slot of the credential's pace
/// (GCRA, in Redis server time, so the workers' clocks need not agree). Failures to reach
/// Redis only cost the sharing, never the request.
#[derive(Clone)]
pub struct RedisThrottleState {
    con: MultiplexedConnection,
}

impl std::fmt::Debug for RedisThrottleState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedisThrottleState")
    }
}

/// Reserve the next slot of a pace: KEYS[1] the slot key, ARGV[1] the interval in µs;
/// returns the µs to wait for the reserved slot.
const RESERVE_SLOT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local slot = tonumber(redis.call('GET', KEYS[1]) or '0')
if slot < now then slot = now end
local ttl_ms = math.floor((slot + interval - now) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.0f', slot + interval), 'PX', ttl_ms)
return slot - now
"#;

impl crate::throttle::SharedThrottle for RedisThrottleState {
    fn reserve<'a>(
        &'a self,
        key: &'a str,
        interval: Duration,
    ) -> futures::future::BoxFuture<'a, Option<Duration>> {
        Box::pin(async move {
            let mut con = self.con.clone();
            let waited: redis::RedisResult<i64> = redis::Script::new(RESERVE_SLOT)
                .key(format!("tidemark:pace:{key}"))
                .arg(interval.as_micros() as u64)
                .invoke_async(&mut con)
                .await;
            match waited {
                Ok(us) => Some(Duration::from_micros(us.max(0) as u64)),
                Err(e) => {
                    tracing::warn!(error = %e, "could not reserve a request slot through redis; pacing alone");
                    None
                }
            }
        })
    }

    fn publish<'a>(
        &'a self,
        key: &'a str,
        until: std::time::SystemTime,
    ) -> futures::future::BoxFuture<'a, ()> {
        Box::pin(async move {
            let Ok(at) = until.duration_since(std::time::UNIX_EPOCH) else {
                return;
            };
            let Ok(left) = until.duration_since(std::time::SystemTime::now()) else {
                return;
            };
            let mut con = self.con.clone();
            let key = format!("tidemark:throttle:{key}");
            let current: Option<u64> = redis::cmd("GET")
                .arg(&key)
                .query_async(&mut con)
                .await
                .ok()
                .flatten();
            if current.is_some_and(|c| c >= at.as_millis() as u64) {
                return;
            }
            let set: redis::RedisResult<()> = redis::cmd("SET")
                .arg(&key)
                .arg(at.as_millis() as u64)
                .arg("PX")
                .arg(left.as_millis().max(1) as u64)
                .query_async(&mut con)
                .await;
            if let Err(e) = set {
                tracing::warn!(error = %e, "could not share a throttle pause through redis");
            }
        })
    }

    fn read<'a>(
        &'a self,
        key: &'a str,
    ) -> futures::future::BoxFuture<'a, Option<std::time::SystemTime>> {
        Box::pin(async move {
            let mut con = self.con.clone();
            let ms: Option<u64> = redis::cmd("GET")
                .arg(format!("tidemark:throttle:{key}"))
                .query_async(&mut con)
                .await
                .ok()
                .flatten();
            ms.map(|ms| std::time::UNIX_EPOCH + Duration::from_millis(ms))
        })
    }
}
