//! `flight`: DoGet throughput of `tidemark serve`'s service on loopback for a large
//! mart-shaped table (one file per day-slice), fetched as one stream and as the parallel
//! day-split endpoints the server offers, against the Python ADBC client's end-to-end time
//! for the same query in the same run (pyarrow table in hand), and the same query asked again
//! of a server with the result cache on (a dashboard refreshing). Prints MB/s of Arrow data,
//! rows/s and the ratios; the target is 1 GB/s.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use arrow::array::{Date32Array, Decimal128Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Date32Type, Field, Schema};
use arrow_flight::flight_service_server::FlightServiceServer;
use arrow_flight::sql::client::FlightSqlServiceClient;
use chrono::NaiveDate;
use engine::{SliceKey, Warehouse};
use futures::TryStreamExt;
use sql::flight::auth::{hash_password, Authenticator};
use sql::flight::config::{RoleName, ServeConfig, UserConfig};
use sql::flight::TidemarkFlightSql;
use tonic::transport::Channel;

const USER: &str = "bench";
const PASSWORD: &str = "bench-password";
const QUERY: &str = "SELECT * FROM big";

/// A day's rows for one account: campaign ids and names, counts and money.
fn day_rows(day: NaiveDate, account: usize, rows: usize) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("source", DataType::Utf8, false),
        Field::new("account_id", DataType::Utf8, false),
        Field::new("date", DataType::Date32, false),
        Field::new("campaign_id", DataType::Utf8, true),
        Field::new("campaign_name", DataType::Utf8, true),
        Field::new("impressions", DataType::Int64, true),
        Field::new("clicks", DataType::Int64, true),
        Field::new("installs", DataType::Int64, true),
        Field::new("spend", DataType::Decimal128(20, 6), true),
    ]));
    let n = rows as i64;
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec!["meta"; rows])),
            Arc::new(StringArray::from(vec![format!("act{account}"); rows])),
            Arc::new(Date32Array::from(vec![
                Date32Type::from_naive_date(day);
                rows
            ])),
            Arc::new(StringArray::from_iter_values(
                (0..rows).map(|i| format!("c{}", i % 500)),
            )),
            Arc::new(StringArray::from_iter_values(
                (0..rows).map(|i| format!("campaign number {}", i % 500)),
            )),
            Arc::new(Int64Array::from_iter_values(
                (0..n).map(|i| i * 7 % 100_000),
            )),
            Arc::new(Int64Array::from_iter_values((0..n).map(|i| i * 3 % 1_000))),
            Arc::new(Int64Array::from_iter_values((0..n).map(|i| i % 17))),
            Arc::new(
                Decimal128Array::from_iter_values((0..n).map(|i| i128::from(i) * 1_250_000))
                    .with_precision_and_scale(20, 6)
                    .expect("decimal"),
            ),
        ],
    )
    .expect("bench rows")
}

/// Bytes of Arrow data in a batch (buffer bytes, not allocation capacity).
pub(crate) fn arrow_bytes(batch: &RecordBatch) -> u64 {
    batch
        .columns()
        .iter()
        .map(|c| c.to_data().get_slice_memory_size().unwrap_or(0) as u64)
        .sum()
}

pub(crate) async fn start_server(
    warehouse: Warehouse,
    split_rows: u64,
    result_cache: usize,
) -> anyhow::Result<SocketAddr> {
    let users = BTreeMap::from([(
        USER.to_string(),
        UserConfig {
            password_hash: hash_password(PASSWORD).map_err(anyhow::Error::msg)?,
            role: RoleName::Admin,
            grants: vec!["*".into()],
        },
    )]);
    let config = ServeConfig {
        split_rows,
        memory_limit: sql::flight::config::ByteSize(8 << 30),
        result_cache: sql::flight::config::ByteSize(result_cache),
        ..Default::default()
    };
    let auth = Arc::new(Authenticator::new(&users, config.token_ttl).map_err(anyhow::Error::msg)?);
    let service = TidemarkFlightSql::new(warehouse, auth, config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(FlightServiceServer::new(service))
            .serve_with_incoming(
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            )
            .await;
    });
    Ok(addr)
}

pub(crate) async fn client(addr: SocketAddr) -> anyhow::Result<FlightSqlServiceClient<Channel>> {
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let mut client = FlightSqlServiceClient::new(channel);
    client.handshake(USER, PASSWORD).await?;
    Ok(client)
}

