//! `tidemark load`: replace slices with the rows of data files, in one commit.
//!
//! The slices replaced are those the rows belong to, plus any given with `--slice` (which
//! become empty if no row belongs to them). Prints a JSON report on stdout once committed.

use std::process::ExitCode;

use anyhow::{bail, Context};
use arrow::array::RecordBatch;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema};
use clap::Args;
use datafusion::prelude::{CsvReadOptions, JsonReadOptions, ParquetReadOptions, SessionContext};
use engine::{SliceKey, SliceLayout};
use std::sync::Arc;

use crate::cli::WarehouseArgs;

#[derive(Debug, Args)]
pub struct LoadArgs {
    #[command(flatten)]
    pub warehouse: WarehouseArgs,

    /// The table to replace slices in (created on first load).
    #[arg(long, short = 't')]
    pub table: String,

    /// Data files: .csv, .json/.jsonl/.ndjson (one object per line) or .parquet.
    #[arg(required = true)]
    pub files: Vec<std::path::PathBuf>,

    /// Also replace this slice, given as SOURCE/ACCOUNT/YYYY-MM-DD (repeatable).
    #[arg(long = "slice", value_parser = parse_slice)]
    pub slices: Vec<SliceKey>,

    /// Make the commit idempotent: APP_ID:VERSION. A rerun of a committed job does nothing.
    #[arg(long, value_parser = parse_job)]
    pub job: Option<(String, i64)>,
}

fn parse_slice(text: &str) -> Result<SliceKey, String> {
    let parts: Vec<&str> = text.splitn(3, '/').collect();
    let [source, account, date] = parts[..] else {
        return Err("expected SOURCE/ACCOUNT/YYYY-MM-DD".into());
    };
    let date = date
        .parse()
        .map_err(|_| format!("'{date}' is not a date (YYYY-MM-DD)"))?;
    Ok(SliceKey::new(source, account, date))
}

fn parse_job(text: &str) -> Result<(String, i64), String> {
    let (app, version) = text.rsplit_once(':').ok_or("expected APP_ID:VERSION")?;
    let version = version
        .parse()
        .map_err(|_| format!("'{version}' is not a whole number"))?;
    Ok((app.to_string(), version))
}

pub async fn run(args: LoadArgs) -> anyhow::Result<ExitCode> {
    let warehouse = args.warehouse.open().await?;
    let layout = SliceLayout::default();
    let mut batches = Vec::new();
    for file in &args.files {
        batches.extend(read_file(file).await?);
    }
    let batches = batches
        .iter()
        .map(|b| with_date_column(b, &layout.date))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut slices = args.slices.clone();
    for batch in &batches {
        slices.extend(layout.keys_of(&args.table, batch)?);
    }
    let mut replace = warehouse
        .replace_slices(&args.table)
        .with_layout(layout)
        .with_slices(slices)
        .with_rows(batches);
    if let Some((app, version)) = &args.job {
        replace = replace.with_job(app.clone(), *version);
    }
    let report = replace.await?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(ExitCode::SUCCESS)
}

async fn read_file(path: &std::path::Path) -> anyhow::Result<Vec<RecordBatch>> {
    let ctx = SessionContext::new();
    let name = path.to_str().context("file path is not UTF-8")?;
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let frame = match extension.as_str() {
        "csv" => ctx.read_csv(name, CsvReadOptions::new()).await,
        "json" | "jsonl" | "ndjson" => {
            ctx.read_json(
                name,
                JsonReadOptions::default().file_extension(&format!(".{extension}")),
            )
            .await
        }
        "parquet" => ctx.read_parquet(name, ParquetReadOptions::default()).await,
        other => bail!(
            "{}: unknown file type '.{other}' (use .csv, .jsonl or .parquet)",
            path.display()
        ),
    }
    .with_context(|| format!("cannot read {}", path.display()))?;
    frame
        .collect()
        .await
        .with_context(|| format!("cannot read {}", path.display()))
}

/// Text files carry dates as strings: make the slice date column a DATE.
fn with_date_column(batch: &RecordBatch, date: &str) -> anyhow::Result<RecordBatch> {
    let Ok(index) = batch.schema().index_of(date) else {
        return Ok(batch.clone());
    };
    if batch.column(index).data_type() == &DataType::Date32 {
        return Ok(batch.clone());
    }
    let column = cast(batch.column(index), &DataType::Date32)
        .with_context(|| format!("column '{date}' is not a date (YYYY-MM-DD)"))?;
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields[index] = Field::new(date, DataType::Date32, fields[index].is_nullable());
    let mut columns = batch.columns().to_vec();
    columns[index] = column;
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}
