//! The arithmetic of maturity, on a history already read ([`DaySeries`]): curves (the fraction
//! of a day's final value reported at each age), projections of the days still restating, and
//! the backtest that checks projections against what the settled days really became.
//!
//! Nothing here reads storage, so every rule is unit-tested on hand-made series: values that
//! go down (refunds), days whose final value is zero, groups with one day, days that vanished.
//! No output is NaN or infinite: where a fraction or a projection is undefined it is `None`
//! (NULL in SQL), and the reason is in the row.

use std::collections::BTreeMap;

use chrono::NaiveDate;

use super::{Group, Value};

/// A curve row needs at least this many settled days at its age to be called reliable; rows
/// with fewer are still returned, with `enough_days = false`.
pub const MIN_DAYS: usize = 7;

/// The quantiles the interval of a projection is made from: a nominal 80% interval.
pub const LOW_QUANTILE: f64 = 0.1;
pub const HIGH_QUANTILE: f64 = 0.9;

/// One group's one day: its value after each observation that changed it.
#[derive(Debug, Clone, PartialEq)]
pub struct DaySeries {
    pub group: Group,
    pub day: NaiveDate,
    /// (day the value was pulled, value), in commit order; a later point on the same day
    /// supersedes an earlier one.
    pub points: Vec<(NaiveDate, Value)>,
    /// The value now (after the newest version).
    pub current: Value,
    /// The last day a sync pulled this day's partition: the current value is this old.
    pub last_observed: NaiveDate,
}

impl DaySeries {
    /// The value a reader saw when the day was `age` days old: the last point pulled on or
    /// before `day + age`; `None` before the first.
    pub fn value_at_age(&self, age: i64) -> Option<Value> {
        let by = self.day + chrono::Duration::days(age);
        self.points
            .iter()
            .rev()
            .find(|(observed, _)| *observed <= by)
            .map(|(_, value)| *value)
    }

    /// Age of the first point.
    pub fn first_age(&self) -> Option<i64> {
        self.points
            .iter()
            .map(|(observed, _)| (*observed - self.day).num_days())
            .min()
    }

    /// Age of the current value.
    pub fn age(&self) -> i64 {
        (self.last_observed - self.day).num_days()
    }
}

/// How long a source restates, and how far its syncs have got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceClock {
    /// Days after which the source no longer restates a day (its sync window).
    pub window: i64,
    /// The newest day a sync of the source pulled data.
    pub latest: NaiveDate,
}

impl SourceClock {
    /// Whether `day` has had its last restatement: a sync pulled it at the end of the window.
    pub fn settled(&self, day: NaiveDate) -> bool {
        (self.latest - day).num_days() >= self.window
    }
}

/// One row of a maturity curve.
#[derive(Debug, Clone, PartialEq)]
pub struct CurvePoint {
    pub group: Group,
    pub age_days: i64,
    pub median_fraction: Option<f64>,
    pub p10_fraction: Option<f64>,
    pub p90_fraction: Option<f64>,
    /// Settled days with a value at this age and a final value other than zero.
    pub days_observed: usize,
}

impl CurvePoint {
    pub fn enough_days(&self) -> bool {
        self.days_observed >= MIN_DAYS
    }
}

/// The `q` quantile of sorted values, interpolated linearly between neighbours.
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    match sorted.len() {
        0 => None,
        1 => Some(sorted[0]),
        n => {
            let position = q.clamp(0.0, 1.0) * (n - 1) as f64;
            let below = position.floor() as usize;
            let above = position.ceil() as usize;
            let weight = position - below as f64;
            Some(sorted[below] + (sorted[above] - sorted[below]) * weight)
        }
    }
}

/// `value / total` when it is a finite number.
fn fraction(value: Value, total: Value) -> Option<f64> {
    if total == 0 {
        return None;
    }
    let f = value as f64 / total as f64;
    f.is_finite().then_some(f)
}

/// The settled days' fractions of their final value at each age, per curve group (the day's
/// group mapped by `curve_group`), with the day each came from.
struct Fractions {
    /// (curve group, age) → (day, fraction), sorted by fraction.
    by_age: BTreeMap<(Group, i64), Vec<(NaiveDate, f64)>>,
}

