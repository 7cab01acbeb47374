//! Refreshing marts. Each mart records, in `_tidemark/marts/<name>.json`, the version of every
//! input it last consumed. A refresh reads each input's Delta log since then, recomputes only
//! the output days those changes reach (a changed input day `d` reaches `d ..= d +
//! lookback_days`), and writes them in one commit that replaces exactly those day partitions
//! (Delta `replaceWhere`): readers see the old mart or the new one, never a mix. Inputs are
//! pinned at the versions read, so the recorded watermarks are exactly what was consumed.
//! A changed definition, a schema change of an input, or `--full` rebuilds the whole mart; a
//! query that fails leaves the mart as it was.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::DataType;
use chrono::{DateTime, NaiveDate, Utc};
use datafusion::prelude::{SessionConfig, SessionContext};
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use super::changes::{changed_days, Changes};
use super::definition::MartDefinition;
use super::graph::MartGraph;
use crate::error::{Error, Result};
use crate::lease::Lease;
use crate::names;
use crate::warehouse::{Namespace, Warehouse};

/// What tidemark remembers about a mart between refreshes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MartState {
    /// The definition the mart was built from.
    pub fingerprint: String,
    /// Input table or mart → the version last consumed.
    pub inputs: BTreeMap<String, u64>,
    pub refreshed_at: Option<DateTime<Utc>>,
    /// The mart's table version after the last refresh.
    pub version: Option<u64>,
    pub rows: u64,
    /// Rows before the last refresh that changed the mart (for the row-change test).
    pub previous_rows: Option<u64>,
    /// The definition last refreshed, so `REFRESH MART` works without the project directory.
    #[serde(default)]
    pub definition: Option<MartDefinition>,
}

/// How a mart was refreshed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefreshMode {
    Full,
    Incremental,
    /// No input changed.
    Unchanged,
}

/// What refreshing one mart did.
#[derive(Debug, Clone, Serialize)]
pub struct RefreshReport {
    pub mart: String,
    pub mode: RefreshMode,
    /// Why a full rebuild was chosen.
    pub reason: Option<String>,
    /// Output days recomputed (for an incremental refresh).
    pub days: Vec<NaiveDate>,
    pub rows_written: usize,
    pub rows: u64,
    pub version: Option<u64>,
    #[serde(skip)]
    pub elapsed: Duration,
}

/// The state object of a mart.
fn state_path(mart: &str) -> Path {
    Path::from(format!("_tidemark/marts/{mart}.json"))
}

/// A mart's recorded state (default when never refreshed).
pub async fn read_state(warehouse: &Warehouse, mart: &str) -> Result<MartState> {
    let path = state_path(mart);
    match warehouse.storage().store().get(&path).await {
        Ok(got) => {
            let bytes = got.bytes().await.map_err(|e| Error::store(&path, e))?;
            serde_json::from_slice(&bytes).map_err(|e| Error::MartDefinition {
                mart: mart.into(),
                problem: format!(
                    "its refresh state {path} is unreadable ({e}); refresh it with --full"
                ),
            })
        }
        Err(object_store::Error::NotFound { .. }) => Ok(MartState::default()),
        Err(e) => Err(Error::store(&path, e)),
    }
}

/// The definitions of every mart refreshed in this warehouse (as last refreshed).
pub async fn stored_definitions(warehouse: &Warehouse) -> Result<Vec<MartDefinition>> {
    use futures::TryStreamExt;
    let dir = Path::from("_tidemark/marts");
    let objects: Vec<_> = warehouse
        .storage()
        .store()
        .list(Some(&dir))
        .try_collect()
        .await
        .map_err(|e| Error::store(&dir, e))?;
    let mut definitions = Vec::new();
    for object in objects {
        let Some(name) = object
            .location
            .filename()
            .and_then(|f| f.strip_suffix(".json"))
        else {
            continue;
        };
        if let Some(definition) = read_state(warehouse, name).await?.definition {
            definitions.push(definition);
        }
    }
    definitions.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(definitions)
}

async fn write_state(warehouse: &Warehouse, mart: &str, state: &MartState) -> Result<()> {
    let path = state_path(mart);
    let body = serde_json::to_vec_pretty(state).expect("state serializes");
    warehouse
        .storage()
        .store()
        .put(&path, PutPayload::from(body))
        .await
        .map_err(|e| Error::store(&path, e))?;
    Ok(())
}

