//! Snapshot isolation: while a writer replaces slices in a loop, four readers aggregate per
//! slice; every result must equal a state the writer committed (no empty slice, no doubled or
//! mixed rows).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use arrow::array::AsArray;
use arrow::datatypes::{Date32Type, Int64Type};
use engine::{SliceKey, WarehouseSession};
use testdata::rows::{batch, day, slice_rows};
use testdata::{Backend, BackendKind};

use crate::support::strings;

const TABLE: &str = "perf";
const READERS: usize = 4;

/// Rows per slice at a generation: varies so a doubled or emptied slice is visible.
fn rows_for(generation: i64) -> usize {
    1 + (generation as usize % 4)
}

/// Per slice: (row count, min generation, max generation).
type State = BTreeMap<SliceKey, (i64, i64, i64)>;

async fn observe(session: &WarehouseSession) -> State {
    let batches = session
        .sql(&format!(
            "SELECT source, account_id, date, count(*) AS n, min(generation) AS lo, max(generation) AS hi \
             FROM {TABLE} GROUP BY source, account_id, date"
        ))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let mut state = State::new();
    for b in &batches {
        let sources = strings(b.column(0));
        let accounts = strings(b.column(1));
        let dates = arrow::compute::cast(b.column(2), &arrow::datatypes::DataType::Date32).unwrap();
        let dates = dates.as_primitive::<Date32Type>();
        for i in 0..b.num_rows() {
            let key = SliceKey::new(
                &sources[i],
                &accounts[i],
                Date32Type::to_naive_date_opt(dates.value(i)).unwrap(),
            );
            state.insert(
                key,
                (
                    b.column(3).as_primitive::<Int64Type>().value(i),
                    b.column(4).as_primitive::<Int64Type>().value(i),
                    b.column(5).as_primitive::<Int64Type>().value(i),
                ),
            );
        }
    }
    state
}

