//! The slice index: for one table, which data files hold which slices, kept up to date by
//! reading only the commits made since it was last current.
//!
//! Built once per process from a full table snapshot (the one O(table) step, like opening the
//! table; the account statistics come as the columns the snapshot already parsed), then advanced commit by commit (`_delta_log/<version>.json`, read directly). Planning
//! a replace looks up only the (source, day) partitions of its slices, and committing writes the
//! next log entry with put-if-absent; neither replays the table's file list. That is what keeps
//! the cost of a replace following the slice instead of the table.

use std::collections::{BTreeSet, HashMap, HashSet};

use arrow::array::{Array, ArrayRef, AsArray, StringArray, UInt64Array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, UInt64Type};
use chrono::NaiveDate;
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::Column;
use deltalake::kernel::Remove;
use deltalake::logstore::LogStore;
use deltalake::DeltaTable;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::slice::{SliceKey, SliceLayout};

/// What a file's statistics say about the accounts in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Accounts {
    /// Every row has this account.
    One(String),
    /// Rows span this inclusive range of accounts.
    Range(String, String),
    /// No usable statistics.
    Unknown,
}

impl Accounts {
    /// Read the account column's statistics from an add action's `stats` JSON.
    #[cfg(test)]
    pub fn from_stats(stats: Option<&str>, column: &str) -> Self {
        match stats.and_then(|s| serde_json::from_str::<Value>(s).ok()) {
            Some(value) => Self::from_stats_value(&value, column),
            None => Accounts::Unknown,
        }
    }

    /// The same, from statistics already parsed.
    fn from_stats_value(value: &Value, column: &str) -> Self {
        let min = value["minValues"][column].as_str();
        let max = value["maxValues"][column].as_str();
        let nulls = value["nullCount"][column].as_i64().unwrap_or(0);
        match (min, max) {
            (Some(min), Some(max)) if nulls == 0 && min == max => Accounts::One(min.to_string()),
            (Some(min), Some(max)) => Accounts::Range(min.to_string(), max.to_string()),
            _ => Accounts::Unknown,
        }
    }

    /// Whether rows of `account` may be in the file.
    pub fn may_hold(&self, account: &str) -> bool {
        match self {
            Accounts::One(a) => a == account,
            Accounts::Range(min, max) => min.as_str() <= account && account <= max.as_str(),
            Accounts::Unknown => true,
        }
    }
}

/// The account column's statistics of every file of a snapshot, in file order.
struct AccountColumns<'a> {
    mins: Option<&'a StringArray>,
    maxs: Option<&'a StringArray>,
    nulls: Option<&'a UInt64Array>,
}

impl AccountColumns<'_> {
    /// What file `i`'s statistics say about its accounts (as [`Accounts::from_stats`] reads
    /// them from JSON).
    fn accounts(&self, i: usize) -> Accounts {
        fn value(a: Option<&StringArray>, i: usize) -> Option<&str> {
            a.filter(|a| a.is_valid(i)).map(|a| a.value(i))
        }
        let nulls = self
            .nulls
            .filter(|n| n.is_valid(i))
            .map_or(0, |n| n.value(i));
        match (value(self.mins, i), value(self.maxs, i)) {
            (Some(min), Some(max)) if nulls == 0 && min == max => Accounts::One(min.to_string()),
            (Some(min), Some(max)) => Accounts::Range(min.to_string(), max.to_string()),
            _ => Accounts::Unknown,
        }
    }
}

/// One live data file.
#[derive(Debug, Clone)]
pub(crate) struct IndexedFile {
    pub path: String,
    pub source: String,
    pub date: NaiveDate,
    pub partition_values: HashMap<String, Option<String>>,
    pub size: i64,
    pub num_records: usize,
    pub accounts: Accounts,
}

impl IndexedFile {
    /// The remove action for this file.
    pub fn remove_action(&self) -> Remove {
        Remove {
            path: self.path.clone(),
            data_change: true,
            deletion_timestamp: Some(chrono::Utc::now().timestamp_millis()),
            extended_file_metadata: Some(true),
            partition_values: Some(self.partition_values.clone()),
            size: Some(self.size),
            tags: None,
            deletion_vector: None,
            base_row_id: None,
            default_row_commit_version: None,
        }
    }
}

/// What a commit by someone else did, as far as a concurrent replace cares.
#[derive(Debug, Default)]
pub(crate) struct CommitEffects {
    /// The commit changed the table's metadata or protocol.
    pub metadata_changed: bool,
    /// (source, day, accounts) of every file it added.
    pub added: Vec<(String, NaiveDate, Accounts)>,
    /// Paths of every file it removed.
    pub removed: HashSet<String>,
}

