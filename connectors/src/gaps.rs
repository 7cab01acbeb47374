//! Gap detection: which (source, account, day) slices of the configured history the slice
//! ledger says are missing (never loaded, or their jobs failed or were quarantined) or stale
//! (the day settled, but no sync reached it on the last day of its restatement window, so
//! its final numbers were never pulled). `tidemark run` schedules the gaps as backfill jobs.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use engine::ledger::SliceRecord;
use serde::Serialize;

use crate::raw::Unit;
use crate::source::Source;
use crate::window::Window;

/// Why a range of days needs loading again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GapReason {
    /// The ledger has no record of the day: never loaded, or its job failed.
    Missing,
    /// The day settled after its last sync, which ran before its window's last day.
    MissedFinalRestatement,
}

impl std::fmt::Display for GapReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GapReason::Missing => "never loaded",
            GapReason::MissedFinalRestatement => "settled without its final restatement",
        })
    }
}

/// Consecutive days of one account that need loading for one reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gap {
    pub source: String,
    pub account: String,
    pub days: Window,
    pub reason: GapReason,
}

impl Gap {
    /// The backfill jobs that fill this gap (the source's usual chunking).
    pub fn units(&self, source: &dyn Source) -> Vec<Unit> {
        source
            .plan(self.days)
            .into_iter()
            .filter(|u| u.account == self.account)
            .collect()
    }

    pub fn day_count(&self) -> usize {
        self.days.days().count()
    }
}

/// The gaps of every source's accounts over the `history_days` days before `today`,
/// judged at `now` against the ledger's `records`.
pub fn find(
    records: &[SliceRecord],
    sources: &[Arc<dyn Source>],
    today: NaiveDate,
    history_days: u64,
    now: DateTime<Utc>,
) -> Vec<Gap> {
    let ledger: BTreeMap<(&str, &str, NaiveDate), &SliceRecord> = records
        .iter()
        .map(|r| ((r.source.as_str(), r.account.as_str(), r.date), r))
        .collect();
    let mut gaps = Vec::new();
    for source in sources {
        let history = Window::trailing_days(today, history_days.max(source.window_days()));
        for account in source.accounts() {
            let mut open: Option<Gap> = None;
            for day in history.days() {
                let reason = match ledger.get(&(source.name(), account.as_str(), day)) {
                    None => Some(GapReason::Missing),
                    Some(r) if missed_final_restatement(r, now) => {
                        Some(GapReason::MissedFinalRestatement)
                    }
                    Some(_) => None,
                };
                match (&mut open, reason) {
                    (Some(gap), Some(reason))
                        if gap.reason == reason && gap.days.until.succ_opt() == Some(day) =>
                    {
                        gap.days.until = day;
                    }
                    (_, reason) => {
                        gaps.extend(open.take());
                        open = reason.map(|reason| Gap {
                            source: source.name().to_string(),
                            account: account.clone(),
                            days: Window {
                                since: day,
                                until: day,
                            },
                            reason,
                        });
                    }
                }
            }
            gaps.extend(open);
        }
    }
    gaps
}

/// A settled day whose last sync ran before the last day its window covered it.
fn missed_final_restatement(record: &SliceRecord, now: DateTime<Utc>) -> bool {
    record.is_settled(now) && record.synced_at < record.settles_at - chrono::Duration::days(1)
}

