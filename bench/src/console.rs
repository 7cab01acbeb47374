//! `tidemark-bench console`: how long the web console takes to answer each page over a
//! warehouse of many accounts (2,000 × 30 days by default), next to `tidemark status --format
//! json` on the same warehouse (the CLI answer the overview's grid equals).
//!
//! The warehouse holds what syncs leave: one `ad_performance` row and one slice-ledger record
//! per (account, day), committed in batches of 100 accounts as `commit_every` would. The pages
//! are fetched from a real `tidemark serve` (the binary next to this one: build both with
//! `cargo build --release --workspace`) after one login; each is fetched once to warm up, then
//! timed `runs` times (median reported). Writes a Markdown report.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{Days, NaiveDate, Utc};
use engine::ledger::SliceRecord;
use engine::{Namespace, SliceKey, Warehouse};
use testdata::rows::Row;

const USER: (&str, &str) = ("bench", "bench-console-password");
const TODAY: &str = "2026-11-21";
const WINDOW_DAYS: u64 = 28;
/// Accounts per commit, as syncs commit batches of jobs.
const ACCOUNTS_PER_COMMIT: usize = 100;
const PAGES: [&str; 5] = ["/", "/day", "/maturity", "/marts", "/runs"];

/// Account ids as the ledger keeps them (what `account_ids()` makes of the configured ones).
fn account(i: usize) -> String {
    format!("{}", 1_000_000_000 + i)
}

