//! A file holding several slices (written by another Delta writer, or by compaction) is split
//! on replace: the replaced slice's rows go, every other slice's rows stay.

use deltalake::protocol::SaveMode;
use engine::{Namespace, SliceKey};
use testdata::rows::{batch, day, slice_rows, Row};
use testdata::{Backend, BackendKind};

use crate::support::read_rows;

const TABLE: &str = "perf";

#[tokio::test]
async fn replacing_one_slice_of_a_shared_file_keeps_the_others() {
    let backend = Backend::new(BackendKind::Local);
    let warehouse = backend.open().await;
    let a1 = SliceKey::new("meta", "a1", day(1));
    let a2 = SliceKey::new("meta", "a2", day(1));
    let a3 = SliceKey::new("meta", "a3", day(1));
    // Create the table through tidemark (the first replace), then replace again so this process
    // caches the table's slice index: the foreign commit below must reach it through the log.
    for _ in 0..2 {
        warehouse
            .replace_slices(TABLE)
            .with_slices([a1.clone()])
            .with_rows([batch(&slice_rows(&a1, 1, 1))])
            .await
            .unwrap();
    }
    // Then another Delta writer appends one file holding two slices (one file per partition).
    let shared: Vec<Row> = [&a2, &a3]
        .iter()
        .flat_map(|s| slice_rows(s, 2, 1))
        .collect();
    let table = warehouse
        .open_table(Namespace::Tables, TABLE)
        .await
        .unwrap();
    table
        .write(vec![batch(&shared)])
        .with_save_mode(SaveMode::Append)
        .await
        .unwrap();

    let report = warehouse
        .replace_slices(TABLE)
        .with_slices([a2.clone()])
        .with_rows([batch(&slice_rows(&a2, 3, 2))])
        .await
        .unwrap();
    assert_eq!(report.files_removed, 1, "the shared file is removed");
    assert_eq!(report.rows_removed, 2, "only a2's two rows are gone");

    let mut expected: Vec<Row> = slice_rows(&a1, 1, 1);
    expected.extend(slice_rows(&a2, 3, 2));
    expected.extend(slice_rows(&a3, 2, 1));
    expected.sort();
    assert_eq!(read_rows(&warehouse, TABLE).await, expected);
}
