//! Queries on a Ballista cluster run by `tidemark ballista`: a scheduler and two executors as
//! child processes on loopback. The benchmark's query suite (time travel and the ratio
//! functions included) answers alike on the cluster and in process, and a query on the
//! cluster reads one snapshot per table while replaces commit.

use std::collections::BTreeMap;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use engine::distributed::QueryEngine;
use engine::{SliceKey, Warehouse, WarehouseSession};
use testdata::rows::{batch, day, slice_rows};
use testdata::Backend;

use crate::support::{free_port, run_ok, tidemark};

fn wait_for_port(port: u16, what: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before listening: {status}");
        }
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `tidemark ballista scheduler` and two `tidemark ballista executor`s, killed on drop.
pub(crate) struct Cluster {
    children: Vec<Child>,
    port: u16,
    _work: tempfile::TempDir,
}

impl Cluster {
    pub(crate) fn start(backend: &Backend) -> Cluster {
        let work = tempfile::tempdir().unwrap();
        let port = free_port();
        let spawn = |args: &[String]| -> Child {
            tidemark(backend)
                .arg("ballista")
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start tidemark ballista")
        };
        let mut scheduler = spawn(&[
            "scheduler".into(),
            "--bind".into(),
            format!("127.0.0.1:{port}"),
        ]);
        wait_for_port(port, "the scheduler", &mut scheduler);
        let mut children = vec![scheduler];
        for i in 0..2 {
            let (flight, grpc) = (free_port(), free_port());
            let mut executor = spawn(&[
                "executor".into(),
                "--scheduler".into(),
                format!("127.0.0.1:{port}"),
                "--port".into(),
                flight.to_string(),
                "--grpc-port".into(),
                grpc.to_string(),
                "--concurrent-tasks".into(),
                "2".into(),
                "--work-dir".into(),
                work.path()
                    .join(format!("executor{i}"))
                    .display()
                    .to_string(),
            ]);
            wait_for_port(flight, "an executor", &mut executor);
            children.push(executor);
        }
        Cluster {
            children,
            port,
            _work: work,
        }
    }

