//! Writing query results in the formats `--format` and `\format` offer, to the terminal or
//! to a file (`\o FILE`, format from the extension, Parquet included). A closed pipe
//! (`| head`) is not an error.

use std::io::Write;

/// Print a line on stdout; a closed pipe (`| head`) is not an error, the command still finishes.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

use std::path::Path;

use anyhow::Context;
use arrow::array::RecordBatch;

use crate::cli::OutputFormat;
use crate::table::{self, Layout};

/// Write `batches` to `out` in `format`, every row and column.
pub fn write_batches(
    out: &mut dyn Write,
    batches: &[RecordBatch],
    format: OutputFormat,
) -> anyhow::Result<()> {
    write_laid_out(out, batches, format, Layout::ALL)
}

/// Write `batches` to `out` in `format`; a table follows `layout` (terminal width, row
/// limit, expanded rows), the other formats always hold every row.
pub fn write_laid_out(
    out: &mut dyn Write,
    batches: &[RecordBatch],
    format: OutputFormat,
    layout: Layout,
) -> anyhow::Result<()> {
    let result = match format {
        OutputFormat::Table => table::render(batches, layout)
            .map_err(anyhow::Error::from)
            .and_then(|text| writeln!(out, "{text}").map_err(anyhow::Error::from)),
        OutputFormat::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut *out);
            batches
                .iter()
                .try_for_each(|b| writer.write(b))
                .map_err(anyhow::Error::from)
        }
        OutputFormat::Json => {
            let mut writer = arrow::json::ArrayWriter::new(&mut *out);
            batches
                .iter()
                .try_for_each(|b| writer.write(b))
                .and_then(|()| writer.finish())
                .map_err(anyhow::Error::from)
                .and_then(|()| writeln!(out).map_err(anyhow::Error::from))
        }
        OutputFormat::Jsonl => {
            let mut writer = arrow::json::LineDelimitedWriter::new(&mut *out);
            batches
                .iter()
                .try_for_each(|b| writer.write(b))
                .and_then(|()| writer.finish())
                .map_err(anyhow::Error::from)
        }
        OutputFormat::Markdown => write_markdown(out, batches),
    };
    match result {
        Err(e) if is_broken_pipe(&e) => Ok(()),
        other => other,
    }
}

/// A Markdown table: header, separator, one line per row; `|` in values escaped.
fn write_markdown(out: &mut dyn Write, batches: &[RecordBatch]) -> anyhow::Result<()> {
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    let Some(first) = batches.first() else {
        return Ok(());
    };
    let escape = |text: String| text.replace('|', "\\|");
    let schema = first.schema();
    let names: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| escape(f.name().clone()))
        .collect();
    writeln!(out, "| {} |", names.join(" | "))?;
    writeln!(out, "|{}", " --- |".repeat(names.len()))?;
    let options = FormatOptions::default().with_null("");
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()?;
        for row in 0..batch.num_rows() {
            let cells: Vec<String> = formatters
                .iter()
                .map(|f| escape(f.value(row).to_string()))
                .collect();
            writeln!(out, "| {} |", cells.join(" | "))?;
        }
    }
    Ok(())
}

/// The format a file's extension asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Text(OutputFormat),
    Parquet,
}

impl FileFormat {
    /// `.csv`, `.json`, `.jsonl`/`.ndjson`, `.md`, `.parquet`; anything else is a table.
    pub fn for_path(path: &Path) -> FileFormat {
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match extension.as_deref() {
            Some("csv") => FileFormat::Text(OutputFormat::Csv),
            Some("json") => FileFormat::Text(OutputFormat::Json),
            Some("jsonl" | "ndjson") => FileFormat::Text(OutputFormat::Jsonl),
            Some("md" | "markdown") => FileFormat::Text(OutputFormat::Markdown),
            Some("parquet") => FileFormat::Parquet,
            _ => FileFormat::Text(OutputFormat::Table),
        }
    }
}

/// Write a result to `path` in the format of its extension: text formats append (so a
/// session's results collect in one file), Parquet replaces the file with this result.
pub fn write_file(path: &Path, batches: &[RecordBatch]) -> anyhow::Result<()> {
    let open_error = || format!("cannot write results to {}", path.display());
    match FileFormat::for_path(path) {
        FileFormat::Text(format) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(open_error)?;
            let mut out = std::io::BufWriter::new(file);
            write_batches(&mut out, batches, format)?;
            out.flush().with_context(open_error)
        }
        FileFormat::Parquet => {
            let Some(first) = batches.first() else {
                anyhow::bail!(
                    "the statement returned no columns; nothing to write to {}",
                    path.display()
                );
            };
            let file = std::fs::File::create(path).with_context(open_error)?;
            let mut writer = parquet::arrow::ArrowWriter::try_new(file, first.schema(), None)?;
            for batch in batches {
                writer.write(batch)?;
            }
            writer.close().with_context(open_error)?;
            Ok(())
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || cause.to_string().contains("Broken pipe")
    })
}
