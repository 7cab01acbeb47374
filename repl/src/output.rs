//! Printing query results in the formats `--format` offers. A closed pipe (`| head`) is not an error.

use std::io::Write;

/// Print a line on stdout; a closed pipe (`| head`) is not an error, the command still finishes.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

use arrow::array::RecordBatch;
use arrow::util::pretty::pretty_format_batches;

use crate::cli::OutputFormat;

/// Write `batches` to `out` in `format`.
pub fn write_batches(
    out: &mut dyn Write,
    batches: &[RecordBatch],
    format: OutputFormat,
) -> anyhow::Result<()> {
    let result = match format {
        OutputFormat::Table => {
            let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            writeln!(out, "{}", pretty_format_batches(batches)?)
                .and_then(|()| writeln!(out, "({rows} row{})", if rows == 1 { "" } else { "s" }))
                .map_err(anyhow::Error::from)
        }
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

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || cause.to_string().contains("Broken pipe")
    })
}
