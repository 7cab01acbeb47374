//! Vacuum: deleting the files no version within the retention reads (files later commits
//! removed, and files no commit ever added, such as a crashed writer's), and remembering from
//! which version on the table can still be read, so time travel further back fails with a
//! clear error instead of a missing-file one.

use std::collections::HashSet;
use std::time::Duration;

use deltalake::DeltaTable;
use object_store::path::Path;
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::warehouse::{Namespace, Warehouse};

/// How long removed files are kept by default before a vacuum may delete them.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// What vacuuming one table did (or, on a dry run, would do).
#[derive(Debug, Clone, Serialize)]
pub struct VacuumReport {
    pub table: String,
    pub dry_run: bool,
    /// Files deleted (or that would be), relative to the table's directory.
    pub files: Vec<String>,
    pub retention_hours: u64,
    /// The oldest version time travel can still read after this vacuum (`None`: every one).
    pub oldest_readable_version: Option<u64>,
}

/// What `_tidemark/vacuum/<namespace>/<table>.json` records.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct VacuumFloor {
    oldest_readable_version: u64,
    vacuumed_at: chrono::DateTime<chrono::Utc>,
}

fn floor_path(namespace: Namespace, name: &str) -> Path {
    Path::from(format!(
        "_tidemark/vacuum/{}/{name}.json",
        namespace.dir().replace('/', "_")
    ))
}

