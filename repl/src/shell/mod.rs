//! The interactive shell of `tidemark sql`: a line editor (rustyline) with history kept in
//! the user's data directory, statements spanning lines until `;`, completion and colours
//! ([`helper`]), backslash commands ([`meta`]), results laid out for the terminal, and Ctrl-C
//! cancelling the running statement rather than the shell.

pub mod helper;
pub mod meta;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use arrow::array::{RecordBatch, StringArray};
use engine::WarehouseSession;
use rustyline::config::Config;
use rustyline::error::ReadlineError;
use rustyline::history::FileHistory;
use rustyline::{CompletionType, Editor};

use crate::cli::OutputFormat;
use crate::output;
use crate::table::Layout;
use helper::{SqlHelper, Vocabulary};
use meta::Meta;

/// How the shell starts.
#[derive(Debug, Clone)]
pub struct Settings {
    pub format: OutputFormat,
    /// Rows a table shows at most (0: all).
    pub max_rows: usize,
    /// The history file; `None` keeps history for this session only.
    pub history: Option<PathBuf>,
}

/// The history file: `$TIDEMARK_HISTORY`, else `tidemark/history` in the user's data
/// directory (`$XDG_DATA_HOME`, `~/.local/share` on Linux).
pub fn default_history() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TIDEMARK_HISTORY") {
        return Some(PathBuf::from(path));
    }
    dirs::data_dir().map(|dir| dir.join("tidemark").join("history"))
}

const PROMPT: &str = "tidemark> ";

