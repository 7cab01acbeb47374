//! What a table is made of and how it got there: its commit history (`DESCRIBE HISTORY t`)
//! and its partitions with file counts, rows and bytes (`SHOW PARTITIONS t`). Both read the
//! Delta log only.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use deltalake::DeltaTable;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::warehouse::Warehouse;

/// One commit of a table.
#[derive(Debug, Clone, Serialize)]
pub struct Commit {
    pub version: u64,
    pub timestamp: Option<DateTime<Utc>>,
    pub operation: String,
    /// The job that made it (the Delta `txn` app id), if it carried one.
    pub job: Option<String>,
    pub files_added: u64,
    pub files_removed: u64,
    pub rows_added: u64,
    /// Operation parameters as JSON.
    pub parameters: String,
}

/// One partition of a table's latest version.
#[derive(Debug, Clone, Serialize)]
pub struct Partition {
    /// `column=value` pairs in partition-column order.
    pub values: Vec<(String, String)>,
    pub files: u64,
    pub rows: u64,
    pub bytes: u64,
}

/// A commit's operation parameters as JSON, without the table metadata and protocol a
/// CREATE TABLE restates in full (the schema is what `DESCRIBE t` shows).
fn readable_parameters(parameters: &serde_json::Value) -> String {
    let mut parameters = parameters.clone();
    if let Some(map) = parameters.as_object_mut() {
        map.remove("metadata");
        map.remove("protocol");
    }
    parameters.to_string()
}

/// The newest `limit` commits of `name`, newest first (commits whose log entries were
/// cleaned up are left out).
pub async fn history(warehouse: &Warehouse, name: &str, limit: usize) -> Result<Vec<Commit>> {
    let namespace = warehouse.locate(name).await?;
    let table = warehouse.open_table(namespace, name).await?;
    let latest = table.version().unwrap_or(0);
    let log_store = table.log_store();
    let oldest = latest.saturating_sub(limit.saturating_sub(1) as u64);
    let mut commits = Vec::new();
    for version in (oldest..=latest).rev() {
        let Some(entry) = log_store
            .read_commit_entry(version)
            .await
            .map_err(|e| Error::delta(name, e))?
        else {
            continue;
        };
        let mut commit = Commit {
            version,
            timestamp: None,
            operation: String::new(),
            job: None,
            files_added: 0,
            files_removed: 0,
            rows_added: 0,
            parameters: "{}".into(),
        };
        for line in entry.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let Ok(action) = serde_json::from_slice::<serde_json::Value>(line) else {
                continue;
            };
            if let Some(info) = action.get("commitInfo") {
                commit.timestamp = info["timestamp"]
                    .as_i64()
                    .and_then(DateTime::from_timestamp_millis);
                commit.operation = info["operation"].as_str().unwrap_or_default().to_string();
                if let Some(p) = info.get("operationParameters") {
                    commit.parameters = readable_parameters(p);
                }
            } else if let Some(txn) = action.get("txn") {
                commit.job = txn["appId"].as_str().map(str::to_string);
            } else if let Some(add) = action.get("add") {
                commit.files_added += 1;
                commit.rows_added += add["stats"]
                    .as_str()
                    .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
                    .and_then(|s| s["numRecords"].as_u64())
                    .unwrap_or(0);
            } else if action.get("remove").is_some() {
                commit.files_removed += 1;
            }
        }
        commits.push(commit);
    }
    Ok(commits)
}

/// The partitions of `name`'s latest version, in partition order (from the warehouse's kept
/// snapshot, brought up to date: no replay of the whole log).
pub async fn partitions(
    warehouse: &Warehouse,
    name: &str,
) -> Result<(Vec<String>, Vec<Partition>)> {
    let namespace = warehouse.locate(name).await?;
    let table = warehouse.latest_table(namespace, name).await?;
    partitions_of(&table, name)
}

/// The partitions of an opened table's version, in partition order: the partition columns,
/// and per partition its values, files, rows and bytes (one pass over the file list).
pub fn partitions_of(table: &DeltaTable, name: &str) -> Result<(Vec<String>, Vec<Partition>)> {
    let snapshot = table.snapshot().map_err(|e| Error::delta(name, e))?;
    let columns: Vec<String> = snapshot.metadata().partition_columns().to_vec();
    let mut groups: BTreeMap<Vec<String>, Partition> = BTreeMap::new();
    for file in snapshot.snapshot().log_data().iter() {
        let values = file.partition_values_map();
        let key: Vec<String> = columns
            .iter()
            .map(|c| {
                values
                    .get(c)
                    .cloned()
                    .flatten()
                    .unwrap_or_else(|| "NULL".into())
            })
            .collect();
        let entry = groups.entry(key.clone()).or_insert_with(|| Partition {
            values: columns.iter().cloned().zip(key).collect(),
            files: 0,
            rows: 0,
            bytes: 0,
        });
        entry.files += 1;
        entry.rows += file.num_records().unwrap_or(0) as u64;
        entry.bytes += file.size().max(0) as u64;
    }
    Ok((columns, groups.into_values().collect()))
}