impl CommitEffects {
    /// Whether these effects touch any of `slices` or any file in `removing`.
    pub fn touches(&self, slices: &BTreeSet<SliceKey>, removing: &HashSet<String>) -> bool {
        self.metadata_changed
            || self.removed.iter().any(|p| removing.contains(p))
            || self.added.iter().any(|(source, date, accounts)| {
                slices.iter().any(|s| {
                    &s.source == source && s.date == *date && accounts.may_hold(&s.account)
                })
            })
    }
}

/// The index of one table.
pub(crate) struct SliceIndex {
    name: String,
    layout: SliceLayout,
    /// The snapshot the index was built from: metadata, schema, protocol and old txns.
    pub base: DeltaTable,
    /// The latest version the index reflects.
    pub version: u64,
    partitions: HashMap<(String, NaiveDate), Vec<IndexedFile>>,
    /// Application transaction versions committed after `base`.
    txns: HashMap<String, i64>,
    /// Set when a commit changed metadata: the index must be rebuilt from a fresh snapshot.
    pub stale: bool,
}

impl SliceIndex {
    /// Build from a loaded table (reads its whole file list once).
    pub fn build(name: &str, table: DeltaTable, layout: SliceLayout) -> Result<Self> {
        let snapshot = table.snapshot().map_err(|e| Error::delta(name, e))?;
        let version = snapshot.version();
        let mut partitions: HashMap<(String, NaiveDate), Vec<IndexedFile>> = HashMap::new();
        let log_data = snapshot.snapshot().log_data();
        // The account statistics of every file, as columns the snapshot already parsed (from
        // the checkpoint's struct statistics or the commits' JSON): parsing each file's JSON
        // again here took longer than opening the table (100,000 files, issue 19's profile).
        let account = Column::new_unqualified(&layout.account);
        let as_text = |a: Option<ArrayRef>| a.and_then(|a| cast(&a, &DataType::Utf8).ok());
        let mins = as_text(log_data.min_values(&account));
        let maxs = as_text(log_data.max_values(&account));
        let nulls = log_data
            .null_counts(&account)
            .and_then(|a| cast(&a, &DataType::UInt64).ok());
        let stats = AccountColumns {
            mins: mins.as_ref().map(|a| a.as_string::<i32>()),
            maxs: maxs.as_ref().map(|a| a.as_string::<i32>()),
            nulls: nulls.as_ref().map(|a| a.as_primitive::<UInt64Type>()),
        };
        for (i, file) in log_data.iter().enumerate() {
            let partition_values = file.partition_values_map();
            let Some(key) = partition_key(&layout, &partition_values) else {
                continue;
            };
            partitions
                .entry(key.clone())
                .or_default()
                .push(IndexedFile {
                    path: file.path().to_string(),
                    source: key.0,
                    date: key.1,
                    size: file.size(),
                    num_records: file.num_records().unwrap_or(0),
                    accounts: stats.accounts(i),
                    partition_values,
                });
        }
        Ok(SliceIndex {
            name: name.to_string(),
            layout,
            base: table,
            version,
            partitions,
            txns: HashMap::new(),
            stale: false,
        })
    }

    /// The files that may hold rows of `slices`, looked up by partition.
    pub fn files_of(&self, slices: &BTreeSet<SliceKey>) -> Vec<&IndexedFile> {
        let mut wanted: HashMap<(&str, NaiveDate), Vec<&str>> = HashMap::new();
        for s in slices {
            wanted
                .entry((s.source.as_str(), s.date))
                .or_default()
                .push(s.account.as_str());
        }
        let mut files = Vec::new();
        for ((source, date), accounts) in wanted {
            let Some(in_partition) = self.partitions.get(&(source.to_string(), date)) else {
                continue;
            };
            files.extend(
                in_partition
                    .iter()
                    .filter(|f| accounts.iter().any(|a| f.accounts.may_hold(a))),
            );
        }
        files
    }

    /// The latest committed version of an application transaction.
    pub async fn txn_version(&self, app_id: &str) -> Result<Option<i64>> {
        if let Some(v) = self.txns.get(app_id) {
            return Ok(Some(*v));
        }
        let snapshot = self
            .base
            .snapshot()
            .map_err(|e| Error::delta(&self.name, e))?;
        snapshot
            .transaction_version(self.base.log_store().as_ref(), app_id)
            .await
            .map_err(|e| Error::delta(&self.name, e))
    }

    /// Read every commit after `version` and apply it; returns what those commits did.
    pub async fn advance(&mut self, log_store: &dyn LogStore) -> Result<CommitEffects> {
        let mut effects = CommitEffects::default();
        loop {
            let next = self.version + 1;
            let entry = log_store
                .read_commit_entry(next)
                .await
                .map_err(|e| Error::delta(&self.name, e))?;
            let Some(bytes) = entry else {
                return Ok(effects);
            };
            self.apply(next, &bytes, &mut effects)?;
        }
    }