/// Where an input lives and the version to read.
struct Input {
    name: String,
    namespace: Namespace,
    version: u64,
}

/// Find `name` among tables, then marts; the closest names as a hint when it is missing.
async fn locate(warehouse: &Warehouse, mart: &str, name: &str) -> Result<Input> {
    if let Some(namespace) = warehouse.namespace_of(name).await? {
        let table = warehouse.open_table(namespace, name).await?;
        return Ok(Input {
            name: name.into(),
            namespace,
            version: table.version().unwrap_or(0) as u64,
        });
    }
    let mut known: Vec<String> = Vec::new();
    for namespace in Namespace::ALL {
        known.extend(warehouse.list(namespace).await?);
    }
    let close = names::closest(known.iter().map(String::as_str), name);
    let hint = if !close.is_empty() {
        format!("; did you mean {}?", names::join_quoted(&close))
    } else if known.is_empty() {
        "; the warehouse has no tables yet (run a sync first)".into()
    } else {
        format!("; it has {}", names::join_quoted(&known))
    };
    Err(Error::MartInput {
        mart: mart.into(),
        input: name.into(),
        hint,
    })
}

/// Output days reached by changed input days.
fn reached_days(changed: &BTreeSet<NaiveDate>, lookback: u64) -> BTreeSet<NaiveDate> {
    changed
        .iter()
        .flat_map(|d| (0..=lookback).map(move |k| *d + chrono::Days::new(k)))
        .collect()
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn day_list(days: &BTreeSet<NaiveDate>) -> String {
    days.iter()
        .map(|d| format!("'{d}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A query context holding the inputs at their pinned versions and the ratio functions.
async fn pinned_context(warehouse: &Warehouse, inputs: &[Input]) -> Result<SessionContext> {
    let ctx = crate::session::new_context(
        SessionConfig::new(),
        warehouse.query_runtime().clone(),
        warehouse.query_engine(),
    )?;
    crate::functions::register(&ctx);
    crate::runwise::register(&ctx);
    crate::session::register_table_functions(&ctx, warehouse, None);
    for input in inputs {
        crate::session::register_version(
            &ctx,
            warehouse,
            input.namespace,
            &input.name,
            input.version,
            &input.name,
        )
        .await?;
    }
    Ok(ctx)
}

async fn run_query(
    ctx: &SessionContext,
    mart: &MartDefinition,
    sql: &str,
) -> Result<Vec<RecordBatch>> {
    let failed = |e: datafusion::error::DataFusionError| Error::MartQuery {
        mart: mart.name.clone(),
        message: e.to_string(),
    };
    // Named table-function arguments (`projected('t', 'm', by => 'campaign')`), as in the shell.
    let positioned = crate::table_functions::rewrite(sql).map_err(|message| Error::MartQuery {
        mart: mart.name.clone(),
        message,
    })?;
    let sql = positioned.as_deref().unwrap_or(sql);
    let frame = ctx.sql(sql).await.map_err(failed)?;
    let schema = frame.schema().as_arrow().clone();
    let column = &mart.header.partition_by;
    match schema.field_with_name(column) {
        Ok(f) if f.data_type() == &DataType::Date32 => {}
        Ok(f) => {
            return Err(Error::MartDefinition {
                mart: mart.name.clone(),
                problem: format!(
                    "its partition column {column:?} is {}, not DATE; cast it (CAST(x AS DATE)) or set partition_by",
                    f.data_type()
                ),
            })
        }
        Err(_) => {
            return Err(Error::MartDefinition {
                mart: mart.name.clone(),
                problem: format!(
                    "its SELECT has no column {column:?} to partition by; add it or set partition_by in the header"
                ),
            })
        }
    }
    frame.collect().await.map_err(failed)
}

/// Write `batches` to the mart: all of it (`days` = None) or replacing exactly `days`.
async fn write(
    warehouse: &Warehouse,
    mart: &MartDefinition,
    batches: Vec<RecordBatch>,
    days: Option<&BTreeSet<NaiveDate>>,
) -> Result<u64> {
    warehouse.check_writable().await?;
    let name = &mart.name;
    let table = if warehouse.exists(Namespace::Marts, name).await? {
        warehouse.open_table(Namespace::Marts, name).await?
    } else {
        warehouse.unloaded_table(Namespace::Marts, name)?
    };
    let column = &mart.header.partition_by;
    let mut builder = table
        .write(batches)
        .with_save_mode(SaveMode::Overwrite)
        .with_partition_columns([column.clone()]);
    builder = match days {
        Some(days) => {
            builder.with_replace_where(format!("{} IN ({})", quote_ident(column), day_list(days)))
        }
        None => builder.with_schema_mode(SchemaMode::Overwrite),
    };
    let table = builder.await.map_err(|e| Error::delta(name, e))?;
    Ok(table.version().unwrap_or(0) as u64)
}

/// Rows in the mart's latest version.
async fn row_count(warehouse: &Warehouse, mart: &str) -> Result<u64> {
    let table = warehouse.open_table(Namespace::Marts, mart).await?;
    let snapshot = table.snapshot().map_err(|e| Error::delta(mart, e))?;
    Ok(snapshot
        .snapshot()
        .log_data()
        .iter()
        .map(|f| f.num_records().unwrap_or(0) as u64)
        .sum())
}

/// How long a refresher's lease on a mart lasts without renewal.
const REFRESH_LEASE: Duration = Duration::from_secs(120);

/// Refresh one mart (its inputs already refreshed), holding its lease so two refreshers
/// (say the scheduler and `REFRESH MART` from a shell) never interleave their commits and
/// watermarks; the second is told who holds it.
pub async fn refresh_mart(
    warehouse: &Warehouse,
    mart: &MartDefinition,
    input_names: &BTreeSet<String>,
    full: bool,
) -> Result<RefreshReport> {
    let holder = crate::lease::process_id();
    let lease = std::sync::Arc::new(
        Lease::acquire(
            warehouse.storage().store(),
            &format!("_tidemark/marts/{}.lock", mart.name),
            &holder,
            REFRESH_LEASE,
        )
        .await?,
    );
    let renewer = {
        let lease = std::sync::Arc::clone(&lease);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease.ttl() / 3).await;
                if let Err(e) = lease.renew().await {
                    tracing::warn!(error = %e, "could not renew a mart refresh lease; retrying");
                }
            }
        })
    };
    let result = refresh_leased(warehouse, mart, input_names, full).await;
    renewer.abort();
    let _ = renewer.await;
    if let Ok(lease) = std::sync::Arc::try_unwrap(lease) {
        if let Err(e) = lease.release().await {
            tracing::warn!(mart = %mart.name, error = %e, "could not release the refresh lease; it expires by itself");
        }
    }
    result
}

