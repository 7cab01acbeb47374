//! Time travel through `run_statement`: `VERSION AS OF` and `TIMESTAMP AS OF` read the table
//! as it was; a version that does not exist is refused naming the newest.

use std::sync::Arc;

use arrow::array::{Date32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Date32Type, Field, Schema};
use engine::{SliceKey, Warehouse, WarehouseSession};

fn rows(clicks: i64) -> RecordBatch {
    let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
    RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("source", DataType::Utf8, false),
            Field::new("account_id", DataType::Utf8, false),
            Field::new("date", DataType::Date32, false),
            Field::new("clicks", DataType::Int64, true),
        ])),
        vec![
            Arc::new(StringArray::from(vec!["meta"])),
            Arc::new(StringArray::from(vec!["1"])),
            Arc::new(Date32Array::from(vec![Date32Type::from_naive_date(day)])),
            Arc::new(Int64Array::from(vec![clicks])),
        ],
    )
    .unwrap()
}

async fn answer(session: &WarehouseSession, sql: &str) -> String {
    let batches = tidemark_sql::run_statement(session, sql).await.unwrap();
    arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn versions_and_instants_read_the_table_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = Warehouse::open(dir.path().to_str().unwrap(), &Default::default())
        .await
        .unwrap();
    let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
    for clicks in [10, 20, 30] {
        warehouse
            .replace_slices("perf")
            .with_slices([SliceKey::new("meta", "1", day)])
            .with_rows([rows(clicks)])
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let session = WarehouseSession::new(warehouse).await.unwrap();
    assert!(answer(&session, "SELECT clicks FROM perf")
        .await
        .contains("| 30 "));
    assert!(answer(&session, "SELECT clicks FROM perf VERSION AS OF 0")
        .await
        .contains("| 10 "));
    let both = answer(
        &session,
        "SELECT a.clicks AS then_clicks, b.clicks AS now_clicks FROM perf VERSION AS OF 1 AS a JOIN perf AS b ON a.account_id = b.account_id",
    )
    .await;
    assert!(both.contains("| 20          | 30         |"), "{both}");
    let future = answer(
        &session,
        "SELECT clicks FROM perf TIMESTAMP AS OF '2100-01-01'",
    )
    .await;
    assert!(future.contains("| 30 "), "{future}");

    // DESCRIBE HISTORY: newest first, each replace removing the slice's old file.
    let history = tidemark_sql::run_statement(&session, "DESCRIBE HISTORY perf LIMIT 2")
        .await
        .unwrap();
    let text = arrow::util::pretty::pretty_format_batches(&history)
        .unwrap()
        .to_string();
    assert_eq!(history[0].num_rows(), 2, "{text}");
    let versions = history[0]
        .column(0)
        .as_any()
        .downcast_ref::<arrow::array::UInt64Array>()
        .unwrap();
    assert_eq!((versions.value(0), versions.value(1)), (2, 1), "{text}");
    assert!(
        text.contains("| 1           | 1             | 1 "),
        "{text}"
    );

    // SHOW PARTITIONS: one (source, date) partition holding the slice's one file and row.
    let partitions = answer(&session, "SHOW PARTITIONS perf").await;
    assert!(
        partitions.contains("| meta   | 2026-11-01 | 1     | 1    |"),
        "{partitions}"
    );

    let missing = tidemark_sql::run_statement(&session, "SELECT * FROM perf VERSION AS OF 9")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        missing.contains("table 'perf' has no version 9; its newest is 2"),
        "{missing}"
    );
    let before =
        tidemark_sql::run_statement(&session, "SELECT * FROM perf TIMESTAMP AS OF '2000-01-01'")
            .await
            .unwrap_err()
            .to_string();
    assert!(before.contains("before its first commit"), "{before}");
}