impl Fractions {
    fn of(
        series: &[DaySeries],
        clocks: &BTreeMap<String, SourceClock>,
        curve_group: &dyn Fn(&Group) -> Group,
    ) -> Self {
        let mut by_age: BTreeMap<(Group, i64), Vec<(NaiveDate, f64)>> = BTreeMap::new();
        for day in series {
            let Some(clock) = clocks.get(&day.group.source) else {
                continue;
            };
            if !clock.settled(day.day) {
                continue;
            }
            let Some(first) = day.first_age() else {
                continue;
            };
            let group = curve_group(&day.group);
            for age in first.max(0)..=clock.window {
                let Some(value) = day.value_at_age(age) else {
                    continue;
                };
                if let Some(f) = fraction(value, day.current) {
                    by_age
                        .entry((group.clone(), age))
                        .or_default()
                        .push((day.day, f));
                }
            }
        }
        for values in by_age.values_mut() {
            values.sort_by(|a, b| a.1.total_cmp(&b.1));
        }
        Fractions { by_age }
    }

    /// The sorted fractions at (group, age), leaving out those of `except`.
    fn at(&self, group: &Group, age: i64, except: Option<NaiveDate>) -> Vec<f64> {
        self.by_age
            .get(&(group.clone(), age))
            .map(|values| {
                values
                    .iter()
                    .filter(|(day, _)| Some(*day) != except)
                    .map(|(_, f)| *f)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The maturity curves of the groups in `series`: for each group and each age from the
/// earliest any of its days was pulled to its source's window, the median, 10th and 90th
/// percentile of the settled days' fraction of their final value. Days whose final value is
/// zero have no fraction and are not counted.
pub fn curves(series: &[DaySeries], clocks: &BTreeMap<String, SourceClock>) -> Vec<CurvePoint> {
    let fractions = Fractions::of(series, clocks, &Group::clone);
    let mut ages: BTreeMap<Group, (i64, i64)> = BTreeMap::new();
    for day in series {
        let (Some(clock), Some(first)) = (clocks.get(&day.group.source), day.first_age()) else {
            continue;
        };
        let range = ages
            .entry(day.group.clone())
            .or_insert((first.max(0), clock.window));
        range.0 = range.0.min(first.max(0));
    }
    let mut out = Vec::new();
    for (group, (first, last)) in ages {
        for age in first..=last.max(first) {
            let values = fractions.at(&group, age, None);
            out.push(CurvePoint {
                group: group.clone(),
                age_days: age,
                median_fraction: quantile(&values, 0.5),
                p10_fraction: quantile(&values, LOW_QUANTILE),
                p90_fraction: quantile(&values, HIGH_QUANTILE),
                days_observed: values.len(),
            });
        }
    }
    out
}

/// How a projection was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// The day has settled: its value is final.
    Settled,
    /// Scaled by the curve at the day's age.
    Curve,
    /// Scaled by a curve with fewer than [`MIN_DAYS`] settled days at that age.
    ThinCurve,
    /// No settled day was seen at this age (or the curve is zero there): the current value is
    /// all there is.
    NoCurve,
}

impl Basis {
    pub fn as_str(self) -> &'static str {
        match self {
            Basis::Settled => "settled",
            Basis::Curve => "curve",
            Basis::ThinCurve => "thin curve",
            Basis::NoCurve => "no curve",
        }
    }
}

/// One day's projected final value.
#[derive(Debug, Clone, PartialEq)]
pub struct Projection {
    pub group: Group,
    pub day: NaiveDate,
    pub age_days: i64,
    pub current: Value,
    /// The curve's median fraction at the day's age (1 for a settled day).
    pub maturity: Option<f64>,
    pub projected: Option<f64>,
    pub low: Option<f64>,
    pub high: Option<f64>,
    pub settled: bool,
    pub basis: Basis,
}

/// A value divided by a fraction, when the fraction is positive and the result finite.
fn scaled(value: Value, by: Option<f64>) -> Option<f64> {
    let by = by.filter(|f| *f > 0.0)?;
    let v = value as f64 / by;
    v.is_finite().then_some(v)
}

/// Project `day` with the curve fractions at its age.
fn project_one(day: &DaySeries, clock: &SourceClock, at_age: &[f64]) -> Projection {
    let age = day.age();
    let current = day.current;
    if clock.settled(day.day) {
        let v = current as f64;
        return Projection {
            group: day.group.clone(),
            day: day.day,
            age_days: age,
            current,
            maturity: Some(1.0),
            projected: Some(v),
            low: Some(v),
            high: Some(v),
            settled: true,
            basis: Basis::Settled,
        };
    }
    let median = quantile(at_age, 0.5);
    let basis = |n: usize| {
        if n < MIN_DAYS {
            Basis::ThinCurve
        } else {
            Basis::Curve
        }
    };
    let (projected, low, high, basis) = match median {
        // Nothing reported yet, and a curve to say so: nothing is expected either.
        Some(_) if current == 0 => (Some(0.0), Some(0.0), Some(0.0), basis(at_age.len())),
        _ => match scaled(current, median) {
            None => (Some(current as f64), None, None, Basis::NoCurve),
            Some(projected) => {
                // Dividing by the 90th percentile gives the smaller value when the value is
                // positive; a negative value (net refunds) swaps them. A percentile at or
                // below zero bounds nothing.
                let a = scaled(current, quantile(at_age, HIGH_QUANTILE));
                let b = scaled(current, quantile(at_age, LOW_QUANTILE));
                let (low, high) = match (a, b) {
                    (Some(a), Some(b)) => (Some(a.min(b)), Some(a.max(b))),
                    (a, b) if current > 0 => (a, b),
                    (a, b) => (b, a),
                };
                (Some(projected), low, high, basis(at_age.len()))
            }
        },
    };
    Projection {
        group: day.group.clone(),
        day: day.day,
        age_days: age,
        current,
        maturity: median,
        projected,
        low,
        high,
        settled: false,
        basis,
    }
}

/// Projected final values of `days` (each in its own group), from curves made of the settled
/// days of `history` grouped by `curve_group`.
pub fn project(
    days: &[DaySeries],
    history: &[DaySeries],
    clocks: &BTreeMap<String, SourceClock>,
    curve_group: &dyn Fn(&Group) -> Group,
) -> Vec<Projection> {
    let fractions = Fractions::of(history, clocks, curve_group);
    days.iter()
        .filter_map(|day| {
            let clock = clocks.get(&day.group.source)?;
            let age = day.age().clamp(0, clock.window);
            let at_age = fractions.at(&curve_group(&day.group), age, None);
            Some(project_one(day, clock, &at_age))
        })
        .collect()
}

/// The backtest at one age: how far projections and the naive "today's value is final" were
/// from the settled days' final values.
#[derive(Debug, Clone, PartialEq)]
pub struct BacktestRow {
    pub age_days: i64,
    /// Settled (group, day)s with a value at this age and a final value other than zero.
    pub cells: usize,
    /// Cells the curve could project (the rest had no other settled day at this age).
    pub projected_cells: usize,
    /// Median absolute percentage error of the projection, over the projected cells.
    pub mdape_projected: Option<f64>,
    /// Median absolute percentage error of taking the value at this age as final, over the
    /// same cells.
    pub mdape_naive: Option<f64>,
}

/// For each settled day and each age before its source's window: hide what was restated after
/// that age, project the value seen then with a curve made of the *other* settled days (leave
/// one day out), and compare both the projection and the value itself with the final value.
pub fn backtest(
    history: &[DaySeries],
    clocks: &BTreeMap<String, SourceClock>,
    curve_group: &dyn Fn(&Group) -> Group,
) -> Vec<BacktestRow> {
    let fractions = Fractions::of(history, clocks, curve_group);
    let mut errors: BTreeMap<i64, (usize, Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for day in history {
        let Some(clock) = clocks.get(&day.group.source) else {
            continue;
        };
        if !clock.settled(day.day) || day.current == 0 {
            continue;
        }
        let Some(first) = day.first_age() else {
            continue;
        };
        let truth = day.current as f64;
        for age in first.max(0)..clock.window {
            let Some(seen) = day.value_at_age(age) else {
                continue;
            };
            let others = fractions.at(&curve_group(&day.group), age, Some(day.day));
            let entry = errors.entry(age).or_default();
            entry.0 += 1;
            let Some(projected) = (if seen == 0 {
                quantile(&others, 0.5).map(|_| 0.0)
            } else {
                scaled(seen, quantile(&others, 0.5))
            }) else {
                continue;
            };
            entry.1.push(((projected - truth) / truth).abs() * 100.0);
            entry.2.push(((seen as f64 - truth) / truth).abs() * 100.0);
        }
    }
    errors
        .into_iter()
        .map(|(age, (cells, mut projected, mut naive))| {
            projected.sort_by(f64::total_cmp);
            naive.sort_by(f64::total_cmp);
            BacktestRow {
                age_days: age,
                cells,
                projected_cells: projected.len(),
                mdape_projected: quantile(&projected, 0.5),
                mdape_naive: quantile(&naive, 0.5),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    fn group(source: &str) -> Group {
        Group {
            source: source.into(),
            account: None,
            campaign: None,
        }
    }

    /// A day whose value at each age from 1 is `values[age - 1]`, last pulled at `last_age`.
    fn day(source: &str, day: &str, values: &[Value], last_age: i64) -> DaySeries {
        let day = d(day);
        DaySeries {
            group: group(source),
            day,
            points: values
                .iter()
                .enumerate()
                .map(|(i, v)| (day + chrono::Duration::days(i as i64 + 1), *v))
                .collect(),
            current: *values.last().unwrap(),
            last_observed: day + chrono::Duration::days(last_age),
        }
    }

    fn clocks(window: i64, latest: &str) -> BTreeMap<String, SourceClock> {
        BTreeMap::from([(
            "meta".to_string(),
            SourceClock {
                window,
                latest: d(latest),
            },
        )])
    }

    #[test]
    fn a_curve_is_the_settled_days_fraction_of_final_at_each_age() {
        // Window 3: days up to 2026-11-07 have settled by 2026-11-10.
        let history = vec![
            day("meta", "2026-11-01", &[50, 80, 100], 3),
            day("meta", "2026-11-02", &[40, 90, 100], 3),
            day("meta", "2026-11-03", &[60, 70, 100], 3),
            // Not settled: counted in no fraction.
            day("meta", "2026-11-09", &[10], 1),
        ];
        let curve = curves(&history, &clocks(3, "2026-11-10"));
        let at = |age| curve.iter().find(|p| p.age_days == age).unwrap();
        assert_eq!(at(1).median_fraction, Some(0.5));
        assert_eq!(at(1).days_observed, 3);
        assert!((at(1).p10_fraction.unwrap() - 0.42).abs() < 1e-9);
        assert_eq!(at(2).median_fraction, Some(0.8));
        assert_eq!(at(3).median_fraction, Some(1.0));
        assert!(!at(1).enough_days());
        assert_eq!(curve.len(), 3);
    }

    #[test]
    fn refunds_give_fractions_above_one_and_zero_finals_count_in_none() {
        let history = vec![
            // Revenue first reported high, then refunded.
            day("meta", "2026-11-01", &[120, 110, 100], 3),
            // Nothing, ever.
            day("meta", "2026-11-02", &[0, 0, 0], 3),
            // Spend reported, then invalid clicks refunded down to nothing.
            day("meta", "2026-11-03", &[30, 10, 0], 3),
        ];
        let curve = curves(&history, &clocks(3, "2026-11-10"));
        let age1 = curve.iter().find(|p| p.age_days == 1).unwrap();
        assert_eq!(age1.median_fraction, Some(1.2));
        assert_eq!(age1.days_observed, 1);
        for point in &curve {
            for f in [
                point.median_fraction,
                point.p10_fraction,
                point.p90_fraction,
            ]
            .into_iter()
            .flatten()
            {
                assert!(f.is_finite());
            }
        }
    }

    #[test]
    fn a_vanished_day_and_a_group_with_one_day_have_defined_answers() {
        // The only day of the group; its rows vanished upstream at age 2 (value 0 after).
        let only = day("meta", "2026-11-05", &[40, 0], 2);
        let curve = curves(std::slice::from_ref(&only), &clocks(3, "2026-11-07"));
        assert!(curve
            .iter()
            .all(|p| p.days_observed == 0 && p.median_fraction.is_none() && !p.enough_days()));
        let projected = project(
            std::slice::from_ref(&only),
            std::slice::from_ref(&only),
            &clocks(3, "2026-11-07"),
            &Group::clone,
        );
        assert_eq!(projected[0].basis, Basis::NoCurve);
        assert_eq!(
            projected[0].projected,
            Some(0.0),
            "the current value, unscaled"
        );
        assert_eq!(projected[0].low, None);
    }

    #[test]
    fn immature_days_are_scaled_by_the_curve_and_settled_days_project_to_themselves() {
        let mut history: Vec<DaySeries> = (1..=8)
            .map(|i| day("meta", &format!("2026-11-{i:02}"), &[40 + i, 80, 100], 3))
            .collect();
        let young = day("meta", "2026-11-20", &[45], 1);
        history.push(young.clone());
        let clocks = clocks(3, "2026-11-21");
        let out = project(
            &[young.clone(), history[0].clone()],
            &history,
            &clocks,
            &Group::clone,
        );
        let young_projection = &out[0];
        assert_eq!(young_projection.basis, Basis::Curve);
        let median = young_projection.maturity.unwrap();
        assert!((median - 0.445).abs() < 1e-9, "{median}");
        assert!((young_projection.projected.unwrap() - 45.0 / 0.445).abs() < 1e-9);
        assert!(young_projection.low.unwrap() < young_projection.projected.unwrap());
        assert!(young_projection.high.unwrap() > young_projection.projected.unwrap());
        let settled = &out[1];
        assert_eq!(settled.basis, Basis::Settled);
        assert_eq!(settled.projected, Some(100.0));
        assert_eq!(settled.low, settled.high);
    }

    #[test]
    fn negative_values_keep_the_interval_ordered() {
        let history: Vec<DaySeries> = (1..=8)
            .map(|i| day("meta", &format!("2026-11-{i:02}"), &[-50 - i, -100], 2))
            .collect();
        let young = day("meta", "2026-11-20", &[-40], 1);
        let out = project(&[young], &history, &clocks(2, "2026-11-21"), &Group::clone);
        let p = &out[0];
        assert!(p.projected.unwrap() < 0.0);
        assert!(p.low.unwrap() <= p.projected.unwrap() && p.projected.unwrap() <= p.high.unwrap());
    }

    #[test]
    fn the_backtest_leaves_the_day_out_and_compares_with_the_naive_answer() {
        let history: Vec<DaySeries> = (1..=9)
            .map(|i| day("meta", &format!("2026-11-{i:02}"), &[50, 80, 100], 3))
            .collect();
        let rows = backtest(&history, &clocks(3, "2026-11-20"), &Group::clone);
        assert_eq!(rows.len(), 2, "ages 1 and 2; age 3 is the window");
        assert_eq!(rows[0].cells, 9);
        assert_eq!(rows[0].mdape_projected, Some(0.0));
        assert_eq!(rows[0].mdape_naive, Some(50.0));
        assert_eq!(rows[1].mdape_naive, Some(20.0));
        // One day alone has no other day to learn from.
        let rows = backtest(&history[..1], &clocks(3, "2026-11-20"), &Group::clone);
        assert_eq!(rows[0].projected_cells, 0);
        assert_eq!(rows[0].mdape_projected, None);
    }

    #[test]
    fn a_value_at_an_age_is_the_last_pulled_by_then() {
        let series = DaySeries {
            group: group("meta"),
            day: d("2026-11-01"),
            points: vec![
                (d("2026-11-03"), 5),
                (d("2026-11-03"), 7),
                (d("2026-11-06"), 9),
            ],
            current: 9,
            last_observed: d("2026-11-08"),
        };
        assert_eq!(series.value_at_age(1), None);
        assert_eq!(series.value_at_age(2), Some(7));
        assert_eq!(series.value_at_age(4), Some(7));
        assert_eq!(series.value_at_age(5), Some(9));
        assert_eq!(series.first_age(), Some(2));
        assert_eq!(series.age(), 7);
    }
}