    pub(crate) fn engine(&self) -> QueryEngine {
        QueryEngine::Ballista {
            host: "127.0.0.1".into(),
            port: self.port,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("ballista://127.0.0.1:{}", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A result as text rows, floats to 12 significant digits: sums of floats come out of a
/// cluster in another order, and differ from the local answer in the last bits only.
fn rows(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for b in batches {
        let columns: Vec<Vec<String>> = b
            .columns()
            .iter()
            .map(|column| match column.data_type() {
                DataType::Float64 => {
                    let values = column.as_primitive::<Float64Type>();
                    (0..values.len())
                        .map(|i| {
                            if values.is_null(i) {
                                "NULL".to_string()
                            } else {
                                format!("{:.11e}", values.value(i))
                            }
                        })
                        .collect()
                }
                _ => {
                    let formatter =
                        ArrayFormatter::try_new(column.as_ref(), &FormatOptions::default())
                            .unwrap();
                    (0..column.len())
                        .map(|i| formatter.value(i).to_string())
                        .collect()
                }
            })
            .collect();
        for i in 0..b.num_rows() {
            rows.push(columns.iter().map(|c| c[i].clone()).collect());
        }
    }
    rows
}

async fn answer(session: &WarehouseSession, statement: &str) -> Vec<Vec<String>> {
    let batches = sql::run_statement(session, statement)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {}", e.render(statement)));
    rows(&batches)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bench_suite_answers_alike_on_ballista_and_in_process() {
    use tidemark_bench::suite::{generate, statements, write_accounts_seed, Size};
    let backend = Backend::local();
    let warehouse = backend.open().await;
    let size = Size::named("tiny").unwrap();
    let versions = generate(&warehouse, &size).await.unwrap();
    let seeds = tempfile::tempdir().unwrap();
    write_accounts_seed(seeds.path(), &size).unwrap();
    engine::marts::load_seeds(&warehouse, &seeds.path().join("seeds"))
        .await
        .unwrap();
    let cluster = Cluster::start(&backend);

    let local = WarehouseSession::new(warehouse.clone()).await.unwrap();
    let remote = WarehouseSession::new(warehouse.clone().with_query_engine(cluster.engine()))
        .await
        .unwrap();
    let mut suite: Vec<(&str, String)> = statements(&size, versions)
        .into_iter()
        .map(|(name, sql, _)| (name, sql))
        .collect();
    suite.extend([
        (
            "ratio functions",
            "SELECT source, ctr(clicks, impressions) AS ctr, cpc(spend, clicks) AS cpc, \
             roas(revenue, spend) AS roas FROM ad_performance GROUP BY source ORDER BY source"
                .to_string(),
        ),
        (
            "time travel by timestamp",
            "SELECT count(*) AS n FROM ad_performance TIMESTAMP AS OF '2100-01-01 00:00:00'"
                .to_string(),
        ),
        (
            // No sync wrote the ledger here: its empty view travels as an in-memory table.
            "the slice ledger",
            "SELECT count(*) AS slices, max(settled) AS settled FROM tidemark.slices".to_string(),
        ),
        (
            "restatements()",
            "SELECT * FROM restatements('ad_performance', date => '2026-06-03', source => 'meta') \
             ORDER BY 1, 2"
                .to_string(),
        ),
        (
            "maturity() and projected()",
            "SELECT c.source, c.age_days, c.days_observed, p.n FROM maturity('ad_performance', \
             'clicks') c JOIN (SELECT source, count(*) AS n FROM projected('ad_performance', \
             'clicks', by => 'account', since => '2026-06-01') GROUP BY source) p \
             ON p.source = c.source ORDER BY 1, 2"
                .to_string(),
        ),
    ]);
    for (name, statement) in &suite {
        let expected = answer(&local, statement).await;
        let frame = remote.sql(statement).await;
        if let Ok(frame) = frame {
            // Plain queries must really run on the cluster, not fall back to this process.
            let plan = frame.create_physical_plan().await.unwrap();
            assert_eq!(plan.name(), "DistributedQueryExec", "{name} ran in process");
        }
        let got = answer(&remote, statement).await;
        assert!(!expected.is_empty(), "{name}: no rows to compare");
        assert_eq!(got, expected, "{name} answers differently on Ballista");
    }

    // The command line: --engine reaches the same cluster.
    let query =
        "SELECT source, sum(clicks) AS clicks FROM ad_performance GROUP BY source ORDER BY source";
    let on_cluster = run_ok(
        tidemark(&backend)
            .args(["sql", "--format", "csv", "--engine", &cluster.url(), "-c"])
            .arg(query),
    );
    let in_process = run_ok(
        tidemark(&backend)
            .args(["sql", "--format", "csv", "-c"])
            .arg(query),
    );
    assert_eq!(
        String::from_utf8_lossy(&on_cluster.stdout),
        String::from_utf8_lossy(&in_process.stdout)
    );
}

#[test]
fn a_bad_engine_is_named_with_what_to_use() {
    let backend = Backend::local();
    let out = tidemark(&backend)
        .args(["sql", "--engine", "spark://h:1", "-c", "SELECT 1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("spark://h:1") && stderr.contains("ballista://HOST:PORT"),
        "{stderr}"
    );
}

const TABLE: &str = "perf";

/// Per slice: (rows, lowest generation, highest generation).
type State = BTreeMap<SliceKey, (i64, i64, i64)>;

fn rows_for(generation: i64) -> usize {
    1 + (generation as usize % 4)
}

async fn observe(session: &WarehouseSession) -> State {
    let batches = session
        .sql(&format!(
            "SELECT source, account_id, CAST(date AS VARCHAR) AS day, count(*) AS n, \
             min(generation) AS lo, max(generation) AS hi FROM {TABLE} GROUP BY 1, 2, 3"
        ))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let mut state = State::new();
    for b in &batches {
        let text = |i: usize| {
            arrow::compute::cast(b.column(i), &DataType::Utf8)
                .unwrap()
                .as_string::<i32>()
                .clone()
        };
        let (sources, accounts, days) = (text(0), text(1), text(2));
        for i in 0..b.num_rows() {
            let key = SliceKey::new(
                sources.value(i),
                accounts.value(i),
                days.value(i).parse().unwrap(),
            );
            let int = |c: usize| b.column(c).as_primitive::<Int64Type>().value(i);
            state.insert(key, (int(3), int(4), int(5)));
        }
    }
    state
}

async fn replace(warehouse: &Warehouse, slices: &[SliceKey], generation: i64) {
    let rows: Vec<_> = slices
        .iter()
        .flat_map(|s| slice_rows(s, rows_for(generation), generation))
        .collect();
    warehouse
        .replace_slices(TABLE)
        .with_slices(slices.to_vec())
        .with_rows([batch(&rows)])
        .await
        .unwrap();
}

/// The engine's isolation check, with the readers' queries on the cluster: whatever a query
/// returns while replaces commit is a state some commit produced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_on_ballista_reads_one_snapshot_while_replaces_commit() {
    let backend = Backend::local();
    let warehouse = backend.open().await;
    let slices: Vec<SliceKey> = ["a1", "a2", "a3"]
        .iter()
        .flat_map(|a| (1..=3).map(move |d| SliceKey::new("meta", *a, day(d))))
        .collect();
    replace(&warehouse, &slices, 1).await;
    let mut current: BTreeMap<SliceKey, i64> = slices.iter().map(|s| (s.clone(), 1)).collect();
    let committed = Arc::new(Mutex::new(vec![current.clone()]));
    let cluster = Cluster::start(&backend);
    let done = Arc::new(AtomicBool::new(false));

    let reader = {
        let warehouse = warehouse.clone().with_query_engine(cluster.engine());
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            let session = WarehouseSession::new(warehouse).await.unwrap();
            let mut seen = Vec::new();
            while !done.load(Ordering::SeqCst) {
                seen.push(observe(&session).await);
            }
            seen.push(observe(&session).await);
            seen
        })
    };
    let mut generation = 1;
    let started = Instant::now();
    while generation < 6 || (started.elapsed() < Duration::from_secs(60) && generation < 40) {
        generation += 1;
        let chosen: Vec<SliceKey> = slices
            .iter()
            .enumerate()
            .filter(|(i, _)| (*i as i64 + generation) % 2 == 0)
            .map(|(_, s)| s.clone())
            .collect();
        for s in &chosen {
            current.insert(s.clone(), generation);
        }
        committed.lock().unwrap().push(current.clone());
        replace(&warehouse, &chosen, generation).await;
        if reader.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done.store(true, Ordering::SeqCst);
    let seen = reader.await.unwrap();

    let valid: Vec<State> = committed
        .lock()
        .unwrap()
        .iter()
        .map(|state| {
            state
                .iter()
                .map(|(k, &g)| (k.clone(), (rows_for(g) as i64, g, g)))
                .collect()
        })
        .collect();
    let distinct: std::collections::BTreeSet<_> = seen.iter().map(|s| format!("{s:?}")).collect();
    for state in &seen {
        assert!(
            valid.contains(state),
            "a query on the cluster saw a state no commit produced: {state:?}"
        );
    }
    eprintln!(
        "{} observations on Ballista over {} commits ({} distinct states), all committed",
        seen.len(),
        generation,
        distinct.len()
    );
    assert!(seen.len() >= 3, "the reader ran {} queries", seen.len());
}
