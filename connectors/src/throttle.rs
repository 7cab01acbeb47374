//! Throttling and retries for one platform credential.
//!
//! A [`Throttle`] is shared by every request made with one credential: it caps how many are
//! in flight, and when the platform says "slow down" (each in its own way: Meta's HTTP 400
//! with error codes and usage headers, Google's 429 with a `retryDelay` in the body, others'
//! `Retry-After`) it pauses *all* of them until the platform's wait is over, instead of
//! letting each request find out on its own. With `max_requests_per_second` it also paces
//! requests ahead of the platform (GCRA: each request reserves the next free slot), in one
//! process or, through a [`SharedThrottle`], across every worker using the credential.
//! Transient failures (5xx, broken or truncated
//! bodies, timeouts) are retried with exponential backoff and jitter, within bounds.
//!
//! Platforms decide what a response means through a classifier returning a [`Verdict`];
//! this module only executes that decision and counts what happened.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use rand::Rng;
use reqwest::header::HeaderMap;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// What a response means for the caller.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Use it.
    Ok,
    /// The platform is rate limiting: wait (`wait` if it says how long) and try again.
    Throttled {
        wait: Option<Duration>,
        reason: String,
    },
    /// A passing failure (5xx, cut-off body): back off and try again.
    Transient { reason: String },
    /// Retrying will not help (bad credentials, bad request, daily quota gone).
    Fatal { reason: String },
}

/// A response read to the end.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Bounds on retries and waits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Requests in flight at once.
    pub max_concurrency: usize,
    /// Attempts of one request that end in a transient failure.
    pub max_attempts: u32,
    /// Throttled answers one request tolerates before giving up.
    pub max_throttled: u32,
    /// The longest wait honoured; a platform asking for more fails the request.
    pub max_wait: Duration,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    pub request_timeout: Duration,
    /// Requests per second, across processes sharing the throttle state; `None`: unpaced.
    pub max_requests_per_second: Option<f64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_concurrency: 4,
            max_attempts: 6,
            max_throttled: 50,
            max_wait: Duration::from_secs(15 * 60),
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            request_timeout: Duration::from_secs(120),
            max_requests_per_second: None,
        }
    }
}

/// Counters of one throttle (all requests made with its credential).
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub throttled: AtomicU64,
    pub retried: AtomicU64,
    pub waited_ms: AtomicU64,
}

/// A snapshot of [`Stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StatsSnapshot {
    pub requests: u64,
    pub throttled: u64,
    pub retried: u64,
    pub waited_ms: u64,
}

impl std::ops::Add for StatsSnapshot {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        StatsSnapshot {
            requests: self.requests + o.requests,
            throttled: self.throttled + o.throttled,
            retried: self.retried + o.retried,
            waited_ms: self.waited_ms + o.waited_ms,
        }
    }
}

/// Why a request was given up.
#[derive(Debug, Clone)]
pub struct GaveUp {
    pub attempts: u32,
    pub reason: String,
    /// The last body received, if any (a payload that never parsed is quarantined with it).
    pub last_body: Option<Bytes>,
}

/// A credential's throttle state shared between processes (workers on one credential must
/// respect one rate limit): `publish` announces a pause ("hold until"), `read` asks for the
/// latest, `reserve` takes the next request slot of a pace and says how long to wait for it.
pub trait SharedThrottle: Send + Sync + std::fmt::Debug {
    fn publish<'a>(&'a self, key: &'a str, until: SystemTime)
        -> futures::future::BoxFuture<'a, ()>;
    fn read<'a>(&'a self, key: &'a str) -> futures::future::BoxFuture<'a, Option<SystemTime>>;
    /// Reserve the next slot of a pace of one request per `interval`; `None` when the shared
    /// state cannot be reached (the caller then paces on its own).
    fn reserve<'a>(
        &'a self,
        key: &'a str,
        interval: Duration,
    ) -> futures::future::BoxFuture<'a, Option<Duration>>;
}

/// A part of a credential the platform limits on its own (Kakao Moment: one report call per
/// ad account every 5 seconds), paced at one request per `interval`.
#[derive(Debug, Clone)]
pub struct Lane {
    pub name: String,
    pub interval: Duration,
}

