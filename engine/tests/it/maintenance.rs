//! Maintenance and history: compaction keeps every version's content and packs files (settled
//! days once), a sync racing compaction loses nothing, vacuum keeps what readable versions
//! need and names the versions it took, and the restatement audit's deltas add up.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type};
use engine::audit::{self, AuditRequest};
use engine::maintenance::{self, CompactOptions, Settled};
use engine::{Namespace, SliceKey, Warehouse, WarehouseSession};
use testdata::rows::{batch, day, slice_rows, Row};
use testdata::{Backend, BackendKind};

use crate::support::{read_rows, rows_at_version};

const TABLE: &str = "perf";

/// Days before the 5th are settled; the 5th on are inside the window.
fn options() -> CompactOptions {
    CompactOptions {
        settled: Settled::before(day(10), 5),
        ..Default::default()
    }
}

async fn replace(warehouse: &Warehouse, slices: &[SliceKey], rows: &[Row]) {
    warehouse
        .replace_slices(TABLE)
        .with_slices(slices.to_vec())
        .with_rows([batch(rows)])
        .await
        .unwrap();
}

/// Every row of the table at `version`, sorted.
async fn rows_at(warehouse: &Warehouse, version: u64) -> Vec<Row> {
    rows_at_version(warehouse, TABLE, version).await
}

async fn newest_version(warehouse: &Warehouse) -> u64 {
    let table = warehouse
        .open_table(Namespace::Tables, TABLE)
        .await
        .unwrap();
    table.version().unwrap() as u64
}

fn slices(accounts: &[&str], days: std::ops::RangeInclusive<u32>) -> Vec<SliceKey> {
    accounts
        .iter()
        .flat_map(|a| days.clone().map(move |d| SliceKey::new("meta", *a, day(d))))
        .collect()
}