/// At most `max_days` days of gaps, oldest first within each account; accounts take turns
/// of an equal share so one account's long history does not starve the others.
pub fn limit(gaps: Vec<Gap>, max_days: usize) -> Vec<Gap> {
    let mut queues: BTreeMap<(String, String), std::collections::VecDeque<Gap>> = BTreeMap::new();
    for gap in gaps {
        queues
            .entry((gap.source.clone(), gap.account.clone()))
            .or_default()
            .push_back(gap);
    }
    let per_turn = (max_days / queues.len().max(1)).max(1);
    let mut taken: Vec<Gap> = Vec::new();
    let mut budget = max_days;
    while budget > 0 && queues.values().any(|q| !q.is_empty()) {
        for queue in queues.values_mut() {
            let Some(mut gap) = queue.pop_front() else {
                continue;
            };
            let take = gap.day_count().min(per_turn).min(budget);
            if take == 0 {
                break;
            }
            if take < gap.day_count() {
                let mut rest = gap.clone();
                rest.days.since = gap.days.since + chrono::Days::new(take as u64);
                gap.days.until = rest.days.since.pred_opt().expect("not the first day");
                queue.push_front(rest);
            }
            budget -= take;
            taken.push(gap);
        }
    }
    taken.sort_by(|a, b| {
        (&a.source, &a.account, a.days.since).cmp(&(&b.source, &b.account, b.days.since))
    });
    let mut merged: Vec<Gap> = Vec::new();
    for gap in taken {
        match merged.last_mut() {
            Some(last)
                if (&last.source, &last.account, last.reason)
                    == (&gap.source, &gap.account, gap.reason)
                    && last.days.until.succ_opt() == Some(gap.days.since) =>
            {
                last.days.until = gap.days.until;
            }
            _ => merged.push(gap),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProjectConfig;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
    }

    fn meta_source() -> Arc<dyn Source> {
        let config: ProjectConfig = toml::from_str(
            r#"
            [sources.meta]
            platform = "meta"
            accounts = ["1", "2"]
            window_days = 3
            access_token = { env = "UNUSED_TOKEN" }
            "#,
        )
        .unwrap();
        let sources = config.sources().unwrap();
        crate::build_sources(&sources, crate::Purpose::Replay)
            .unwrap()
            .remove(0)
    }

    fn synced(
        source: &dyn Source,
        account: &str,
        date: NaiveDate,
        at: DateTime<Utc>,
    ) -> SliceRecord {
        SliceRecord {
            source: "meta".into(),
            account: account.into(),
            date,
            synced_at: at,
            run: "r".into(),
            source_table: "meta_insights".into(),
            source_table_version: 1,
            table_version: 1,
            rows: 1,
            settles_at: source.settles_at(date),
        }
    }

    fn noon(d: NaiveDate) -> DateTime<Utc> {
        d.and_hms_opt(12, 0, 0).unwrap().and_utc()
    }

    #[test]
    fn missing_days_become_ranges_per_account() {
        let source = meta_source();
        let today = day(20);
        // History: Nov 10..=19. Account 1 has 10..=19 except 13, 14; account 2 has nothing.
        let records: Vec<_> = (10..=19)
            .filter(|d| *d != 13 && *d != 14)
            .map(|d| synced(source.as_ref(), "1", day(d), noon(day(d + 3))))
            .collect();
        let gaps = find(&records, &[source], today, 10, noon(today));
        let summary: Vec<_> = gaps
            .iter()
            .map(|g| (g.account.as_str(), g.days.since, g.days.until, g.reason))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("1", day(13), day(14), GapReason::Missing),
                ("2", day(10), day(19), GapReason::Missing),
            ]
        );
    }

    #[test]
    fn a_day_that_settled_unsynced_is_loaded_once_more() {
        let source = meta_source();
        let today = day(20);
        // Window 3 days: Nov 10 is last covered on Nov 13 and settles on Nov 14.
        let on_time = synced(source.as_ref(), "1", day(10), noon(day(13)));
        let early = synced(source.as_ref(), "1", day(11), noon(day(12)));
        let backfilled_late = synced(source.as_ref(), "1", day(12), noon(day(19)));
        let records = vec![on_time, early, backfilled_late];
        let of_account1 = |gaps: Vec<Gap>| -> Vec<_> {
            gaps.into_iter()
                .filter(|g| g.account == "1")
                .map(|g| (g.days.since, g.days.until, g.reason))
                .collect()
        };
        assert_eq!(
            of_account1(find(&records, &[meta_source()], today, 10, noon(today))),
            vec![
                (day(11), day(11), GapReason::MissedFinalRestatement),
                (day(13), day(19), GapReason::Missing),
            ]
        );
        // No history beyond the window: only the window's days (Nov 17..=19) are looked at.
        assert_eq!(
            of_account1(find(&records, &[source], today, 0, noon(today))),
            vec![(day(17), day(19), GapReason::Missing)]
        );
    }

    #[test]
    fn the_budget_is_shared_across_accounts() {
        let gap = |account: &str, since: u32, until: u32| Gap {
            source: "meta".into(),
            account: account.into(),
            days: Window {
                since: day(since),
                until: day(until),
            },
            reason: GapReason::Missing,
        };
        let limited = limit(vec![gap("1", 1, 10), gap("2", 1, 2), gap("2", 5, 9)], 8);
        assert_eq!(limited, vec![gap("1", 1, 6), gap("2", 1, 2)]);
        assert_eq!(limit(vec![gap("1", 1, 3)], 10), vec![gap("1", 1, 3)]);
    }
}
