//! Finding the files a replace must remove, from the Delta log alone: the (source, day)
//! partition values and the account column's min/max statistics of each file.
//!
//! The slices become a kernel predicate, so data skipping (vectorized over the log's file
//! columns) narrows the table's files to the candidates before any per-file work; the cost of
//! planning then follows the slices, not the number of files in the table.

use std::collections::{BTreeSet, HashMap, HashSet};

use arrow::datatypes::Date32Type;
use chrono::NaiveDate;
use std::sync::Arc;

use delta_kernel::expressions::{Expression, Predicate, Scalar};
use deltalake::kernel::Remove;
use deltalake::DeltaTable;
use futures::TryStreamExt;
use object_store::path::Path;

use crate::error::{Error, Result};
use crate::slice::{SliceKey, SliceLayout};

/// A file holding rows of a replaced slice and of other slices: it is read, and its other
/// rows are written back.
#[derive(Debug, Clone)]
pub(crate) struct MixedFile {
    pub location: Path,
    pub source: String,
    pub date_days: i32,
}

/// The files a replace removes.
#[derive(Debug, Default)]
pub(crate) struct Removal {
    pub removes: Vec<Remove>,
    pub mixed: Vec<MixedFile>,
    /// Rows in the removed files (mixed files included; their survivors are subtracted later).
    pub rows_removed: usize,
}

/// What a file's statistics say about the accounts in it.
enum Accounts {
    /// Every row has this account.
    One(String),
    /// Rows span this inclusive range of accounts.
    Range(String, String),
    /// No usable statistics.
    Unknown,
}

fn accounts_of(stats: Option<&str>, column: &str) -> Accounts {
    let Some(stats) = stats else {
        return Accounts::Unknown;
    };
    let Ok(value) = serde_json::from_str::<serde_json::Value>(stats) else {
        return Accounts::Unknown;
    };
    let min = value["minValues"][column].as_str();
    let max = value["maxValues"][column].as_str();
    let nulls = value["nullCount"][column].as_i64().unwrap_or(0);
    match (min, max) {
        (Some(min), Some(max)) if nulls == 0 && min == max => Accounts::One(min.to_string()),
        (Some(min), Some(max)) => Accounts::Range(min.to_string(), max.to_string()),
        _ => Accounts::Unknown,
    }
}

/// A predicate matching the files that may hold rows of `slices`.
fn slices_predicate(layout: &SliceLayout, slices: &BTreeSet<SliceKey>) -> Predicate {
    Predicate::or_from(slices.iter().map(|s| {
        Predicate::and_from([
            Expression::column([layout.source.as_str()]).eq(Expression::literal(s.source.as_str())),
            Expression::column([layout.date.as_str()]).eq(Expression::literal(Scalar::Date(
                Date32Type::from_naive_date(s.date),
            ))),
            Expression::column([layout.account.as_str()])
                .eq(Expression::literal(s.account.as_str())),
        ])
    }))
}

/// Plan the removals for replacing `slices` in `table`.
pub(crate) async fn plan_removals(
    name: &str,
    table: &DeltaTable,
    layout: &SliceLayout,
    slices: &BTreeSet<SliceKey>,
) -> Result<Removal> {
    // (source, day) → accounts being replaced there.
    let mut wanted: HashMap<(&str, NaiveDate), HashSet<&str>> = HashMap::new();
    for s in slices {
        wanted
            .entry((s.source.as_str(), s.date))
            .or_default()
            .insert(s.account.as_str());
    }
    let snapshot = table.snapshot().map_err(|e| Error::delta(name, e))?;
    let predicate = Arc::new(slices_predicate(layout, slices));
    let log_store = table.log_store();
    let candidates: Vec<_> = snapshot
        .snapshot()
        .file_views(log_store.as_ref(), Some(predicate))
        .try_collect()
        .await
        .map_err(|e| Error::delta(name, e))?;
    let mut plan = Removal::default();
    for file in candidates {
        let partitions = file.partition_values_map();
        let Some(Some(source)) = partitions.get(&layout.source) else {
            continue;
        };
        let Some(Some(date_text)) = partitions.get(&layout.date) else {
            continue;
        };
        let Ok(date) = NaiveDate::parse_from_str(date_text, "%Y-%m-%d") else {
            continue;
        };
        let Some(accounts) = wanted.get(&(source.as_str(), date)) else {
            continue;
        };
        let rows = file.num_records().unwrap_or(0);
        let take = match accounts_of(file.stats().as_deref(), &layout.account) {
            Accounts::One(account) => {
                if accounts.contains(account.as_str()) {
                    plan.removes.push(file.remove_action(true));
                    plan.rows_removed += rows;
                }
                continue;
            }
            Accounts::Range(min, max) => accounts
                .iter()
                .any(|a| min.as_str() <= *a && *a <= max.as_str()),
            Accounts::Unknown => true,
        };
        if take {
            plan.removes.push(file.remove_action(true));
            plan.rows_removed += rows;
            plan.mixed.push(MixedFile {
                location: file.object_store_path(),
                source: source.clone(),
                date_days: Date32Type::from_naive_date(date),
            });
        }
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_account_files_are_recognised_from_stats() {
        let stats = r#"{"numRecords":3,"minValues":{"account_id":"a"},"maxValues":{"account_id":"a"},"nullCount":{"account_id":0}}"#;
        assert!(matches!(accounts_of(Some(stats), "account_id"), Accounts::One(a) if a == "a"));
        let stats =
            r#"{"numRecords":3,"minValues":{"account_id":"a"},"maxValues":{"account_id":"c"}}"#;
        assert!(matches!(
            accounts_of(Some(stats), "account_id"),
            Accounts::Range(..)
        ));
        assert!(matches!(accounts_of(None, "account_id"), Accounts::Unknown));
        assert!(matches!(
            accounts_of(Some("{}"), "account_id"),
            Accounts::Unknown
        ));
    }
}