/// The oldest version of a table whose files a vacuum left in place; `None` when no vacuum
/// deleted a file any version read.
pub async fn oldest_readable_version(
    warehouse: &Warehouse,
    namespace: Namespace,
    name: &str,
) -> Result<Option<u64>> {
    let store = warehouse.storage().store();
    let path = floor_path(namespace, name);
    match store.get(&path).await {
        Ok(found) => {
            let bytes = found.bytes().await.map_err(|e| Error::store(&path, e))?;
            // A record that cannot be read is ignored: time travel then fails on the missing
            // files instead of by name, which is still an error and never wrong data.
            Ok(serde_json::from_slice::<VacuumFloor>(&bytes)
                .ok()
                .map(|floor| floor.oldest_readable_version))
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(Error::store(&path, e)),
    }
}

/// Refuse to open `version` of a table when a vacuum deleted files it reads.
pub async fn check_readable_version(
    warehouse: &Warehouse,
    namespace: Namespace,
    name: &str,
    version: u64,
) -> Result<()> {
    match oldest_readable_version(warehouse, namespace, name).await? {
        Some(oldest) if version < oldest => Err(Error::Vacuumed {
            table: name.to_string(),
            version,
            oldest,
        }),
        _ => Ok(()),
    }
}

async fn write_floor(
    warehouse: &Warehouse,
    namespace: Namespace,
    name: &str,
    oldest: u64,
) -> Result<()> {
    let floor = VacuumFloor {
        oldest_readable_version: oldest,
        vacuumed_at: chrono::Utc::now(),
    };
    let body = serde_json::to_vec_pretty(&floor).expect("floor serializes");
    let path = floor_path(namespace, name);
    warehouse
        .storage()
        .store()
        .put(&path, body.into())
        .await
        .map_err(|e| Error::store(&path, e))?;
    Ok(())
}

/// The newest version whose commit removed one of `deleted` (versions before it read a file
/// that is gone; it and later ones do not), scanning the log down from the newest version and
/// stopping at `known` (an earlier vacuum's answer).
async fn newest_removal(
    table: &DeltaTable,
    name: &str,
    deleted: &HashSet<Path>,
    known: Option<u64>,
) -> Result<Option<u64>> {
    if deleted.is_empty() {
        return Ok(known);
    }
    let store = table.log_store();
    let newest = table.version().unwrap_or(0);
    let mut version = newest;
    loop {
        if known.is_some_and(|k| version <= k) {
            return Ok(known);
        }
        let entry = store
            .read_commit_entry(version as _)
            .await
            .map_err(|e| Error::delta(name, e))?;
        if let Some(bytes) = entry {
            for line in bytes.split(|b| *b == b'\n') {
                let Ok(action) = serde_json::from_slice::<serde_json::Value>(line) else {
                    continue;
                };
                let removed = action
                    .get("remove")
                    .and_then(|r| r.get("path"))
                    .and_then(|p| p.as_str())
                    .and_then(|p| Path::from_url_path(p).ok());
                if removed.is_some_and(|p| deleted.contains(&p)) {
                    return Ok(Some(version));
                }
            }
        }
        if version == 0 {
            return Ok(known);
        }
        version -= 1;
    }
}

/// Delete the files of `name` that no version newer than `retention` references (files the
/// log removed, and files no commit ever added, such as a crashed writer's). A retention
/// under [`DEFAULT_RETENTION`] is refused unless `force`: a shorter one can delete files that
/// time travel still reads or that a writer is about to commit.
pub async fn vacuum(
    warehouse: &Warehouse,
    namespace: Namespace,
    name: &str,
    retention: Duration,
    dry_run: bool,
    force: bool,
) -> Result<VacuumReport> {
    if retention < DEFAULT_RETENTION && !force {
        return Err(Error::RetentionTooShort {
            table: name.to_string(),
            asked: humanize_hours(retention),
            minimum: humanize_hours(DEFAULT_RETENTION),
        });
    }
    if !dry_run {
        warehouse.check_writable().await?;
    }
    let table = warehouse.open_table(namespace, name).await?;
    let retention_hours = retention.as_secs() / 3600;
    let run = |table: DeltaTable, dry_run: bool| async move {
        table
            .vacuum()
            .with_retention_period(chrono::Duration::seconds(retention.as_secs() as i64))
            .with_enforce_retention_duration(false)
            .with_mode(deltalake::operations::vacuum::VacuumMode::Full)
            .with_dry_run(dry_run)
            .await
            .map(|(_, metrics)| metrics.files_deleted)
            .map_err(|e| Error::delta(name, e))
    };
    let as_paths = |files: &[String]| -> HashSet<Path> {
        files.iter().filter_map(|f| Path::parse(f).ok()).collect()
    };
    // Record from which version on the table stays readable before deleting anything, so
    // time travel further back is refused by name even if the vacuum stops halfway.
    let known = oldest_readable_version(warehouse, namespace, name).await?;
    let planned = run(table.clone(), true).await?;
    let mut oldest = newest_removal(&table, name, &as_paths(&planned), known).await?;
    let mut files = planned.clone();
    if !dry_run {
        if oldest > known {
            write_floor(
                warehouse,
                namespace,
                name,
                oldest.expect("newer than known"),
            )
            .await?;
        }
        files = run(table.clone(), false).await?;
        // Files that aged past the retention between the plan and the deletion.
        let late: HashSet<Path> = as_paths(&files)
            .difference(&as_paths(&planned))
            .cloned()
            .collect();
        let later = newest_removal(&table, name, &late, oldest).await?;
        if later > oldest {
            write_floor(warehouse, namespace, name, later.expect("newer")).await?;
            oldest = later;
        }
    }
    files.sort();
    tracing::info!(
        table = name,
        dry_run,
        files = files.len(),
        retention_hours,
        "vacuumed"
    );
    Ok(VacuumReport {
        table: name.to_string(),
        dry_run,
        files,
        retention_hours,
        oldest_readable_version: oldest,
    })
}

/// Vacuum every table, mart and system table with `retention` (refused under the default).
pub async fn vacuum_all(warehouse: &Warehouse, retention: Duration) -> Result<Vec<VacuumReport>> {
    let mut reports = Vec::new();
    for namespace in [Namespace::Tables, Namespace::Marts, Namespace::System] {
        for name in warehouse.list(namespace).await? {
            reports.push(vacuum(warehouse, namespace, &name, retention, false, false).await?);
        }
    }
    Ok(reports)
}

fn humanize_hours(d: Duration) -> String {
    let hours = d.as_secs() / 3600;
    if hours.is_multiple_of(24) && hours > 0 {
        format!("{} days", hours / 24)
    } else {
        format!("{hours} hours")
    }
}
