//! Which days of a table changed between two versions, read from the Delta log: the day
//! partition values of every file added or removed with `dataChange` (compaction rewrites
//! files without changing data and is skipped). A metadata change, a table without a day
//! partition, or a log that no longer reaches back that far means "everything".

use std::collections::BTreeSet;

use chrono::NaiveDate;

use crate::error::{Error, Result};
use crate::slice::PROP_DATE;
use crate::warehouse::{Namespace, Warehouse};

/// What changed in a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changes {
    /// Only these days.
    Days(BTreeSet<NaiveDate>),
    /// Anything may have changed (the reason is logged).
    All(String),
}

impl Changes {
    pub fn none() -> Self {
        Changes::Days(BTreeSet::new())
    }

    /// Merge another table's changes into these.
    pub fn merge(&mut self, other: Changes) {
        match (self, other) {
            (Changes::All(_), _) => {}
            (this, Changes::All(reason)) => *this = Changes::All(reason),
            (Changes::Days(days), Changes::Days(more)) => days.extend(more),
        }
    }
}

/// The day column a table is partitioned by, from its slice layout or (for marts) its
/// partition columns.
fn day_column(name: &str, table: &deltalake::DeltaTable) -> Result<Option<String>> {
    let snapshot = table.snapshot().map_err(|e| Error::delta(name, e))?;
    let metadata = snapshot.metadata();
    if let Some(column) = metadata.configuration().get(PROP_DATE) {
        return Ok(Some(column.clone()));
    }
    let partitions = metadata.partition_columns();
    Ok((partitions.len() == 1).then(|| partitions[0].clone()))
}

/// The days of `name` changed by the commits after `since` up to and including `until`.
pub async fn changed_days(
    warehouse: &Warehouse,
    namespace: Namespace,
    name: &str,
    since: u64,
    until: u64,
) -> Result<Changes> {
    if until <= since {
        return Ok(Changes::none());
    }
    let table = warehouse
        .open_table_at(namespace, name, Some(until))
        .await?;
    let Some(column) = day_column(name, &table)? else {
        return Ok(Changes::All(format!("{name} has no day partition")));
    };
    let log_store = table.log_store();
    let mut days = BTreeSet::new();
    for version in since + 1..=until {
        let entry = log_store
            .read_commit_entry(version)
            .await
            .map_err(|e| Error::delta(name, e))?;
        let Some(entry) = entry else {
            return Ok(Changes::All(format!(
                "{name}'s log no longer holds version {version}"
            )));
        };
        for line in entry.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let action: serde_json::Value =
                serde_json::from_slice(line).map_err(|e| Error::Delta {
                    table: name.into(),
                    source: deltalake::DeltaTableError::Generic(format!(
                        "version {version} has an unreadable action: {e}"
                    )),
                })?;
            if action.get("metaData").is_some() {
                return Ok(Changes::All(format!(
                    "{name} changed its schema or settings at version {version}"
                )));
            }
            for kind in ["add", "remove"] {
                let Some(file) = action.get(kind) else {
                    continue;
                };
                if file.get("dataChange").and_then(|v| v.as_bool()) == Some(false) {
                    continue;
                }
                let day = file
                    .get("partitionValues")
                    .and_then(|p| p.get(&column))
                    .and_then(|v| v.as_str())
                    .and_then(|v| v.parse::<NaiveDate>().ok());
                match day {
                    Some(day) => {
                        days.insert(day);
                    }
                    None => {
                        return Ok(Changes::All(format!(
                            "a file {kind}ed at version {version} of {name} names no {column}"
                        )))
                    }
                }
            }
        }
    }
    Ok(Changes::Days(days))
}