/// Rate limiting and retries for one (platform, credential).
#[derive(Debug)]
pub struct Throttle {
    /// `platform/credential-fingerprint`, for logs.
    key: String,
    limits: Limits,
    permits: Semaphore,
    paused_until: Mutex<Option<Instant>>,
    stats: Stats,
    /// The theoretical arrival time of the next request when pacing in-process (GCRA).
    next_slot: Mutex<Instant>,
    /// The same per lane (see [`Lane`]).
    lane_slots: Mutex<std::collections::HashMap<String, Instant>>,
    shared: OnceLock<Arc<dyn SharedThrottle>>,
}

impl Throttle {
    pub fn new(key: impl Into<String>, limits: Limits) -> Self {
        Throttle {
            key: key.into(),
            permits: Semaphore::new(limits.max_concurrency.max(1)),
            limits,
            paused_until: Mutex::new(None),
            stats: Stats::default(),
            next_slot: Mutex::new(Instant::now()),
            lane_slots: Mutex::default(),
            shared: OnceLock::new(),
        }
    }

    /// Share this credential's pauses and pace with other processes through `shared`.
    pub fn share_with(&self, shared: Arc<dyn SharedThrottle>) {
        let _ = self.shared.set(shared);
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn stats(&self) -> StatsSnapshot {
        StatsSnapshot {
            requests: self.stats.requests.load(Ordering::Relaxed),
            throttled: self.stats.throttled.load(Ordering::Relaxed),
            retried: self.stats.retried.load(Ordering::Relaxed),
            waited_ms: self.stats.waited_ms.load(Ordering::Relaxed),
        }
    }

    /// Hold every request of this credential for `wait` (used when usage headers show the
    /// quota is nearly spent, before the platform starts refusing).
    pub fn pause(&self, wait: Duration, reason: &str) {
        let wait = wait.min(self.limits.max_wait);
        let until = Instant::now() + wait;
        let mut paused = self.paused_until.lock().expect("throttle lock");
        if paused.is_none_or(|p| p < until) {
            *paused = Some(until);
            tracing::info!(throttle = %self.key, wait_ms = wait.as_millis() as u64, reason, "pausing requests");
            if let Some(shared) = self.shared.get() {
                let (shared, key) = (Arc::clone(shared), self.key.clone());
                let until = SystemTime::now() + wait;
                tokio::spawn(async move { shared.publish(&key, until).await });
            }
        }
    }

    /// Adopt a pause another process announced for this credential.
    async fn adopt_shared_pause(&self) {
        let Some(shared) = self.shared.get() else {
            return;
        };
        let Some(until) = shared.read(&self.key).await else {
            return;
        };
        let Ok(left) = until.duration_since(SystemTime::now()) else {
            return; // already over
        };
        let until = Instant::now() + left.min(self.limits.max_wait);
        let mut paused = self.paused_until.lock().expect("throttle lock");
        if paused.is_none_or(|p| p < until) {
            *paused = Some(until);
            tracing::info!(throttle = %self.key, wait_ms = left.as_millis() as u64, "another process was throttled on this credential; pausing too");
        }
    }

    /// Whether requests of this credential are being held right now.
    pub fn is_paused(&self) -> bool {
        self.paused_until
            .lock()
            .expect("throttle lock")
            .is_some_and(|until| until > Instant::now())
    }

    async fn wait_for_pause(&self) {
        self.adopt_shared_pause().await;
        loop {
            let until = *self.paused_until.lock().expect("throttle lock");
            match until {
                Some(until) if until > Instant::now() => {
                    let waited = until - Instant::now();
                    self.stats
                        .waited_ms
                        .fetch_add(waited.as_millis() as u64, Ordering::Relaxed);
                    tokio::time::sleep_until(until).await;
                }
                _ => return,
            }
        }
    }

    /// Wait for this request's slot of the configured pace (no-op when unpaced).
    async fn pace(&self) {
        let Some(rate) = self.limits.max_requests_per_second else {
            return;
        };
        let interval = Duration::from_secs_f64(1.0 / rate);
        let shared = match self.shared.get() {
            Some(shared) => shared.reserve(&self.key, interval).await,
            None => None,
        };
        let wait = shared.unwrap_or_else(|| {
            let now = Instant::now();
            let mut next = self.next_slot.lock().expect("throttle lock");
            let slot = (*next).max(now);
            *next = slot + interval;
            slot - now
        });
        if !wait.is_zero() {
            tracing::trace!(throttle = %self.key, wait_ms = wait.as_millis() as u64, "pacing");
            tokio::time::sleep(wait).await;
        }
    }

    /// Wait for this request's slot on `lane`: one request per `lane.interval`, shared with
    /// other processes through the same state as the credential's pace.
    async fn pace_lane(&self, lane: &Lane) {
        let key = format!("{}/{}", self.key, lane.name);
        let shared = match self.shared.get() {
            Some(shared) => shared.reserve(&key, lane.interval).await,
            None => None,
        };
        let wait = shared.unwrap_or_else(|| {
            let now = Instant::now();
            let mut slots = self.lane_slots.lock().expect("throttle lock");
            let next = slots.entry(key.clone()).or_insert(now);
            let slot = (*next).max(now);
            *next = slot + lane.interval;
            slot - now
        });
        if !wait.is_zero() {
            tracing::trace!(lane = %key, wait_ms = wait.as_millis() as u64, "pacing the lane");
            tokio::time::sleep(wait).await;
        }
    }

    /// Backoff before attempt `attempt + 1`: exponential from `base_backoff`, capped, with
    /// "equal jitter" (half fixed, half random) so many clients do not retry in step.
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .limits
            .base_backoff
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.limits.max_backoff);
        let half = exp / 2;
        half + half.mul_f64(rand::rng().random::<f64>())
    }

    /// Send the request `build` makes until `classify` accepts the response or the bounds
    /// are reached. `what` names the request in logs and errors (a path, never a token).
    pub async fn send(
        &self,
        what: &str,
        build: impl Fn() -> reqwest::RequestBuilder,
        classify: impl Fn(&Fetched) -> Verdict,
    ) -> Result<Fetched, GaveUp> {
        self.send_in_lane(what, None, build, classify).await
    }

    /// [`Throttle::send`] with every attempt also paced on `lane`.
    pub async fn send_in_lane(
        &self,
        what: &str,
        lane: Option<&Lane>,
        build: impl Fn() -> reqwest::RequestBuilder,
        classify: impl Fn(&Fetched) -> Verdict,
    ) -> Result<Fetched, GaveUp> {
        let mut transient = 0u32;
        let mut throttled = 0u32;
        let mut last_body = None;
        loop {
            self.wait_for_pause().await;
            let outcome = {
                let _permit = self
                    .permits
                    .acquire()
                    .await
                    .expect("semaphore never closed");
                self.pace().await;
                if let Some(lane) = lane {
                    // Paced while holding the permit, so the slot and the send coincide.
                    self.pace_lane(lane).await;
                }
                self.stats.requests.fetch_add(1, Ordering::Relaxed);
                fetch(build().timeout(self.limits.request_timeout)).await
            };
            let verdict = match &outcome {
                Ok(fetched) => {
                    last_body = Some(fetched.body.clone());
                    classify(fetched)
                }
                Err(reason) => Verdict::Transient {
                    reason: reason.clone(),
                },
            };
            let attempts = transient + throttled + 1;
            match verdict {
                Verdict::Ok => return Ok(outcome.expect("classified responses exist")),
                Verdict::Fatal { reason } => {
                    return Err(GaveUp {
                        attempts,
                        reason,
                        last_body,
                    })
                }
                Verdict::Throttled { wait, reason } => {
                    throttled += 1;
                    self.stats.throttled.fetch_add(1, Ordering::Relaxed);
                    if throttled >= self.limits.max_throttled {
                        return Err(GaveUp {
                            attempts,
                            reason: format!("still throttled after {throttled} tries: {reason}"),
                            last_body,
                        });
                    }
                    let wait = match wait {
                        Some(w) if w > self.limits.max_wait => {
                            return Err(GaveUp {
                                attempts,
                                reason: format!(
                                    "{reason}; the platform asks to wait {}, more than max_wait {}",
                                    humantime::format_duration(w),
                                    humantime::format_duration(self.limits.max_wait)
                                ),
                                last_body,
                            })
                        }
                        Some(w) if !w.is_zero() => w,
                        _ => self.backoff(throttled - 1),
                    };
                    tracing::info!(throttle = %self.key, request = what, wait_ms = wait.as_millis() as u64, reason = %reason, "throttled by the platform; waiting");
                    self.pause(wait, "throttled");
                }
                Verdict::Transient { reason } => {
                    transient += 1;
                    if transient >= self.limits.max_attempts {
                        return Err(GaveUp {
                            attempts,
                            reason: format!("failed {transient} times; last: {reason}"),
                            last_body,
                        });
                    }
                    self.stats.retried.fetch_add(1, Ordering::Relaxed);
                    let wait = self.backoff(transient - 1);
                    tracing::warn!(throttle = %self.key, request = what, attempt = transient, wait_ms = wait.as_millis() as u64, reason = %reason, "request failed; retrying");
                    self.stats
                        .waited_ms
                        .fetch_add(wait.as_millis() as u64, Ordering::Relaxed);
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

/// Send and read the whole body; a cut connection or timeout is a reason string (without the
/// URL, which may carry query parameters).
async fn fetch(request: reqwest::RequestBuilder) -> Result<Fetched, String> {
    let response = request
        .send()
        .await
        .map_err(|e| describe_transport(&e.without_url()))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("reading the body: {}", describe_transport(&e.without_url())))?;
    Ok(Fetched {
        status,
        headers,
        body,
    })
}

fn describe_transport(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    if e.is_timeout() {
        text.push_str(" (timed out)");
    }
    text
}

/// The generic reading of a response: 2xx is fine, 429 and 503 with `Retry-After` (seconds
/// or an HTTP date) are throttling, 408/5xx are transient, other 4xx are fatal.
pub fn generic_verdict(response: &Fetched) -> Verdict {
    let status = response.status;
    match status {
        200..=299 => Verdict::Ok,
        429 => Verdict::Throttled {
            wait: retry_after(&response.headers),
            reason: "HTTP 429 Too Many Requests".into(),
        },
        503 if retry_after(&response.headers).is_some() => Verdict::Throttled {
            wait: retry_after(&response.headers),
            reason: "HTTP 503 with Retry-After".into(),
        },
        408 | 500..=599 => Verdict::Transient {
            reason: format!("HTTP {status}: {}", snippet(&response.body)),
        },
        _ => Verdict::Fatal {
            reason: format!("HTTP {status}: {}", snippet(&response.body)),
        },
    }
}

/// `Retry-After` as a duration: delta-seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds >= 0.0).then(|| Duration::from_secs_f64(seconds));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

/// The start of a body, for messages.
pub fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.chars().count() > 300 {
        format!("{}…", text.chars().take(300).collect::<String>())
    } else {
        text.to_string()
    }
}

/// A response with no headers, for the platforms' verdict tests.
#[cfg(test)]
pub(crate) fn fetched(status: u16, body: &str) -> Fetched {
    Fetched {
        status,
        headers: Default::default(),
        body: Bytes::from(body.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn response(status: u16, headers: &[(&'static str, &str)]) -> Fetched {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        Fetched {
            status,
            headers: map,
            body: Bytes::from_static(b"{}"),
        }
    }

    #[test]
    fn retry_after_in_seconds_and_dates() {
        let r = response(429, &[("retry-after", "3")]);
        assert_eq!(retry_after(&r.headers), Some(Duration::from_secs(3)));
        let later = (chrono::Utc::now() + chrono::Duration::seconds(120)).to_rfc2822();
        let r = response(429, &[("retry-after", &later)]);
        let wait = retry_after(&r.headers).unwrap();
        assert!(wait > Duration::from_secs(100) && wait <= Duration::from_secs(120));
        let past = response(429, &[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")]);
        assert_eq!(retry_after(&past.headers), Some(Duration::ZERO));
    }

    #[test]
    fn generic_classification() {
        assert_eq!(generic_verdict(&response(200, &[])), Verdict::Ok);
        assert!(matches!(
            generic_verdict(&response(429, &[("retry-after", "1")])),
            Verdict::Throttled { wait: Some(w), .. } if w == Duration::from_secs(1)
        ));
        assert!(matches!(
            generic_verdict(&response(502, &[])),
            Verdict::Transient { .. }
        ));
        assert!(matches!(
            generic_verdict(&response(401, &[])),
            Verdict::Fatal { .. }
        ));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let t = Throttle::new(
            "x",
            Limits {
                base_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(1),
                ..Limits::default()
            },
        );
        for attempt in 0..20 {
            let b = t.backoff(attempt);
            let exp = Duration::from_millis(100)
                .saturating_mul(1 << attempt.min(16))
                .min(Duration::from_secs(1));
            assert!(b >= exp / 2 && b <= exp, "attempt {attempt}: {b:?}");
        }
    }
}
