//! sqllogictest files (`tests/slt/*.slt`) run through [`tidemark_sql::run_statement`], the
//! path every client's statements take, each file against a fresh fixture warehouse built
//! from `testdata/` (see `testdata::fixture`). `cargo test -p tidemark-sql --test slt [NAME]`
//! runs the files whose name contains NAME; with `-- --complete` the files' expected results
//! are rewritten from what the statements return (review the diff before committing).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use engine::{Warehouse, WarehouseSession};
use sqllogictest::{DBOutput, DefaultColumnType};

/// One warehouse session, as a sqllogictest database.
#[derive(Clone)]
struct Tidemark {
    session: Arc<WarehouseSession>,
}

fn column_type(data_type: &DataType) -> DefaultColumnType {
    if data_type.is_integer() {
        DefaultColumnType::Integer
    } else if data_type.is_floating() || matches!(data_type, DataType::Decimal128(..)) {
        DefaultColumnType::FloatingPoint
    } else if matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    ) {
        DefaultColumnType::Text
    } else {
        DefaultColumnType::Any
    }
}

fn rows(batches: &[RecordBatch]) -> Result<DBOutput<DefaultColumnType>, tidemark_sql::Error> {
    let Some(first) = batches.first() else {
        return Ok(DBOutput::Rows {
            types: Vec::new(),
            rows: Vec::new(),
        });
    };
    let types = first
        .schema()
        .fields()
        .iter()
        .map(|f| column_type(f.data_type()))
        .collect();
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(datafusion::error::DataFusionError::from)?;
        for row in 0..batch.num_rows() {
            rows.push(
                formatters
                    .iter()
                    .map(|f| match f.value(row).to_string() {
                        empty if empty.is_empty() => "(empty)".to_string(),
                        text => text,
                    })
                    .collect(),
            );
        }
    }
    Ok(DBOutput::Rows { types, rows })
}

#[async_trait::async_trait]
impl sqllogictest::AsyncDB for Tidemark {
    type Error = tidemark_sql::Error;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, Self::Error> {
        let batches = tidemark_sql::run_statement(&self.session, sql).await?;
        rows(&batches)
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "tidemark"
    }

    async fn sleep(dur: Duration) {
        tokio::time::sleep(dur).await;
    }
}

async fn run_file(path: &Path, complete: bool) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let warehouse = Warehouse::open(dir.path().to_str().unwrap(), &Default::default())
        .await
        .map_err(|e| e.to_string())?;
    testdata::fixture::build(&warehouse).await;
    let session = Arc::new(
        WarehouseSession::new(warehouse)
            .await
            .map_err(|e| e.to_string())?,
    );
    let mut runner = sqllogictest::Runner::new(move || {
        let db = Tidemark {
            session: session.clone(),
        };
        async move { Ok(db) }
    });
    if complete {
        return runner
            .update_test_file(
                path,
                " ",
                sqllogictest::default_validator,
                sqllogictest::default_normalizer,
                sqllogictest::default_column_validator,
            )
            .await
            .map_err(|e| e.to_string());
    }
    runner
        .run_file_async(path)
        .await
        .map_err(|e| e.display(true).to_string())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Flags cargo test passes to every test binary (`--test-threads 2`, `--nocapture`) are
    // accepted and ignored; other words filter the files by name.
    let mut args = std::env::args().skip(1);
    let mut complete = false;
    let mut filter: Vec<String> = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--complete" => complete = true,
            "--test-threads" | "--skip" | "--format" | "--color" => {
                args.next();
            }
            flag if flag.starts_with('-') => {}
            word => filter.push(word.to_string()),
        }
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/slt")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        eprintln!("no .slt file in {} matches {filter:?}", dir.display());
        return std::process::ExitCode::FAILURE;
    }
    let mut failed = 0;
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy();
        match run_file(file, complete).await {
            Ok(()) => println!("slt {name} ... ok"),
            Err(e) => {
                failed += 1;
                println!("slt {name} ... FAILED\n{e}");
            }
        }
    }
    println!(
        "\ntest result: {}. {} passed; {failed} failed; 0 ignored",
        if failed == 0 { "ok" } else { "FAILED" },
        files.len() - failed
    );
    if failed == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
