//! Model-based property test of the replace contract: random sequences of batch replaces;
//! after each commit the table equals an in-memory model (slice → rows), and the files of
//! every slice the batch did not touch are exactly the files it had before.

use std::collections::BTreeMap;

use engine::SliceKey;
use proptest::prelude::*;
use testdata::rows::{batch, Row};
use testdata::{Backend, BackendKind};

use crate::support::{apply_to_model, files_by_slice, model_batch, read_rows, slice_universe};

const TABLE: &str = "perf";

/// One batch: some slices, each with 0–3 new rows.
fn batch_strategy() -> impl Strategy<Value = BTreeMap<usize, usize>> {
    prop::collection::btree_map(0..slice_universe().len(), 0..4usize, 1..6)
}

fn run_sequence(
    kind: BackendKind,
    batches: Vec<BTreeMap<usize, usize>>,
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
            // A new table needs rows to get a schema.
            if model.is_empty() && rows.is_empty() {
                continue;
            }
            let before = if model.is_empty() {
                BTreeMap::new()
            } else {
                files_by_slice(&warehouse, TABLE).await
            };
            warehouse
                .replace_slices(TABLE)
                .with_slices(slices.clone())
                .with_rows([batch(&rows)])
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            apply_to_model(&mut model, &slices, rows);

            let mut expected: Vec<Row> = model.values().flatten().cloned().collect();
            expected.sort();
            let actual = read_rows(&warehouse, TABLE).await;
            prop_assert_eq!(
                &actual,
                &expected,
                "table differs from the model after generation {}",
                generation
            );

            let after = files_by_slice(&warehouse, TABLE).await;
            for (slice, files) in &before {
                if !slices.contains(slice) {
                    prop_assert_eq!(
                        after.get(slice),
                        Some(files),
                        "untouched slice {} changed files",
                        slice
                    );
                }
            }
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn replace_matches_model_local(batches in prop::collection::vec(batch_strategy(), 1..6)) {
        run_sequence(BackendKind::Local, batches)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn replace_matches_model_s3(batches in prop::collection::vec(batch_strategy(), 1..5)) {
        run_sequence(BackendKind::S3, batches)?;
    }
}
