//! The warm cache of an S3 warehouse's data files ([`engine::file_cache`]): one session kept
//! across random replaces (and compactions, which rewrite every file of a day) must answer
//! each version exactly as the model of committed replaces says, never from a replaced file's
//! bytes, while the cache stays within its byte bound and serves repeated reads.

use std::collections::BTreeMap;

use arrow::array::AsArray;
use arrow::datatypes::{DataType, Int64Type};
use engine::maintenance::{self, CompactOptions, Settled};
use engine::{Namespace, SliceKey, Warehouse, WarehouseSession};
use proptest::prelude::*;
use testdata::rows::{batch, day, Row};
use testdata::Backend;

use crate::support::{apply_to_model, model_batch, slice_universe, strings};

const TABLE: &str = "perf";
/// Small enough that a case's files do not all fit: eviction is exercised.
const BOUND: u64 = 8 << 10;

/// Per slice: rows, sum of clicks, lowest and highest generation.
type Answer = BTreeMap<(String, String, String), (i64, i64, i64, i64)>;

fn model_answer(model: &BTreeMap<SliceKey, Vec<Row>>) -> Answer {
    model
        .iter()
        .filter(|(_, rows)| !rows.is_empty())
        .map(|(slice, rows)| {
            (
                (
                    slice.source.clone(),
                    slice.account.clone(),
                    slice.date.to_string(),
                ),
                (
                    rows.len() as i64,
                    rows.iter().map(|r| r.clicks).sum(),
                    rows.iter().map(|r| r.generation).min().unwrap(),
                    rows.iter().map(|r| r.generation).max().unwrap(),
                ),
            )
        })
        .collect()
}

async fn table_answer(session: &WarehouseSession) -> Answer {
    let batches = session
        .sql(&format!(
            "SELECT source, account_id, CAST(date AS VARCHAR), count(*), sum(clicks), \
             min(generation), max(generation) FROM {TABLE} GROUP BY 1, 2, 3"
        ))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let mut answer = Answer::new();
    for b in &batches {
        let (sources, accounts, days) = (
            strings(b.column(0)),
            strings(b.column(1)),
            strings(b.column(2)),
        );
        let int = |c: usize, i: usize| {
            arrow::compute::cast(b.column(c), &DataType::Int64)
                .unwrap()
                .as_primitive::<Int64Type>()
                .value(i)
        };
        for i in 0..b.num_rows() {
            answer.insert(
                (sources[i].clone(), accounts[i].clone(), days[i].clone()),
                (int(3, i), int(4, i), int(5, i), int(6, i)),
            );
        }
    }
    answer
}

#[derive(Debug, Clone)]
enum Step {
    Replace(BTreeMap<usize, usize>),
    Compact,
}

fn step_strategy() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => prop::collection::btree_map(0..18usize, 0..5usize, 1..6).prop_map(Step::Replace),
        1 => Just(Step::Compact),
    ]
}

fn run_case(steps: Vec<Step>) -> Result<(u64, u64, u64), TestCaseError> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let backend = Backend::s3();
        let mut config = backend.storage_config();
        config.cache_bytes = Some(BOUND);
        let warehouse = Warehouse::open(&backend.url, &config).await.unwrap();
        let cache = warehouse
            .file_cache()
            .expect("an S3 warehouse has a cache")
            .clone();
        let universe = slice_universe();
        let mut model: BTreeMap<SliceKey, Vec<Row>> = BTreeMap::new();
        let mut session = None;
        for (generation, step) in steps.into_iter().enumerate() {
            let generation = generation as i64 + 1;
            match step {
                Step::Replace(spec) => {
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
                Step::Compact => {
                    if model.is_empty() {
                        continue;
                    }
                    let options = CompactOptions {
                        settled: Settled::before(day(10), 5),
                        ..Default::default()
                    };
                    maintenance::compact(
                        &warehouse,
                        Namespace::Tables,
                        TABLE,
                        &options,
                        &|_, _| {},
                    )
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                }
            }
            if session.is_none() {
                session = Some(WarehouseSession::new(warehouse.clone()).await.unwrap());
            }
            let session = session.as_ref().unwrap();
            // Twice: the second answer comes from the cache where the first filled it.
            for _ in 0..2 {
                let answer = table_answer(session).await;
                prop_assert_eq!(&answer, &model_answer(&model), "after step {}", generation);
                let stats = cache.stats();
                prop_assert!(stats.bytes <= stats.bound, "{:?}", stats);
            }
        }
        let stats = cache.stats();
        Ok((stats.hits, stats.misses, stats.evictions))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn a_cached_reader_answers_every_version_from_its_own_files(
        steps in prop::collection::vec(step_strategy(), 2..7),
    ) {
        let (hits, misses, evictions) = run_case(steps)?;
        eprintln!("file cache: {hits} hits, {misses} misses, {evictions} evictions");
        prop_assert!(misses == 0 || hits > 0, "{} misses and no hit", misses);
    }
}