async fn refresh_leased(
    warehouse: &Warehouse,
    mart: &MartDefinition,
    input_names: &BTreeSet<String>,
    full: bool,
) -> Result<RefreshReport> {
    let started = Instant::now();
    let mut inputs = Vec::new();
    for name in input_names {
        inputs.push(locate(warehouse, &mart.name, name).await?);
    }
    let state = read_state(warehouse, &mart.name).await?;
    let exists = warehouse.exists(Namespace::Marts, &mart.name).await?;
    let mut changes = Changes::none();
    if full {
        changes = Changes::All("--full".into());
    } else if !exists || state.version.is_none() {
        changes = Changes::All("first refresh".into());
    } else if state.fingerprint != mart.fingerprint() {
        changes = Changes::All("its definition changed".into());
    } else {
        for input in &inputs {
            let Some(&since) = state.inputs.get(&input.name) else {
                changes.merge(Changes::All(format!("it now reads {}", input.name)));
                continue;
            };
            if since > input.version {
                changes.merge(Changes::All(format!("{} was rebuilt", input.name)));
                continue;
            }
            changes.merge(
                changed_days(
                    warehouse,
                    input.namespace,
                    &input.name,
                    since,
                    input.version,
                )
                .await?,
            );
        }
    }
    let ctx = pinned_context(warehouse, &inputs).await?;
    let (mode, reason, days, rows_written, version) = match changes {
        Changes::All(reason) => {
            let batches = run_query(&ctx, mart, &mart.sql).await?;
            let written = batches.iter().map(|b| b.num_rows()).sum();
            let version = write(warehouse, mart, batches, None).await?;
            (
                RefreshMode::Full,
                Some(reason),
                Vec::new(),
                written,
                Some(version),
            )
        }
        Changes::Days(changed) if changed.is_empty() => {
            (RefreshMode::Unchanged, None, Vec::new(), 0, state.version)
        }
        Changes::Days(changed) => {
            let days = reached_days(&changed, mart.header.lookback_days);
            let sql = format!(
                "SELECT * FROM ({}) AS __mart WHERE {} IN ({})",
                mart.sql,
                quote_ident(&mart.header.partition_by),
                days.iter()
                    .map(|d| format!("DATE '{d}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let batches = run_query(&ctx, mart, &sql).await?;
            let written = batches.iter().map(|b| b.num_rows()).sum();
            let version = write(warehouse, mart, batches, Some(&days)).await?;
            (
                RefreshMode::Incremental,
                None,
                days.into_iter().collect(),
                written,
                Some(version),
            )
        }
    };
    let rows = if mode == RefreshMode::Unchanged {
        state.rows
    } else {
        row_count(warehouse, &mart.name).await?
    };
    let new_state = MartState {
        fingerprint: mart.fingerprint(),
        inputs: inputs.iter().map(|i| (i.name.clone(), i.version)).collect(),
        refreshed_at: Some(Utc::now()),
        version,
        rows,
        previous_rows: if mode == RefreshMode::Unchanged {
            state.previous_rows
        } else {
            state.version.map(|_| state.rows)
        },
        definition: Some(mart.clone()),
    };
    write_state(warehouse, &mart.name, &new_state).await?;
    let report = RefreshReport {
        mart: mart.name.clone(),
        mode,
        reason,
        days,
        rows_written,
        rows,
        version,
        elapsed: started.elapsed(),
    };
    tracing::info!(mart = %report.mart, mode = ?report.mode, days = report.days.len(), rows_written, rows, ms = report.elapsed.as_millis() as u64, "mart refreshed");
    Ok(report)
}

/// Refresh `selected` marts (all when `None`) and every mart that reads them, level by
/// level; marts of one level run in parallel. A mart whose refresh fails keeps its contents,
/// and the marts that read it are skipped (named in their result).
pub async fn refresh(
    warehouse: &Warehouse,
    marts: &[MartDefinition],
    selected: Option<&BTreeSet<String>>,
    full: bool,
) -> Result<Vec<(String, Result<RefreshReport>)>> {
    // A mart whose SQL does not parse fails alone (with the marts that read it).
    let mut results: Vec<(String, Result<RefreshReport>)> = Vec::new();
    let mut failed: BTreeSet<String> = BTreeSet::new();
    let mut readable = Vec::new();
    for mart in marts {
        match super::graph::inputs_of(mart) {
            Ok(_) => readable.push(mart.clone()),
            Err(e) => {
                failed.insert(mart.name.clone());
                results.push((mart.name.clone(), Err(e)));
            }
        }
    }
    let graph = MartGraph::build(&readable)?;
    let by_name: BTreeMap<&str, &MartDefinition> =
        readable.iter().map(|m| (m.name.as_str(), m)).collect();
    if let Some(selected) = selected {
        for name in selected {
            if !marts.iter().any(|m| &m.name == name) {
                let known: Vec<&String> = marts.iter().map(|m| &m.name).collect();
                return Err(Error::MartDefinition {
                    mart: name.clone(),
                    problem: format!(
                        "no such mart; the project defines {}",
                        names::join_quoted(&known)
                    ),
                });
            }
        }
    }
    let levels = match selected {
        Some(selected) => {
            results.retain(|(name, _)| selected.contains(name));
            graph.with_dependents(selected)
        }
        None => graph.levels.clone(),
    };
    for level in levels {
        let mut work = Vec::new();
        for name in level {
            let inputs = &graph.inputs[&name];
            if let Some(bad) = inputs.iter().find(|i| failed.contains(*i)) {
                failed.insert(name.clone());
                results.push((
                    name.clone(),
                    Err(Error::MartQuery {
                        mart: name,
                        message: format!("skipped because the mart it reads, '{bad}', failed"),
                    }),
                ));
                continue;
            }
            let mart = by_name[name.as_str()];
            work.push(async move { (name, refresh_mart(warehouse, mart, inputs, full).await) });
        }
        for (name, result) in futures::future::join_all(work).await {
            if result.is_err() {
                failed.insert(name.clone());
            }
            results.push((name, result));
        }
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_days_reach_forward_by_the_lookback() {
        let d = |n: u32| NaiveDate::from_ymd_opt(2026, 11, n).unwrap();
        let reached = reached_days(&BTreeSet::from([d(1), d(10)]), 2);
        assert_eq!(
            reached,
            BTreeSet::from([d(1), d(2), d(3), d(10), d(11), d(12)])
        );
    }
}
