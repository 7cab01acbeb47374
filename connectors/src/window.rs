//! Windows of days: the restatement window a sync re-pulls, and chunks of it.

use chrono::NaiveDate;

/// An inclusive range of days.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Window {
    pub since: NaiveDate,
    pub until: NaiveDate,
}

impl Window {
    /// `since..=until`; `None` if `until` is before `since`.
    pub fn new(since: NaiveDate, until: NaiveDate) -> Option<Self> {
        (since <= until).then_some(Window { since, until })
    }

    /// The `days` days before `today` (today itself is incomplete and never pulled).
    pub fn trailing_days(today: NaiveDate, days: u64) -> Self {
        Window {
            since: today - chrono::Days::new(days.max(1)),
            until: today - chrono::Days::new(1),
        }
    }

    /// Every day of the window.
    pub fn days(&self) -> impl Iterator<Item = NaiveDate> + use<> {
        let until = self.until;
        self.since.iter_days().take_while(move |d| *d <= until)
    }

    /// Number of days in the window.
    pub fn len(&self) -> u64 {
        (self.until - self.since).num_days() as u64 + 1
    }

    /// A window always holds at least one day.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Consecutive windows of at most `days` days covering this one, oldest first.
    pub fn chunks(&self, days: u64) -> Vec<Window> {
        let days = days.max(1);
        let mut out = Vec::new();
        let mut since = self.since;
        while since <= self.until {
            let until = (since + chrono::Days::new(days - 1)).min(self.until);
            out.push(Window { since, until });
            since = until + chrono::Days::new(1);
        }
        out
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}..{}", self.since, self.until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn trailing_window_ends_yesterday() {
        let w = Window::trailing_days(d("2026-11-20"), 30);
        assert_eq!((w.since, w.until), (d("2026-10-21"), d("2026-11-19")));
        assert_eq!(w.len(), 30);
        assert_eq!(w.days().count(), 30);
    }

    #[test]
    fn chunks_cover_the_window_exactly() {
        let w = Window::trailing_days(d("2026-11-20"), 30);
        let chunks = w.chunks(7);
        assert_eq!(chunks.len(), 5);
        assert_eq!(chunks[0].since, w.since);
        assert_eq!(chunks[4].until, w.until);
        assert_eq!(chunks.iter().map(Window::len).sum::<u64>(), 30);
        assert_eq!(w.chunks(100), vec![w]);
    }
}
