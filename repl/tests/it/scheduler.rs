//! `tidemark run`: syncs on its interval, serves metrics, refuses a second scheduler on the
//! same warehouse, and on SIGTERM finishes cleanly and releases its lease.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use connectors::sim::SimConfig;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn metrics(port: u16) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    use std::io::Write;
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    Some(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_syncs_serves_metrics_holds_its_lease_and_stops_on_sigterm() {
    let sim = connectors::sim::start_local(SimConfig {
        today: chrono::Utc::now().date_naive(),
        meta_job_polls: 1,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let project = tempfile::tempdir().unwrap();
    std::fs::write(
        project.path().join("tidemark.toml"),
        format!(
            "warehouse = \"wh\"\n\n[schedule]\nsync_every = \"1s\"\n\n[sources.meta]\nbase_url = \"{}\"\n\
             access_token = {{ env = \"SIM_META_TOKEN\" }}\naccounts = [\"1000000001\"]\nwindow_days = 7\npoll_interval = \"5ms\"\n",
            sim.base_url()
        ),
    )
    .unwrap();
    let tidemark = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tidemark"));
        cmd.env("RUST_LOG", "warn")
            .env_remove("TIDEMARK_WAREHOUSE")
            .env("TIDEMARK_PROJECT", project.path())
            .env("SIM_META_TOKEN", SimConfig::default().meta_token);
        cmd
    };
    let port = free_port();
    let mut scheduler = tidemark()
        .args(["run", "--metrics-addr", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Two syncs land (1 s apart), and the metrics say so.
    let deadline = Instant::now() + Duration::from_secs(120);
    let text = loop {
        let text = tokio::task::spawn_blocking(move || metrics(port))
            .await
            .unwrap();
        if let Some(t) = text.filter(|t| t.contains("tidemark_sync_runs_total{result=\"clean\"} 2"))
        {
            break t;
        }
        assert!(Instant::now() < deadline, "no second sync within 120 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        text.contains("tidemark_jobs_total{source=\"meta\",outcome=\"loaded\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("tidemark_freshness_lag_days{source=\"meta\",account=\"1000000001\"} 1"),
        "{text}"
    );

    // A second scheduler on the same warehouse is refused, naming the holder.
    let second = tidemark()
        .args([
            "run",
            "--metrics-addr",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .output()
        .unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("scheduler.lock is held by"), "{stderr}");

    // SIGTERM: the first one finishes and releases the lease.
    let killed = Command::new("kill")
        .args(["-TERM", &scheduler.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || scheduler.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "exit {status}");
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(
        !project.path().join("wh/_tidemark/scheduler.lock").exists(),
        "lease released"
    );
}
