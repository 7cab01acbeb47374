//! The shell's backslash commands (`\d`, `\timing`, `\format`, `\o`, `\i`, `\x`, `\maxrows`,
//! `\help`, `\q`): parsing them and their help text.

use std::path::PathBuf;

use clap::ValueEnum;

use crate::cli::OutputFormat;

/// A backslash command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Meta {
    /// `\d`: list tables and marts; `\d name`: a table's columns.
    Describe(Option<String>),
    /// `\timing [on|off]`: toggle or set printing each statement's time.
    Timing(Option<bool>),
    /// `\format NAME`: how results print; without a name, show the current one.
    Format(Option<OutputFormat>),
    /// `\o FILE`: write results to FILE; `\o` alone: back to the terminal.
    Output(Option<PathBuf>),
    /// `\i FILE`: run the statements in FILE.
    Include(PathBuf),
    /// `\x [on|off]`: toggle or set expanded rows.
    Expanded(Option<bool>),
    /// `\maxrows N`: rows shown in a table at most (0: all).
    MaxRows(usize),
    Help,
    Quit,
}

pub const HELP: &str = "\
Statements end with ';' and may span lines. Ctrl-C cancels a running query (or clears the
line), Ctrl-D leaves. Tab completes keywords, tables, marts and columns.

  \\d [NAME]          list tables and marts, or NAME's columns
  \\timing [on|off]   print how long each statement took
  \\format FORMAT     table, csv, json, jsonl or markdown
  \\x [on|off]        expanded rows: one 'column | value' block per row
  \\maxrows N         show at most N rows of a table (0: all)
  \\o FILE            write results to FILE, format from its extension (.csv .json .jsonl
                     .md .parquet, else table); text formats append, .parquet holds the
                     last result; \\o alone writes to the terminal again
  \\i FILE            run the statements in FILE, stopping at the first error
  \\help              this text
  \\q                 quit

tidemark statements: SHOW TABLES, DESCRIBE t, SHOW PARTITIONS t, DESCRIBE HISTORY t [LIMIT n],
SELECT ... FROM t VERSION AS OF n | TIMESTAMP AS OF '2026-11-01 10:00', REFRESH MART m [FULL],
OPTIMIZE t, VACUUM t [RETAIN n HOURS|DAYS] [DRY RUN].
Metrics: ctr(clicks, impressions), cpc(spend, clicks), cpi(spend, installs),
cpa(spend, conversions), roas(revenue, spend), ratio(a, b): ratios of sums at any grain.";

fn on_off(word: Option<&str>) -> Result<Option<bool>, String> {
    match word.map(str::to_ascii_lowercase).as_deref() {
        None => Ok(None),
        Some("on") => Ok(Some(true)),
        Some("off") => Ok(Some(false)),
        Some(other) => Err(format!("expected on or off, not '{other}'")),
    }
}

/// Parse a line starting with `\`.
pub fn parse(line: &str) -> Result<Meta, String> {
    let line = line.trim().trim_end_matches(';').trim();
    let (command, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let rest = rest.trim();
    let argument = (!rest.is_empty()).then_some(rest);
    let path = || {
        argument
            .map(PathBuf::from)
            .ok_or_else(|| format!("{command} needs a file name"))
    };
    match command {
        "\\d" => Ok(Meta::Describe(argument.map(str::to_string))),
        "\\timing" => Ok(Meta::Timing(on_off(argument)?)),
        "\\x" => Ok(Meta::Expanded(on_off(argument)?)),
        "\\format" => match argument {
            None => Ok(Meta::Format(None)),
            Some(name) => OutputFormat::from_str(name, true)
                .map(|f| Meta::Format(Some(f)))
                .map_err(|_| {
                    format!("unknown format '{name}': use table, csv, json, jsonl or markdown")
                }),
        },
        "\\o" => Ok(Meta::Output(argument.map(PathBuf::from))),
        "\\i" => Ok(Meta::Include(path()?)),
        "\\maxrows" => argument
            .and_then(|n| n.parse().ok())
            .map(Meta::MaxRows)
            .ok_or_else(|| "\\maxrows needs a number of rows (0 shows all)".to_string()),
        "\\help" | "\\?" | "\\h" => Ok(Meta::Help),
        "\\q" | "\\quit" => Ok(Meta::Quit),
        other => Err(format!(
            "unknown command {other}; \\help lists the commands"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        assert_eq!(parse("\\d"), Ok(Meta::Describe(None)));
        assert_eq!(
            parse("\\d  ad_performance ;"),
            Ok(Meta::Describe(Some("ad_performance".into())))
        );
        assert_eq!(parse("\\timing"), Ok(Meta::Timing(None)));
        assert_eq!(parse("\\timing off"), Ok(Meta::Timing(Some(false))));
        assert_eq!(
            parse("\\format CSV"),
            Ok(Meta::Format(Some(OutputFormat::Csv)))
        );
        assert_eq!(
            parse("\\o out.parquet"),
            Ok(Meta::Output(Some("out.parquet".into())))
        );
        assert_eq!(parse("\\o"), Ok(Meta::Output(None)));
        assert_eq!(parse("\\i q.sql"), Ok(Meta::Include("q.sql".into())));
        assert_eq!(parse("\\maxrows 0"), Ok(Meta::MaxRows(0)));
        assert_eq!(parse("\\q"), Ok(Meta::Quit));
        assert!(parse("\\format xml")
            .unwrap_err()
            .contains("unknown format"));
        assert!(parse("\\i").unwrap_err().contains("needs a file"));
        assert!(parse("\\zz").unwrap_err().contains("\\help"));
        assert!(parse("\\x maybe").unwrap_err().contains("on or off"));
    }
}
