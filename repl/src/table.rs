//! Results as text for people: an aligned table (numbers right-aligned, wide values cut,
//! columns beyond the terminal's width left out) or expanded rows (`\x`), with a footer
//! saying how many rows and columns there are and how many are shown.
//!
//! Widths are display widths, so Korean campaign names line up.

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

/// How much of a result to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Terminal width in cells; `None` shows every column.
    pub width: Option<usize>,
    /// Rows shown at most; `None` shows every row.
    pub max_rows: Option<usize>,
    /// One block per row (`\x`) instead of a table.
    pub expanded: bool,
}

impl Layout {
    /// Everything, as for a file or a pipe.
    pub const ALL: Layout = Layout {
        width: None,
        max_rows: None,
        expanded: false,
    };
}

/// The widest a single value is shown in a table before it is cut with `…`.
const MAX_CELL_WIDTH: usize = 48;

/// A result's cells as text.
struct Cells {
    names: Vec<String>,
    numeric: Vec<bool>,
    rows: Vec<Vec<String>>,
    total_rows: usize,
}

fn is_numeric(data_type: &DataType) -> bool {
    data_type.is_numeric()
}

/// Format the first `limit` rows of `batches`.
fn cells(batches: &[RecordBatch], limit: Option<usize>) -> Result<Cells, arrow::error::ArrowError> {
    let total_rows = batches.iter().map(RecordBatch::num_rows).sum();
    let Some(first) = batches.first() else {
        return Ok(Cells {
            names: Vec::new(),
            numeric: Vec::new(),
            rows: Vec::new(),
            total_rows,
        });
    };
    let schema = first.schema();
    let names = schema.fields().iter().map(|f| f.name().clone()).collect();
    let numeric = schema
        .fields()
        .iter()
        .map(|f| is_numeric(f.data_type()))
        .collect();
    let options = FormatOptions::default().with_null("NULL");
    let limit = limit.unwrap_or(usize::MAX);
    let mut rows = Vec::new();
    'batches: for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref() as &dyn Array, &options))
            .collect::<Result<Vec<_>, _>>()?;
        for row in 0..batch.num_rows() {
            if rows.len() >= limit {
                break 'batches;
            }
            rows.push(
                formatters
                    .iter()
                    .map(|f| f.value(row).to_string().replace(['\n', '\t'], " "))
                    .collect(),
            );
        }
    }
    Ok(Cells {
        names,
        numeric,
        rows,
        total_rows,
    })
}

