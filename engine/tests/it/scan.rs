//! Model-based property test of the table scan ([`engine::scan`]): the scan decides which files
//! a filter can skip (by partition values and by each file's statistics) and answers some
//! aggregates from the statistics alone. A wrong skip or a stale statistic returns a plausible,
//! wrong number, so every answer is checked against the rows themselves: random tables
//! (several replaces, optionally compacted into multi-slice files) and random filters over
//! partition and data columns, each compared with the same aggregate over an in-memory model.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Date32Type, Int64Type};
use chrono::NaiveDate;
use engine::maintenance::{self, CompactOptions, Settled};
use engine::{Namespace, SliceKey, WarehouseSession};
use proptest::prelude::*;
use testdata::rows::{batch, day, Row};
use testdata::{Backend, BackendKind};

use crate::support::{apply_to_model, model_batch, slice_universe};

const TABLE: &str = "perf";
const SOURCES: [&str; 2] = ["meta", "google"];
const ACCOUNTS: [&str; 3] = ["a1", "a2", "a3"];

/// A filter over the table's columns, rendered as SQL and evaluated on model rows.
#[derive(Debug, Clone)]
enum Filter {
    SourceIs(usize),
    Date(Cmp, u32),
    Account(Cmp, usize),
    Clicks(Cmp, i64),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
}

#[derive(Debug, Clone, Copy)]
enum Cmp {
    Eq,
    Lt,
    GtEq,
}

impl Cmp {
    fn sql(self) -> &'static str {
        match self {
            Cmp::Eq => "=",
            Cmp::Lt => "<",
            Cmp::GtEq => ">=",
        }
    }

    fn holds<T: Ord>(self, left: &T, right: &T) -> bool {
        match self {
            Cmp::Eq => left == right,
            Cmp::Lt => left < right,
            Cmp::GtEq => left >= right,
        }
    }
}

impl Filter {
    fn sql(&self) -> String {
        match self {
            Filter::SourceIs(s) => format!("source = '{}'", SOURCES[*s]),
            Filter::Date(cmp, d) => format!("date {} DATE '{}'", cmp.sql(), day(*d)),
            Filter::Account(cmp, a) => format!("account_id {} '{}'", cmp.sql(), ACCOUNTS[*a]),
            Filter::Clicks(cmp, c) => format!("clicks {} {c}", cmp.sql()),
            Filter::And(a, b) => format!("({} AND {})", a.sql(), b.sql()),
            Filter::Or(a, b) => format!("({} OR {})", a.sql(), b.sql()),
            Filter::Not(a) => format!("NOT ({})", a.sql()),
        }
    }

    fn matches(&self, row: &Row) -> bool {
        match self {
            Filter::SourceIs(s) => row.slice.source == SOURCES[*s],
            Filter::Date(cmp, d) => cmp.holds(&row.slice.date, &day(*d)),
            Filter::Account(cmp, a) => cmp.holds(&row.slice.account.as_str(), &ACCOUNTS[*a]),
            Filter::Clicks(cmp, c) => cmp.holds(&row.clicks, c),
            Filter::And(a, b) => a.matches(row) && b.matches(row),
            Filter::Or(a, b) => a.matches(row) || b.matches(row),
            Filter::Not(a) => !a.matches(row),
        }
    }
}

fn cmp_strategy() -> impl Strategy<Value = Cmp> {
    prop_oneof![Just(Cmp::Eq), Just(Cmp::Lt), Just(Cmp::GtEq)]
}

fn filter_strategy() -> impl Strategy<Value = Filter> {
    let leaf = prop_oneof![
        (0..SOURCES.len()).prop_map(Filter::SourceIs),
        (cmp_strategy(), 1..5u32).prop_map(|(c, d)| Filter::Date(c, d)),
        (cmp_strategy(), 0..ACCOUNTS.len()).prop_map(|(c, a)| Filter::Account(c, a)),
        (cmp_strategy(), 90..420i64).prop_map(|(c, n)| Filter::Clicks(c, n)),
    ];
    leaf.prop_recursive(3, 8, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Filter::And(a.into(), b.into())),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Filter::Or(a.into(), b.into())),
            inner.prop_map(|a| Filter::Not(a.into())),
        ]
    })
}

