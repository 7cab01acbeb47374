//! Replaces write a Delta checkpoint every 100 versions, so readers replay a short log.

use engine::SliceKey;
use testdata::rows::{batch, day, slice_rows};
use testdata::{Backend, BackendKind};

use crate::support::{read_rows, version};

const TABLE: &str = "perf";

#[tokio::test]
async fn every_hundredth_version_gets_a_checkpoint() {
    let backend = Backend::new(BackendKind::Local);
    let warehouse = backend.open().await;
    let slice = SliceKey::new("meta", "a1", day(1));
    for generation in 0..=100 {
        warehouse
            .replace_slices(TABLE)
            .with_slices([slice.clone()])
            .with_rows([batch(&slice_rows(&slice, 2, generation))])
            .await
            .unwrap();
    }
    assert_eq!(version(&warehouse, TABLE).await, 100);
    let checkpoint = std::path::Path::new(&backend.url)
        .join("tables/perf/_delta_log/00000000000000000100.checkpoint.parquet");
    assert!(
        checkpoint.exists(),
        "no checkpoint at {}",
        checkpoint.display()
    );
    assert_eq!(
        read_rows(&warehouse, TABLE).await,
        slice_rows(&slice, 2, 100)
    );
}
