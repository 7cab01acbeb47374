//! # tidemark-sql
//!
//! The SQL surface of tidemark: running statements against a warehouse session. This is the
//! one place statements are executed, so the shell, scripts and Flight SQL behave alike. A
//! statement is tried, in order, as a tidemark statement ([`extensions`]: `SHOW TABLES`,
//! `DESCRIBE HISTORY`, `SHOW PARTITIONS`, `REFRESH MART`, `OPTIMIZE`, `VACUUM`), as a query with
//! [`time_travel`] (`VERSION AS OF` / `TIMESTAMP AS OF`), and otherwise as DataFusion SQL.
//! Parameters may be `$1`-style or `?` ([`placeholders`]: JDBC and ADBC's qmark style).
//!
//! Errors know where in the statement they are ([`Error::span`]) and unknown tables come with
//! the closest names ([`Error::UnknownTable`]); [`Error::render`] shows both.

use arrow::array::RecordBatch;
use datafusion::prelude::DataFrame;
use engine::WarehouseSession;

pub mod describe;
pub mod diagnostics;
pub mod extensions;
pub mod flight;
pub mod maintenance;
pub mod placeholders;
pub mod refresh_mart;
pub mod script;
pub mod time_travel;

pub(crate) use engine::session::ASOF_CATALOG;

use diagnostics::Span;
use extensions::Extension;

/// Errors from running a statement.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The statement failed to plan or run.
    #[error(transparent)]
    Engine(Box<engine::Error>),
    /// The query engine failed while planning or executing.
    #[error(transparent)]
    Execution(#[from] datafusion::error::DataFusionError),
    /// A tidemark statement could not be carried out.
    #[error("{0}")]
    Statement(String),
    /// The statement is not valid SQL or not a valid tidemark statement.
    #[error("{message}")]
    Syntax { message: String, at: Option<Span> },
    /// The caller's role does not allow the statement.
    #[error("{0}")]
    Forbidden(String),
    /// The statement reads a table or mart the warehouse does not have.
    #[error("{}", unknown_table_message(name, suggestions))]
    UnknownTable {
        name: String,
        suggestions: Vec<String>,
        at: Option<Span>,
    },
}

impl From<engine::Error> for Error {
    fn from(e: engine::Error) -> Self {
        Error::Engine(Box::new(e))
    }
}

fn unknown_table_message(name: &str, suggestions: &[String]) -> String {
    match suggestions {
        [] => format!("no table or mart named '{name}' (SHOW TABLES lists them)"),
        close => format!(
            "no table or mart named '{name}'; did you mean {}?",
            engine::names::join_quoted(close)
        ),
    }
}

impl Error {
    /// Where in the statement the error is, when known.
    pub fn span(&self) -> Option<Span> {
        match self {
            Error::Syntax { at, .. } | Error::UnknownTable { at, .. } => *at,
            Error::Execution(e) => datafusion_span(e),
            Error::Engine(e) => match e.as_ref() {
                engine::Error::DataFusion(e) => datafusion_span(e),
                _ => None,
            },
            Error::Statement(_) | Error::Forbidden(_) => None,
        }
    }

    /// The message, followed by the statement's line with carets under the part at fault.
    pub fn render(&self, statement: &str) -> String {
        match self.span() {
            Some(span) => {
                let snippet = diagnostics::snippet(statement, span);
                if snippet.is_empty() {
                    self.to_string()
                } else {
                    format!("{self}\n{snippet}")
                }
            }
            None => self.to_string(),
        }
    }
}

fn datafusion_span(e: &datafusion::error::DataFusionError) -> Option<Span> {
    if let Some(span) = e.diagnostic().and_then(|d| d.span) {
        return Span::from_datafusion(&span);
    }
    Span::from_message(&e.to_string())
}

/// What a caller may do. The command line owns its warehouse (admin); Flight SQL users are
/// readers unless their config says admin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Queries and the read-only statements (`SHOW`, `DESCRIBE`, history, time travel).
    Reader,
    /// Also `REFRESH MART`, `OPTIMIZE`, `VACUUM`, DDL and DML.
    Admin,
}

/// A planned statement: a query to stream, or the rows of a tidemark statement (small, and
/// produced when it ran).
pub enum Planned {
    Query(DataFrame),
    Rows(Vec<RecordBatch>),
}

impl Planned {
    /// The result's schema.
    pub fn schema(&self) -> arrow::datatypes::SchemaRef {
        match self {
            Planned::Query(frame) => std::sync::Arc::new(frame.schema().as_arrow().clone()),
            Planned::Rows(batches) => batches.first().map_or_else(
                || std::sync::Arc::new(arrow::datatypes::Schema::empty()),
                RecordBatch::schema,
            ),
        }
    }

    /// Run to the end and collect every batch.
    pub async fn collect(self) -> Result<Vec<RecordBatch>, Error> {
        match self {
            Planned::Query(frame) => Ok(frame.collect().await?),
            Planned::Rows(batches) => Ok(batches),
        }
    }
}

/// Run one statement as the warehouse's owner and collect its result.
pub async fn run_statement(
    session: &WarehouseSession,
    statement: &str,
) -> Result<Vec<RecordBatch>, Error> {
    let planned = plan_statement(session, statement, Role::Admin).await?;
    planned.collect().await.map_err(|e| explain(session, e))
}

