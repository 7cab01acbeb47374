//! The scale simulation at smoke size: the collection pipeline over all six simulated
//! platforms, then the warehouse measured (`tidemark-bench scale` runs the same code at 2,000
//! accounts and writes bench/SCALE.md).

use tidemark_bench::scale::{render, simulate, Shape};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scale_simulation_runs_and_writes_its_figures() {
    let dir = tempfile::tempdir().unwrap();
    let shape = |accounts| Shape {
        accounts,
        days: 5,
        workers: 8,
    };
    let small = simulate(shape(2), dir.path()).await.unwrap();
    let full = simulate(shape(6), dir.path()).await.unwrap();
    assert_eq!(full.sources, 6, "all six platforms");
    assert!(
        full.rows > 2 * small.rows && full.slices > 2 * small.slices,
        "rows and slices follow the accounts: {} then {} rows",
        small.rows,
        full.rows
    );
    assert!(full.data_files > 0 && full.log_entries > 0 && full.checkpoint_bytes > 0);
    assert!(
        full.files_after_compaction < full.data_files,
        "compaction packed files"
    );
    assert_eq!(full.planning_ms.len(), 3);
    let report = render(&small, &full, "scale smoke");
    let path = dir.path().join("SCALE.md");
    std::fs::write(&path, &report).unwrap();
    let written = std::fs::read_to_string(&path).unwrap();
    for figure in [
        "| rows |",
        "| checkpoint time |",
        "| snapshot load (new handle) |",
        "| replace one slice |",
        "| compaction |",
    ] {
        assert!(written.contains(figure), "{figure} missing:\n{written}");
    }
}
