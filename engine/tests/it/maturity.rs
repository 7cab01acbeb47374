//! Maturity from a real Delta history, with the awkward cases a platform produces: a metric
//! that goes down after it is first reported (refunds, invalid clicks), an account whose
//! values are always zero, an account with one day of history, a day that vanished upstream
//! (its slice replaced by no rows), and a compaction in the middle (which moves rows without
//! changing them and must not count as a pull). Answers are defined, exact where the
//! arithmetic is, and never NaN; on a local directory and on S3 (moto).

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int64Type};
use chrono::{Days, NaiveDate};
use engine::maintenance::{self, CompactOptions, Settled};
use engine::maturity::function::{compute, Kind, MaturityRequest};
use engine::maturity::Grain;
use engine::{Namespace, SliceKey, Warehouse};
use testdata::rows::{batch, day, Row};
use testdata::{Backend, BackendKind};

const TABLE: &str = "perf";
/// Each pull re-reads the five days before it.
const WINDOW: u64 = 5;

/// What account `account` reports for `day` when it is `age` days old (`None`: no rows).
fn reported(account: &str, day: NaiveDate, age: i64) -> Option<i64> {
    match account {
        // Grows to 50 by age 5.
        "grows" => Some(10 * age),
        // First reported high, then refunded down to 50.
        "refunds" => Some(100 - 10 * age),
        "zero" => Some(0),
        "one_day" => (day == testdata::rows::day(15)).then_some(10 * age),
        // Like "grows", but the 12th vanished upstream from age 3 on.
        _ => (day != testdata::rows::day(12) || age < 3).then_some(10 * age),
    }
}

const ACCOUNTS: [&str; 5] = ["grows", "refunds", "zero", "one_day", "vanishes"];

/// One pull on `today`: every account's slices of the window replaced in one commit.
async fn pull(warehouse: &Warehouse, today: NaiveDate) {
    let mut slices = Vec::new();
    let mut rows = Vec::new();
    for back in 1..=WINDOW {
        let d = today - Days::new(back);
        for account in ACCOUNTS {
            let slice = SliceKey::new("meta", account, d);
            if let Some(clicks) = reported(account, d, back as i64) {
                rows.push(Row {
                    slice: slice.clone(),
                    ad_id: "ad1".into(),
                    clicks,
                    generation: back as i64,
                });
            }
            slices.push(slice);
        }
    }
    warehouse
        .replace_slices(TABLE)
        .with_slices(slices)
        .with_rows([batch(&rows)])
        .observed_on(today)
        .await
        .unwrap();
}

async fn run(
    warehouse: &Warehouse,
    kind: Kind,
    by: Grain,
    since: Option<NaiveDate>,
) -> RecordBatch {
    compute(
        warehouse,
        &MaturityRequest {
            kind,
            table: TABLE.into(),
            metric: "clicks".into(),
            by,
            since,
            curve: by,
        },
    )
    .await
    .unwrap()
}

/// Every float in `batch` is a number or NULL.
fn assert_no_nan(batch: &RecordBatch) {
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if let Some(values) = column.as_primitive_opt::<Float64Type>() {
            for v in values.iter().flatten() {
                assert!(v.is_finite(), "{}: {v}", field.name());
            }
        }
    }
}

/// (account, age) → (median fraction, days observed) of a curve per account.
fn curve_at(batch: &RecordBatch, account: &str, age: i64) -> (Option<f64>, i64) {
    let accounts = batch
        .column_by_name("account_id")
        .unwrap()
        .as_string::<i32>();
    let ages = batch
        .column_by_name("age_days")
        .unwrap()
        .as_primitive::<Int64Type>();
    let median = batch
        .column_by_name("median_fraction")
        .unwrap()
        .as_primitive::<Float64Type>();
    let days = batch
        .column_by_name("days_observed")
        .unwrap()
        .as_primitive::<Int64Type>();
    let row = (0..batch.num_rows())
        .find(|&i| accounts.value(i) == account && ages.value(i) == age)
        .unwrap_or_else(|| panic!("no row for {account} at age {age}"));
    (
        (!median.is_null(row)).then(|| median.value(row)),
        days.value(row),
    )
}

