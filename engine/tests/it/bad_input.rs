//! Bad input gets a clear error and changes nothing: a type conflict, an empty batch, a row
//! outside the declared slices, an unreachable warehouse.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Date32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Date32Type, Field, Schema};
use engine::{Error, SliceKey, StorageConfig, Warehouse};
use testdata::rows::{batch, day, slice_rows};
use testdata::{Backend, BackendKind};

use crate::support::{read_rows, version};

const TABLE: &str = "perf";

async fn seeded(kind: BackendKind) -> (Backend, Warehouse, SliceKey) {
    let backend = Backend::new(kind);
    let warehouse = backend.open().await;
    let slice = SliceKey::new("meta", "a1", day(1));
    warehouse
        .replace_slices(TABLE)
        .with_slices([slice.clone()])
        .with_rows([batch(&slice_rows(&slice, 2, 1))])
        .await
        .unwrap();
    (backend, warehouse, slice)
}

/// A batch whose `clicks` column is text instead of a number.
fn clicks_as_text(slice: &SliceKey) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("source", DataType::Utf8, false),
        Field::new("account_id", DataType::Utf8, false),
        Field::new("date", DataType::Date32, false),
        Field::new("clicks", DataType::Utf8, true),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec![slice.source.as_str()])),
            Arc::new(StringArray::from(vec![slice.account.as_str()])),
            Arc::new(Date32Array::from(vec![Date32Type::from_naive_date(
                slice.date,
            )])),
            Arc::new(StringArray::from(vec!["12"])),
        ],
    )
    .unwrap()
}

async fn bad_input_changes_nothing(kind: BackendKind) {
    let (_backend, warehouse, slice) = seeded(kind).await;
    let rows_before = read_rows(&warehouse, TABLE).await;
    let version_before = version(&warehouse, TABLE).await;

    // Type conflict: names table, column, old and new type.
    let err = warehouse
        .replace_slices(TABLE)
        .with_slices([slice.clone()])
        .with_rows([clicks_as_text(&slice)])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TypeConflict { .. }), "{err}");
    let text = err.to_string();
    for needle in ["'perf'", "'clicks'", "Int64", "Utf8", "unchanged"] {
        assert!(text.contains(needle), "{needle} missing from: {text}");
    }

    // Empty batch.
    let err = warehouse.replace_slices(TABLE).await.unwrap_err();
    assert!(matches!(err, Error::EmptyBatch { .. }), "{err}");
    assert!(err.to_string().contains("no slices"), "{err}");

    // A row of a slice that is not declared.
    let other = SliceKey::new("meta", "a2", day(1));
    let err = warehouse
        .replace_slices(TABLE)
        .with_slices([slice.clone()])
        .with_rows([batch(&slice_rows(&other, 1, 2))])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::RowOutsideSlices { .. }), "{err}");
    assert!(err.to_string().contains("(meta, a2, 2026-11-01)"), "{err}");

    assert_eq!(
        version(&warehouse, TABLE).await,
        version_before,
        "no commit happened"
    );
    assert_eq!(
        read_rows(&warehouse, TABLE).await,
        rows_before,
        "content unchanged"
    );
}

#[tokio::test]
async fn bad_input_changes_nothing_local() {
    bad_input_changes_nothing(BackendKind::Local).await;
}

#[tokio::test]
async fn bad_input_changes_nothing_s3() {
    bad_input_changes_nothing(BackendKind::S3).await;
}

#[tokio::test]
async fn new_columns_evolve_the_schema() {
    let (_backend, warehouse, slice) = seeded(BackendKind::Local).await;
    let schema = Arc::new(Schema::new(vec![
        Field::new("source", DataType::Utf8, false),
        Field::new("account_id", DataType::Utf8, false),
        Field::new("date", DataType::Date32, false),
        Field::new("video_views", DataType::Int64, true),
    ]));
    let other = SliceKey::new("meta", "a2", day(1));
    let rows = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec!["meta"])),
            Arc::new(StringArray::from(vec!["a2"])),
            Arc::new(Date32Array::from(vec![Date32Type::from_naive_date(day(1))])),
            Arc::new(arrow::array::Int64Array::from(vec![7])),
        ],
    )
    .unwrap();
    let report = warehouse
        .replace_slices(TABLE)
        .with_slices([other])
        .with_rows([rows])
        .await
        .unwrap();
    assert_eq!(report.added_columns, vec!["video_views".to_string()]);
    let session = engine::WarehouseSession::new(warehouse.clone())
        .await
        .unwrap();
    let out = session
        .sql("SELECT account_id, count(*) AS n, count(video_views) AS with_views FROM perf GROUP BY account_id ORDER BY account_id")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let text = arrow::util::pretty::pretty_format_batches(&out)
        .unwrap()
        .to_string();
    assert!(text.contains("| a1         | 2 | 0          |"), "{text}");
    assert!(text.contains("| a2         | 1 | 1          |"), "{text}");
    let _ = slice;
}

#[tokio::test]
async fn unreachable_warehouse_fails_fast_and_names_it() {
    // A loopback port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = StorageConfig {
        s3_endpoint: Some(format!("http://127.0.0.1:{port}")),
        options: [
            ("aws_access_key_id".to_string(), "x".to_string()),
            ("aws_secret_access_key".to_string(), "y".to_string()),
        ]
        .into(),
        ..Default::default()
    };
    let started = Instant::now();
    let err = Warehouse::open("s3://no-such-bucket/w", &config)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("s3://no-such-bucket/w"), "{text}");
    assert!(!text.contains("y\""), "no secret in {text}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );

    if std::env::var("AWS_ACCESS_KEY_ID").is_err() {
        let no_keys = StorageConfig {
            s3_endpoint: Some(format!("http://127.0.0.1:{port}")),
            ..Default::default()
        };
        let err = Warehouse::open("s3://no-such-bucket/w", &no_keys)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::MissingCredentials { .. }), "{err}");
    }

    let err = Warehouse::open("ftp://host/x", &StorageConfig::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidWarehouseUrl { .. }), "{err}");
}