/// Fetch the query's result over every endpoint in parallel; (endpoints, rows, bytes, time).
/// Timed from the statement to the last batch on an open, logged-in connection, as the
/// Python peer is.
async fn fetch(addr: SocketAddr) -> anyhow::Result<(usize, u64, u64, Duration)> {
    let mut planner = client(addr).await?;
    let started = Instant::now();
    let (endpoints, rows, bytes) = fetch_on(&mut planner, QUERY).await?;
    Ok((endpoints, rows, bytes, started.elapsed()))
}

/// Run `sql` on a logged-in connection and fetch every endpoint in parallel, as a BI client
/// does; (endpoints, rows, bytes of Arrow data).
pub(crate) async fn fetch_on(
    planner: &mut FlightSqlServiceClient<Channel>,
    sql: &str,
) -> anyhow::Result<(usize, u64, u64)> {
    let info = planner.execute(sql.to_string(), None).await?;
    let mut tasks = Vec::new();
    for endpoint in info.endpoint.clone() {
        let mut c = planner.clone();
        tasks.push(tokio::spawn(async move {
            let ticket = endpoint.ticket.context("endpoint without ticket")?;
            let mut stream = c.do_get(ticket).await?;
            let (mut rows, mut bytes) = (0u64, 0u64);
            while let Some(batch) = stream.try_next().await? {
                rows += batch.num_rows() as u64;
                bytes += arrow_bytes(&batch);
            }
            anyhow::Ok((rows, bytes))
        }));
    }
    let (mut rows, mut bytes) = (0, 0);
    for task in tasks {
        let (r, b) = task.await??;
        rows += r;
        bytes += b;
    }
    Ok((info.endpoint.len(), rows, bytes))
}

/// Like [`fetch`] over one endpoint, but the client reads the IPC messages without building
/// Arrow arrays (rows from each message's header): what the server and loopback deliver,
/// without the Rust decoder's copies and validation competing for the same cores.
async fn fetch_undecoded(addr: SocketAddr) -> anyhow::Result<(u64, Duration)> {
    let mut planner = client(addr).await?;
    let token = planner
        .token()
        .cloned()
        .context("no token after the handshake")?;
    let started = Instant::now();
    let info = planner.execute(QUERY.to_string(), None).await?;
    let mut rows = 0u64;
    for endpoint in info.endpoint {
        let ticket = endpoint.ticket.context("endpoint without ticket")?;
        let mut request = tonic::Request::new(ticket);
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse()?);
        let mut flight = planner.inner().clone();
        // Read on a runtime worker, as `fetch` does.
        rows += tokio::spawn(async move {
            let mut stream = flight.do_get(request).await?.into_inner();
            let mut rows = 0u64;
            while let Some(data) = stream.message().await? {
                let message = arrow::ipc::root_as_message(&data.data_header)
                    .map_err(|e| anyhow::anyhow!("bad IPC header: {e}"))?;
                if let Some(batch) = message.header_as_record_batch() {
                    rows += batch.length() as u64;
                }
            }
            anyhow::Ok(rows)
        })
        .await??;
    }
    Ok((rows, started.elapsed()))
}