/// `text` cut to at most `width` cells, ending in `…` when cut.
pub fn truncate(text: &str, width: usize) -> String {
    if text.width() <= width {
        return text.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    for ch in text.chars() {
        let w = ch.width().unwrap_or(0);
        if used + w + 1 > width {
            break;
        }
        out.push(ch);
        used += w;
    }
    out.push('…');
    out
}

fn pad(text: &str, width: usize, right: bool) -> String {
    let fill = " ".repeat(width.saturating_sub(text.width()));
    if right {
        format!("{fill}{text}")
    } else {
        format!("{text}{fill}")
    }
}

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

/// The footer: rows and columns, and how many of each are shown when not all are.
fn footer(total_rows: usize, shown_rows: usize, columns: usize, shown_columns: usize) -> String {
    let mut parts = vec![plural(total_rows, "row")];
    if shown_rows < total_rows {
        parts[0].push_str(&format!(" ({shown_rows} shown; \\maxrows 0 shows all)"));
    }
    if shown_columns < columns {
        parts.push(format!(
            "{} ({shown_columns} shown; \\x shows every column)",
            plural(columns, "column")
        ));
    }
    format!("({})", parts.join(", "))
}

/// Render `batches` for a terminal (or, with [`Layout::ALL`], in full).
pub fn render(batches: &[RecordBatch], layout: Layout) -> Result<String, arrow::error::ArrowError> {
    let cells = cells(batches, layout.max_rows)?;
    if cells.names.is_empty() {
        return Ok(footer(cells.total_rows, cells.total_rows, 0, 0));
    }
    if layout.expanded {
        return Ok(render_expanded(&cells, layout.width));
    }
    let cut = |text: &str| truncate(text, MAX_CELL_WIDTH);
    let header: Vec<String> = cells.names.iter().map(|n| cut(n)).collect();
    let rows: Vec<Vec<String>> = cells
        .rows
        .iter()
        .map(|row| row.iter().map(|c| cut(c)).collect())
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].width())
                .chain([header[i].width()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    // Columns that fit: each takes its width plus 3 ("| " and " "), plus the closing "|";
    // when some are left out, a one-cell "…" column says so.
    let shown = match layout.width {
        None => widths.len(),
        Some(limit) => {
            let mut used = 1;
            let mut shown = 0;
            for (i, w) in widths.iter().enumerate() {
                let reserve = if i + 1 < widths.len() { 4 } else { 0 };
                if used + w + 3 + reserve > limit && shown > 0 {
                    break;
                }
                used += w + 3;
                shown += 1;
            }
            shown
        }
    };
    let hidden = shown < widths.len();
    let mut separator = String::from("+");
    for w in &widths[..shown] {
        separator.push_str(&"-".repeat(w + 2));
        separator.push('+');
    }
    if hidden {
        separator.push_str("---+");
    }
    let line = |values: &[String], numeric: &dyn Fn(usize) -> bool| {
        let mut out = String::from("|");
        for (i, w) in widths[..shown].iter().enumerate() {
            out.push(' ');
            out.push_str(&pad(&values[i], *w, numeric(i)));
            out.push_str(" |");
        }
        if hidden {
            out.push_str(" … |");
        }
        out
    };
    let mut out = vec![
        separator.clone(),
        line(&header, &|_| false),
        separator.clone(),
    ];
    for row in &rows {
        out.push(line(row, &|i| cells.numeric[i]));
    }
    out.push(separator);
    out.push(footer(cells.total_rows, rows.len(), widths.len(), shown));
    Ok(out.join("\n"))
}

/// One block per row: `name | value` lines under a `-[ row n ]-` rule.
fn render_expanded(cells: &Cells, width: Option<usize>) -> String {
    let name_width = cells.names.iter().map(|n| n.width()).max().unwrap_or(0);
    let value_width = width.map(|w| w.saturating_sub(name_width + 3).max(8));
    let mut out = Vec::new();
    for (n, row) in cells.rows.iter().enumerate() {
        let rule = format!("-[ row {} ]", n + 1);
        let rule_width = width.unwrap_or(name_width + 20).max(rule.width() + 1);
        out.push(format!("{rule}{}", "-".repeat(rule_width - rule.width())));
        for (name, value) in cells.names.iter().zip(row) {
            let value = match value_width {
                Some(w) => truncate(value, w),
                None => value.clone(),
            };
            out.push(format!("{} | {value}", pad(name, name_width, false)));
        }
    }
    out.push(footer(
        cells.total_rows,
        cells.rows.len(),
        cells.names.len(),
        cells.names.len(),
    ));
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    fn batch() -> RecordBatch {
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("campaign", DataType::Utf8, true),
                Field::new("clicks", DataType::Int64, true),
                Field::new("note", DataType::Utf8, true),
            ])),
            vec![
                Arc::new(StringArray::from(vec![
                    Some("봄 세일"),
                    Some("summer"),
                    None,
                ])),
                Arc::new(Int64Array::from(vec![Some(5), Some(1200), None])),
                Arc::new(StringArray::from(vec!["a", "b", "c"])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn tables_align_by_display_width_and_numbers_go_right() {
        let text = render(&[batch()], Layout::ALL).unwrap();
        assert_eq!(
            text,
            "+----------+--------+------+\n\
             | campaign | clicks | note |\n\
             +----------+--------+------+\n\
             | 봄 세일  |      5 | a    |\n\
             | summer   |   1200 | b    |\n\
             | NULL     |   NULL | c    |\n\
             +----------+--------+------+\n\
             (3 rows)"
        );
    }

    #[test]
    fn narrow_terminals_drop_columns_and_long_results_stop_at_the_limit() {
        let layout = Layout {
            width: Some(25),
            max_rows: Some(2),
            expanded: false,
        };
        let text = render(&[batch()], layout).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[..6].iter().all(|l| l.width() <= 25), "{text}");
        assert_eq!(lines[1], "| campaign | clicks | … |");
        assert_eq!(lines.len(), 7, "{text}");
        assert_eq!(
            lines[6],
            "(3 rows (2 shown; \\maxrows 0 shows all), 3 columns (2 shown; \\x shows every column))"
        );
    }

    #[test]
    fn expanded_rows_list_every_column() {
        let layout = Layout {
            width: Some(30),
            max_rows: None,
            expanded: true,
        };
        let text = render(&[batch()], layout).unwrap();
        assert!(
            text.starts_with("-[ row 1 ]--------------------\ncampaign | 봄 세일\n"),
            "{text}"
        );
        assert_eq!(text.lines().next().unwrap().width(), 30);
        assert!(text.ends_with("note     | c\n(3 rows)"), "{text}");
    }

    #[test]
    fn long_values_are_cut_with_an_ellipsis() {
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("캠페인이름", 5), "캠페…");
        assert_eq!(truncate("short", 10), "short");
    }
}