    /// Apply the log entry of `version` (someone else's or our own).
    pub fn apply(&mut self, version: u64, entry: &[u8], effects: &mut CommitEffects) -> Result<()> {
        let text = std::str::from_utf8(entry).map_err(|e| Error::NotSliceTable {
            table: self.name.clone(),
            reason: format!("log entry {version} is not UTF-8: {e}"),
        })?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let action: Value = serde_json::from_str(line).map_err(|e| Error::NotSliceTable {
                table: self.name.clone(),
                reason: format!("log entry {version} has an unreadable action: {e}"),
            })?;
            if let Some(add) = action.get("add") {
                self.apply_add(add, effects);
            } else if let Some(remove) = action.get("remove") {
                self.apply_remove(remove, effects);
            } else if action.get("metaData").is_some() || action.get("protocol").is_some() {
                effects.metadata_changed = true;
                self.stale = true;
            } else if let Some(txn) = action.get("txn") {
                if let (Some(app), Some(v)) = (txn["appId"].as_str(), txn["version"].as_i64()) {
                    self.txns.insert(app.to_string(), v);
                }
            }
        }
        self.version = version;
        Ok(())
    }

    fn apply_add(&mut self, add: &Value, effects: &mut CommitEffects) {
        let partition_values: HashMap<String, Option<String>> =
            serde_json::from_value(add["partitionValues"].clone()).unwrap_or_default();
        let Some(key) = partition_key(&self.layout, &partition_values) else {
            return;
        };
        // Parse the statistics once: they give both the row count and the accounts.
        let stats = add["stats"]
            .as_str()
            .and_then(|s| serde_json::from_str::<Value>(s).ok());
        let num_records = stats
            .as_ref()
            .and_then(|v| v["numRecords"].as_u64())
            .unwrap_or(0) as usize;
        let accounts = match &stats {
            Some(value) => Accounts::from_stats_value(value, &self.layout.account),
            None => Accounts::Unknown,
        };
        let file = IndexedFile {
            path: add["path"].as_str().unwrap_or_default().to_string(),
            source: key.0.clone(),
            date: key.1,
            size: add["size"].as_i64().unwrap_or(0),
            num_records,
            accounts,
            partition_values,
        };
        effects
            .added
            .push((key.0.clone(), key.1, file.accounts.clone()));
        self.partitions.entry(key).or_default().push(file);
    }

    fn apply_remove(&mut self, remove: &Value, effects: &mut CommitEffects) {
        let Some(path) = remove["path"].as_str() else {
            return;
        };
        effects.removed.insert(path.to_string());
        let partition_values: Option<HashMap<String, Option<String>>> =
            serde_json::from_value(remove["partitionValues"].clone()).ok();
        match partition_values.and_then(|p| partition_key(&self.layout, &p)) {
            Some(key) => {
                if let Some(files) = self.partitions.get_mut(&key) {
                    files.retain(|f| f.path != path);
                }
            }
            // A remove without partition values: look everywhere.
            None => {
                for files in self.partitions.values_mut() {
                    files.retain(|f| f.path != path);
                }
            }
        }
    }
}

/// The (source, day) partition of a file.
fn partition_key(
    layout: &SliceLayout,
    values: &HashMap<String, Option<String>>,
) -> Option<(String, NaiveDate)> {
    let source = values.get(&layout.source)?.clone()?;
    let date = values.get(&layout.date)?.as_deref()?;
    let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    Some((source, date))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_account_files_are_recognised_from_stats() {
        let stats = r#"{"numRecords":3,"minValues":{"account_id":"a"},"maxValues":{"account_id":"a"},"nullCount":{"account_id":0}}"#;
        assert_eq!(
            Accounts::from_stats(Some(stats), "account_id"),
            Accounts::One("a".into())
        );
        let stats =
            r#"{"numRecords":3,"minValues":{"account_id":"a"},"maxValues":{"account_id":"c"}}"#;
        let range = Accounts::from_stats(Some(stats), "account_id");
        assert!(range.may_hold("b") && !range.may_hold("d"));
        assert_eq!(Accounts::from_stats(None, "account_id"), Accounts::Unknown);
        assert_eq!(
            Accounts::from_stats(Some("{}"), "account_id"),
            Accounts::Unknown
        );
    }

    #[test]
    fn effects_touch_only_overlapping_slices() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        let mine: BTreeSet<SliceKey> = [SliceKey::new("meta", "a1", day)].into();
        let other = CommitEffects {
            added: vec![("meta".into(), day, Accounts::One("a2".into()))],
            ..Default::default()
        };
        assert!(!other.touches(&mine, &HashSet::new()));
        let same = CommitEffects {
            added: vec![("meta".into(), day, Accounts::One("a1".into()))],
            ..Default::default()
        };
        assert!(same.touches(&mine, &HashSet::new()));
        let removed_mine = CommitEffects {
            removed: ["f1".to_string()].into(),
            ..Default::default()
        };
        assert!(removed_mine.touches(&mine, &["f1".to_string()].into()));
    }
}
