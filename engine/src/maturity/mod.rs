//! How final is a day? Maturity curves and projected final values, from the restatement
//! history tidemark already keeps in each table's Delta log.
//!
//! Platforms keep restating a day's installs, conversions and revenue for weeks. Every sync's
//! replace is a commit, so the log holds what each day looked like after each sync; a replace
//! commit records the day its rows were pulled (`tidemark.observed`, the sync's "today"), and a
//! commit without it (another writer, an older tidemark) counts from its commit time. The
//! *age* of a value is that day minus the day it describes.
//!
//! - [`history`] replays the log from the oldest version a vacuum left readable: each data file
//!   is read once (totals per account and campaign), and each (source, day) partition's totals
//!   are followed commit by commit. Compactions move rows without changing them and are not
//!   observations.
//! - [`curve`] turns that into curves (median, 10th and 90th percentile of the fraction of the
//!   final value reported at each age, over settled days), projections (current value ÷ the
//!   curve at its age, with an interval from the percentiles) and a leave-one-day-out backtest.
//! - [`function`] puts them in SQL: `maturity(table, metric [, by] [, since])` and
//!   `projected(table, metric [, by] [, since] [, curve])`.
//!
//! A day has *settled* once a sync pulled it at the end of its source's window: the window
//! comes from the slice ledger (`settles_at`), or, for a source the ledger does not know, is the
//! oldest age any sync pulled. Retention limits all of this: a vacuum deletes the files of old
//! versions, so the history starts at the oldest readable version, and a day needs its whole
//! window of history to count in a curve; keep `vacuum_retain` longer than the longest window.

pub mod curve;
pub mod function;
pub mod history;

use serde::{Deserialize, Serialize};

pub use curve::{BacktestRow, Basis, CurvePoint, DaySeries, Projection, SourceClock};
pub use history::History;

/// A metric's value in millionths (exact for integer counts and for money in DECIMAL(38, 6),
/// so totals can be kept by adding and subtracting files).
pub type Value = i128;

/// Millionths per unit of [`Value`].
pub const SCALE: f64 = 1_000_000.0;

/// What a curve or a projection is computed per.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Grain {
    Source,
    Account,
    Campaign,
}

impl Grain {
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "source" => Some(Grain::Source),
            "account" => Some(Grain::Account),
            "campaign" => Some(Grain::Campaign),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Grain::Source => "source",
            Grain::Account => "account",
            Grain::Campaign => "campaign",
        }
    }

    /// `group` coarsened to this grain (a grain finer than the group's is the group).
    pub fn of(self, group: &Group) -> Group {
        Group {
            source: group.source.clone(),
            account: match self {
                Grain::Source => None,
                _ => group.account.clone(),
            },
            campaign: match self {
                Grain::Campaign => group.campaign.clone(),
                _ => None,
            },
        }
    }
}

/// A source, optionally narrowed to an account and a campaign.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Group {
    pub source: String,
    pub account: Option<String>,
    pub campaign: Option<String>,
}

/// The backtest of `metric` in `table`: for every settled (group, day) at grain `by`, the
/// value seen at each age projected with a curve per `curve` learnt from the other settled
/// days, against the day's final value; and the naive "the value seen is final" answer.
pub async fn backtest(
    warehouse: &crate::Warehouse,
    table: &str,
    metric: &str,
    by: Grain,
    curve: Grain,
) -> crate::Result<Vec<BacktestRow>> {
    let history = History::read(warehouse, table).await?;
    let (series, clocks) = history.series(metric, by)?;
    let curve = curve.min(by);
    Ok(curve::backtest(&series, &clocks, &|g: &Group| curve.of(g)))
}

/// Backtest rows as a table: `age_days`, `cells`, `projected_cells`, `mdape_projected_pct`,
/// `mdape_naive_pct` and `projection_better`.
pub fn backtest_batch(rows: &[BacktestRow]) -> crate::Result<arrow::array::RecordBatch> {
    use arrow::array::{BooleanArray, Float64Array, Int64Array};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;
    let schema = Arc::new(Schema::new(vec![
        Field::new("age_days", DataType::Int64, false),
        Field::new("cells", DataType::Int64, false),
        Field::new("projected_cells", DataType::Int64, false),
        Field::new("mdape_projected_pct", DataType::Float64, true),
        Field::new("mdape_naive_pct", DataType::Float64, true),
        Field::new("projection_better", DataType::Boolean, true),
    ]));
    let better = rows
        .iter()
        .map(|r| match (r.mdape_projected, r.mdape_naive) {
            (Some(p), Some(n)) => Some(p < n || (p == n && n == 0.0)),
            _ => None,
        });
    Ok(arrow::array::RecordBatch::try_new(
        schema,
        vec![
            Arc::new(rows.iter().map(|r| r.age_days).collect::<Int64Array>()),
            Arc::new(rows.iter().map(|r| r.cells as i64).collect::<Int64Array>()),
            Arc::new(
                rows.iter()
                    .map(|r| r.projected_cells as i64)
                    .collect::<Int64Array>(),
            ),
            Arc::new(
                rows.iter()
                    .map(|r| r.mdape_projected)
                    .collect::<Float64Array>(),
            ),
            Arc::new(rows.iter().map(|r| r.mdape_naive).collect::<Float64Array>()),
            Arc::new(better.collect::<BooleanArray>()),
        ],
    )?)
}
