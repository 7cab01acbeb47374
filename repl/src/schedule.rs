//! What `tidemark run` does when: the `[schedule]` section of `tidemark.toml` and the clock the
//! scheduler reads (the system clock, or a compressed one for tests and rehearsals).
//!
//! ```toml
//! [schedule]
//! sync_every = "1h"          # re-pull every source's restatement window this often
//! history_days = 90          # days kept complete: missing or stale days are backfilled
//! max_backfill_days = 62     # backfilled days per account turn, per cycle
//! compact_at = "03:00"       # nightly compaction, UTC
//! vacuum_retain = "7d"       # then delete files no version this recent reads ("off": keep all)
//! ```

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, NaiveTime, Utc};
use serde::Deserialize;

/// `[schedule]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleToml {
    sync_every: Option<String>,
    history_days: Option<u64>,
    max_backfill_days: Option<usize>,
    compact_at: Option<String>,
    vacuum_retain: Option<String>,
}

/// The scheduler's settings, with defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub sync_every: Duration,
    pub history_days: u64,
    pub max_backfill_days: usize,
    pub compact_at: NaiveTime,
    /// After the nightly compaction, vacuum with this retention; `None`: never vacuum.
    pub vacuum_retain: Option<Duration>,
}

impl Schedule {
    pub const DEFAULT_HISTORY_DAYS: u64 = 90;
    pub const DEFAULT_MAX_BACKFILL_DAYS: usize = 62;

    /// Read `[schedule]` from the project's config (every key optional).
    pub fn from_config(config: &connectors::config::ProjectConfig) -> anyhow::Result<Self> {
        let section: ScheduleToml = match config.other.get("schedule") {
            Some(value) => value
                .clone()
                .try_into()
                .map_err(|e: toml::de::Error| anyhow::anyhow!("[schedule]: {}", e.message()))?,
            None => ScheduleToml::default(),
        };
        let sync_every = match &section.sync_every {
            Some(text) => humantime::parse_duration(text).with_context(|| {
                format!("[schedule] sync_every = {text:?} is not a duration like \"1h\"")
            })?,
            None => Duration::from_secs(3600),
        };
        anyhow::ensure!(
            !sync_every.is_zero(),
            "[schedule] sync_every must be longer than 0s"
        );
        let compact_at = match &section.compact_at {
            Some(text) => NaiveTime::parse_from_str(text, "%H:%M").with_context(|| {
                format!("[schedule] compact_at = {text:?} is not a UTC time like \"03:00\"")
            })?,
            None => NaiveTime::from_hms_opt(3, 0, 0).expect("valid time"),
        };
        let vacuum_retain = match section.vacuum_retain.as_deref() {
            Some("off") => None,
            Some(text) => {
                let retain = humantime::parse_duration(text).with_context(|| {
                    format!("[schedule] vacuum_retain = {text:?} is not a duration like \"7d\" (or \"off\")")
                })?;
                anyhow::ensure!(
                    retain >= engine::maintenance::DEFAULT_RETENTION,
                    "[schedule] vacuum_retain = {text:?} is shorter than the 7-day minimum: time travel and writers in flight could lose files"
                );
                Some(retain)
            }
            None => Some(engine::maintenance::DEFAULT_RETENTION),
        };
        Ok(Schedule {
            sync_every,
            vacuum_retain,
            history_days: section.history_days.unwrap_or(Self::DEFAULT_HISTORY_DAYS),
            max_backfill_days: section
                .max_backfill_days
                .unwrap_or(Self::DEFAULT_MAX_BACKFILL_DAYS)
                .max(1),
            compact_at,
        })
    }

    /// The first compaction time strictly after `now`.
    pub fn next_compaction(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let today = now.date_naive().and_time(self.compact_at).and_utc();
        if today > now {
            today
        } else {
            today + chrono::Duration::days(1)
        }
    }
}

/// The time the scheduler goes by: the system clock, or one that starts at a chosen instant
/// and runs `speed` times faster (`--clock-start`, `--clock-speed`: hidden, for rehearsing a
/// day of scheduling in a minute).
#[derive(Debug, Clone)]
pub struct Clock {
    origin: DateTime<Utc>,
    started: Instant,
    speed: f64,
}

impl Clock {
    pub fn new(start: Option<DateTime<Utc>>, speed: f64) -> Self {
        Clock {
            origin: start.unwrap_or_else(Utc::now),
            started: Instant::now(),
            speed: if speed > 0.0 { speed } else { 1.0 },
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        let elapsed = self.started.elapsed().as_secs_f64() * self.speed;
        self.origin + chrono::Duration::microseconds((elapsed * 1e6) as i64)
    }

    /// The real time that `scheduled` clock time takes.
    pub fn real(&self, scheduled: Duration) -> Duration {
        scheduled.div_f64(self.speed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(toml_text: &str) -> anyhow::Result<Schedule> {
        let config: connectors::config::ProjectConfig = toml::from_str(toml_text)?;
        Schedule::from_config(&config)
    }

    #[test]
    fn defaults_and_overrides() {
        let s = schedule("").unwrap();
        assert_eq!(s.sync_every, Duration::from_secs(3600));
        assert_eq!(s.history_days, 90);
        let s = schedule(
            "[schedule]\nsync_every = \"15m\"\nhistory_days = 400\ncompact_at = \"01:30\"\n",
        )
        .unwrap();
        assert_eq!(s.sync_every, Duration::from_secs(900));
        assert_eq!(s.history_days, 400);
        assert_eq!(s.compact_at, NaiveTime::from_hms_opt(1, 30, 0).unwrap());
    }

    #[test]
    fn mistakes_are_named() {
        let e = schedule("[schedule]\nsync_evry = \"1h\"\n").unwrap_err();
        assert!(e.to_string().contains("sync_evry"), "{e}");
        let e = schedule("[schedule]\ncompact_at = \"3am\"\n").unwrap_err();
        assert!(e.to_string().contains("compact_at"), "{e}");
    }

    #[test]
    fn the_next_compaction_is_later_today_or_tomorrow() {
        let s = schedule("").unwrap();
        let at = |t: &str| DateTime::parse_from_rfc3339(t).unwrap().to_utc();
        assert_eq!(
            s.next_compaction(at("2026-11-01T01:00:00Z")),
            at("2026-11-01T03:00:00Z")
        );
        assert_eq!(
            s.next_compaction(at("2026-11-01T03:00:00Z")),
            at("2026-11-02T03:00:00Z")
        );
    }
}
