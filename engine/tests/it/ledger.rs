//! The slice ledger read back: records in one-record files come from the Delta log's
//! statistics, records in packed files (after compaction) from the files themselves; either
//! way every record reads back as written (timestamps to the millisecond), locally and on S3.

use chrono::{DateTime, Days, NaiveDate, Timelike, Utc};
use engine::ledger::{self, SliceRecord};
use engine::maintenance::{self, CompactOptions, Settled};
use engine::Namespace;
use testdata::{Backend, BackendKind};

fn record(account: usize, date: NaiveDate, synced_at: DateTime<Utc>, rows: u64) -> SliceRecord {
    SliceRecord {
        source: "meta".into(),
        account: format!("act_{account}"),
        date,
        synced_at,
        run: format!("run-{}", synced_at.timestamp_micros()),
        source_table: "meta_ads_insights".into(),
        source_table_version: account as u64,
        table_version: 7,
        rows,
        settles_at: (date + Days::new(29))
            .and_time(chrono::NaiveTime::MIN)
            .and_utc(),
    }
}

/// `r` as the log's statistics keep it: timestamps to the millisecond.
fn to_millis(mut r: SliceRecord) -> SliceRecord {
    let ms = |t: DateTime<Utc>| {
        t.with_nanosecond(t.nanosecond() / 1_000_000 * 1_000_000)
            .unwrap()
    };
    r.synced_at = ms(r.synced_at);
    r.settles_at = ms(r.settles_at);
    r
}

fn sorted(mut v: Vec<SliceRecord>) -> Vec<SliceRecord> {
    v.sort_by(|a, b| (&a.source, &a.account, a.date).cmp(&(&b.source, &b.account, b.date)));
    v
}

async fn packed_and_single_record_files_read_alike(kind: BackendKind) {
    let warehouse = Backend::new(kind).open().await;
    let day = |d: u32| NaiveDate::from_ymd_opt(2026, 11, d).unwrap();
    // Micro- and sub-millisecond parts, to see what the statistics keep.
    let t0 = DateTime::from_timestamp_micros(1_795_000_000_123_456).unwrap();
    let mut expected = Vec::new();
    for (k, accounts) in [(0u32, 0..3usize), (1, 3..6)] {
        let records: Vec<_> = accounts
            .flat_map(|a| (1..=3).map(move |d| (a, d)))
            .map(|(a, d)| {
                record(
                    a,
                    day(d),
                    t0 + chrono::Duration::seconds(k.into()),
                    a as u64,
                )
            })
            .collect();
        ledger::record(&warehouse, &records, &format!("job-{k}"))
            .await
            .unwrap();
        expected.extend(records);
    }
    // Pack them (several records per file), then replace some and add one-record files.
    maintenance::compact(
        &warehouse,
        Namespace::System,
        ledger::SLICES,
        &CompactOptions {
            settled: Settled::before(day(30), 1),
            ..Default::default()
        },
        &|_, _| {},
    )
    .await
    .unwrap();
    let later: Vec<_> = [(1usize, 2u32), (4, 3), (9, 1)]
        .iter()
        .map(|&(a, d)| record(a, day(d), t0 + chrono::Duration::seconds(60), 40 + a as u64))
        .collect();
    ledger::record(&warehouse, &later, "job-later")
        .await
        .unwrap();
    expected.retain(|r| {
        !later
            .iter()
            .any(|l| l.account == r.account && l.date == r.date)
    });
    expected.extend(later);

    let read = sorted(ledger::read(&warehouse).await.unwrap());
    assert_eq!(read, sorted(expected.into_iter().map(to_millis).collect()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packed_and_single_record_files_read_alike_locally() {
    packed_and_single_record_files_read_alike(BackendKind::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packed_and_single_record_files_read_alike_on_s3() {
    packed_and_single_record_files_read_alike(BackendKind::S3).await;
}