/// Run the shell until Ctrl-D or `\q`.
pub async fn run(session: WarehouseSession, settings: Settings) -> anyhow::Result<ExitCode> {
    let colours = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let vocabulary = Arc::new(RwLock::new(Vocabulary::default()));
    let config = Config::builder()
        .auto_add_history(false)
        .history_ignore_dups(true)?
        .max_history_size(10_000)?
        .completion_type(CompletionType::List)
        .build();
    let mut editor: Editor<SqlHelper, FileHistory> = Editor::with_config(config)?;
    editor.set_helper(Some(SqlHelper::new(vocabulary.clone(), colours)));
    let history = settings
        .history
        .clone()
        .and_then(|path| prepare_history(&path));
    if let Some(path) = &history {
        if let Err(e) = editor.load_history(path) {
            eprintln!("note: could not read history {}: {e}", path.display());
        }
    }
    let mut shell = Shell {
        session: Arc::new(session),
        format: settings.format,
        expanded: false,
        timing: false,
        max_rows: settings.max_rows,
        output: None,
        colours,
        vocabulary,
        known_tables: Vec::new(),
    };
    println!(
        "tidemark {} · warehouse {}\nStatements end with ';'. \\help for help, Ctrl-D to leave.",
        env!("CARGO_PKG_VERSION"),
        shell.session.warehouse().url()
    );
    shell.refresh_vocabulary();
    loop {
        let line = tokio::task::block_in_place(|| editor.readline(PROMPT));
        match line {
            Ok(entry) => {
                if entry.trim().is_empty() {
                    continue;
                }
                let _ = editor.add_history_entry(entry.as_str());
                if let Some(path) = &history {
                    if let Err(e) = editor.append_history(path) {
                        tracing::warn!(path = %path.display(), error = %e, "cannot save history");
                    }
                }
                if shell.entry(&entry).await == Flow::Quit {
                    break;
                }
            }
            // Ctrl-C at the prompt clears the line, as in other shells.
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e).context("reading from the terminal"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Make the history file's directory; `None` (history for this session only) when that fails.
fn prepare_history(path: &Path) -> Option<PathBuf> {
    if let Some(dir) = path.parent() {
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!(
                "note: history will not be kept: cannot create {}: {e}",
                dir.display()
            );
            return None;
        }
    }
    if !path.exists() {
        if let Err(e) = std::fs::File::create(path) {
            eprintln!(
                "note: history will not be kept: cannot create {}: {e}",
                path.display()
            );
            return None;
        }
    }
    Some(path.to_path_buf())
}

#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Quit,
}

struct Shell {
    session: Arc<WarehouseSession>,
    format: OutputFormat,
    expanded: bool,
    timing: bool,
    max_rows: usize,
    output: Option<PathBuf>,
    colours: bool,
    vocabulary: Arc<RwLock<Vocabulary>>,
    known_tables: Vec<String>,
}

/// Wait for Ctrl-C (never, if the handler cannot be installed).
async fn interrupted() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn format_elapsed(elapsed: Duration) -> String {
    if elapsed < Duration::from_secs(1) {
        format!("{:.3} ms", elapsed.as_secs_f64() * 1000.0)
    } else {
        format!("{:.3} s", elapsed.as_secs_f64())
    }
}

impl Shell {
    /// One entry from the editor: a backslash command, or statements.
    async fn entry(&mut self, entry: &str) -> Flow {
        if entry.trim_start().starts_with('\\') {
            return match meta::parse(entry) {
                Ok(meta) => self.meta(meta).await,
                Err(message) => {
                    self.error(&message);
                    Flow::Continue
                }
            };
        }
        for statement in sql::script::split_statements(entry) {
            if !self.statement(&statement).await {
                break;
            }
        }
        Flow::Continue
    }

    /// Run one statement and show its result; false when it failed or was cancelled.
    async fn statement(&mut self, statement: &str) -> bool {
        let started = Instant::now();
        let outcome = tokio::select! {
            result = sql::run_statement(&self.session, statement) => Some(result),
            () = interrupted() => None,
        };
        let elapsed = started.elapsed();
        let ok = match outcome {
            None => {
                self.error("cancelled (Ctrl-C); the statement's work was stopped");
                false
            }
            Some(Err(e)) => {
                self.error(&e.render(statement));
                false
            }
            Some(Ok(batches)) => match self.show(&batches) {
                Ok(()) => true,
                Err(e) => {
                    self.error(&format!("{e:#}"));
                    false
                }
            },
        };
        if self.timing {
            println!("Time: {}", format_elapsed(elapsed));
        }
        self.refresh_vocabulary();
        ok
    }

    fn error(&self, message: &str) {
        if self.colours {
            eprintln!("\x1b[31merror:\x1b[0m {message}");
        } else {
            eprintln!("error: {message}");
        }
    }

    fn layout(&self) -> Layout {
        // A terminal that reports no size (some pseudo-terminals) gets every column.
        let width = terminal_size::terminal_size()
            .map(|(w, _)| w.0 as usize)
            .filter(|w| *w >= 20);
        Layout {
            width,
            max_rows: (self.max_rows > 0).then_some(self.max_rows),
            expanded: self.expanded,
        }
    }

    fn show(&self, batches: &[RecordBatch]) -> anyhow::Result<()> {
        match &self.output {
            Some(path) => {
                output::write_file(path, batches)?;
                let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
                println!(
                    "wrote {rows} row{} to {}",
                    if rows == 1 { "" } else { "s" },
                    path.display()
                );
                Ok(())
            }
            None => {
                let stdout = std::io::stdout();
                let mut out = stdout.lock();
                output::write_laid_out(&mut out, batches, self.format, self.layout())?;
                out.flush()?;
                Ok(())
            }
        }
    }

    async fn meta(&mut self, meta: Meta) -> Flow {
        match meta {
            Meta::Quit => return Flow::Quit,
            Meta::Help => println!("{}", meta::HELP),
            Meta::Timing(on) => {
                self.timing = on.unwrap_or(!self.timing);
                println!("Timing is {}.", if self.timing { "on" } else { "off" });
            }
            Meta::Expanded(on) => {
                self.expanded = on.unwrap_or(!self.expanded);
                println!(
                    "Expanded display is {}.",
                    if self.expanded { "on" } else { "off" }
                );
            }
            Meta::Format(None) => println!("Format is {:?}.", self.format),
            Meta::Format(Some(format)) => {
                self.format = format;
                println!("Format is {format:?}.");
            }
            Meta::MaxRows(n) => {
                self.max_rows = n;
                match n {
                    0 => println!("Tables show every row."),
                    n => println!("Tables show at most {n} rows."),
                }
            }
            Meta::Output(None) => {
                self.output = None;
                println!("Results go to the terminal.");
            }
            Meta::Output(Some(path)) => {
                let format = output::FileFormat::for_path(&path);
                println!("Results go to {} ({format:?}).", path.display());
                self.output = Some(path);
            }
            Meta::Include(path) => match std::fs::read_to_string(&path) {
                Ok(text) => {
                    for statement in sql::script::split_statements(&text) {
                        if !self.statement(&statement).await {
                            self.error(&format!("stopped running {}", path.display()));
                            break;
                        }
                    }
                }
                Err(e) => self.error(&format!("cannot read {}: {e}", path.display())),
            },
            Meta::Describe(Some(name)) => {
                self.statement(&format!("DESCRIBE {name}")).await;
            }
            Meta::Describe(None) => {
                self.statement("SHOW TABLES").await;
            }
        }
        Flow::Continue
    }

    /// When the tables and marts changed, reload the names completion offers (the columns in
    /// the background: reading every table's columns opens its log).
    fn refresh_vocabulary(&mut self) {
        let tables: Vec<String> = self.session.names().into_iter().map(|(n, _)| n).collect();
        if tables == self.known_tables && !tables.is_empty() {
            return;
        }
        self.known_tables = tables.clone();
        self.vocabulary.write().expect("vocabulary lock").tables = tables.into_iter().collect();
        let session = self.session.clone();
        let vocabulary = self.vocabulary.clone();
        tokio::spawn(async move {
            let columns = columns_of(&session).await;
            vocabulary.write().expect("vocabulary lock").columns = columns;
        });
    }
}

/// Every column name of the warehouse's tables and marts.
async fn columns_of(session: &WarehouseSession) -> std::collections::BTreeSet<String> {
    let query = "SELECT DISTINCT column_name FROM information_schema.columns \
                 WHERE table_catalog = 'tidemark'";
    let Ok(batches) = sql::run_statement(session, query).await else {
        return Default::default();
    };
    batches
        .iter()
        .filter_map(|b| b.column(0).as_any().downcast_ref::<StringArray>())
        .flat_map(|a| a.iter().flatten().map(str::to_string).collect::<Vec<_>>())
        .collect()
}