/// The Python ADBC client's time to run the query into a pyarrow table, measured in Python.
fn adbc_seconds(addr: SocketAddr) -> Option<(f64, u64)> {
    let script = format!(
        "import time, adbc_driver_flightsql.dbapi as f\n\
         c = f.connect('grpc://{addr}', db_kwargs={{'username': '{USER}', 'password': '{PASSWORD}'}}, autocommit=True)\n\
         cur = c.cursor(); cur.execute('SELECT 1'); cur.fetchall()\n\
         t = time.perf_counter(); cur.execute('{QUERY}'); table = cur.fetch_arrow_table(); t = time.perf_counter() - t\n\
         print(t, table.num_rows)\n"
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "python ADBC peer unavailable: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.split_whitespace();
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

pub async fn run(rows: usize, days: u32, dir: std::path::PathBuf) -> anyhow::Result<()> {
    let warehouse =
        Warehouse::open(dir.to_str().context("utf-8 path")?, &Default::default()).await?;
    let accounts = 4;
    let per_slice = rows / (days as usize * accounts);
    println!(
        "building table `big`: {days} days × {accounts} accounts × {per_slice} rows = {} rows",
        per_slice * days as usize * accounts
    );
    let start = NaiveDate::from_ymd_opt(2026, 9, 1).expect("date");
    for d in 0..days {
        let day = start + chrono::Days::new(u64::from(d));
        let batches: Vec<RecordBatch> =
            (0..accounts).map(|a| day_rows(day, a, per_slice)).collect();
        warehouse
            .replace_slices("big")
            .with_slices((0..accounts).map(|a| SliceKey::new("meta", format!("act{a}"), day)))
            .with_rows(batches)
            .await?;
    }

    // The same query collected in this process without Flight: what the scan itself costs,
    // so the Flight figures can be read as transport overhead on top of it.
    let mut best_scan = Duration::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        let session = engine::WarehouseSession::new(warehouse.clone()).await?;
        let mut stream = session.sql(QUERY).await?.execute_stream().await?;
        while let Some(batch) = stream.try_next().await? {
            std::hint::black_box(batch.num_rows());
        }
        best_scan = best_scan.min(started.elapsed());
    }

    // Every fetch from these two runs the query: their result caches are off.
    let single = start_server(warehouse.clone(), u64::MAX, 0).await?;
    let split = start_server(warehouse.clone(), (rows as u64 / 8).max(1), 0).await?;
    // Big enough to keep this result (a result may take a quarter of the cache).
    let cached = start_server(warehouse.clone(), u64::MAX, 4 << 30).await?;
    // Warm the page cache and the table handles once, and fill the result cache.
    fetch(single).await?;
    fetch(cached).await?;
    let mut best_single = Duration::MAX;
    let mut best_split = Duration::MAX;
    let mut best_cached = Duration::MAX;
    let mut best_single_raw = Duration::MAX;
    let mut best_cached_raw = Duration::MAX;
    let mut totals = (0, 0, 0);
    for _ in 0..3 {
        let (_, r, b, t) = fetch(single).await?;
        best_single = best_single.min(t);
        let (e, _, _, t) = fetch(split).await?;
        best_split = best_split.min(t);
        let (_, cr, cb, t) = fetch(cached).await?;
        anyhow::ensure!(
            (cr, cb) == (r, b),
            "the cached result differs: {cr} rows, {cb} bytes"
        );
        best_cached = best_cached.min(t);
        for (addr, best) in [
            (single, &mut best_single_raw),
            (cached, &mut best_cached_raw),
        ] {
            let (rows, t) = fetch_undecoded(addr).await?;
            anyhow::ensure!(rows == r, "{rows} rows undecoded, {r} decoded");
            *best = (*best).min(t);
        }
        totals = (e, r, b);
    }
    let (endpoints, rows_got, bytes) = totals;
    let mbps = |t: Duration| bytes as f64 / 1e6 / t.as_secs_f64();
    println!(
        "result: {rows_got} rows, {:.0} MB of Arrow data",
        bytes as f64 / 1e6
    );
    let one_stream = "DoGet, one stream:";
    let split_label = format!("DoGet, {endpoints} endpoints at once:");
    let rows_line = |label: &str, t: Duration, note: &str| {
        println!(
            "{label:<50} {:>8.1} ms  {:>6.0} MB/s  {:>5.1} M rows/s  {note}",
            t.as_secs_f64() * 1e3,
            mbps(t),
            rows_got as f64 / 1e6 / t.as_secs_f64()
        )
    };
    rows_line(
        "scan in process (no Flight)",
        best_scan,
        "(the most a query run can reach here)",
    );
    println!("running the query (result cache off), client decoding into RecordBatches:");
    rows_line(one_stream, best_single, "");
    rows_line(&split_label, best_split, "");
    println!("repeated query from the result cache, client decoding:");
    rows_line(one_stream, best_cached, "");
    println!("the client only counting IPC bytes and rows (the server and loopback, without the Rust decoder on the same 2 cores):");
    rows_line("DoGet, one stream, running the query:", best_single_raw, "");
    rows_line(
        "DoGet, one stream, from the result cache:",
        best_cached_raw,
        "",
    );
    println!(
        "target 1000 MB/s: running the query {:.2}×, from the result cache {:.2}× (decoded) / {:.2}× (undecoded)",
        mbps(best_single.min(best_split)) / 1000.0,
        mbps(best_cached) / 1000.0,
        mbps(best_cached_raw) / 1000.0
    );
    match adbc_seconds(single) {
        Some((seconds, n)) => println!(
            "peer, Python ADBC into pyarrow (one stream): {:>8.1} ms for {n} rows → Rust client is {:.2}× faster",
            seconds * 1e3,
            seconds / best_single.as_secs_f64()
        ),
        None => println!("peer, Python ADBC: not measured (pip install adbc-driver-flightsql pyarrow)"),
    }
    Ok(())
}
