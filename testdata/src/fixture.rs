//! The fixture warehouse: `ad_performance` from `fixtures/ad_performance.csv` (two sources,
//! one account each, three days; a Korean campaign name) as version 0, pulled on 2026-11-04,
//! then a restatement of meta/1001/2026-11-02 from `fixtures/ad_performance_restated.csv` as
//! version 1, pulled on 2026-11-05 (late clicks, installs and revenue on one campaign; another
//! campaign's ad replaced by a new one); the
//! `fx_rates` seed and the sample marts of `marts/`, refreshed once.
//!
//! Everything but commit times is the same on every build, so SQL tests can state exact
//! answers.

use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use engine::model::{ad_performance_schema, AD_PERFORMANCE};
use engine::{SliceKey, SliceLayout, Warehouse};

/// The testdata directory (fixtures, marts, seeds).
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// Rows of a fixture CSV in `ad_performance`'s schema.
pub fn ad_rows(file: &str) -> RecordBatch {
    let path = dir().join("fixtures").join(file);
    let reader = std::fs::File::open(&path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    let batches: Vec<RecordBatch> = arrow::csv::ReaderBuilder::new(ad_performance_schema())
        .with_header(true)
        .build(reader)
        .expect("csv reader")
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    arrow::compute::concat_batches(&ad_performance_schema(), &batches).expect("concat")
}

/// Replace the slices `rows` belong to with `rows`, in one commit.
pub async fn replace(warehouse: &Warehouse, rows: RecordBatch) {
    replace_observed(warehouse, rows, None).await
}

/// [`replace`], the rows pulled on `observed` (what the maturity curves count ages from).
pub async fn replace_observed(
    warehouse: &Warehouse,
    rows: RecordBatch,
    observed: Option<chrono::NaiveDate>,
) {
    let slices: Vec<SliceKey> = SliceLayout::default()
        .keys_of(AD_PERFORMANCE, &rows)
        .expect("slice keys");
    let replace = warehouse
        .replace_slices(AD_PERFORMANCE)
        .with_slices(slices)
        .with_rows([rows]);
    match observed {
        Some(day) => replace.observed_on(day),
        None => replace,
    }
    .await
    .expect("fixture load");
}

/// Fill `warehouse` (empty) with the fixture: two `ad_performance` commits, the seed, the marts.
pub async fn build(warehouse: &Warehouse) {
    let day = |d: &str| d.parse().ok();
    replace_observed(warehouse, ad_rows("ad_performance.csv"), day("2026-11-04")).await;
    replace_observed(
        warehouse,
        ad_rows("ad_performance_restated.csv"),
        day("2026-11-05"),
    )
    .await;
    engine::marts::load_seeds(warehouse, &dir().join("seeds"))
        .await
        .expect("seeds");
    let marts = engine::marts::load_dir(&dir().join("marts")).expect("sample marts");
    for (mart, result) in engine::marts::refresh(warehouse, &marts, None, false)
        .await
        .expect("mart refresh")
    {
        result.unwrap_or_else(|e| panic!("mart {mart}: {e}"));
    }
}

/// A fixture warehouse in a new temporary directory, at `<dir>/wh`, for tests that drive the
/// binary (they are not async themselves).
pub fn temp_warehouse() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = dir.path().join("wh");
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            let warehouse = Warehouse::open(url.to_str().expect("utf-8 path"), &Default::default())
                .await
                .expect("open the fixture warehouse");
            build(&warehouse).await;
        });
    dir
}