/// Plan one statement as `role`: a query comes back unexecuted (to stream), a tidemark
/// statement has run. `?` placeholders are numbered into `$1`, `$2`, … first.
pub async fn plan_statement(
    session: &WarehouseSession,
    statement: &str,
    role: Role,
) -> Result<Planned, Error> {
    tracing::debug!(statement, ?role, "planning statement");
    let statement = placeholders::number_question_marks(statement)?;
    let statement = statement.as_ref();
    let result = match extensions::parse(statement)? {
        Some(extension) => run_extension(session, &extension, role)
            .await
            .map(Planned::Rows),
        None => plan_query(session, statement, role)
            .await
            .map(Planned::Query),
    };
    match result {
        Ok(planned) => Ok(planned),
        Err(e) => {
            // Suggestions come from the whole table list: bring it up to date first.
            if unknown_table(&e).is_some() {
                let _ = session.refresh().await;
            }
            Err(explain(session, e))
        }
    }
}

async fn run_extension(
    session: &WarehouseSession,
    extension: &Extension,
    role: Role,
) -> Result<Vec<RecordBatch>, Error> {
    if extension.writes() && role != Role::Admin {
        return Err(Error::Forbidden(format!(
            "{} changes the warehouse and needs the admin role",
            extension.usage()
        )));
    }
    let name = extension.table().map_or("", |t| t.name.as_str());
    if let Some(table) = extension.table() {
        // The parser drops the `tidemark.` of system tables; grants name them with it.
        let system = format!("tidemark.{}", table.name);
        if !session.may_read(&table.name) && !session.may_read(&system) {
            session.check_readable(&table.name)?;
        }
    }
    let result = match extension {
        Extension::ShowTables => describe::tables(session).await,
        Extension::DescribeHistory { limit, .. } => describe::history(session, name, *limit).await,
        Extension::ShowPartitions { .. } => describe::partitions(session, name).await,
        Extension::RefreshMart { full, .. } => refresh_mart::run(session, name, *full).await,
        Extension::Optimize { .. } => maintenance::optimize(session, name).await,
        Extension::Vacuum {
            retention, dry_run, ..
        } => maintenance::vacuum(session, name, *retention, *dry_run).await,
    };
    result.map_err(|e| match e {
        Error::Engine(e) => match *e {
            engine::Error::TableNotFound { name, .. } => Error::UnknownTable {
                name,
                suggestions: Vec::new(),
                at: extension.table().and_then(|t| t.span),
            },
            other => Error::from(other),
        },
        other => other,
    })
}

async fn plan_query(
    session: &WarehouseSession,
    statement: &str,
    role: Role,
) -> Result<DataFrame, Error> {
    let positioned = engine::table_functions::rewrite(statement).map_err(Error::Statement)?;
    let statement = positioned.as_deref().unwrap_or(statement);
    let statement = match time_travel::rewrite(statement).map_err(Error::Statement)? {
        Some((rewritten, pinned)) => {
            time_travel::register(session, &pinned).await?;
            std::borrow::Cow::Owned(rewritten)
        }
        None => std::borrow::Cow::Borrowed(statement),
    };
    let frame = match role {
        Role::Admin => session.sql(&statement).await?,
        Role::Reader => session
            .read_only_sql(&statement)
            .await
            .map_err(|e| match e {
                engine::Error::DataFusion(datafusion::error::DataFusionError::Plan(m))
                    if m.contains("not supported") =>
                {
                    Error::Forbidden(format!(
                        "only queries may run here ({m}); statements that change the warehouse need the admin role"
                    ))
                }
                other => Error::from(other),
            })?,
    };
    Ok(frame)
}

/// Turn DataFusion's "table not found" into [`Error::UnknownTable`] with the closest names.
fn explain(session: &WarehouseSession, error: Error) -> Error {
    let Some(name) = unknown_table(&error) else {
        return error;
    };
    let known = session.names();
    let suggestions = engine::names::closest(known.iter().map(|(n, _)| n.as_str()), &name)
        .into_iter()
        .map(str::to_string)
        .collect();
    let at = error.span();
    Error::UnknownTable {
        name,
        suggestions,
        at,
    }
}

/// The table a statement named that the warehouse does not have, if that is the error.
fn unknown_table(error: &Error) -> Option<String> {
    match error {
        Error::UnknownTable { name, .. } => Some(name.clone()),
        Error::Execution(e) => missing_table(e),
        Error::Engine(e) => match e.as_ref() {
            engine::Error::DataFusion(e) => missing_table(e),
            _ => None,
        },
        _ => None,
    }
}

/// The table DataFusion could not find, from its diagnostic or its message ("table
/// 'tidemark.public.x' not found"), without the default catalog and schema.
fn missing_table(e: &datafusion::error::DataFusionError) -> Option<String> {
    let message = match e.diagnostic() {
        Some(diagnostic) => diagnostic.message.clone(),
        None => e.to_string(),
    };
    let start = message.find("table '")? + "table '".len();
    let quoted = message[start..].split_once("' not found")?.0;
    Some(
        quoted
            .strip_prefix("tidemark.public.")
            .or_else(|| quoted.strip_prefix("tidemark."))
            .unwrap_or(quoted)
            .to_string(),
    )
}
