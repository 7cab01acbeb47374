//! # tidemark-sql
//!
//! The SQL surface of tidemark: running statements against a warehouse session. This is the
//! one place statements are executed, so the shell, scripts and (later) Flight SQL behave alike;
//! statement extensions parsed with sqlparser (`SHOW PARTITIONS`, time travel, `REFRESH MART`,
//! …) will be dispatched here before falling through to DataFusion.

use arrow::array::RecordBatch;
use engine::WarehouseSession;

/// Errors from running a statement.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The statement failed to plan or run.
    #[error(transparent)]
    Engine(#[from] engine::Error),
    /// The query engine failed while executing.
    #[error(transparent)]
    Execution(#[from] datafusion::error::DataFusionError),
    /// A tidemark statement could not be carried out.
    #[error("{0}")]
    Statement(String),
}

pub mod describe;
pub mod refresh_mart;
pub mod script;
pub mod time_travel;

pub(crate) use engine::session::ASOF_CATALOG;

/// Run one statement and collect its result.
pub async fn run_statement(
    session: &WarehouseSession,
    statement: &str,
) -> Result<Vec<RecordBatch>, Error> {
    tracing::debug!(statement, "running statement");
    if let Some(describe) = describe::parse(statement) {
        let describe = describe.map_err(Error::Statement)?;
        return describe::run(session, &describe).await;
    }
    if let Some(refresh) = refresh_mart::parse(statement) {
        let (name, full) = refresh.map_err(Error::Statement)?;
        return refresh_mart::run(session, &name, full).await;
    }
    if let Some((rewritten, pinned)) = time_travel::rewrite(statement).map_err(Error::Statement)? {
        time_travel::register(session, &pinned).await?;
        let frame = session.sql(&rewritten).await?;
        return Ok(frame.collect().await?);
    }
    let frame = session.sql(statement).await?;
    Ok(frame.collect().await?)
}