async fn compaction_keeps_every_version_and_settled_days_are_packed_once(kind: BackendKind) {
    let warehouse = Backend::new(kind).open().await;
    // One commit per account and day: 4 files in each of 8 (source, day) partitions.
    for slice in slices(&["a1", "a2", "a3", "a4"], 1..=8) {
        replace(
            &warehouse,
            std::slice::from_ref(&slice),
            &slice_rows(&slice, 3, 1),
        )
        .await;
    }
    // Restate two accounts' window days.
    let restated = slices(&["a2", "a3"], 6..=8);
    let rows: Vec<Row> = restated.iter().flat_map(|s| slice_rows(s, 2, 2)).collect();
    replace(&warehouse, &restated, &rows).await;

    let newest = newest_version(&warehouse).await;
    let mut before = Vec::new();
    for version in 0..=newest {
        before.push(rows_at(&warehouse, version).await);
    }
    let report = maintenance::compact(&warehouse, Namespace::Tables, TABLE, &options(), &|_, _| {})
        .await
        .unwrap();
    assert_eq!(report.files_before, 32);
    assert_eq!(report.settled_partitions, 4, "{report:?}");
    assert_eq!(report.window_partitions, 4, "{report:?}");
    assert_eq!(report.files_after, 8, "{report:?}");
    assert!(report.skipped.is_empty());
    // Content at every earlier version and now is what it was.
    for (version, rows) in before.iter().enumerate() {
        assert_eq!(
            &rows_at(&warehouse, version as u64).await,
            rows,
            "version {version}"
        );
    }
    assert_eq!(&read_rows(&warehouse, TABLE).await, before.last().unwrap());

    // Settled days are left alone from now on; a sync re-splits a window day it replaces.
    let again = maintenance::compact(&warehouse, Namespace::Tables, TABLE, &options(), &|_, _| {})
        .await
        .unwrap();
    assert_eq!(
        (
            again.settled_partitions,
            again.window_partitions,
            again.version
        ),
        (0, 0, None),
        "{again:?}"
    );
    let slice = SliceKey::new("meta", "a1", day(7));
    replace(
        &warehouse,
        std::slice::from_ref(&slice),
        &slice_rows(&slice, 5, 3),
    )
    .await;
    let mut expected: Vec<Row> = before
        .last()
        .unwrap()
        .iter()
        .filter(|r| r.slice != slice)
        .cloned()
        .chain(slice_rows(&slice, 5, 3))
        .collect();
    expected.sort();
    assert_eq!(read_rows(&warehouse, TABLE).await, expected);
    let third = maintenance::compact(&warehouse, Namespace::Tables, TABLE, &options(), &|_, _| {})
        .await
        .unwrap();
    assert_eq!(
        (third.settled_partitions, third.window_partitions),
        (0, 1),
        "{third:?}"
    );
    assert_eq!(read_rows(&warehouse, TABLE).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_keeps_every_version_local() {
    compaction_keeps_every_version_and_settled_days_are_packed_once(BackendKind::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_keeps_every_version_s3() {
    compaction_keeps_every_version_and_settled_days_are_packed_once(BackendKind::S3).await;
}

async fn sync_racing_compaction_loses_nothing(kind: BackendKind, generations: i64) {
    let warehouse = Backend::new(kind).open().await;
    let all = slices(&["a1", "a2", "a3", "a4"], 5..=7);
    let mut current: BTreeMap<SliceKey, Vec<Row>> = BTreeMap::new();
    for slice in &all {
        let rows = slice_rows(slice, 2, 1);
        replace(&warehouse, std::slice::from_ref(slice), &rows).await;
        current.insert(slice.clone(), rows);
    }
    let done = Arc::new(AtomicBool::new(false));
    let compactor = {
        let warehouse = warehouse.clone();
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            let (mut commits, mut skipped) = (0, 0);
            while !done.load(Ordering::SeqCst) {
                let report = maintenance::compact(
                    &warehouse,
                    Namespace::Tables,
                    TABLE,
                    &options(),
                    &|_, _| {},
                )
                .await
                .unwrap();
                commits += usize::from(report.version.is_some());
                skipped += report.skipped.len();
            }
            (commits, skipped)
        })
    };
    // The sync side: one account's window at a time, each with new rows (a row more or less).
    for generation in 2..=generations {
        let account = ["a1", "a2", "a3", "a4"][generation as usize % 4];
        let chosen: Vec<SliceKey> = all
            .iter()
            .filter(|s| s.account == account)
            .cloned()
            .collect();
        let rows: Vec<Row> = chosen
            .iter()
            .flat_map(|s| slice_rows(s, 1 + generation as usize % 3, generation))
            .collect();
        replace(&warehouse, &chosen, &rows).await;
        for slice in &chosen {
            current.insert(
                slice.clone(),
                rows.iter().filter(|r| &r.slice == slice).cloned().collect(),
            );
        }
    }
    done.store(true, Ordering::SeqCst);
    let (commits, skipped) = compactor.await.unwrap();
    let mut expected: Vec<Row> = current.into_values().flatten().collect();
    expected.sort();
    assert_eq!(read_rows(&warehouse, TABLE).await, expected);
    println!("compaction committed {commits} times, skipped {skipped} partitions while syncing");
    assert!(
        commits > 0,
        "compaction never got a commit in: the race was not exercised"
    );
    // Every version in between holds whole slices only (no doubled or emptied slice).
    let newest = newest_version(&warehouse).await;
    for version in 0..=newest {
        let rows = rows_at(&warehouse, version).await;
        let mut per_slice: BTreeMap<&SliceKey, BTreeSet<i64>> = BTreeMap::new();
        for row in &rows {
            per_slice
                .entry(&row.slice)
                .or_default()
                .insert(row.generation);
        }
        for (slice, generations) in per_slice {
            assert_eq!(
                generations.len(),
                1,
                "version {version}: {slice} mixes generations {generations:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_racing_compaction_loses_nothing_local() {
    sync_racing_compaction_loses_nothing(BackendKind::Local, 30).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_racing_compaction_loses_nothing_s3() {
    sync_racing_compaction_loses_nothing(BackendKind::S3, 12).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vacuum_keeps_what_readable_versions_need_and_names_what_it_took() {
    let warehouse = Backend::new(BackendKind::Local).open().await;
    let slice = SliceKey::new("meta", "a1", day(3));
    let other = SliceKey::new("meta", "a2", day(3));
    replace(
        &warehouse,
        std::slice::from_ref(&other),
        &slice_rows(&other, 2, 1),
    )
    .await;
    // Versions 1–3 each replace `slice`, removing the previous version's file.
    for generation in 1..=3 {
        replace(
            &warehouse,
            std::slice::from_ref(&slice),
            &slice_rows(&slice, 2, generation),
        )
        .await;
    }
    // Files removed before this pause age past a 3 s retention; later ones do not.
    tokio::time::sleep(Duration::from_secs(4)).await;
    for generation in 4..=5 {
        replace(
            &warehouse,
            std::slice::from_ref(&slice),
            &slice_rows(&slice, 2, generation),
        )
        .await;
    }
    let newest = newest_version(&warehouse).await;
    let mut before = BTreeMap::new();
    for version in 0..=newest {
        before.insert(version, rows_at(&warehouse, version).await);
    }
    let retention = Duration::from_secs(3);
    let refused = maintenance::vacuum(
        &warehouse,
        Namespace::Tables,
        TABLE,
        retention,
        false,
        false,
    )
    .await
    .unwrap_err();
    assert!(
        refused.to_string().contains("shorter than the minimum"),
        "{refused}"
    );

    let dry = maintenance::vacuum(&warehouse, Namespace::Tables, TABLE, retention, true, true)
        .await
        .unwrap();
    // The files of generations 1 and 2 of `slice` (removed by versions 2 and 3).
    assert_eq!(dry.files.len(), 2, "{dry:?}");
    assert_eq!(
        rows_at(&warehouse, 1).await,
        before[&1],
        "a dry run deletes nothing"
    );

    let report = maintenance::vacuum(&warehouse, Namespace::Tables, TABLE, retention, false, true)
        .await
        .unwrap();
    assert_eq!(report.files, dry.files);
    assert_eq!(report.oldest_readable_version, Some(3));
    // Every version from the oldest readable one on reads exactly as before.
    for version in 3..=newest {
        assert_eq!(
            rows_at(&warehouse, version).await,
            before[&version],
            "version {version}"
        );
    }
    // Older versions are refused by name, in SQL too.
    let session = WarehouseSession::new(warehouse.clone()).await.unwrap();
    for version in 0..3 {
        let Err(error) = session.table_at_version(TABLE, version).await else {
            panic!("version {version} was vacuumed but opened");
        };
        let text = error.to_string();
        assert!(
            text.contains(&format!("version {version} can no longer be read"))
                && text.contains("oldest readable version is 3"),
            "{text}"
        );
    }
}

/// Per (source, account): the day's total clicks at each version that changed it.
async fn clicks_by_account(warehouse: &Warehouse, version: u64, d: u32) -> BTreeMap<String, i64> {
    let rows = rows_at(warehouse, version).await;
    let mut totals = BTreeMap::new();
    for row in rows.iter().filter(|r| r.slice.date == day(d)) {
        *totals.entry(row.slice.account.clone()).or_insert(0) += row.clicks;
    }
    totals
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restatement_deltas_add_up_to_last_minus_first() {
    let warehouse = Backend::new(BackendKind::Local).open().await;
    let accounts = ["a1", "a2", "a3"];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    // Twelve syncs of day 4 (and day 5, which the audit of day 4 must ignore): each restates
    // some accounts with a random number of rows (0 rows: the account's rows vanished).
    for generation in 1..=12 {
        let chosen: Vec<SliceKey> = accounts
            .iter()
            .filter(|_| generation == 1 || next() % 2 == 0)
            .flat_map(|a| {
                [
                    SliceKey::new("meta", *a, day(4)),
                    SliceKey::new("meta", *a, day(5)),
                ]
            })
            .collect();
        if chosen.is_empty() {
            continue;
        }
        let rows: Vec<Row> = chosen
            .iter()
            .flat_map(|s| slice_rows(s, (next() % 4) as usize, generation))
            .collect();
        replace(&warehouse, &chosen, &rows).await;
        if generation == 6 {
            // A compaction in the middle changes files, not numbers: no audit row.
            maintenance::compact(&warehouse, Namespace::Tables, TABLE, &options(), &|_, _| {})
                .await
                .unwrap();
        }
    }
    let request = AuditRequest {
        table: TABLE.into(),
        day: day(4),
        source: None,
        account: None,
    };
    let batches = audit::restatements(&warehouse, &request).await.unwrap();
    // The truth, version by version.
    let newest = newest_version(&warehouse).await;
    let mut first: BTreeMap<String, i64> = BTreeMap::new();
    let mut last: BTreeMap<String, i64> = BTreeMap::new();
    for version in 0..=newest {
        let totals = clicks_by_account(&warehouse, version, 4).await;
        for (account, clicks) in &totals {
            first.entry(account.clone()).or_insert(*clicks);
        }
        for account in first.keys() {
            last.insert(account.clone(), totals.get(account).copied().unwrap_or(0));
        }
    }
    let mut sums: BTreeMap<String, i64> = BTreeMap::new();
    let mut audited_last: BTreeMap<String, i64> = BTreeMap::new();
    let mut rows = 0;
    for b in &batches {
        let accounts =
            arrow::compute::cast(b.column_by_name("account_id").unwrap(), &DataType::Utf8).unwrap();
        let accounts = accounts.as_string::<i32>();
        let clicks = b
            .column_by_name("clicks")
            .unwrap()
            .as_primitive::<Int64Type>();
        let deltas = b
            .column_by_name("clicks_delta")
            .unwrap()
            .as_primitive::<Int64Type>();
        let changes = b.column_by_name("change").unwrap();
        let changes = changes.as_string::<i32>();
        for i in 0..b.num_rows() {
            rows += 1;
            let account = accounts.value(i).to_string();
            if changes.value(i) == "first report" {
                assert!(deltas.is_null(i), "a first report has no delta");
            } else {
                *sums.entry(account.clone()).or_insert(0) += deltas.value(i);
            }
            audited_last.insert(account, clicks.value(i));
        }
    }
    assert!(
        rows > accounts.len(),
        "the audit saw restatements: {rows} rows"
    );
    for (account, first_clicks) in &first {
        assert_eq!(
            sums.get(account).copied().unwrap_or(0),
            last[account] - first_clicks,
            "{account}: deltas must sum to last - first"
        );
        assert_eq!(
            audited_last[account], last[account],
            "{account}: last value"
        );
    }
    assert_eq!(rows_total(&batches), rows);
}

fn rows_total(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}