/// Write the warehouse: `accounts` × `days` rows and ledger records.
async fn generate(
    warehouse: &Warehouse,
    accounts: usize,
    days: u64,
    today: NaiveDate,
) -> anyhow::Result<()> {
    let started = Instant::now();
    for chunk in (0..accounts)
        .collect::<Vec<_>>()
        .chunks(ACCOUNTS_PER_COMMIT)
    {
        let mut slices = Vec::new();
        let mut rows = Vec::new();
        let mut records = Vec::new();
        for &i in chunk {
            for back in 1..=days {
                let date = today - Days::new(back);
                let slice = SliceKey::new("meta", account(i), date);
                rows.push(Row {
                    slice: slice.clone(),
                    ad_id: "ad1".into(),
                    clicks: (i as i64 * 7 + back as i64) % 500,
                    generation: 1,
                });
                records.push(SliceRecord {
                    source: "meta".into(),
                    account: account(i),
                    date,
                    synced_at: Utc::now(),
                    run: "bench".into(),
                    source_table: "meta_ads_insights".into(),
                    source_table_version: 0,
                    table_version: 0,
                    rows: 1,
                    settles_at: (date + Days::new(WINDOW_DAYS + 1))
                        .and_time(chrono::NaiveTime::MIN)
                        .and_utc(),
                });
                slices.push(slice);
            }
        }
        warehouse
            .replace_slices(engine::model::AD_PERFORMANCE)
            .with_slices(slices)
            .with_rows([testdata::rows::batch(&rows)])
            .await?;
        engine::ledger::record(warehouse, &records, &format!("bench-console-{}", chunk[0])).await?;
        eprintln!(
            "  {} of {accounts} accounts written ({:.0} s)",
            chunk[chunk.len() - 1] + 1,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn write_project(dir: &Path, accounts: usize, console_port: u16) -> anyhow::Result<()> {
    let ids: Vec<String> = (0..accounts)
        .map(|i| format!("\"{}\"", account(i)))
        .collect();
    let hash = sql::flight::auth::hash_password(USER.1).map_err(anyhow::Error::msg)?;
    std::fs::write(
        dir.join("tidemark.toml"),
        format!(
            "warehouse = \"wh\"\n\n[sources.meta]\nbase_url = \"http://127.0.0.1:9\"\n\
             access_token = {{ env = \"BENCH_UNUSED_TOKEN\" }}\naccounts = [{}]\nwindow_days = {WINDOW_DAYS}\n\n\
             [console]\naddr = \"127.0.0.1:{console_port}\"\n\n\
             [users.{}]\npassword_hash = \"{hash}\"\nrole = \"admin\"\ngrants = [\"*\"]\n",
            ids.join(", "),
            USER.0
        ),
    )?;
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The `tidemark` binary built beside this one.
fn tidemark_binary() -> anyhow::Result<PathBuf> {
    let path = std::env::current_exe()?.with_file_name("tidemark");
    anyhow::ensure!(
        path.exists(),
        "{} is missing: build both with `cargo build --release --workspace`",
        path.display()
    );
    Ok(path)
}

pub async fn run(
    accounts: usize,
    days: u64,
    runs: usize,
    dir: PathBuf,
    results: PathBuf,
) -> anyhow::Result<()> {
    let today: NaiveDate = TODAY.parse()?;
    let binary = tidemark_binary()?;
    let wh = dir.join("wh");
    let warehouse = Warehouse::open(wh.to_str().unwrap_or_default(), &Default::default()).await?;
    if !warehouse
        .exists(Namespace::System, engine::ledger::SLICES)
        .await?
    {
        eprintln!(
            "writing {accounts} accounts × {days} days to {}",
            wh.display()
        );
        generate(&warehouse, accounts, days, today).await?;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    write_project(&dir, accounts, port)?;
    let mut child = Command::new(&binary)
        .args(["serve", "--addr", "127.0.0.1:0", "--project"])
        .arg(&dir)
        .env("TIDEMARK_TODAY", TODAY)
        .env("BENCH_UNUSED_TOKEN", "unused")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().expect("piped");
    let mut lines = BufReader::new(stdout).lines();
    let console = loop {
        let line = lines.next().ok_or_else(|| {
            anyhow::anyhow!("tidemark serve stopped before starting the console")
        })??;
        if let Some(url) = line.strip_prefix("web console: ") {
            break url.trim_end_matches('/').to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let result = measure(&console, &binary, &dir, runs).await;
    let _ = child.kill();
    let _ = child.wait();
    let (pages, status_ms) = result?;
    let mut report = format!(
        "# Web console: page times over {accounts} accounts × {days} days\n\n\
         `tidemark-bench console` (release build): each page fetched over HTTP from `tidemark \
         serve` after one login, warmed once, then {runs} timed fetches (median). The peer is \
         `tidemark status --format json` on the same warehouse (a whole process: the overview \
         grid equals its answer).\n\n| page | median ms | ratio to `tidemark status` |\n| --- | ---: | ---: |\n"
    );
    for (page, ms) in &pages {
        report.push_str(&format!("| `{page}` | {ms:.0} | {:.2} |\n", ms / status_ms));
    }
    report.push_str(&format!(
        "| `tidemark status --format json` | {status_ms:.0} | 1.00 |\n"
    ));
    println!("{report}");
    std::fs::write(&results, report)?;
    println!("written to {}", results.display());
    Ok(())
}

async fn measure(
    console: &str,
    binary: &Path,
    dir: &Path,
    runs: usize,
) -> anyhow::Result<(Vec<(String, f64)>, f64)> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(600))
        .build()?;
    let login = client
        .post(format!("{console}/login"))
        .header("origin", console)
        .form(&[("user", USER.0), ("password", USER.1)])
        .send()
        .await?;
    let cookie = login
        .headers()
        .get("set-cookie")
        .and_then(|c| c.to_str().ok())
        .and_then(|c| c.split(';').next())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "the console did not log the bench user in ({})",
                login.status()
            )
        })?
        .to_string();
    let mut pages = Vec::new();
    for page in PAGES {
        let mut times = Vec::new();
        for i in 0..=runs.max(1) {
            let started = Instant::now();
            let response = client
                .get(format!("{console}{page}"))
                .header("cookie", &cookie)
                .send()
                .await?;
            anyhow::ensure!(
                response.status().is_success(),
                "{page}: {}",
                response.status()
            );
            let _ = response.bytes().await?;
            if i > 0 {
                times.push(started.elapsed().as_secs_f64() * 1000.0);
            }
        }
        eprintln!("  {page}: {:.0} ms", median(times.clone()));
        pages.push((page.to_string(), median(times)));
    }
    let mut status = Vec::new();
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        let out = Command::new(binary)
            .args(["status", "--today", TODAY, "--format", "json", "--project"])
            .arg(dir)
            .env("BENCH_UNUSED_TOKEN", "unused")
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "tidemark status: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        status.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok((pages, median(status)))
}