async fn awkward_histories_have_defined_answers(kind: BackendKind) {
    let warehouse = Backend::new(kind).open().await;
    // Pulls on the 10th to the 24th; a compaction after the 17th's.
    for d in 10..=24 {
        pull(&warehouse, day(d)).await;
        if d == 17 {
            let options = CompactOptions {
                settled: Settled::before(day(d), WINDOW),
                ..Default::default()
            };
            maintenance::compact(&warehouse, Namespace::Tables, TABLE, &options, &|_, _| {})
                .await
                .unwrap();
        }
    }

    let curve = run(&warehouse, Kind::Curve, Grain::Account, None).await;
    assert_no_nan(&curve);
    // Settled days (pulled at age 5 by the 24th): the 9th to the 19th; those first pulled
    // at age 1 are the 9th on.
    for age in 1..=5 {
        let (median, days) = curve_at(&curve, "grows", age);
        assert_eq!(median, Some(age as f64 / 5.0), "grows at {age}");
        // Days 5..=19 settled; the day d was first pulled at age max(10 - d, 1).
        assert_eq!(days, 19 - (10 - age).max(5) + 1, "grows at {age}");
        let (median, _) = curve_at(&curve, "refunds", age);
        assert_eq!(
            median,
            Some((100.0 - 10.0 * age as f64) / 50.0),
            "refunds at {age}"
        );
        // Always zero: no fraction exists.
        assert_eq!(curve_at(&curve, "zero", age), (None, 0));
    }
    // One day, settled on the 20th (pulled at age 5 on the 20th): one fraction per age.
    assert_eq!(curve_at(&curve, "one_day", 2), (Some(0.4), 1));
    // The vanished day's final value is 0: it counts in no fraction; the others do.
    assert_eq!(
        curve_at(&curve, "vanishes", 1).1,
        curve_at(&curve, "grows", 1).1 - 1
    );

    let projected = run(&warehouse, Kind::Projected, Grain::Account, None).await;
    assert_no_nan(&projected);
    let accounts = projected
        .column_by_name("account_id")
        .unwrap()
        .as_string::<i32>();
    let ages = projected
        .column_by_name("age_days")
        .unwrap()
        .as_primitive::<Int64Type>();
    let value = |name: &str| {
        projected
            .column_by_name(name)
            .unwrap()
            .as_primitive::<Float64Type>()
            .clone()
    };
    let (current, projected_value) = (value("current_value"), value("projected_value"));
    let basis = projected
        .column_by_name("basis")
        .unwrap()
        .as_string::<i32>();
    for i in 0..projected.num_rows() {
        let (account, age) = (accounts.value(i), ages.value(i));
        match account {
            // 10 × age ÷ (age ÷ 5) = 50: the final value, exactly.
            "grows" | "refunds" => assert!(
                (projected_value.value(i) - 50.0).abs() < 1e-9,
                "{account} at {age}: {}",
                projected_value.value(i)
            ),
            "zero" => {
                assert_eq!(current.value(i), 0.0);
                assert_eq!(projected_value.value(i), 0.0);
                assert!(
                    ["no curve", "settled"].contains(&basis.value(i)),
                    "{}",
                    basis.value(i)
                );
            }
            _ => {}
        }
    }
    assert!(projected.num_rows() > 0);

    // Per source: the accounts' sums, still defined.
    let per_source = run(&warehouse, Kind::Curve, Grain::Source, Some(day(1))).await;
    assert_no_nan(&per_source);
    assert!(per_source.num_rows() >= 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awkward_histories_have_defined_answers_locally() {
    awkward_histories_have_defined_answers(BackendKind::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awkward_histories_have_defined_answers_on_s3() {
    awkward_histories_have_defined_answers(BackendKind::S3).await;
}