async fn readers_see_committed_states(kind: BackendKind, commits: i64) {
    let backend = Backend::new(kind);
    let warehouse = backend.open().await;
    let slices: Vec<SliceKey> = ["a1", "a2", "a3"]
        .iter()
        .flat_map(|a| (1..=3).map(move |d| SliceKey::new("meta", *a, day(d))))
        .collect();

    // Generation 1 fills every slice.
    let mut current: BTreeMap<SliceKey, i64> = slices.iter().map(|s| (s.clone(), 1)).collect();
    let rows: Vec<_> = slices
        .iter()
        .flat_map(|s| slice_rows(s, rows_for(1), 1))
        .collect();
    warehouse
        .replace_slices(TABLE)
        .with_slices(slices.clone())
        .with_rows([batch(&rows)])
        .await
        .unwrap();
    let committed: Arc<Mutex<Vec<BTreeMap<SliceKey, i64>>>> =
        Arc::new(Mutex::new(vec![current.clone()]));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));

    let mut readers = Vec::new();
    for _ in 0..READERS {
        let warehouse = warehouse.clone();
        let done = Arc::clone(&done);
        readers.push(tokio::spawn(async move {
            let session = WarehouseSession::new(warehouse).await.unwrap();
            let mut seen = Vec::new();
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                seen.push(observe(&session).await);
            }
            seen.push(observe(&session).await);
            seen
        }));
    }

    for generation in 2..=commits {
        // Replace a rotating subset of slices (about half), each with a new row count.
        let chosen: BTreeSet<SliceKey> = slices
            .iter()
            .enumerate()
            .filter(|(i, _)| (*i as i64 + generation) % 2 == 0)
            .map(|(_, s)| s.clone())
            .collect();
        let rows: Vec<_> = chosen
            .iter()
            .flat_map(|s| slice_rows(s, rows_for(generation), generation))
            .collect();
        for s in &chosen {
            current.insert(s.clone(), generation);
        }
        committed.lock().unwrap().push(current.clone());
        warehouse
            .replace_slices(TABLE)
            .with_slices(chosen)
            .with_rows([batch(&rows)])
            .await
            .unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);

    let committed = committed.lock().unwrap().clone();
    let valid: Vec<State> = committed
        .iter()
        .map(|state| {
            state
                .iter()
                .map(|(k, &g)| (k.clone(), (rows_for(g) as i64, g, g)))
                .collect()
        })
        .collect();
    let mut observations = 0;
    for reader in readers {
        for state in reader.await.unwrap() {
            observations += 1;
            assert!(
                valid.contains(&state),
                "a reader saw a state no commit produced: {state:?}"
            );
        }
    }
    eprintln!(
        "{kind:?}: {observations} reader observations over {commits} commits, all committed states"
    );
    assert!(observations >= READERS * 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_see_committed_states_local() {
    readers_see_committed_states(BackendKind::Local, 25).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_see_committed_states_s3() {
    readers_see_committed_states(BackendKind::S3, 12).await;
}

/// Readers keep table handles and bring them up to date from the log: a commit made between
/// two queries of one session (by this process or by another) is in the second, and a table
/// dropped and written again under its name is read afresh, not from the kept handle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_snapshots_see_every_commit_and_a_table_written_again() {
    let backend = Backend::local();
    let writer = backend.open().await;
    let other_process = backend.open().await; // its own caches, as another process has
    let session = WarehouseSession::new(writer.clone()).await.unwrap();
    let count = || async {
        let batches = session
            .sql(&format!(
                "SELECT count(*) AS n, max(generation) AS g FROM {TABLE}"
            ))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let b = &batches[0];
        (
            b.column(0).as_primitive::<Int64Type>().value(0),
            b.column(1).as_primitive::<Int64Type>().value(0),
        )
    };
    let write = |warehouse: engine::Warehouse, d: u32, n: usize, generation: i64| async move {
        let slice = SliceKey::new("meta", "act1", day(d));
        warehouse
            .replace_slices(TABLE)
            .with_slices([slice.clone()])
            .with_rows(vec![batch(&slice_rows(&slice, n, generation))])
            .await
            .unwrap();
    };
    write(writer.clone(), 1, 3, 1).await;
    session.refresh().await.unwrap();
    assert_eq!(count().await, (3, 1));
    write(writer.clone(), 2, 2, 2).await;
    assert_eq!(count().await, (5, 2), "this process's commit is seen");
    write(other_process.clone(), 3, 4, 3).await;
    assert_eq!(count().await, (9, 3), "another process's commit is seen");

    // Drop the table and write it again with fewer commits than the kept handle has seen.
    let dir = writer
        .url()
        .to_file_path()
        .unwrap()
        .join("tables")
        .join(TABLE);
    std::fs::remove_dir_all(&dir).unwrap();
    let fresh = backend.open().await;
    write(fresh, 9, 1, 7).await;
    assert_eq!(
        count().await,
        (1, 7),
        "the new table, not the kept handle of the old one"
    );
}

/// Sessions over one warehouse handle (one per Flight statement) share the Parquet footer
/// cache, so the second reads no footer again; a session with a memory limit shares the cache
/// but has a pool of its own; and tidemark's DataFusion settings apply to every session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_share_the_footer_cache_but_not_their_memory_pools() {
    let backend = Backend::local();
    let warehouse = backend.open().await;
    let slice = SliceKey::new("meta", "act1", day(1));
    warehouse
        .replace_slices(TABLE)
        .with_slices([slice.clone()])
        .with_rows(vec![batch(&slice_rows(&slice, 3, 1))])
        .await
        .unwrap();
    let footers = warehouse
        .query_runtime()
        .cache_manager
        .get_file_metadata_cache();
    assert_eq!(footers.len(), 0);
    let first = WarehouseSession::new(warehouse.clone()).await.unwrap();
    let sql = format!("SELECT sum(clicks) FROM {TABLE}");
    first.sql(&sql).await.unwrap().collect().await.unwrap();
    assert_eq!(footers.len(), 1, "the scan kept its file's footer");

    let limited = WarehouseSession::with_options(
        warehouse.clone(),
        engine::session::SessionOptions {
            memory_limit: Some(64 << 20),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let runtime = limited.context().runtime_env();
    assert!(Arc::ptr_eq(
        &runtime.cache_manager.get_file_metadata_cache(),
        &footers
    ));
    assert!(!Arc::ptr_eq(
        &runtime.memory_pool,
        &warehouse.query_runtime().memory_pool
    ));
    limited.sql(&sql).await.unwrap().collect().await.unwrap();
    assert_eq!(footers.len(), 1, "the second session read no footer again");
    let options = limited.context().state().config_options().clone();
    assert!(!options.execution.parquet.bloom_filter_on_read);
}
