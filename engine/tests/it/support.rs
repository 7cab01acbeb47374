//! Helpers shared by the engine tests: reading a table back as fixture rows, and the files
//! that hold each slice.

use std::collections::{BTreeMap, BTreeSet};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Date32Type, Int64Type};
use engine::{Namespace, SliceKey, Warehouse, WarehouseSession};
use testdata::rows::{day, slice_rows, Row};

/// The fixture columns, selected from a table.
fn select_fixture_columns(table: &str) -> String {
    format!("SELECT source, account_id, date, ad_id, clicks, generation FROM {table}")
}

/// Fixture rows of a query's batches, sorted.
fn sorted_rows(batches: &[RecordBatch]) -> Vec<Row> {
    let mut rows = rows_of(batches);
    rows.sort();
    rows
}

/// Every row of `table`, sorted.
pub async fn read_rows(warehouse: &Warehouse, table: &str) -> Vec<Row> {
    let session = WarehouseSession::new(warehouse.clone()).await.unwrap();
    let query = session.sql(&select_fixture_columns(table)).await.unwrap();
    sorted_rows(&query.collect().await.unwrap())
}

/// Every row of `table` at `version` (time travel), sorted.
pub async fn rows_at_version(warehouse: &Warehouse, table: &str, version: u64) -> Vec<Row> {
    let ctx = datafusion::prelude::SessionContext::new();
    engine::session::register_version(&ctx, warehouse, Namespace::Tables, table, version, "t")
        .await
        .unwrap();
    let query = ctx.sql(&select_fixture_columns("t")).await.unwrap();
    sorted_rows(&query.collect().await.unwrap())
}

/// Fixture rows from batches of (source, account_id, date, ad_id, clicks, generation).
pub fn rows_of(batches: &[RecordBatch]) -> Vec<Row> {
    let mut rows = Vec::new();
    for b in batches {
        let b = arrow::compute::cast_with_options(
            &arrow::array::StructArray::from(b.clone()),
            &arrow::datatypes::DataType::Struct(testdata::rows::schema().fields().clone()),
            &Default::default(),
        )
        .unwrap();
        let b = RecordBatch::from(b.as_struct());
        let source = b.column(0).as_string::<i32>();
        let account = b.column(1).as_string::<i32>();
        let date = b.column(2).as_primitive::<Date32Type>();
        let ad = b.column(3).as_string::<i32>();
        let clicks = b.column(4).as_primitive::<Int64Type>();
        let generation = b.column(5).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            rows.push(Row {
                slice: SliceKey::new(
                    source.value(i),
                    account.value(i),
                    Date32Type::to_naive_date_opt(date.value(i)).unwrap(),
                ),
                ad_id: ad.value(i).to_string(),
                clicks: clicks.value(i),
                generation: generation.value(i),
            });
        }
    }
    rows
}

/// The data files of every slice at the table's latest version, from the log.
pub async fn files_by_slice(
    warehouse: &Warehouse,
    table: &str,
) -> BTreeMap<SliceKey, BTreeSet<String>> {
    let t = warehouse
        .open_table(Namespace::Tables, table)
        .await
        .unwrap();
    let mut files: BTreeMap<SliceKey, BTreeSet<String>> = BTreeMap::new();
    for f in t.snapshot().unwrap().snapshot().log_data().iter() {
        let p = f.partition_values_map();
        let stats: serde_json::Value = serde_json::from_str(&f.stats().unwrap()).unwrap();
        let account = stats["minValues"]["account_id"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            stats["maxValues"]["account_id"].as_str().unwrap(),
            account,
            "every file the engine writes holds one slice"
        );
        let key = SliceKey::new(
            p["source"].clone().unwrap(),
            account,
            p["date"].clone().unwrap().parse().unwrap(),
        );
        files.entry(key).or_default().insert(f.path().to_string());
    }
    files
}

/// The latest version of a table.
pub async fn version(warehouse: &Warehouse, table: &str) -> u64 {
    warehouse
        .open_table(Namespace::Tables, table)
        .await
        .unwrap()
        .version()
        .unwrap()
}

/// A string column of any string encoding as owned strings.
pub fn strings(column: &arrow::array::ArrayRef) -> Vec<String> {
    let plain = arrow::compute::cast(column, &arrow::datatypes::DataType::Utf8).unwrap();
    let plain = plain.as_string::<i32>();
    plain
        .iter()
        .map(|v| v.unwrap_or_default().to_string())
        .collect()
}

/// The slices the model-based tests draw from: 2 sources × 3 accounts × 3 days.
pub fn slice_universe() -> Vec<SliceKey> {
    let mut all = Vec::new();
    for source in ["meta", "google"] {
        for account in ["a1", "a2", "a3"] {
            for d in 1..=3 {
                all.push(SliceKey::new(source, account, day(d)));
            }
        }
    }
    all
}

/// One replace of a model-based test: the slices `spec` picks from `universe` (by index) and
/// their new rows, `spec[i]` rows of `generation` per slice.
pub fn model_batch(
    universe: &[SliceKey],
    spec: &BTreeMap<usize, usize>,
    generation: i64,
) -> (BTreeSet<SliceKey>, Vec<Row>) {
    let slices = spec.keys().map(|&i| universe[i].clone()).collect();
    let rows = spec
        .iter()
        .flat_map(|(&i, &n)| slice_rows(&universe[i], n, generation))
        .collect();
    (slices, rows)
}

/// What a committed replace does to the model: each replaced slice holds exactly its new rows.
pub fn apply_to_model(
    model: &mut BTreeMap<SliceKey, Vec<Row>>,
    slices: &BTreeSet<SliceKey>,
    rows: Vec<Row>,
) {
    for s in slices {
        model.remove(s);
    }
    for r in rows {
        model.entry(r.slice.clone()).or_default().push(r);
    }
}
