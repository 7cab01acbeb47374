//! Running the `tidemark` binary in tests.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use testdata::Backend;

/// How long a child may take to reach a failpoint.
const FAILPOINT_TIMEOUT: Duration = Duration::from_secs(120);

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `tidemark` command aimed at `backend`.
pub fn tidemark(backend: &Backend) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tidemark"));
    cmd.envs(backend.env())
        .env_remove("TIDEMARK_FAILPOINT")
        .env("RUST_LOG", "warn");
    cmd
}

/// Run to completion; panic with its stderr when it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run tidemark");
    assert!(
        out.status.success(),
        "tidemark failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Start `cmd` with `failpoint` armed, wait until it is frozen there, and SIGKILL it.
pub fn kill_at_failpoint(cmd: &mut Command, failpoint: &str) {
    let mut child = hold_at_failpoint(cmd, failpoint);
    child.kill().expect("SIGKILL tidemark"); // Child::kill sends SIGKILL on Unix
    let status = child.wait().expect("reap tidemark");
    assert!(!status.success(), "killed process must not report success");
}

/// Start `cmd` with `failpoint` armed and return once it is waiting there. With
/// `TIDEMARK_FAILPOINT_RELEASE` set on `cmd`, it goes on when that file appears.
pub fn hold_at_failpoint(cmd: &mut Command, failpoint: &str) -> Child {
    let mut child: Child = cmd
        .env("TIDEMARK_FAILPOINT", failpoint)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tidemark");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.starts_with("FAILPOINT ") {
                let _ = tx.send(Ok(line.clone()));
            }
            lines.push(line);
        }
        let _ = tx.send(Err(lines.join("\n")));
    });
    match rx.recv_timeout(FAILPOINT_TIMEOUT) {
        // `name#N` arms the N-th hit of `name`; the process prints the name.
        Ok(Ok(line)) => assert_eq!(
            line,
            format!(
                "FAILPOINT {}",
                failpoint.split('#').next().unwrap_or(failpoint)
            )
        ),
        Ok(Err(stderr)) => panic!("tidemark exited before reaching {failpoint}: {stderr}"),
        Err(_) => panic!("tidemark did not reach {failpoint} within {FAILPOINT_TIMEOUT:?}"),
    }
    child
}

/// Rows of `table` as sorted JSON lines via `tidemark sql`.
pub fn table_lines(backend: &Backend, table: &str) -> Vec<String> {
    let out = run_ok(tidemark(backend).args([
        "sql",
        "--format",
        "jsonl",
        "-c",
        &format!("SELECT source, account_id, CAST(date AS VARCHAR) AS date, ad_id, clicks, generation FROM {table} ORDER BY 1, 2, 3, 4"),
    ]));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The table's latest version, via `DESCRIBE`-free SQL on the log: count of commits seen by a
/// fresh open.
pub fn table_version(backend: &Backend, table: &str) -> u64 {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let warehouse = backend.open().await;
        warehouse
            .open_table(engine::Namespace::Tables, table)
            .await
            .unwrap()
            .version()
            .unwrap()
    })
}

/// The `[sources.meta]` and `[sources.google_ads]` sections of a project on the simulators at
/// `base`, with their two known accounts each and the simulators' token variables; `meta` and
/// `google_ads` are the further lines of each section (window, pacing, timeouts).
pub fn meta_and_google_ads_sources(base: &str, meta: &str, google_ads: &str) -> String {
    format!(
        r#"[sources.meta]
base_url = "{base}"
access_token = {{ env = "SIM_META_TOKEN" }}
accounts = ["1000000001", "1000000002"]
{meta}

[sources.google_ads]
base_url = "{base}"
access_token = {{ env = "SIM_GOOGLE_TOKEN" }}
developer_token = {{ env = "SIM_DEV_TOKEN" }}
accounts = ["1234567001", "1234567002"]
{google_ads}
"#
    )
}