/// One replace: some slices of the universe (2 sources × 3 accounts × days 1–3), each with
/// 0–3 new rows.
fn batch_strategy() -> impl Strategy<Value = BTreeMap<usize, usize>> {
    prop::collection::btree_map(0..SOURCES.len() * ACCOUNTS.len() * 3, 0..4usize, 1..8)
}

/// What the aggregate query returns: count, sum/min/max of clicks, min/max of date and account.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    count: i64,
    clicks: Option<(i64, i64, i64)>,
    dates: Option<(NaiveDate, NaiveDate)>,
    accounts: Option<(String, String)>,
}

const AGGREGATES: &str = "count(*), sum(clicks), min(clicks), max(clicks), min(date), max(date), \
     min(account_id), max(account_id)";

/// Aggregates DataFusion can take from exact statistics, each with how to read its answer.
type Pick = fn(&[RecordBatch]) -> String;
const STATISTICS_ANSWERABLE: [(&str, Pick); 3] = [
    ("count(*)", |b| scalars(b, 1)),
    ("min(clicks), max(clicks)", |b| scalars(b, 2)),
    ("min(date), max(date)", |b| scalars(b, 2)),
];

/// The first `n` values of a one-row answer, as text.
fn scalars(batches: &[RecordBatch], n: usize) -> String {
    let b = &batches[0];
    (0..n)
        .map(|i| {
            let c = arrow::compute::cast(b.column(i), &DataType::Utf8).unwrap();
            let c = c.as_string::<i32>();
            if c.is_null(0) {
                "NULL".to_string()
            } else {
                c.value(0).to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The model's answer to one of [`STATISTICS_ANSWERABLE`], as [`scalars`] writes it.
fn pick_model(aggregates: &str, answer: &Answer) -> String {
    match aggregates {
        "count(*)" => answer.count.to_string(),
        "min(clicks), max(clicks)" => match answer.clicks {
            Some((_, lo, hi)) => format!("{lo},{hi}"),
            None => "NULL,NULL".into(),
        },
        _ => match answer.dates {
            Some((lo, hi)) => format!("{lo},{hi}"),
            None => "NULL,NULL".into(),
        },
    }
}

fn model_answer(rows: &[&Row]) -> Answer {
    let clicks = rows.iter().map(|r| r.clicks);
    let dates = rows.iter().map(|r| r.slice.date);
    let accounts = rows.iter().map(|r| r.slice.account.clone());
    Answer {
        count: rows.len() as i64,
        clicks: (!rows.is_empty()).then(|| {
            (
                clicks.clone().sum(),
                clicks.clone().min().unwrap(),
                clicks.max().unwrap(),
            )
        }),
        dates: (!rows.is_empty()).then(|| (dates.clone().min().unwrap(), dates.max().unwrap())),
        accounts: (!rows.is_empty())
            .then(|| (accounts.clone().min().unwrap(), accounts.max().unwrap())),
    }
}

fn answer_of(batches: &[RecordBatch]) -> Answer {
    let b = &batches[0];
    let int = |i: usize| {
        let c = b.column(i).as_primitive::<Int64Type>();
        (!c.is_null(0)).then(|| c.value(0))
    };
    let date = |i: usize| {
        let c = arrow::compute::cast(b.column(i), &DataType::Date32).unwrap();
        let c = c.as_primitive::<Date32Type>();
        (!c.is_null(0)).then(|| Date32Type::to_naive_date_opt(c.value(0)).unwrap())
    };
    let text = |i: usize| {
        let c = arrow::compute::cast(b.column(i), &DataType::Utf8).unwrap();
        let c = c.as_string::<i32>();
        (!c.is_null(0)).then(|| c.value(0).to_string())
    };
    let count = int(0).unwrap();
    Answer {
        count,
        clicks: int(1).map(|sum| (sum, int(2).unwrap(), int(3).unwrap())),
        dates: date(4).map(|lo| (lo, date(5).unwrap())),
        accounts: text(6).map(|lo| (lo, text(7).unwrap())),
    }
}

async fn query(session: &WarehouseSession, sql: &str) -> Vec<RecordBatch> {
    session
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn run_case(
    kind: BackendKind,
    batches: Vec<BTreeMap<usize, usize>>,
    compacted: bool,
    filters: Vec<(Filter, usize)>,
) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let backend = Backend::new(kind);
        let warehouse = backend.open().await;
        let universe = slice_universe();
        let mut model: BTreeMap<SliceKey, Vec<Row>> = BTreeMap::new();
        for (generation, spec) in batches.into_iter().enumerate() {
            let generation = generation as i64 + 1;
            let (slices, rows) = model_batch(&universe, &spec, generation);
            if model.is_empty() && rows.is_empty() {
                continue;
            }
            warehouse
                .replace_slices(TABLE)
                .with_slices(slices.clone())
                .with_rows([batch(&rows)])
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            apply_to_model(&mut model, &slices, rows);
        }
        if model.is_empty() {
            return Ok(());
        }
        if compacted {
            let options = CompactOptions {
                // Days 1–3 settled: packed into one clustered file per (source, day).
                settled: Settled::before(day(10), 5),
                ..Default::default()
            };
            maintenance::compact(&warehouse, Namespace::Tables, TABLE, &options, &|_, _| {})
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        let session = WarehouseSession::new(warehouse.clone()).await.unwrap();
        let all: Vec<&Row> = model.values().flatten().collect();
        for (filter, limit) in filters {
            let matching: Vec<&Row> = all.iter().copied().filter(|r| filter.matches(r)).collect();
            let expected = model_answer(&matching);
            let sql = format!("SELECT {AGGREGATES} FROM {TABLE} WHERE {}", filter.sql());
            let actual = answer_of(&query(&session, &sql).await);
            prop_assert_eq!(&actual, &expected, "{}", sql);
            // Alone, these aggregates may be answered from the statistics of the files the
            // filter keeps, without reading them.
            for (aggregates, pick) in STATISTICS_ANSWERABLE {
                let sql = format!("SELECT {aggregates} FROM {TABLE} WHERE {}", filter.sql());
                let batches = query(&session, &sql).await;
                prop_assert_eq!(pick(&batches), pick_model(aggregates, &expected), "{}", sql);
            }
            let sql = format!(
                "SELECT count(*) FROM (SELECT account_id FROM {TABLE} WHERE {} LIMIT {limit})",
                filter.sql()
            );
            let limited = query(&session, &sql).await[0]
                .column(0)
                .as_primitive::<Int64Type>()
                .value(0);
            prop_assert_eq!(limited, matching.len().min(limit) as i64, "{}", sql);
        }
        let sql = format!("SELECT {AGGREGATES} FROM {TABLE}");
        let actual = answer_of(&query(&session, &sql).await);
        prop_assert_eq!(actual, model_answer(&all), "{}", sql);
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn scan_answers_match_the_rows_local(
        batches in prop::collection::vec(batch_strategy(), 1..4),
        compacted in any::<bool>(),
        filters in prop::collection::vec((filter_strategy(), 0..12usize), 1..8),
    ) {
        run_case(BackendKind::Local, batches, compacted, filters)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn scan_answers_match_the_rows_s3(
        batches in prop::collection::vec(batch_strategy(), 1..3),
        compacted in any::<bool>(),
        filters in prop::collection::vec((filter_strategy(), 0..12usize), 1..5),
    ) {
        run_case(BackendKind::S3, batches, compacted, filters)?;
    }
}

/// A version whose every slice was replaced by no rows has no files: it reads as empty
/// (found by the replace property test: the file list asked the log for partition values).
#[tokio::test]
async fn a_version_with_no_files_reads_as_empty() {
    let backend = Backend::local();
    let warehouse = backend.open().await;
    let slice = SliceKey::new("meta", "a1", day(1));
    let rows = testdata::rows::slice_rows(&slice, 3, 1);
    warehouse
        .replace_slices(TABLE)
        .with_slices([slice.clone()])
        .with_rows([batch(&rows)])
        .await
        .unwrap();
    warehouse
        .replace_slices(TABLE)
        .with_slices([slice])
        .with_rows([batch(&[])])
        .await
        .unwrap();
    let session = WarehouseSession::new(warehouse).await.unwrap();
    let batches = query(
        &session,
        &format!("SELECT count(*), max(source) FROM {TABLE}"),
    )
    .await;
    assert_eq!(scalars(&batches, 2), "0,NULL");
}
