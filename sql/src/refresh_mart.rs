//! `REFRESH MART name [FULL]`: refresh a mart (and the marts that read it) from SQL, with the
//! definitions the warehouse recorded at their last refresh, so it works wherever the
//! warehouse is reachable (the shell, scripts, Flight SQL) without the project directory.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use engine::marts;
use engine::WarehouseSession;

use crate::Error;

/// Run the refresh; one row per mart refreshed.
pub async fn run(
    session: &WarehouseSession,
    name: &str,
    full: bool,
) -> Result<Vec<RecordBatch>, Error> {
    let warehouse = session.warehouse();
    let definitions = marts::stored_definitions(warehouse).await?;
    if !definitions.iter().any(|d| d.name == name) {
        return Err(Error::Statement(format!(
            "no mart '{name}' has been refreshed in this warehouse yet; run `tidemark mart refresh` in its project first"
        )));
    }
    let selected = BTreeSet::from([name.to_string()]);
    let results = marts::refresh(warehouse, &definitions, Some(&selected), full).await?;
    let mut names = Vec::new();
    let mut outcomes = Vec::new();
    let mut days = Vec::new();
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for (mart, result) in results {
        match result {
            Ok(r) => {
                names.push(mart);
                outcomes.push(format!("{:?}", r.mode).to_lowercase());
                days.push(r.days.len() as u64);
                rows.push(r.rows);
            }
            Err(e) => failures.push(e.to_string()),
        }
    }
    if !failures.is_empty() {
        return Err(Error::Statement(failures.join("; ")));
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("mart", DataType::Utf8, false),
        Field::new("refresh", DataType::Utf8, false),
        Field::new("days_recomputed", DataType::UInt64, false),
        Field::new("rows", DataType::UInt64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(names)),
            Arc::new(StringArray::from(outcomes)),
            Arc::new(UInt64Array::from(days)),
            Arc::new(UInt64Array::from(rows)),
        ],
    )
    .map_err(datafusion::error::DataFusionError::from)?;
    Ok(vec![batch])
}
